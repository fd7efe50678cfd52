"""The real coding-agent CLIs for end-to-end tests, npm-installed once per checkout into `.cache/clis`.

`ensure_clis()` returns the prefix holding them, installing the pinned versions when they are missing; when npm is
not there, cannot reach the registry or the install fails, it skips the calling test with the reason (never a
silent pass). A failed attempt is remembered for the rest of the session so later tests skip at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from routing.launchers import DEFAULT_CLI_PREFIX

PINNED = {
    "@anthropic-ai/claude-code": "2.1.197",
    "@openai/codex": "0.169.0",
    "@google/gemini-cli": "0.61.0",
}
BINARIES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex", "gemini": "@google/gemini-cli"}
INSTALL_TIMEOUT = 240.0

_failure: str | None = None


def installed_version(prefix: Path, package: str) -> str | None:
    try:
        return str(json.loads((prefix / "node_modules" / package / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def missing(prefix: Path) -> list[str]:
    """The pinned packages not installed (at their version, with their binary) in `prefix`."""
    return [
        f"{package}@{version}"
        for name, package in BINARIES.items()
        if (version := PINNED[package]) != installed_version(prefix, package)
        or not (prefix / "node_modules" / ".bin" / name).exists()
    ]


def install(prefix: Path) -> str | None:
    """Install what is missing into `prefix`; the reason it could not, or None."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed, so the real CLIs cannot be installed"
    prefix.mkdir(parents=True, exist_ok=True)
    with (prefix / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test processes install once
        needed = missing(prefix)
        if not needed:
            return None
        command = [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-fund",
            "--no-audit",
            "--no-save",
            "--fetch-retries=1",
            "--fetch-retry-mintimeout=1000",
            "--fetch-retry-maxtimeout=3000",
            "--fetch-timeout=30000",
            *needed,
        ]
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                env={**os.environ, "npm_config_update_notifier": "false"},
            )
        except subprocess.TimeoutExpired:
            return f"`npm install {' '.join(needed)}` did not finish in {INSTALL_TIMEOUT:.0f} s (no registry access?)"
        still = missing(prefix)
        if result.returncode != 0 or still:
            return f"`npm install {' '.join(needed)}` failed (rc={result.returncode}): " + npm_error(result)
    return None


def npm_error(result: subprocess.CompletedProcess[str]) -> str:
    """The gist of a failed npm run: its first error lines (code and message), else the end of its output."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("npm error") and line not in ("npm error", "npm error }")]
    return " | ".join(errors[:3] or lines[-3:])


def ensure_clis(prefix: Path = DEFAULT_CLI_PREFIX) -> Path:
    """`prefix` with the three pinned CLIs in it, or skip the test saying why they are not available."""
    global _failure
    if _failure is None and missing(prefix):
        _failure = install(prefix) or ""
    if _failure:
        pytest.skip(_failure)
    return prefix
