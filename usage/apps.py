from __future__ import annotations

from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "usage"
    verbose_name = "Usage"

    def ready(self) -> None:
        from routing import audit
        from usage import retention  # noqa: F401  (registers the background pruning of old ledger rows)
        from usage.models import ModelPrice

        # Price overrides change what every exchange costs: audited like the rest of the configuration.
        audit.track(ModelPrice)
