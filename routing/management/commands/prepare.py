"""`manage.py prepare [CONFIG.yaml ...]`: what a deployment runs before its servers start (the Compose file's
`prepare` service, the Kubernetes migration Job): migrate, create the ledger's coming month partitions on
PostgreSQL (usage.partitions), make sure the admin account exists (`bootstrap`), then apply each configuration
file (`importconfig`).

On PostgreSQL it all happens under an advisory lock, so that several started at once (two rollouts
overlapping, a Job retried while the first still runs) run one after the other: Django applies each migration
in a transaction there, but two `migrate` processes that both find a migration unapplied would both try it,
and the second would fail on the tables the first created. The second one to take the lock finds nothing left
to migrate, and `importconfig` is idempotent."""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from usage.partitions import ensure_partitions

# pg_advisory_lock's key: any 64-bit number the proxy's other locks do not use ("llmprepr" in ASCII).
LOCK_KEY = 0x6C6C6D7072657072
WAIT_STEP_SECONDS = 1.0


class Command(BaseCommand):
    help = "Migrate, make sure the admin account exists and apply configuration files, one process at a time."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("config", nargs="*", help="YAML configuration files to apply with importconfig")

    def handle(self, *args: Any, **options: Any) -> None:
        locked = connection.vendor == "postgresql"
        if locked:
            self._lock()
        try:
            call_command("migrate", interactive=False, stdout=self.stdout, stderr=self.stderr)
            created = ensure_partitions()
            if created:
                self.stdout.write("Ledger partitions created: " + ", ".join(m.table for m in created))
            call_command("bootstrap", stdout=self.stdout, stderr=self.stderr)
            for path in options["config"]:
                call_command("importconfig", path, stdout=self.stdout, stderr=self.stderr)
        finally:
            if locked:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    def _lock(self) -> None:
        """Wait for the lock in short tries (a blocking wait would run into the statement timeout)."""
        waiting_said = False
        while True:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                if cursor.fetchone()[0]:
                    return
            if not waiting_said:
                self.stdout.write("Another `prepare` is running: waiting for it to finish.")
                waiting_said = True
            time.sleep(WAIT_STEP_SECONDS)
