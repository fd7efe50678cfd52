from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Q

from routing.config.secrets import reencrypt
from routing.models import Upstream

# Every encrypted column of an upstream: its API key and its egress proxy's credentials.
ENCRYPTED_FIELDS = ("api_key_encrypted", "proxy_auth_encrypted")


class Command(BaseCommand):
    help = (
        "Re-encrypt stored provider keys and proxy credentials with the newest of ENCRYPTION_KEYS (after putting a "
        "new key first)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        with transaction.atomic():
            holding = Q(api_key_encrypted__gt="") | Q(proxy_auth_encrypted__gt="")
            for upstream in Upstream.objects.select_for_update().filter(holding):
                changed = [name for name in ENCRYPTED_FIELDS if getattr(upstream, name)]
                for name in changed:
                    setattr(upstream, name, reencrypt(getattr(upstream, name)))
                upstream.save(update_fields=[*changed, "updated_at"])
                count += len(changed)
        self.stdout.write(f"re-encrypted {count} stored secret(s) with the newest key")
