from __future__ import annotations

from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        from routing import audit, signals  # noqa: F401  (connect the config-change and audit signals)
        from routing.runtime import alerts  # noqa: F401  (registers the alert checks with the background worker)
