"""The in-memory route and key tables the request path reads instead of the database.

A `Snapshot` is built from the database in one go (`load_snapshot`, synchronous ORM) and then only read.
`LiveConfig` holds the current snapshot for a worker process and swaps in a new one whenever the config
token in the database changes; the swap is a single attribute assignment, so a request always sees one
consistent snapshot.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model

from routing.access.policy import NO_RULES, Budget, KeyRules, ModelAccess, load_rules
from routing.config.scenarios import ScenarioTarget, detect, scenario_targets
from routing.config.secrets import credential_from_environment, decrypt, proxy_auth_from_environment
from routing.config.shaping import NO_SHAPING, Shaping, with_upstream_limits
from routing.config.targets import key_variables, stored_keys
from routing.models import (
    BEDROCK,
    DISPLAY_PREFIX_LENGTH,
    VERTEX,
    AuthHeader,
    ConfigState,
    ModelAlias,
    PathPrefix,
    ProxyKey,
    Upstream,
    hash_key,
)
from routing.upstream import bedrock, vertex
from routing.upstream.network import DIRECT, Network, reload_environment, tls_setting
from translation.dialect import Dialect
from translation.ir import Request

logger = logging.getLogger(__name__)

_DEFAULT_AUTH_HEADER = {
    Dialect.ANTHROPIC: AuthHeader.X_API_KEY,
    Dialect.OPENAI_CHAT: AuthHeader.BEARER,
    Dialect.OPENAI_RESPONSES: AuthHeader.BEARER,
    Dialect.GEMINI: AuthHeader.X_GOOG_API_KEY,
}


@dataclass(frozen=True, slots=True)
class UpstreamRoute:
    id: int
    name: str
    format: Dialect
    base_url: str
    credentials: tuple[str, ...]  # one key, or a pool used round-robin (routing.upstream.health.pick_key)
    auth_header: AuthHeader
    headers: tuple[tuple[str, str], ...]
    query_params: tuple[tuple[str, str], ...]
    timeout: float
    connect_timeout: float
    allow_direct_models: bool
    forward_client_key: bool
    translation_flags: Mapping[str, Any]
    network: Network = DIRECT  # egress proxy and TLS (routing.upstream.network)
    limits: Shaping = NO_SHAPING  # its default output cap and context window, for routes without an alias
    # A cloud that serves models under its own URLs and credentials ("vertex"), "" for a provider's own API.
    provider: str = ""
    project: str = ""
    location: str = ""
    google_credentials: Any = None  # Vertex: google-auth credentials (routing.upstream.vertex)
    aws: bedrock.AwsAuth | None = None  # Bedrock: an API key or SigV4 credentials (routing.upstream.bedrock)
    credentials_problem: str = ""  # why the cloud credentials could not be loaded, for the error a request gets

    def wire_for(self, model: str) -> Dialect:
        """The API `model` speaks on this upstream (on Vertex, Claude models speak Anthropic's)."""
        if self.provider == vertex.KIND:
            return vertex.wire_for(model)
        if self.provider == bedrock.KIND:
            return bedrock.wire_for(model)
        return self.format

    @property
    def credential(self) -> str | None:
        """The first key (the one a check or a single-key upstream uses)."""
        return self.credentials[0] if self.credentials else None


@dataclass(frozen=True, slots=True)
class ScenarioRoute:
    """A scenario target of an alias with its upstream and its shaping (the alias's, with that upstream's
    limits where the alias sets none)."""

    target: ScenarioTarget
    upstream: UpstreamRoute
    shaping: Shaping


@dataclass(frozen=True, slots=True)
class Target:
    """One of the places an alias with several targets sends requests to (routing.config.targets)."""

    upstream: UpstreamRoute
    model: str
    shaping: Shaping
    weight: int = 1
    fallback: bool = False

    @property
    def name(self) -> str:
        """What the ledger, the metrics and the circuit breakers call it."""
        return f"{self.upstream.name}/{self.model}"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one requested model name goes: `upstream` and `upstream_model` are the target that serves it (the
    alias's own, until routing.dataplane.failover picks another of `targets`)."""

    requested_model: str
    alias: str | None
    upstream: UpstreamRoute
    upstream_model: str
    shaping: Shaping = NO_SHAPING
    scenarios: tuple[ScenarioRoute, ...] = ()  # the alias's scenario targets, in routing.config.scenarios.ORDER
    scenario: str = ""  # the scenario that chose this route ("" for the alias's own target)
    # Every target of an alias that has more than one, its own first; empty for a single target.
    targets: tuple[Target, ...] = ()
    capture: bool = False  # the alias keeps its exchanges' bodies (usage.captures)

    @property
    def wire(self) -> Dialect:
        """The API the upstream speaks for this route's model."""
        return self.upstream.wire_for(self.upstream_model)

    @property
    def target(self) -> Target:
        """The target this route is on."""
        return Target(self.upstream, self.upstream_model, self.shaping)

    def via(self, target: Target) -> Route:
        """This route, served by `target`."""
        return Route(
            self.requested_model,
            self.alias,
            target.upstream,
            target.model,
            target.shaping,
            self.scenarios,
            self.scenario,
            self.targets,
            self.capture,
        )

    def for_request(self, request: Request) -> Route:
        """The route for this decoded request: a scenario's target when one matches (pure, no I/O)."""
        if not self.scenarios:
            return self
        chosen = detect(request, self.requested_model, [s.target for s in self.scenarios])
        if chosen is None:
            return self
        picked = next(s for s in self.scenarios if s.target is chosen)
        return Route(
            self.requested_model,
            self.alias,
            picked.upstream,
            picked.target.target.model,
            picked.shaping,
            scenarios=(),
            scenario=chosen.scenario.value,
            capture=self.capture,
        )


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    key_hash: str
    user_id: int
    username: str
    label: str
    expires_at: datetime | None
    rules: KeyRules = NO_RULES  # model access, budgets and rate limits of the key, its user and groups
    capture: bool = False  # the key's exchanges keep their bodies (usage.captures)


@dataclass(frozen=True, slots=True)
class _TargetRule:
    upstream: UpstreamRoute
    model: str  # "" for the name the client sent
    shaping: Shaping
    weight: int
    fallback: bool


@dataclass(frozen=True, slots=True)
class _AliasRule:
    name: str
    upstream_id: int
    upstream_model: str
    shaping: Shaping
    scenarios: tuple[ScenarioRoute, ...] = ()
    targets: tuple[_TargetRule, ...] = ()  # all of them, the alias's own first; empty for a single target
    capture: bool = False


# Claude Code appends "[1m]" for the 1M-context variant; model ids carry dates ("-20250514") or "-latest".
_CONTEXT_SUFFIX = re.compile(r"\[[0-9a-z]+\]$", re.IGNORECASE)
_DATE_SUFFIX = re.compile(r"[-@](?:\d{8}|\d{4}-\d{2}-\d{2}|latest)$")


def model_name_candidates(requested: str) -> list[str]:
    """The names to try for a requested model, most specific first."""
    name = requested.strip()
    if name.startswith("models/"):  # Gemini's resource names
        name = name[len("models/") :]
    candidates = [name]
    bare = _CONTEXT_SUFFIX.sub("", name)
    undated = _DATE_SUFFIX.sub("", bare)
    for candidate in (bare, undated):
        if candidate and candidate not in candidates:
            candidates.append(candidate)
    return candidates


@dataclass
class Snapshot:
    token: str | None = None
    upstreams: dict[int, UpstreamRoute] = field(default_factory=dict)
    upstreams_by_name: dict[str, UpstreamRoute] = field(default_factory=dict)
    exact_aliases: dict[str, _AliasRule] = field(default_factory=dict)
    pattern_aliases: list[tuple[re.Pattern[str], _AliasRule]] = field(default_factory=list)
    keys_by_prefix: dict[str, list[KeyRecord]] = field(default_factory=dict)
    # Every budget some active key counts against, and the memberships the spend book sums them over.
    budgets: dict[tuple[str, int], Budget] = field(default_factory=dict)
    group_members: dict[int, tuple[int, ...]] = field(default_factory=dict)
    user_groups: dict[int, tuple[int, ...]] = field(default_factory=dict)
    # Operator-defined path prefixes and the aliases each reaches (routing.dataplane.prefixes).
    prefixes: dict[str, ModelAccess] = field(default_factory=dict)

    def resolve(self, requested: str) -> Route | None:
        candidates = model_name_candidates(requested)
        for name in candidates:
            rule = self.exact_aliases.get(name)
            if rule is not None:
                return self._route(requested, rule, name)
        for name in candidates:
            for pattern, rule in self.pattern_aliases:
                if pattern.fullmatch(name):
                    return self._route(requested, rule, name)
        return self._direct_route(requested, candidates[0])

    def _route(self, requested: str, rule: _AliasRule, matched_name: str) -> Route:
        upstream = self.upstreams[rule.upstream_id]
        model = rule.upstream_model or matched_name
        targets = tuple(
            Target(t.upstream, t.model or matched_name, t.shaping, t.weight, t.fallback) for t in rule.targets
        )
        return Route(
            requested, rule.name, upstream, model, rule.shaping, rule.scenarios, targets=targets, capture=rule.capture
        )

    def _direct_route(self, requested: str, name: str) -> Route | None:
        for separator in ("/", ":"):
            upstream_name, sep, model = name.partition(separator)
            if not sep or not model:
                continue
            upstream = self.upstreams_by_name.get(upstream_name)
            if upstream is not None and upstream.allow_direct_models:
                return Route(requested, None, upstream, model, upstream.limits)
        return None

    def authenticate(self, presented: str, now: datetime) -> KeyRecord | None:
        records = self.keys_by_prefix.get(presented[:DISPLAY_PREFIX_LENGTH])
        if not records:
            return None
        presented_hash = hash_key(presented)
        for record in records:
            if hmac.compare_digest(record.key_hash, presented_hash):
                if record.expires_at is not None and record.expires_at <= now:
                    return None
                return record
        return None

    def model_names(self) -> list[str]:
        """The names a client can list: exact aliases (patterns are not names)."""
        return sorted(self.exact_aliases)


def _scenario_routes(alias: ModelAlias, base: Shaping, snapshot: Snapshot) -> tuple[ScenarioRoute, ...]:
    routes = []
    for target in scenario_targets(alias.scenarios or {}):
        upstream = snapshot.upstreams_by_name.get(target.target.upstream)
        if upstream is None:
            logger.warning(
                "alias %s: scenario %s names upstream %s, which is missing or disabled: not used",
                alias.name,
                target.scenario.value,
                target.target.upstream,
            )
            continue
        routes.append(ScenarioRoute(target, upstream, with_upstream_limits(base, upstream.limits)))
    return tuple(routes)


def _target_rules(alias: ModelAlias, base: Shaping, snapshot: Snapshot) -> tuple[_TargetRule, ...]:
    """The alias's targets, its own first, when it has more than one (a target on a missing or disabled upstream
    is left out, with a warning)."""
    own = snapshot.upstreams[alias.upstream_id]
    rules = [_TargetRule(own, alias.upstream_model, with_upstream_limits(base, own.limits), alias.weight, False)]
    for entry in alias.targets or ():
        upstream = snapshot.upstreams_by_name.get(entry["upstream"])
        if upstream is None:
            logger.warning(
                "alias %s: target names upstream %s, which is missing or disabled: not used",
                alias.name,
                entry["upstream"],
            )
            continue
        shaping = with_upstream_limits(base, upstream.limits)
        rules.append(
            _TargetRule(
                upstream, entry.get("model", ""), shaping, int(entry.get("weight", 1)), entry.get("fallback") is True
            )
        )
    return tuple(rules) if len(rules) > 1 else ()


def _prefix_access(prefix: PathPrefix) -> ModelAccess:
    entries = tuple(str(e).strip() for e in prefix.aliases or () if str(e).strip())
    return ModelAccess(f"path prefix {prefix.path}", entries, tuple(_glob_regex(e) for e in entries))


def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE)


def upstream_credentials(upstream: Upstream) -> tuple[str, ...]:
    """The upstream's keys: one, or a pool (several variables, or several stored keys), in the order given."""
    keys: list[str] = []
    for variable in key_variables(upstream.api_key_env):
        credential = credential_from_environment(variable)
        if credential is None:
            logger.warning("upstream %s: environment variable %s is not set", upstream.name, variable)
        else:
            keys.append(credential)
    if not upstream.api_key_env and upstream.api_key_encrypted:
        keys.extend(stored_keys(_stored_secret(upstream, upstream.api_key_encrypted, "key") or ""))
    return tuple(keys)


def _stored_secret(upstream: Upstream, token: str, what: str) -> str | None:
    try:
        return decrypt(token)
    except ValueError:
        logger.error("upstream %s: stored %s cannot be decrypted with ENCRYPTION_KEYS", upstream.name, what)
        return None


def upstream_network(upstream: Upstream) -> Network:
    """The upstream's egress proxy and TLS setting (reads a CA bundle from disk: not on the event loop)."""
    reload_environment()  # the process's HTTP(S)_PROXY / NO_PROXY, for the upstreams without a proxy of their own
    proxy_auth: str | None = None
    if not upstream.proxy_url:
        pass  # credentials without a proxy to give them to are not read
    elif upstream.proxy_auth_env:
        proxy_auth = proxy_auth_from_environment(upstream.proxy_auth_env)
        if proxy_auth is None:
            logger.warning("upstream %s: environment variable %s is not set", upstream.name, upstream.proxy_auth_env)
    elif upstream.proxy_auth_encrypted:
        proxy_auth = _stored_secret(upstream, upstream.proxy_auth_encrypted, "proxy credentials")
    return Network(
        proxy_url=upstream.proxy_url or None,
        proxy_auth=proxy_auth,
        ssl=tls_setting(upstream.ca_bundle, upstream.verify_tls),
    )


def upstream_route(upstream: Upstream) -> UpstreamRoute:
    """The request path's view of one upstream row (also what `checkupstreams` calls it with)."""
    if upstream.format == VERTEX:
        return _vertex_route(upstream)
    if upstream.format == BEDROCK:
        return _bedrock_route(upstream)
    dialect = Dialect(upstream.format)
    auth_header = AuthHeader(upstream.auth_header)
    if auth_header is AuthHeader.AUTO:
        auth_header = _DEFAULT_AUTH_HEADER[dialect]
    return UpstreamRoute(
        id=upstream.pk,
        name=upstream.name,
        format=dialect,
        base_url=upstream.base_url.rstrip("/"),
        credentials=upstream_credentials(upstream),
        auth_header=auth_header,
        headers=tuple((str(k), str(v)) for k, v in (upstream.headers or {}).items()),
        query_params=tuple((str(k), str(v)) for k, v in (upstream.query_params or {}).items()),
        timeout=upstream.timeout,
        connect_timeout=upstream.connect_timeout,
        allow_direct_models=upstream.allow_direct_models,
        forward_client_key=upstream.forward_client_key,
        translation_flags=dict(upstream.translation_flags or {}),
        network=upstream_network(upstream),
        limits=Shaping(default_max_tokens=upstream.default_max_tokens, context_window=upstream.context_window),
    )


def _cloud_route(upstream: Upstream, wire: Dialect, base_url: str, provider: str, **cloud: Any) -> UpstreamRoute:
    """The route of a cloud upstream: its credentials are the cloud's own (`cloud`), never a forwarded key."""
    return UpstreamRoute(
        id=upstream.pk,
        name=upstream.name,
        format=wire,
        base_url=(upstream.base_url or base_url).rstrip("/"),
        credentials=(),
        auth_header=AuthHeader.NONE,
        headers=tuple((str(k), str(v)) for k, v in (upstream.headers or {}).items()),
        query_params=tuple((str(k), str(v)) for k, v in (upstream.query_params or {}).items()),
        timeout=upstream.timeout,
        connect_timeout=upstream.connect_timeout,
        allow_direct_models=upstream.allow_direct_models,
        forward_client_key=False,
        translation_flags=dict(upstream.translation_flags or {}),
        network=upstream_network(upstream),
        limits=Shaping(default_max_tokens=upstream.default_max_tokens, context_window=upstream.context_window),
        provider=provider,
        **cloud,
    )


def _bedrock_route(upstream: Upstream) -> UpstreamRoute:
    """A Bedrock upstream: its base URL from the region unless overridden, and how it authenticates."""
    region = upstream.location
    problem = ""
    api_key: str | None = None
    key_pair: tuple[str, str, str | None] | None = None
    if upstream.aws_access_key_id_env:
        names = (upstream.aws_access_key_id_env, upstream.aws_secret_access_key_env)
        values = [os.environ.get(name) for name in names]
        missing = [name for name, value in zip(names, values, strict=True) if not value]
        if missing:
            problem = f"environment variable {', '.join(missing)} is not set"
        else:
            token = os.environ.get(upstream.aws_session_token_env) if upstream.aws_session_token_env else None
            key_pair = (str(values[0]), str(values[1]), token or None)
    elif upstream.api_key_env:
        api_key = os.environ.get(upstream.api_key_env) or None
        if api_key is None:
            problem = f"environment variable {upstream.api_key_env} is not set"
    elif upstream.api_key_encrypted:
        stored = _stored_secret(upstream, upstream.api_key_encrypted, "key") or ""
        parts = stored.strip().split(":")
        if len(parts) in (2, 3) and all(parts[:2]):  # ACCESS_KEY_ID:SECRET[:SESSION_TOKEN]
            key_pair = (parts[0], parts[1], parts[2] if len(parts) == 3 else None)
        else:
            api_key = stored.strip() or None
    if problem:
        logger.warning("upstream %s: Bedrock credentials: %s", upstream.name, problem)
        auth = bedrock.AwsAuth(region, problem=problem)
    else:
        use_chain = not (upstream.aws_access_key_id_env or upstream.api_key_env or upstream.api_key_encrypted)
        auth = bedrock.load_auth(region, api_key, key_pair, use_chain=use_chain)
    return _cloud_route(upstream, Dialect.BEDROCK, bedrock.default_base_url(region), bedrock.KIND, aws=auth)


def _vertex_route(upstream: Upstream) -> UpstreamRoute:
    """A Vertex AI upstream: its base URL from the location unless overridden, its OAuth credentials loaded."""
    credentials, problem = None, ""
    service_account: str | None = None
    if upstream.credentials_env:
        service_account = os.environ.get(upstream.credentials_env) or None
        if service_account is None:
            problem = f"environment variable {upstream.credentials_env} is not set"
    elif upstream.api_key_encrypted:
        service_account = _stored_secret(upstream, upstream.api_key_encrypted, "service-account key")
        if service_account is None:
            problem = "the stored service-account key cannot be decrypted"
    if not problem:
        try:
            credentials = vertex.load_credentials(service_account, upstream.token_url)
        except vertex.CredentialsError as exc:
            problem = str(exc)
    if problem:
        logger.warning("upstream %s: Vertex AI credentials: %s", upstream.name, problem)
    base_url = vertex.default_base_url(upstream.location)
    return _cloud_route(
        upstream,
        Dialect.GEMINI,
        base_url,
        vertex.KIND,
        project=upstream.project,
        location=upstream.location,
        google_credentials=credentials,
        credentials_problem=problem,
    )


def _shaping(alias: ModelAlias) -> Shaping:
    return Shaping(
        max_output_tokens=alias.max_output_tokens,
        default_max_tokens=alias.default_max_tokens,
        context_window=alias.context_window,
        system_replacements=tuple((str(old), str(new)) for old, new in alias.system_replacements or ()),
        system_append=alias.system_append,
        summarize_tool_history=alias.summarize_tool_history,
        default_params=dict(alias.default_params or {}),
        override_params=dict(alias.override_params or {}),
        extra_body=dict(alias.extra_body or {}),
    )


def load_snapshot() -> Snapshot:
    """Read the whole configuration (synchronous ORM: call it from a thread, never from the event loop)."""
    snapshot = Snapshot(token=ConfigState.current_token())
    for upstream in Upstream.objects.filter(enabled=True):
        route = upstream_route(upstream)
        snapshot.upstreams[route.id] = route
        snapshot.upstreams_by_name[route.name] = route
    aliases = ModelAlias.objects.filter(enabled=True, upstream__enabled=True).order_by("priority", "id")
    for alias in aliases:
        target = snapshot.upstreams[alias.upstream_id]
        base = _shaping(alias)
        shaping = with_upstream_limits(base, target.limits)
        scenarios = _scenario_routes(alias, base, snapshot)
        targets = _target_rules(alias, base, snapshot)
        rule = _AliasRule(
            alias.name, alias.upstream_id, alias.upstream_model, shaping, scenarios, targets, alias.capture_bodies
        )
        if alias.is_pattern:
            snapshot.pattern_aliases.append((_glob_regex(alias.name), rule))
        else:
            snapshot.exact_aliases.setdefault(alias.name, rule)
    for prefix in PathPrefix.objects.filter(enabled=True):
        snapshot.prefixes[prefix.path] = _prefix_access(prefix)
    active_users = get_user_model().objects.filter(is_active=True)
    keys = list(ProxyKey.objects.filter(revoked_at__isnull=True, user__in=active_users).select_related("user"))
    rules = load_rules(keys)
    snapshot.budgets = rules.budgets
    snapshot.group_members = rules.group_members
    snapshot.user_groups = rules.user_groups
    for key in keys:
        record = KeyRecord(
            key.pk,
            key.key_hash,
            key.user_id,
            key.user.get_username(),
            key.label,
            key.expires_at,
            rules.by_key.get(key.pk, NO_RULES),
            key.capture_bodies,
        )
        snapshot.keys_by_prefix.setdefault(key.prefix, []).append(record)
    return snapshot
