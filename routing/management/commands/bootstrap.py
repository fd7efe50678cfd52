from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from routing.config.quickstart import create_from_environment


class Command(BaseCommand):
    help = (
        "First-start set-up: make sure an admin account exists and, on an empty database, "
        "add upstreams from the environment."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self._ensure_admin()
        for line in create_from_environment():
            self.stdout.write(line)

    def _ensure_admin(self) -> None:
        users = get_user_model()
        username = settings.ADMIN_USERNAME
        if users.objects.filter(username=username).exists():
            return
        password = settings.ADMIN_PASSWORD or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if settings.ADMIN_PASSWORD:
            self.stdout.write(f"Created admin account {username!r} with the password from ADMIN_PASSWORD.")
        else:
            # Printed this once only; the operator changes it in the admin or sets ADMIN_PASSWORD.
            self.stdout.write(f"Created admin account {username!r} with password: {password}")
