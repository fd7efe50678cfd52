"""Configuration as a YAML file: `importconfig` applies one, `exportconfig` writes one.

The file names upstreams, aliases, groups and users by name (and users' keys by label), so applying it twice
changes nothing the second time. Secrets never leave the database: an export shows environment-variable references
only, and keys appear by label (a key is made with `createkey`, which shows it once). Errors name the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import models, transaction

from routing.config.scenarios import ORDER, parse_scenarios
from routing.config.secrets import (
    credential_variable_problem,
    decrypt,
    encrypt,
    own_variable_problem,
    proxy_auth_variable_problem,
)
from routing.config.targets import STORED_KEY_SEPARATOR, key_variables, parse_targets
from routing.dataplane.endpoints import prefix_path_problem
from routing.models import (
    BEDROCK,
    FORMAT_CHOICES,
    VERTEX,
    AuthHeader,
    BudgetPeriod,
    GroupPolicy,
    KeyPolicy,
    ModelAlias,
    PathPrefix,
    ProxyKey,
    Upstream,
    UserPolicy,
)
from routing.upstream.network import proxy_url_problem
from translation.redaction import SECRET_NAME

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
    *("proxy_url", "proxy_auth_env", "proxy_auth", "ca_bundle", "verify_tls"),
    *("default_max_tokens", "context_window"),
    *("project", "location", "credentials_env", "token_url"),
    *("region", "aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env"),
}
# Network and limit settings of an upstream, stored as they are written (file key = model field), and their
# defaults (an export leaves defaults out).
UPSTREAM_SETTINGS: dict[str, Any] = {
    "proxy_url": "",
    "ca_bundle": "",
    "verify_tls": True,
    "default_max_tokens": None,
    "context_window": None,
    "project": "",
    "location": "",
    "credentials_env": "",
    "token_url": "",
    "aws_access_key_id_env": "",
    "aws_secret_access_key_env": "",
    "aws_session_token_env": "",
}
# File key -> model field, for the alias settings that are stored as they are written.
ALIAS_SETTINGS = {
    "max_output_tokens": "max_output_tokens",
    "default_max_tokens": "default_max_tokens",
    "context_window": "context_window",
    "system_replacements": "system_replacements",
    "system_append": "system_append",
    "summarize_tool_history": "summarize_tool_history",
    "default_params": "default_params",
    "override_params": "override_params",
    "extra_body": "extra_body",
    "scenarios": "scenarios",  # routing.config.scenarios
    "capture_bodies": "capture_bodies",  # usage.captures
}
ALIAS_DEFAULTS: dict[str, Any] = {
    "max_output_tokens": None,
    "default_max_tokens": None,
    "context_window": None,
    "system_replacements": [],
    "system_append": "",
    "summarize_tool_history": False,
    "default_params": {},
    "override_params": {},
    "extra_body": {},
    "scenarios": {},
    "capture_bodies": False,
}
ALIAS_FIELDS = {"name", "upstream", "model", "targets", "priority", "enabled", *ALIAS_SETTINGS}
SECTIONS = ("upstreams", "aliases", "prefixes", "groups", "users")
PREFIX_FIELDS = {"path", "aliases", "enabled"}
# Model access, budgets and rate limits (routing.access.policy): a group has access and a budget, users and keys
# all three.
GROUP_FIELDS = {"name", "models", "budget"}
USER_FIELDS = {"username", "active", "groups", "models", "budget", "limits", "keys"}
KEY_FIELDS = {"label", "models", "budget", "limits", "capture_bodies"}
BUDGET_FIELDS = {"usd", "period"}
LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_streams")


class ConfigFileError(ValueError):
    pass


# --- reading with line numbers ----------------------------------------------------------------------------


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers its line and the line of each key (1-based)."""

    line = 0
    key_lines: dict[Any, int]


class _Sequence(list[Any]):
    line = 0


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _Sequence:
    sequence = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    return sequence


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line(value: Any, key: Any = None) -> int:
    """The line of `value`'s key `key` (or of `value` itself), 0 when unknown."""
    if key is not None and isinstance(value, _Mapping) and key in value.key_lines:
        return value.key_lines[key]
    return int(getattr(value, "line", 0))


def _at(value: Any, where: str, key: Any = None) -> str:
    line = _line(value, key)
    return f"line {line}: {where}" if line else where


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _require_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigFileError(f"{_at(value, where)}: expected a mapping, got {type(value).__name__}")
    return value


def _require_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigFileError(f"{_at(value, where)}: expected a list, got {type(value).__name__}")
    return value


def _check_fields(entry: dict[str, Any], allowed: set[str], where: str, name: str = "name") -> None:
    unknown = sorted(set(entry) - allowed, key=str)
    if unknown:
        raise ConfigFileError(
            f"{_at(entry, where, unknown[0])}: unknown field(s) {', '.join(map(str, unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    if not entry.get(name) or not isinstance(entry.get(name), str):
        raise ConfigFileError(f"{_at(entry, where)}: '{name}' is required")


def parse(text: str) -> dict[str, list[dict[str, Any]]]:
    try:
        document = yaml.load(text, Loader=_Loader) or {}  # _Loader is yaml.SafeLoader that keeps line numbers
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"not valid YAML: {exc}") from exc
    document = _require_mapping(document, "top level")
    unknown = sorted(set(document) - set(SECTIONS), key=str)
    if unknown:
        raise ConfigFileError(f"{_at(document, 'top level', unknown[0])}: unknown section(s) {', '.join(unknown)}")
    sections = {name: _require_list(document.get(name), name) for name in SECTIONS}
    for index, entry in enumerate(sections["upstreams"]):
        where = f"upstreams[{index}]"
        _check_fields(_require_mapping(entry, where), UPSTREAM_FIELDS, where)
        where = f"{where} ({entry['name']})"
        formats = [value for value, _ in FORMAT_CHOICES]
        if entry.get("format") not in formats:
            raise ConfigFileError(f"{_at(entry, where, 'format')}: format must be one of {', '.join(formats)}")
        if entry["format"] == VERTEX:
            _check_vertex(entry, where)
        elif entry["format"] == BEDROCK:
            _check_bedrock(entry, where)
        elif not entry.get("base_url"):
            raise ConfigFileError(f"{_at(entry, where)}: 'base_url' is required")
        if entry.get("api_key") and entry.get("api_key_env"):
            raise ConfigFileError(f"{_at(entry, where, 'api_key')}: give api_key or api_key_env, not both")
        _check_key_pool(entry, where)
        _check_network(entry, where)
    for index, entry in enumerate(sections["aliases"]):
        where = f"aliases[{index}]"
        _check_fields(_require_mapping(entry, where), ALIAS_FIELDS, where)
        _check_targets(entry, where)
        if "scenarios" in entry:
            try:
                entry["scenarios"] = parse_scenarios(entry["scenarios"])
            except ValueError as exc:
                raise ConfigFileError(f"{_at(entry, where, 'scenarios')}: scenarios: {exc}") from exc
    _check_unique(sections["prefixes"], "prefixes", "path")
    for index, entry in enumerate(sections["prefixes"]):
        where = f"prefixes[{index}]"
        _check_fields(_require_mapping(entry, where), PREFIX_FIELDS, where, name="path")
        if problem := prefix_path_problem(str(entry["path"])):
            raise ConfigFileError(f"{_at(entry, where, 'path')}: {problem}")
        _check_names(entry, "aliases", f"{where} ({entry['path']})")
        if "enabled" in entry and not isinstance(entry["enabled"], bool):
            raise ConfigFileError(f"{_at(entry, where, 'enabled')}: enabled must be true or false")
    _check_unique(sections["groups"], "groups", "name")
    for index, entry in enumerate(sections["groups"]):
        where = f"groups[{index}]"
        _check_fields(_require_mapping(entry, where), GROUP_FIELDS, where)
        _check_policy(entry, f"{where} ({entry['name']})", limits=False)
    _check_unique(sections["users"], "users", "username")
    for index, entry in enumerate(sections["users"]):
        where = f"users[{index}]"
        _check_fields(_require_mapping(entry, where), USER_FIELDS, where, name="username")
        where = f"{where} ({entry['username']})"
        if "active" in entry and not isinstance(entry["active"], bool):
            raise ConfigFileError(f"{_at(entry, where, 'active')}: active must be true or false")
        _check_names(entry, "groups", where)
        _check_policy(entry, where, limits=True)
        keys = _require_list(entry.get("keys"), f"{where}: keys")
        _check_unique(keys, f"{where}: keys", "label")
        for key_index, key in enumerate(keys):
            key_where = f"{where}: keys[{key_index}]"
            _check_fields(_require_mapping(key, key_where), KEY_FIELDS, key_where, name="label")
            _check_policy(key, f"{key_where} ({key['label']})", limits=True)
            if "capture_bodies" in key and not isinstance(key["capture_bodies"], bool):
                raise ConfigFileError(f"{_at(key, key_where, 'capture_bodies')}: capture_bodies must be true or false")
    return sections


def _check_vertex(entry: dict[str, Any], where: str) -> None:
    for name in ("project", "location"):
        if not entry.get(name):
            raise ConfigFileError(f"{_at(entry, where)}: '{name}' is required for a Vertex AI upstream")
    if entry.get("api_key_env"):
        raise ConfigFileError(
            f"{_at(entry, where, 'api_key_env')}: Vertex AI takes credentials_env (a service account)"
        )
    if entry.get("credentials_env") and (problem := own_variable_problem(str(entry["credentials_env"]))):
        raise ConfigFileError(f"{_at(entry, where, 'credentials_env')}: {problem}")


def _check_bedrock(entry: dict[str, Any], where: str) -> None:
    """Bedrock names its AWS region `region` (kept in the `location` field Vertex shares)."""
    if "location" in entry:
        raise ConfigFileError(f"{_at(entry, where, 'location')}: a Bedrock upstream takes 'region'")
    if not entry.get("region"):
        raise ConfigFileError(f"{_at(entry, where)}: 'region' is required for a Bedrock upstream")
    entry["location"] = entry.pop("region")
    pair = [entry.get("aws_access_key_id_env"), entry.get("aws_secret_access_key_env")]
    if any(pair) and not all(pair):
        raise ConfigFileError(f"{_at(entry, where)}: name both aws_access_key_id_env and aws_secret_access_key_env")
    for name in ("aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env"):
        if entry.get(name) and (problem := own_variable_problem(str(entry[name]))):
            raise ConfigFileError(f"{_at(entry, where, name)}: {problem}")


def _check_key_pool(entry: dict[str, Any], where: str) -> None:
    """`api_key_env` and `api_key` take one value or a list (a key pool); stored as the model keeps them."""
    for name in ("api_key_env", "api_key"):
        value = entry.get(name)
        if isinstance(value, list):
            if not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise ConfigFileError(f"{_at(entry, where, name)}: {name} must be a value or a list of them")
            entry[name] = (", " if name == "api_key_env" else STORED_KEY_SEPARATOR).join(v.strip() for v in value)
    for variable in key_variables(str(entry.get("api_key_env") or "")):
        if problem := credential_variable_problem(variable):
            raise ConfigFileError(f"{_at(entry, where, 'api_key_env')}: {problem}")


def _check_targets(entry: dict[str, Any], where: str) -> None:
    """An alias names one target (`upstream`, `model`) or several (`targets`, the first its own); the list form
    is turned into the one the model keeps: the first target's upstream, model and weight, the others apart."""
    if "targets" not in entry:
        if not entry.get("upstream"):
            raise ConfigFileError(f"{_at(entry, where)}: 'upstream' (or 'targets') is required")
        return
    if "upstream" in entry or "model" in entry:
        raise ConfigFileError(f"{_at(entry, where, 'targets')}: give upstream and model, or targets, not both")
    try:
        targets = parse_targets(entry["targets"])
    except ValueError as exc:
        raise ConfigFileError(f"{_at(entry, where, 'targets')}: targets: {exc}") from exc
    if not targets or targets[0]["fallback"]:
        raise ConfigFileError(f"{_at(entry, where, 'targets')}: targets: the first target cannot be a fallback")
    first = targets[0]
    entry.update(upstream=first["upstream"], model=first["model"], weight=first["weight"], targets=targets[1:])


def _check_network(entry: dict[str, Any], where: str) -> None:
    """An upstream's proxy, TLS and limit settings."""
    if entry.get("proxy_auth") and entry.get("proxy_auth_env"):
        raise ConfigFileError(f"{_at(entry, where, 'proxy_auth')}: give proxy_auth or proxy_auth_env, not both")
    if entry.get("proxy_url") and (problem := proxy_url_problem(str(entry["proxy_url"]))):
        raise ConfigFileError(f"{_at(entry, where, 'proxy_url')}: proxy_url: {problem}")
    if entry.get("proxy_auth_env") and (problem := proxy_auth_variable_problem(str(entry["proxy_auth_env"]))):
        raise ConfigFileError(f"{_at(entry, where, 'proxy_auth_env')}: {problem}")
    if "verify_tls" in entry and not isinstance(entry["verify_tls"], bool):
        raise ConfigFileError(f"{_at(entry, where, 'verify_tls')}: verify_tls must be true or false")
    for name in ("default_max_tokens", "context_window"):
        value = entry.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigFileError(f"{_at(entry, where, name)}: {name} must be a whole number, 1 or more")


def _check_unique(entries: list[Any], where: str, name: str) -> None:
    seen: set[Any] = set()
    for index, entry in enumerate(entries):
        value = entry.get(name) if isinstance(entry, dict) else None
        if value is not None and value in seen:
            raise ConfigFileError(f"{_at(entry, f'{where}[{index}]', name)}: {name} {value!r} appears twice")
        seen.add(value)


def _check_names(entry: dict[str, Any], key: str, where: str) -> None:
    value = entry.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigFileError(f"{_at(entry, where, key)}: {key} must be a list of names")


def _check_policy(entry: dict[str, Any], where: str, *, limits: bool) -> None:
    _check_names(entry, "models", where)
    budget = entry.get("budget")
    if budget is not None:
        _require_mapping(budget, f"{_at(entry, where, 'budget')}: budget")
        unknown = sorted(set(budget) - BUDGET_FIELDS, key=str)
        if unknown:
            raise ConfigFileError(f"{_at(budget, where, unknown[0])}: budget: unknown field(s) {', '.join(unknown)}")
        usd = _decimal(budget.get("usd"))
        if usd is None or usd < 0:
            raise ConfigFileError(f"{_at(budget, where, 'usd')}: budget: usd must be a number of dollars, 0 or more")
        if budget.get("period", BudgetPeriod.MONTH) not in BudgetPeriod.values:
            raise ConfigFileError(
                f"{_at(budget, where, 'period')}: budget: period must be one of {', '.join(BudgetPeriod.values)}"
            )
    if not limits or entry.get("limits") is None:
        return
    values = _require_mapping(entry["limits"], f"{_at(entry, where, 'limits')}: limits")
    for name, value in values.items():
        if name not in LIMIT_FIELDS:
            raise ConfigFileError(
                f"{_at(values, where, name)}: limits: unknown field {name}; allowed: {', '.join(LIMIT_FIELDS)}"
            )
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigFileError(f"{_at(values, where, name)}: limits: {name} must be a whole number, 1 or more")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _apply(obj: Upstream | ModelAlias | PathPrefix, values: dict[str, Any], report: ImportReport, label: str) -> None:
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


def _proxy_auth_values(upstream: Upstream, entry: dict[str, Any]) -> dict[str, Any]:
    """As `_credential_values`, for the egress proxy's credentials."""
    if entry.get("proxy_auth"):
        current = decrypt(upstream.proxy_auth_encrypted) if upstream.proxy_auth_encrypted else None
        if current == entry["proxy_auth"]:
            return {"proxy_auth_env": ""}
        return {"proxy_auth_env": "", "proxy_auth_encrypted": encrypt(entry["proxy_auth"])}
    if "proxy_auth_env" in entry:
        return {"proxy_auth_env": entry["proxy_auth_env"] or "", "proxy_auth_encrypted": ""}
    return {}


def import_config(text: str, *, dry_run: bool = False) -> ImportReport:
    """Apply the file in one transaction; `dry_run` checks it against the database too, then rolls back."""
    document = parse(text)
    report = ImportReport()
    try:
        with transaction.atomic():
            _import(document, report)
            if dry_run:
                raise _RolledBack
    except _RolledBack:
        pass
    return report


class _RolledBack(Exception):
    pass


def _import(document: dict[str, list[dict[str, Any]]], report: ImportReport) -> None:
    known = {u.name: u for u in Upstream.objects.all()}
    for entry in document["upstreams"]:
        upstream = known.get(entry["name"]) or Upstream(name=entry["name"])
        values: dict[str, Any] = {
            "format": entry["format"],
            "base_url": entry.get("base_url") or "",
            "headers": _kept_secrets(entry.get("headers") or {}, upstream.headers),
            "query_params": _kept_secrets(entry.get("query") or {}, upstream.query_params),
            "auth_header": entry.get("auth_header", AuthHeader.AUTO),
            "timeout": float(entry.get("timeout", 600)),
            "connect_timeout": float(entry.get("connect_timeout", 10)),
            "allow_direct_models": bool(entry.get("allow_direct_models", True)),
            "forward_client_key": bool(entry.get("forward_client_key", False)),
            "translation_flags": entry.get("translation_flags") or {},
            "enabled": bool(entry.get("enabled", True)),
        }
        values.update({name: entry.get(name, default) for name, default in UPSTREAM_SETTINGS.items()})
        values.update(_credential_values(upstream, entry))
        values.update(_proxy_auth_values(upstream, entry))
        _apply(upstream, values, report, f"upstream {entry['name']}")
        known[upstream.name] = upstream
    aliases = {a.name: a for a in ModelAlias.objects.all()}
    for index, entry in enumerate(document["aliases"]):
        target = known.get(entry["upstream"])
        if target is None:
            where = _at(entry, f"aliases[{index}]", "upstream")
            raise ConfigFileError(f"{where}: no upstream named {entry['upstream']!r}")
        for section, named in (
            ("scenarios", {t["upstream"] for t in (entry.get("scenarios") or {}).values()}),
            ("targets", {t["upstream"] for t in entry.get("targets") or ()}),
        ):
            missing = sorted(named - set(known))
            if missing:
                where = _at(entry, f"aliases[{index}]", section)
                raise ConfigFileError(f"{where}: {section}: no upstream named {', '.join(missing)}")
        alias = aliases.get(entry["name"]) or ModelAlias(name=entry["name"])
        values = {
            "upstream_id": target.pk,
            "upstream_model": entry.get("model", ""),
            "weight": entry.get("weight", 1),
            "targets": entry.get("targets") or [],
            "priority": int(entry.get("priority", 100)),
            "enabled": bool(entry.get("enabled", True)),
        }
        values.update({attr: entry.get(key, ALIAS_DEFAULTS[key]) for key, attr in ALIAS_SETTINGS.items()})
        _apply(alias, values, report, f"alias {entry['name']}")
    prefixes = {p.path: p for p in PathPrefix.objects.all()}
    for entry in document["prefixes"]:
        prefix = prefixes.get(entry["path"]) or PathPrefix(path=entry["path"])
        values = {
            "aliases": [str(a).strip() for a in entry.get("aliases") or ()],
            "enabled": entry.get("enabled", True),
        }
        _apply(prefix, values, report, f"prefix {entry['path']}")
    _import_access(document, report)


# --- groups, users and keys -------------------------------------------------------------------------------


def _policy_values(entry: dict[str, Any], *, limits: bool) -> dict[str, Any]:
    """The policy fields `entry` describes; what it leaves out is "no restriction"."""
    budget = entry.get("budget") or {}
    values: dict[str, Any] = {
        "allowed_models": [str(m).strip() for m in entry.get("models") or []],
        "budget_usd": _decimal(budget.get("usd")) if budget else None,
        "budget_period": budget.get("period", BudgetPeriod.MONTH) if budget else BudgetPeriod.MONTH,
    }
    if limits:
        given = entry.get("limits") or {}
        values.update({name: given.get(name) for name in LIMIT_FIELDS})
    return values


def _restricts(values: dict[str, Any]) -> bool:
    return bool(values["allowed_models"]) or any(values.get(name) is not None for name in ("budget_usd", *LIMIT_FIELDS))


def _apply_policy(model: type[models.Model], owner: dict[str, Any], values: dict[str, Any]) -> bool:
    """Make the owner's policy row say `values` (no row when nothing restricts); True when something changed."""
    existing = model._default_manager.filter(**owner).first()
    if not _restricts(values):
        if existing is None:
            return False
        existing.delete()
        return True
    policy = existing if existing is not None else model(**owner)
    changed = existing is None
    for attr, value in values.items():
        if getattr(policy, attr) != value:
            setattr(policy, attr, value)
            changed = True
    if changed:
        policy.full_clean(exclude=list(owner))
        policy.save()
    return changed


def _tally(report: ImportReport, label: str, created: bool, changed: bool) -> None:
    (report.created if created else report.updated if changed else report.unchanged).append(label)


def _import_access(document: dict[str, list[dict[str, Any]]], report: ImportReport) -> None:
    groups = {g.name: g for g in Group.objects.all()}
    for entry in document["groups"]:
        group = groups.get(entry["name"])
        created = group is None
        if group is None:
            group = groups[entry["name"]] = Group.objects.create(name=entry["name"])
        changed = _apply_policy(GroupPolicy, {"group": group}, _policy_values(entry, limits=False))
        _tally(report, f"group {group.name}", created, changed)

    users = get_user_model()
    for index, entry in enumerate(document["users"]):
        where = f"users[{index}] ({entry['username']})"
        user = users._default_manager.filter(username=entry["username"]).first()
        created = user is None
        if user is None:
            user = users(username=entry["username"], is_active=entry.get("active", True))
            user.set_unusable_password()
            user.save()
        changed = False
        if "active" in entry and user.is_active != entry["active"]:
            user.is_active = entry["active"]
            user.save(update_fields=["is_active"])
            changed = True
        if entry.get("groups") is not None:
            missing = [name for name in entry["groups"] if name not in groups]
            if missing:
                raise ConfigFileError(f"{_at(entry, where, 'groups')}: no group named {missing[0]!r}")
            wanted = {groups[name].pk for name in entry["groups"]}
            if set(user.groups.values_list("pk", flat=True)) != wanted:
                user.groups.set(wanted)
                changed = True
        changed = _apply_policy(UserPolicy, {"user": user}, _policy_values(entry, limits=True)) or changed
        _tally(report, f"user {user.get_username()}", created, changed)
        for key_index, key_entry in enumerate(entry.get("keys") or []):
            label = key_entry["label"]
            keys = list(ProxyKey.objects.filter(user=user, label=label, revoked_at__isnull=True))
            key_where = _at(key_entry, f"{where}: keys[{key_index}]", "label")
            if not keys:
                raise ConfigFileError(
                    f"{key_where}: {user.get_username()} has no key labelled {label!r} (keys are made with "
                    f"`manage.py createkey --user {user.get_username()} --label {label}`, which shows the key once)"
                )
            if len(keys) > 1:
                raise ConfigFileError(f"{key_where}: {user.get_username()} has {len(keys)} keys labelled {label!r}")
            key_changed = _apply_policy(KeyPolicy, {"key": keys[0]}, _policy_values(key_entry, limits=True))
            capture = bool(key_entry.get("capture_bodies", False))  # usage.captures; absent: off, as in the admin
            if keys[0].capture_bodies != capture:
                keys[0].capture_bodies = capture
                keys[0].save(update_fields=["capture_bodies"])  # a save: every worker reloads (routing.signals)
                key_changed = True
            _tally(report, f"key {user.get_username()}/{label}", False, key_changed)


# Written by exportconfig in place of the value of a secret-looking header or query parameter (an
# Authorization header, an api-key parameter); importconfig keeps the value the database already holds.
KEPT_SECRET = "(secret: kept from the database)"


def _masked_secrets(values: dict[str, Any]) -> dict[str, Any]:
    return {name: KEPT_SECRET if SECRET_NAME.search(name) else value for name, value in values.items()}


def _kept_secrets(values: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    return {name: stored.get(name, "") if value == KEPT_SECRET else value for name, value in values.items()}


def export_config() -> str:
    upstreams = []
    stored_keys: list[str] = []
    for upstream in Upstream.objects.order_by("name"):
        entry: dict[str, Any] = {"name": upstream.name, "format": upstream.format, "base_url": upstream.base_url}
        if upstream.api_key_env:
            variables = key_variables(upstream.api_key_env)
            entry["api_key_env"] = variables if len(variables) > 1 else upstream.api_key_env
        elif upstream.api_key_encrypted:
            stored_keys.append(upstream.name)
        entry.update(
            {
                "auth_header": upstream.auth_header,
                "headers": _masked_secrets(upstream.headers),
                "query": _masked_secrets(upstream.query_params),
                "timeout": upstream.timeout,
                "connect_timeout": upstream.connect_timeout,
                "allow_direct_models": upstream.allow_direct_models,
                "forward_client_key": upstream.forward_client_key,
                "translation_flags": upstream.translation_flags,
                "enabled": upstream.enabled,
            }
        )
        if upstream.proxy_auth_env:
            entry["proxy_auth_env"] = upstream.proxy_auth_env
        elif upstream.proxy_auth_encrypted:
            stored_keys.append(f"{upstream.name} (proxy credentials)")
        entry.update(
            {
                name: getattr(upstream, name)
                for name, default in UPSTREAM_SETTINGS.items()
                if getattr(upstream, name) != default
            }
        )
        if upstream.format == BEDROCK and "location" in entry:
            entry["region"] = entry.pop("location")
        upstreams.append(entry)
    aliases = []
    for alias in ModelAlias.objects.select_related("upstream").order_by("priority", "name"):
        entry = {"name": alias.name, **_targets_entry(alias), "priority": alias.priority, "enabled": alias.enabled}
        # Settings left at their defaults are not written, so exports stay short.
        for key, attr in ALIAS_SETTINGS.items():
            value = getattr(alias, attr)
            if value != ALIAS_DEFAULTS[key]:
                entry[key] = value
        if "scenarios" in entry:  # in the order they are tried (PostgreSQL's jsonb keeps no key order)
            entry["scenarios"] = {n.value: entry["scenarios"][n] for n in ORDER if n in entry["scenarios"]}
        aliases.append(entry)
    prefixes: list[dict[str, Any]] = []
    for prefix in PathPrefix.objects.order_by("path"):
        item: dict[str, Any] = {"path": prefix.path, "aliases": list(prefix.aliases or ())}
        if not prefix.enabled:
            item["enabled"] = False
        prefixes.append(item)
    groups, users, unnamed = _export_access()
    document = {"upstreams": upstreams, "aliases": aliases, "prefixes": prefixes, "groups": groups, "users": users}
    body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    notes = []
    if stored_keys:
        # Secrets never leave the database; importing this file back keeps the stored keys as they are.
        notes.append(f"# Keys stored encrypted in the database (not exported): {', '.join(stored_keys)}\n")
    if unnamed:
        listed = ", ".join(unnamed)
        notes.append(f"# Proxy keys without a unique label (not listed, nor their limits): {listed}\n")
    return "".join(notes) + body


def _targets_entry(alias: ModelAlias) -> dict[str, Any]:
    """The one-target form, or `targets` when the alias has several (weights and fallbacks only where set)."""
    if not alias.targets:
        return {"upstream": alias.upstream.name, "model": alias.upstream_model}
    first = {"upstream": alias.upstream.name, "model": alias.upstream_model, "weight": alias.weight}
    targets = []
    for target in (first, *alias.targets):
        item = {"upstream": target["upstream"], "model": target.get("model", "")}
        if target.get("weight", 1) != 1:
            item["weight"] = target["weight"]
        if target.get("fallback"):
            item["fallback"] = True
        targets.append(item)
    return {"targets": targets}


def _policy_entry(policy: GroupPolicy | UserPolicy | KeyPolicy | None, *, limits: bool) -> dict[str, Any]:
    """The file's fields for a policy, only those that restrict."""
    if policy is None:
        return {}
    entry: dict[str, Any] = {}
    if policy.allowed_models:
        entry["models"] = list(policy.allowed_models)
    if policy.budget_usd is not None:
        usd = policy.budget_usd.normalize()
        entry["budget"] = {"usd": int(usd) if usd == usd.to_integral() else float(usd), "period": policy.budget_period}
    if limits:
        assert isinstance(policy, UserPolicy | KeyPolicy)
        given = {name: getattr(policy, name) for name in LIMIT_FIELDS if getattr(policy, name) is not None}
        if given:
            entry["limits"] = given
    return entry


def _export_access() -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    group_policies = {p.group_id: p for p in GroupPolicy.objects.all()}
    groups = [
        {"name": group.name, **_policy_entry(group_policies.get(group.pk), limits=False)}
        for group in Group.objects.order_by("name")
    ]
    user_policies = {p.user_id: p for p in UserPolicy.objects.all()}
    key_policies = {p.key_id: p for p in KeyPolicy.objects.all()}
    keys_of: dict[int, list[ProxyKey]] = {}
    for key in ProxyKey.objects.filter(revoked_at__isnull=True).order_by("label", "created_at"):
        keys_of.setdefault(key.user_id, []).append(key)
    users = []
    unnamed: list[str] = []
    model = get_user_model()
    for user in model._default_manager.prefetch_related("groups").order_by(model.USERNAME_FIELD):
        username = user.get_username()
        entry: dict[str, Any] = {"username": username, "active": user.is_active}
        entry["groups"] = sorted(g.name for g in user.groups.all())
        entry.update(_policy_entry(user_policies.get(user.pk), limits=True))
        keys = keys_of.get(user.pk, [])
        labels = [key.label for key in keys]
        listed = []
        for key in keys:
            if not key.label or labels.count(key.label) > 1:
                unnamed.append(f"{username}/{key.prefix}…")
                continue
            listed.append({"label": key.label, **_policy_entry(key_policies.get(key.pk), limits=True)})
            if key.capture_bodies:
                listed[-1]["capture_bodies"] = True
        if listed:
            entry["keys"] = listed
        users.append(entry)
    return groups, users, unnamed
