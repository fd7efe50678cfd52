from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from routing.configfile import export_config


class Command(BaseCommand):
    help = "Print upstreams and aliases as YAML (secrets only as environment-variable references)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(export_config(), ending="")
