"""Whether this server process is draining: told to stop (SIGTERM), it keeps serving for DRAIN_DELAY_SECONDS
while its readiness probe answers 503, so that a load balancer (a Kubernetes Service, nginx, HAProxy) stops
sending it new connections before it stops accepting them (llmproxy_site.server, docs/deployment.md)."""

from __future__ import annotations

_draining = False


def begin() -> None:
    """From now on the readiness probe answers 503 (for the rest of the process's life)."""
    global _draining
    _draining = True


def draining() -> bool:
    return _draining
