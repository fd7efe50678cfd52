from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routing.launchers import Launch, LauncherCommand, cache_dir, codex_launch


class Command(LauncherCommand):
    help = "Start Codex against this proxy: manage.py codex [--model ALIAS] [--websocket] [-- CODEX ARGS]"
    cli = "codex"

    def add_cli_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--websocket", action="store_true", help="Let Codex use the Responses WebSocket (GET /v1/responses)"
        )
        parser.add_argument(
            "--codex-home", default=None, help="CODEX_HOME to use (default: ~/.cache/llmproxy/codex-home)"
        )
        parser.add_argument("--retries", type=int, default=2, help="Codex request and stream retries (default 2)")

    def build(self, url: str, key: str, args: list[str], env: Mapping[str, str], options: dict[str, Any]) -> Launch:
        home = Path(options["codex_home"]) if options["codex_home"] else cache_dir(env) / "codex-home"
        return codex_launch(
            url,
            key,
            home,
            model=options["model"],
            websocket=options["websocket"],
            retries=options["retries"],
            args=args,
            base_env=env,
        )
