from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from usage.retention import parse_age, prune


class Command(BaseCommand):
    help = (
        "Delete usage ledger rows older than --older-than (90d, 12h, 2w), in small batches; the hourly and daily "
        "rollups keep the dashboards' history."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--older-than", required=True, help="age of the rows to delete: 90d, 12h, 2w")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            age = parse_age(options["older_than"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        deleted = prune(age)
        self.stdout.write(f"Deleted {deleted} ledger row(s) older than {options['older_than']}.")
