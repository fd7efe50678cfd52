from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from routing.config.configfile import export_config


class Command(BaseCommand):
    help = (
        "Print upstreams, aliases, groups and users (with their keys' labels, model access, budgets and limits) as "
        "YAML; secrets only as environment-variable references, keys never."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(export_config(), ending="")
