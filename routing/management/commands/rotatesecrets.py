from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from routing.config.secrets import reencrypt
from routing.models import Upstream


class Command(BaseCommand):
    help = "Re-encrypt stored provider keys with the newest of ENCRYPTION_KEYS (after putting a new key first)."

    def handle(self, *args: Any, **options: Any) -> None:
        with transaction.atomic():
            stored = Upstream.objects.select_for_update().exclude(api_key_encrypted="")
            for upstream in stored:
                upstream.api_key_encrypted = reencrypt(upstream.api_key_encrypted)
                upstream.save(update_fields=["api_key_encrypted", "updated_at"])
        self.stdout.write(f"re-encrypted {len(stored)} stored key(s) with the newest key")
