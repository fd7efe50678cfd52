from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from routing.config.configfile import ConfigFileError, import_config


class Command(BaseCommand):
    help = (
        "Create or update upstreams, aliases, groups and users (model access, budgets, rate limits) from a YAML file "
        "(idempotent; a running server picks it up live)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", help="YAML file, or - for standard input")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Validate the file, also against the database (upstreams, groups, keys it names); apply nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        import sys

        source = options["file"]
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        try:
            if options["check"]:
                report = import_config(text, dry_run=True)
                self.stdout.write(
                    f"configuration file is valid: it would create {len(report.created)}, "
                    f"update {len(report.updated)} and leave {len(report.unchanged)} unchanged"
                )
                return
            report = import_config(text)
        except ConfigFileError as exc:
            raise CommandError(f"{source}: {exc}") from exc
        for label in report.created:
            self.stdout.write(f"created {label}")
        for label in report.updated:
            self.stdout.write(f"updated {label}")
        self.stdout.write(
            f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged"
        )
