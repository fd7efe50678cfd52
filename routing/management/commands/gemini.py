from __future__ import annotations

from argparse import ArgumentParser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routing.launchers import Launch, LauncherCommand, cache_dir, gemini_launch, read_json_object


class Command(LauncherCommand):
    help = "Start the Gemini CLI against this proxy: manage.py gemini [--model ALIAS] [-- GEMINI ARGS]"
    cli = "gemini"

    def add_cli_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--trust-workspace",
            action="store_true",
            help="Trust the current folder for this session (GEMINI_CLI_TRUST_WORKSPACE; needed for --yolo headless)",
        )
        parser.add_argument(
            "--gemini-home", default=None, help="GEMINI_CLI_HOME to use (default: ~/.cache/llmproxy/gemini-home)"
        )

    def build(self, url: str, key: str, args: list[str], env: Mapping[str, str], options: dict[str, Any]) -> Launch:
        # The user's own Gemini directory, whose settings and folder-trust decisions are kept.
        own = Path(env.get("GEMINI_CLI_HOME") or env.get("HOME") or Path.home()) / ".gemini"
        home = Path(options["gemini_home"]) if options["gemini_home"] else cache_dir(env) / "gemini-home"
        return gemini_launch(
            url,
            key,
            home,
            model=options["model"],
            trust_workspace=options["trust_workspace"],
            user_settings=read_json_object(own / "settings.json"),
            trusted_folders=Path(env.get("GEMINI_CLI_TRUSTED_FOLDERS_PATH") or own / "trustedFolders.json"),
            args=args,
            base_env=env,
        )
