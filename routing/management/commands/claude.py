from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Mapping
from typing import Any

from routing.launchers import Launch, LauncherCommand, claude_launch


class Command(LauncherCommand):
    help = "Start Claude Code against this proxy: manage.py claude [--model ALIAS] [--key KEY] [-- CLAUDE ARGS]"
    cli = "claude"

    def add_cli_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--bearer", action="store_true", help="Send the key as Authorization: Bearer (ANTHROPIC_AUTH_TOKEN)"
        )
        parser.add_argument(
            "--bedrock",
            action="store_true",
            help="Claude Code in Bedrock mode: the proxy as its Bedrock endpoint, the key as its Bedrock API key",
        )

    def build(self, url: str, key: str, args: list[str], env: Mapping[str, str], options: dict[str, Any]) -> Launch:
        return claude_launch(
            url,
            key,
            model=options["model"],
            bearer=options["bearer"],
            bedrock=options["bedrock"],
            args=args,
            base_env=env,
        )
