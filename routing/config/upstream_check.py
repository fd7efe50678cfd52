"""Check upstreams (the admin's "Check" action and `manage.py checkupstreams`): read what each needs from the
database, the environment and disk, then probe them all at once (routing.upstream.probe) on an event loop of its
own. A missing or undecryptable credential is named here, never shown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from routing.config.registry import upstream_route
from routing.config.secrets import credential_variable_problem, decrypt, proxy_auth_variable_problem
from routing.config.targets import key_variables
from routing.models import ModelAlias, Upstream
from routing.upstream.network import ca_bundle_problem
from routing.upstream.probe import CheckResult, Probe, check_all

__all__ = ["CheckResult", "check_upstreams"]


def _configuration_problems(upstream: Upstream) -> list[str]:
    """What is wrong before anything is sent: credentials that cannot be read, a CA bundle that is missing."""
    problems = []
    if upstream.api_key_env:
        for variable in key_variables(upstream.api_key_env):  # one name, or a key pool's several
            if problem := credential_variable_problem(variable):
                problems.append(problem)
            elif not os.environ.get(variable):
                problems.append(f"environment variable {variable} (the API key) is not set")
    elif upstream.api_key_encrypted:
        try:
            decrypt(upstream.api_key_encrypted)
        except ValueError:
            problems.append("the stored API key cannot be decrypted with ENCRYPTION_KEYS")
    if upstream.proxy_url and upstream.proxy_auth_env:
        if problem := proxy_auth_variable_problem(upstream.proxy_auth_env):
            problems.append(problem)
        elif not os.environ.get(upstream.proxy_auth_env):
            problems.append(f"environment variable {upstream.proxy_auth_env} (the proxy credentials) is not set")
    elif upstream.proxy_url and upstream.proxy_auth_encrypted:
        try:
            decrypt(upstream.proxy_auth_encrypted)
        except ValueError:
            problems.append("the stored proxy credentials cannot be decrypted with ENCRYPTION_KEYS")
    if upstream.ca_bundle and upstream.verify_tls and (problem := ca_bundle_problem(upstream.ca_bundle)):
        problems.append(problem)
    return problems


def _probe(upstream: Upstream) -> Probe:
    """Everything read from the database and disk, before the event loop runs."""
    aliases = ModelAlias.objects.filter(upstream=upstream).exclude(upstream_model="").order_by("priority", "id")
    model = next((a.upstream_model for a in aliases if not any(ch in a.upstream_model for ch in "*?[")), "")
    notes = ("TLS certificate verification is off",) if not upstream.verify_tls else ()
    return Probe(upstream_route(upstream), model, _configuration_problems(upstream), notes)


def check_upstreams(upstreams: Sequence[Upstream]) -> list[CheckResult]:
    """Check each upstream (concurrently) and report, in the order given. Synchronous: the database is read
    first, then an event loop of its own does the requests (an admin view or a command, never the data plane)."""
    probes = [_probe(upstream) for upstream in upstreams]
    return asyncio.run(check_all(probes))
