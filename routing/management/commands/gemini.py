from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Mapping
from typing import Any

from routing.launchers import (
    Launch,
    LauncherCommand,
    cache_dir,
    gemini_launch,
    read_json_object,
    system_gemini_settings_path,
)


class Command(LauncherCommand):
    help = "Start the Gemini CLI against this proxy: manage.py gemini [--model ALIAS] [-- GEMINI ARGS]"
    cli = "gemini"

    def add_cli_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--trust-workspace",
            action="store_true",
            help="Trust the current folder for this session (GEMINI_CLI_TRUST_WORKSPACE; needed for --yolo headless)",
        )

    def build(self, url: str, key: str, args: list[str], env: Mapping[str, str], options: dict[str, Any]) -> Launch:
        path = cache_dir(env) / "gemini" / "system-settings.json"
        existing = read_json_object(system_gemini_settings_path(env))
        return gemini_launch(
            url,
            key,
            path,
            model=options["model"],
            trust_workspace=options["trust_workspace"],
            existing_settings=existing,
            args=args,
            base_env=env,
        )
