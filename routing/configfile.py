"""Configuration as a YAML file: `importconfig` applies one, `exportconfig` writes one.

The file names upstreams and aliases by name, so applying it twice changes nothing the second time.
Secrets never leave the database: an export shows environment-variable references only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from django.db import transaction

from routing.models import AuthHeader, ModelAlias, Upstream
from routing.secrets import decrypt, encrypt
from translation.dialect import Dialect

UPSTREAM_FIELDS = {
    "name",
    "format",
    "base_url",
    "api_key_env",
    "api_key",
    "auth_header",
    "headers",
    "query",
    "timeout",
    "connect_timeout",
    "allow_direct_models",
    "forward_client_key",
    "translation_flags",
    "enabled",
}
# File key -> model field, for the alias settings that are stored as they are written.
ALIAS_SETTINGS = {
    "max_output_tokens": "max_output_tokens",
    "context_window": "context_window",
    "system_replacements": "system_replacements",
    "system_append": "system_append",
    "summarize_tool_history": "summarize_tool_history",
    "default_params": "default_params",
    "override_params": "override_params",
    "extra_body": "extra_body",
}
ALIAS_DEFAULTS: dict[str, Any] = {
    "max_output_tokens": None,
    "context_window": None,
    "system_replacements": [],
    "system_append": "",
    "summarize_tool_history": False,
    "default_params": {},
    "override_params": {},
    "extra_body": {},
}
ALIAS_FIELDS = {"name", "upstream", "model", "priority", "enabled", *ALIAS_SETTINGS}


class ConfigFileError(ValueError):
    pass


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _require_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _check_fields(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigFileError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    if not entry.get("name"):
        raise ConfigFileError(f"{where}: 'name' is required")


def parse(text: str) -> dict[str, list[dict[str, Any]]]:
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"not valid YAML: {exc}") from exc
    document = _require_mapping(document, "top level")
    unknown = sorted(set(document) - {"upstreams", "aliases"})
    if unknown:
        raise ConfigFileError(f"top level: unknown section(s) {', '.join(unknown)}")
    upstreams = document.get("upstreams") or []
    aliases = document.get("aliases") or []
    for index, entry in enumerate(upstreams):
        where = f"upstreams[{index}]"
        _check_fields(_require_mapping(entry, where), UPSTREAM_FIELDS, where)
        if entry.get("format") not in {d.value for d in Dialect}:
            raise ConfigFileError(f"{where}: format must be one of {', '.join(d.value for d in Dialect)}")
        if not entry.get("base_url"):
            raise ConfigFileError(f"{where}: 'base_url' is required")
        if entry.get("api_key") and entry.get("api_key_env"):
            raise ConfigFileError(f"{where}: give api_key or api_key_env, not both")
    for index, entry in enumerate(aliases):
        where = f"aliases[{index}]"
        _check_fields(_require_mapping(entry, where), ALIAS_FIELDS, where)
        if not entry.get("upstream"):
            raise ConfigFileError(f"{where}: 'upstream' is required")
    return {"upstreams": upstreams, "aliases": aliases}


def _apply(obj: Upstream | ModelAlias, values: dict[str, Any], report: ImportReport, label: str) -> None:
    is_new = obj._state.adding
    changed = False
    for attr, value in values.items():
        if getattr(obj, attr) != value:
            setattr(obj, attr, value)
            changed = True
    if is_new:
        obj.save()
        report.created.append(label)
    elif changed:
        obj.save()
        report.updated.append(label)
    else:
        report.unchanged.append(label)


def _credential_values(upstream: Upstream, entry: dict[str, Any]) -> dict[str, Any]:
    """An entry that names no credential leaves the stored one alone (that is how exports read back)."""
    if entry.get("api_key"):
        current = decrypt(upstream.api_key_encrypted) if upstream.api_key_encrypted else None
        if current == entry["api_key"]:
            return {"api_key_env": ""}
        return {"api_key_env": "", "api_key_encrypted": encrypt(entry["api_key"])}
    if "api_key_env" in entry:
        return {"api_key_env": entry["api_key_env"] or "", "api_key_encrypted": ""}
    return {}


def import_config(text: str) -> ImportReport:
    document = parse(text)
    report = ImportReport()
    with transaction.atomic():
        known = {u.name: u for u in Upstream.objects.all()}
        for entry in document["upstreams"]:
            upstream = known.get(entry["name"]) or Upstream(name=entry["name"])
            values: dict[str, Any] = {
                "format": entry["format"],
                "base_url": entry["base_url"],
                "headers": entry.get("headers") or {},
                "query_params": entry.get("query") or {},
                "auth_header": entry.get("auth_header", AuthHeader.AUTO),
                "timeout": float(entry.get("timeout", 600)),
                "connect_timeout": float(entry.get("connect_timeout", 10)),
                "allow_direct_models": bool(entry.get("allow_direct_models", True)),
                "forward_client_key": bool(entry.get("forward_client_key", False)),
                "translation_flags": entry.get("translation_flags") or {},
                "enabled": bool(entry.get("enabled", True)),
            }
            values.update(_credential_values(upstream, entry))
            _apply(upstream, values, report, f"upstream {entry['name']}")
            known[upstream.name] = upstream
        aliases = {a.name: a for a in ModelAlias.objects.all()}
        for index, entry in enumerate(document["aliases"]):
            target = known.get(entry["upstream"])
            if target is None:
                raise ConfigFileError(f"aliases[{index}]: no upstream named {entry['upstream']!r}")
            alias = aliases.get(entry["name"]) or ModelAlias(name=entry["name"])
            values = {
                "upstream_id": target.pk,
                "upstream_model": entry.get("model", ""),
                "priority": int(entry.get("priority", 100)),
                "enabled": bool(entry.get("enabled", True)),
            }
            values.update({attr: entry.get(key, ALIAS_DEFAULTS[key]) for key, attr in ALIAS_SETTINGS.items()})
            _apply(alias, values, report, f"alias {entry['name']}")
    return report


def export_config() -> str:
    upstreams = []
    stored_keys: list[str] = []
    for upstream in Upstream.objects.order_by("name"):
        entry: dict[str, Any] = {"name": upstream.name, "format": upstream.format, "base_url": upstream.base_url}
        if upstream.api_key_env:
            entry["api_key_env"] = upstream.api_key_env
        elif upstream.api_key_encrypted:
            stored_keys.append(upstream.name)
        entry.update(
            {
                "auth_header": upstream.auth_header,
                "headers": upstream.headers,
                "query": upstream.query_params,
                "timeout": upstream.timeout,
                "connect_timeout": upstream.connect_timeout,
                "allow_direct_models": upstream.allow_direct_models,
                "forward_client_key": upstream.forward_client_key,
                "translation_flags": upstream.translation_flags,
                "enabled": upstream.enabled,
            }
        )
        upstreams.append(entry)
    aliases = []
    for alias in ModelAlias.objects.select_related("upstream").order_by("priority", "name"):
        entry = {
            "name": alias.name,
            "upstream": alias.upstream.name,
            "model": alias.upstream_model,
            "priority": alias.priority,
            "enabled": alias.enabled,
        }
        # Settings left at their defaults are not written, so exports stay short.
        for key, attr in ALIAS_SETTINGS.items():
            value = getattr(alias, attr)
            if value != ALIAS_DEFAULTS[key]:
                entry[key] = value
        aliases.append(entry)
    body = yaml.safe_dump({"upstreams": upstreams, "aliases": aliases}, sort_keys=False, allow_unicode=True)
    if not stored_keys:
        return body
    # Secrets never leave the database; importing this file back keeps the stored keys as they are.
    note = f"# Keys stored encrypted in the database (not exported): {', '.join(stored_keys)}\n"
    return note + body
