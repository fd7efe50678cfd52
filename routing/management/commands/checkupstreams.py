from __future__ import annotations

import json
from argparse import ArgumentParser
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from routing.config.upstream_check import CheckResult, check_upstreams
from routing.models import Upstream

SHOWN_MODELS = 8


class Command(BaseCommand):
    help = (
        "Ask each enabled upstream (or those named) for its model list with its configured credential, through its "
        "egress proxy; exit 1 when one fails. The credential is never printed."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", help="upstream names (default: every enabled upstream)")
        parser.add_argument("--json", action="store_true", help="one JSON object per upstream, for automation")

    def handle(self, *args: Any, **options: Any) -> None:
        names: list[str] = options["names"]
        upstreams = list(Upstream.objects.filter(name__in=names) if names else Upstream.objects.filter(enabled=True))
        missing = sorted(set(names) - {u.name for u in upstreams})
        if missing:
            raise CommandError(f"no upstream named {', '.join(missing)}")
        if not upstreams:
            self.stdout.write("No enabled upstream to check.")
            return
        results = check_upstreams(upstreams)
        for result in results:
            if options["json"]:
                self.stdout.write(json.dumps({**asdict(result), "ok": result.ok}))
            else:
                self.stdout.write(_line(result))
        failed = [r.upstream for r in results if not r.ok]
        if failed:
            raise CommandError(f"{len(failed)} of {len(results)} upstream(s) failed: {', '.join(failed)}", returncode=1)


def _line(result: CheckResult) -> str:
    status = "OK  " if result.ok else "FAIL"
    latency = f"{result.latency_ms:.0f} ms" if result.latency_ms is not None else "no answer"
    via = "" if result.via == "direct" else f", via {result.via}"
    parts = [f"{status} {result.upstream}: {latency} ({result.method}{via})"]
    if result.models:
        shown = ", ".join(result.models[:SHOWN_MODELS])
        more = f" and {len(result.models) - SHOWN_MODELS} more" if len(result.models) > SHOWN_MODELS else ""
        parts.append(f"{len(result.models)} model(s): {shown}{more}")
    parts.extend(result.problems)
    parts.extend(f"note: {note}" for note in result.notes)
    return "\n    ".join(parts)
