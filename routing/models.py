"""Live configuration that operators edit in the admin: upstreams, model aliases and proxy keys.

The request path never queries these tables: `routing.config.registry` keeps an in-memory snapshot that each worker
reloads when `ConfigState.token` changes (every save or delete here changes it, see `routing.signals`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from translation.dialect import Dialect

# The four APIs at their providers' own URLs (or any server that speaks one), and the clouds that serve models
# under their own URLs and credentials
# (routing.upstream.vertex, routing.upstream.bedrock).
VERTEX = "vertex"
BEDROCK = "bedrock"
FORMAT_CHOICES = [(d.value, d.label) for d in Dialect if d.value != BEDROCK] + [
    (BEDROCK, "AWS Bedrock"),
    (VERTEX, "Google Vertex AI"),
]


class AuthHeader(models.TextChoices):
    AUTO = "auto", "The format's usual header"
    BEARER = "bearer", "Authorization: Bearer"
    X_API_KEY = "x-api-key", "x-api-key"
    API_KEY = "api-key", "api-key (Azure OpenAI)"
    X_GOOG_API_KEY = "x-goog-api-key", "x-goog-api-key"
    NONE = "none", "No credential"


class Upstream(models.Model):
    name = models.SlugField(
        max_length=64, unique=True, help_text="Also the prefix that reaches its models directly: NAME/MODEL."
    )
    format = models.CharField(max_length=32, choices=FORMAT_CHOICES)
    base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="As each provider's SDK takes it: https://api.openai.com/v1, https://api.anthropic.com, "
        "https://generativelanguage.googleapis.com, http://127.0.0.1:11434/v1 (Ollama). "
        "For Azure OpenAI, the deployment URL; {model} in it is replaced by the upstream model. "
        "Vertex AI: empty (derived from the location), or an override such as a private endpoint.",
    )
    api_key_env = models.CharField(
        "API key environment variable",
        max_length=500,
        blank=True,
        help_text="Name of the environment variable that holds the key, e.g. OPENAI_API_KEY; several names "
        "separated by commas make a key pool, used round-robin (a key refused or rate-limited rests alone).",
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    auth_header = models.CharField(max_length=32, choices=AuthHeader.choices, default=AuthHeader.AUTO)
    headers = models.JSONField("extra headers", default=dict, blank=True)
    query_params = models.JSONField(
        "extra query parameters", default=dict, blank=True, help_text='e.g. {"api-version": "2025-04-01-preview"}'
    )
    timeout = models.FloatField(
        "read timeout (s)", default=600.0, help_text="Longest wait for the next bytes of an answer."
    )
    connect_timeout = models.FloatField("connect timeout (s)", default=10.0)
    allow_direct_models = models.BooleanField(
        default=True, help_text="Clients may ask for NAME/MODEL or NAME:MODEL to reach any model here."
    )
    forward_client_key = models.BooleanField(
        default=False,
        help_text="A request that carries no valid proxy key may use its own key for this upstream.",
    )
    translation_flags = models.JSONField(
        default=dict,
        blank=True,
        help_text="Switches for requests translated to this upstream (docs/configuration.md), e.g. "
        '{"echo_reasoning_content": true} for DeepSeek, {"anthropic_version": "2026-10-21"}, '
        '{"gemini_dummy_thought_signature": true}.',
    )
    # The network between the proxy and this upstream (routing.upstream.network).
    proxy_url = models.CharField(
        "egress proxy URL",
        max_length=500,
        blank=True,
        help_text="HTTP(S) proxy for this upstream's traffic, e.g. http://egress.corp:3128 (no credentials in it: "
        "give them below). Empty: the process's HTTPS_PROXY / HTTP_PROXY and NO_PROXY apply.",
    )
    proxy_auth_env = models.CharField(
        "proxy credentials environment variable",
        max_length=128,
        blank=True,
        help_text="Name of the variable holding the proxy's USER:PASSWORD, e.g. EGRESS_PROXY_AUTH.",
    )
    proxy_auth_encrypted = models.TextField(blank=True, editable=False)
    ca_bundle = models.CharField(
        "CA bundle",
        max_length=500,
        blank=True,
        help_text="Path to a PEM file of the certificate authorities to trust for this upstream (and an HTTPS "
        "proxy); empty: the system's.",
    )
    verify_tls = models.BooleanField(
        "verify TLS certificates",
        default=True,
        help_text="Off: any certificate is accepted, so anyone on the path can read the key. Testing only.",
    )
    # Limits a local model needs (routing.config.shaping); an alias's own values win.
    default_max_tokens = models.PositiveIntegerField(
        "default max output tokens",
        null=True,
        blank=True,
        help_text="Output cap sent when the client asks for none (Codex never does), so a local model cannot "
        "generate without bound.",
    )
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The models' context size in tokens: a prompt estimated larger is refused with a 400 before it "
        "is sent, and output is clamped to what the prompt leaves.",
    )
    # Google Vertex AI (routing.upstream.vertex).
    project = models.CharField("Google Cloud project", max_length=100, blank=True, help_text="Vertex AI only.")
    location = models.CharField(
        "location / region",
        max_length=50,
        blank=True,
        help_text="Vertex AI: the location, e.g. us-east5, europe-west1, or global. Bedrock: the AWS region, e.g. "
        "us-east-1.",
    )
    credentials_env = models.CharField(
        "service account environment variable",
        max_length=128,
        blank=True,
        help_text="Vertex AI only: the variable holding the service-account key (its JSON, or the path of its "
        "file), e.g. GOOGLE_SERVICE_ACCOUNT_JSON. Or store the JSON key encrypted in the API key field; neither: "
        "the machine's application default credentials.",
    )
    # AWS Bedrock (routing.upstream.bedrock): an access key pair by variable names; none, and no API key: the
    # AWS credential chain.
    aws_access_key_id_env = models.CharField(
        "AWS access key id variable", max_length=128, blank=True, help_text="Bedrock only, e.g. AWS_ACCESS_KEY_ID."
    )
    aws_secret_access_key_env = models.CharField(
        "AWS secret access key variable",
        max_length=128,
        blank=True,
        help_text="Bedrock only, e.g. AWS_SECRET_ACCESS_KEY.",
    )
    aws_session_token_env = models.CharField(
        "AWS session token variable", max_length=128, blank=True, help_text="Bedrock only, optional."
    )
    token_url = models.URLField(
        "OAuth token URL",
        max_length=500,
        blank=True,
        help_text="Vertex AI only: where access tokens are minted; empty: the key's own (Google's).",
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def has_stored_key(self) -> bool:
        return bool(self.api_key_encrypted)

    def set_api_key(self, plaintext: str) -> None:
        from routing.config.secrets import encrypt

        self.api_key_encrypted = encrypt(plaintext) if plaintext else ""

    @property
    def has_stored_proxy_auth(self) -> bool:
        return bool(self.proxy_auth_encrypted)

    def set_proxy_auth(self, plaintext: str) -> None:
        from routing.config.secrets import encrypt

        self.proxy_auth_encrypted = encrypt(plaintext) if plaintext else ""

    def _clean_vertex(self) -> None:
        from routing.config.secrets import own_variable_problem

        missing = {name: "Required for Vertex AI." for name in ("project", "location") if not getattr(self, name)}
        if missing:
            raise ValidationError(missing)
        if self.api_key_env:
            raise ValidationError({"api_key_env": "Vertex AI takes a service-account key: name its variable below."})
        if self.credentials_env and (problem := own_variable_problem(self.credentials_env)):
            raise ValidationError({"credentials_env": problem})

    def _clean_bedrock(self) -> None:
        from routing.config.secrets import own_variable_problem

        if not self.location:
            raise ValidationError({"location": "The AWS region is required for Bedrock."})
        pair = (self.aws_access_key_id_env, self.aws_secret_access_key_env)
        if any(pair) and not all(pair):
            raise ValidationError("Name both AWS variables (access key id and secret access key), or neither.")
        if any(pair) and (self.api_key_env or self.api_key_encrypted):
            raise ValidationError("Give AWS access keys or a Bedrock API key, not both.")
        for name in ("aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env"):
            variable = getattr(self, name)
            if variable and (problem := own_variable_problem(variable)):
                raise ValidationError({name: problem})

    def clean(self) -> None:
        from routing.config.secrets import credential_variable_problem, proxy_auth_variable_problem
        from routing.upstream.network import proxy_url_problem

        if self.api_key_env and self.api_key_encrypted:
            raise ValidationError("Give the key either as an environment variable or stored, not both.")
        if self.format == VERTEX:
            self._clean_vertex()
        elif self.format == BEDROCK:
            self._clean_bedrock()
        elif not self.base_url:
            raise ValidationError({"base_url": "A base URL is required."})
        from routing.config.targets import key_variables

        for variable in key_variables(self.api_key_env):
            problem = credential_variable_problem(variable)
            if problem is not None:
                raise ValidationError({"api_key_env": problem})
        if self.proxy_url and (problem := proxy_url_problem(self.proxy_url)):
            raise ValidationError({"proxy_url": problem})
        if self.proxy_auth_env and self.proxy_auth_encrypted:
            raise ValidationError("Give the proxy credentials either as an environment variable or stored, not both.")
        if self.proxy_auth_env and (problem := proxy_auth_variable_problem(self.proxy_auth_env)):
            raise ValidationError({"proxy_auth_env": problem})


class ModelAlias(models.Model):
    name = models.CharField(
        max_length=200,
        help_text="The model name clients send, or a glob pattern such as claude-*haiku* (* and ? wildcards).",
    )
    upstream = models.ForeignKey(Upstream, on_delete=models.CASCADE, related_name="aliases")
    upstream_model = models.CharField(
        max_length=200, blank=True, help_text="The model the upstream is asked for; empty: the name the client sent."
    )
    priority = models.IntegerField(
        default=100, help_text="Patterns are tried in ascending priority; exact names always win over patterns."
    )
    enabled = models.BooleanField(default=True)
    weight = models.PositiveIntegerField(
        default=1, help_text="This target's share of the traffic, against the weights of the other targets."
    )
    targets = models.JSONField(
        "other targets",
        default=list,
        blank=True,
        help_text="More upstreams this alias spreads its requests over by weight, or falls back to when the "
        'others fail or cool down (docs/configuration.md), e.g. [{"upstream": "b", "model": "m2", "weight": 1}, '
        '{"upstream": "c", "model": "m3", "fallback": true}].',
    )

    # Limits and request shaping, applied to every request through this alias whatever the client's API.
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="Cap on output tokens; larger requests are clamped (with a warning)."
    )
    default_max_tokens = models.PositiveIntegerField(
        "default max output tokens",
        null=True,
        blank=True,
        help_text="Output cap sent when the client asks for none; empty: the upstream's.",
    )
    context_window = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The model's context size: a prompt estimated larger is refused with a 400, and output is "
        "clamped to what is left after it. Empty: the upstream's.",
    )
    system_replacements = models.JSONField(
        default=list, blank=True, help_text='System prompt replacements, applied in order: [["old", "new"], …].'
    )
    system_append = models.TextField(blank=True, help_text="Text appended to the system prompt.")
    summarize_tool_history = models.BooleanField(
        default=False,
        help_text="Add a short summary of the conversation's tool calls and results to the system prompt "
        "(helps weaker models after a client compacts its history).",
    )
    default_params = models.JSONField(
        default=dict,
        blank=True,
        help_text="Used when the client sent none: temperature, top_p, top_k, seed, max_output_tokens, "
        "reasoning_effort, presence_penalty, frequency_penalty.",
    )
    override_params = models.JSONField(
        default=dict, blank=True, help_text="Always used, replacing the client's values (same names)."
    )
    extra_body = models.JSONField(
        default=dict,
        blank=True,
        help_text='Merged into the upstream request body, e.g. {"options": {"num_ctx": 32768}} for Ollama.',
    )
    scenarios = models.JSONField(
        "scenario targets",
        default=dict,
        blank=True,
        help_text="Other targets for some kinds of request (routing.config.scenarios, docs/configuration.md), e.g. "
        '{"think": {"upstream": "b", "model": "reasoner"}, "long_context": {"upstream": "c", "model": "long", '
        '"above_tokens": 60000}}. Scenarios: long_context, image, web_search, background, think (tried in that '
        "order).",
    )
    capture_bodies = models.BooleanField(
        default=False,
        help_text="Keep the request and response bodies of every exchange through this alias for debugging "
        "(redacted, size-capped, deleted after CAPTURE_RETENTION_DAYS; docs/captures.md). Staff see them on the "
        "ledger row.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        verbose_name_plural = "model aliases"
        constraints = [models.UniqueConstraint(fields=["name"], name="unique_alias_name")]

    def __str__(self) -> str:
        return f"{self.name} → {self.upstream.name}/{self.upstream_model or '*'}"

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.name for ch in "*?[")

    def clean(self) -> None:
        from routing.config.scenarios import parse_scenarios
        from routing.config.targets import parse_targets, parse_weight

        try:
            self.scenarios = parse_scenarios(self.scenarios)
        except ValueError as exc:
            raise ValidationError({"scenarios": str(exc)}) from exc
        try:
            self.targets = parse_targets(self.targets)
        except ValueError as exc:
            raise ValidationError({"targets": str(exc)}) from exc
        try:
            parse_weight(self.weight, "weight")
        except ValueError as exc:
            raise ValidationError({"weight": str(exc)}) from exc
        for field, named in (
            ("scenarios", {t["upstream"] for t in self.scenarios.values()}),
            ("targets", {t["upstream"] for t in self.targets}),
        ):
            missing = sorted(named - set(_upstream_names())) if named else []
            if missing:
                raise ValidationError({field: f"no upstream named {', '.join(missing)}"})


def _upstream_names() -> list[str]:
    return list(Upstream.objects.values_list("name", flat=True))


KEY_PREFIX = "sk-llmp-"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6


def hash_key(key: str) -> str:
    """Keys are 256-bit random, so a plain SHA-256 is enough: there is nothing to brute-force."""
    return hashlib.sha256(key.encode()).hexdigest()


class ProxyKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proxy_keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    capture_bodies = models.BooleanField(
        default=False,
        help_text="Keep the request and response bodies of every exchange made with this key for debugging "
        "(redacted, size-capped, deleted after CAPTURE_RETENTION_DAYS; docs/captures.md). Staff see them on the "
        "ledger row.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "proxy key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.label or 'no label'})"

    @classmethod
    def issue(cls, user: User, label: str = "", expires_at: datetime | None = None) -> tuple[ProxyKey, str]:
        """Create a key; the plaintext is returned here once and never stored."""
        key = cls(user=user, label=label, expires_at=expires_at)
        plaintext = key.assign_new_secret()
        key.save()
        return key, plaintext

    def assign_new_secret(self) -> str:
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        self.prefix = plaintext[:DISPLAY_PREFIX_LENGTH]
        self.key_hash = hash_key(plaintext)
        return plaintext

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class ConfigState(models.Model):
    """One row whose token changes on every configuration edit; workers poll it to know when to reload."""

    token = models.UUIDField(default=uuid.uuid4)
    changed_at = models.DateTimeField(default=timezone.now)

    @classmethod
    def bump(cls) -> None:
        updated = cls.objects.filter(pk=1).update(token=uuid.uuid4(), changed_at=timezone.now())
        if not updated:
            cls.objects.get_or_create(pk=1)

    @classmethod
    def current_token(cls) -> str | None:
        token = cls.objects.filter(pk=1).values_list("token", flat=True).first()
        return str(token) if token else None


class StoredResponse(models.Model):
    """A Responses answer made through a route whose upstream keeps no state of its own (Anthropic, Chat,
    Gemini), kept for a while so that a later request can name it as `previous_response_id`.

    `conversation` is everything the upstream saw (the earlier history and the request's input) and `output`
    the answer, both as translation IR JSON (`translation.ir.serde`) so that signed reasoning and thought
    signatures survive for the upstream that issued them. Written by `routing.conversations`; rows past
    `expires_at` are deleted on later writes. Not configuration: saving one does not change the config token.
    """

    key = models.ForeignKey(ProxyKey, on_delete=models.CASCADE, related_name="+")
    response_id = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    size = models.PositiveIntegerField(default=0, help_text="Bytes of JSON held.")
    conversation = models.JSONField(default=list)
    output = models.JSONField(default=list)

    class Meta:
        verbose_name = "stored response"
        constraints = [models.UniqueConstraint(fields=["key", "response_id"], name="unique_stored_response")]

    def __str__(self) -> str:
        return self.response_id


class AuditEntry(models.Model):
    """One recorded change to configuration or access (written by `routing.audit`, never edited afterwards).

    `actor` is a display string kept even when the user is later deleted: a username, or `command:NAME` for
    a management command, or `system`. `changes` is {field: [before, after]} with secrets already masked.
    """

    class Action(models.TextChoices):
        CREATE = "create", "created"
        UPDATE = "update", "changed"
        DELETE = "delete", "deleted"

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150, db_index=True)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    via = models.CharField(max_length=200, blank=True, help_text="The request path or management command.")
    action = models.CharField(max_length=10, choices=Action.choices, db_index=True)
    model = models.CharField(max_length=100, db_index=True, help_text="app_label.model_name")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["model", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.actor} {self.get_action_display()} {self.model} {self.object_repr}"


# --- Team access: model access lists, budgets and rate limits per key, user and group ---------------------
#
# Each level is optional (no row, or an empty field: no restriction at that level). A request must be allowed by
# every level that restricts: the key's list, the user's list, and at least one of the lists of the user's groups
# that have one. Budgets and limits of every level apply at once. `routing.access.policy` turns these rows into the
# per-key rules of the in-memory snapshot; saving any of them changes the config token (routing.signals).


def validate_model_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item.strip() for item in value):
        raise ValidationError('Give a list of model names or glob patterns, e.g. ["claude-*", "local"].')


class BudgetPeriod(models.TextChoices):
    DAY = "day", "per day (UTC)"
    WEEK = "week", "per week (from Monday, UTC)"
    MONTH = "month", "per calendar month (UTC)"
    NONE = "none", "in total (never resets)"


class AccessRules(models.Model):
    """Model access and a budget: what keys, users and groups all have."""

    allowed_models = models.JSONField(
        "model access",
        default=list,
        blank=True,
        validators=[validate_model_list],
        help_text="Alias names or glob patterns (claude-*, ollama/*) this may use; empty: no restriction here.",
    )
    budget_usd = models.DecimalField(
        "budget (USD)",
        max_digits=16,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Spend allowed per period, from the usage ledger's costs, in dollars (cents and below: 0.005); "
        "empty: no budget. 0 blocks every request.",
    )
    budget_period = models.CharField(max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def clean(self) -> None:
        if self.budget_usd is not None and self.budget_usd < 0:
            raise ValidationError({"budget_usd": "A budget cannot be negative."})

    @property
    def restricts(self) -> bool:
        return bool(self.allowed_models) or self.budget_usd is not None


class RateLimits(models.Model):
    """Rate limits: what keys and users have (a group has none: its members' limits apply)."""

    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Generation requests started per minute; empty: unlimited."
    )
    tokens_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Tokens per minute (input incl. cache, and output) of finished generations; a request is refused "
        "once the minute's tokens reach this. Empty: unlimited.",
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True, blank=True, help_text="Streamed generations running at once; empty: unlimited."
    )

    class Meta:
        abstract = True

    @property
    def limits(self) -> bool:
        return any(v is not None for v in (self.requests_per_minute, self.tokens_per_minute, self.concurrent_streams))


class KeyPolicy(AccessRules, RateLimits):
    key = models.OneToOneField(ProxyKey, on_delete=models.CASCADE, related_name="policy")

    class Meta:
        verbose_name = "key access and limits"
        verbose_name_plural = "key access and limits"

    def __str__(self) -> str:
        return f"limits of key {self.key}"


class UserPolicy(AccessRules, RateLimits):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="proxy_policy")

    class Meta:
        verbose_name = "user access and limits"
        verbose_name_plural = "user access and limits"

    def __str__(self) -> str:
        return f"limits of user {self.user}"


class GroupPolicy(AccessRules):
    group = models.OneToOneField(Group, on_delete=models.CASCADE, related_name="proxy_policy")

    class Meta:
        verbose_name = "group access and budget"
        verbose_name_plural = "group access and budget"

    def __str__(self) -> str:
        return f"limits of group {self.group}"


class RateCounter(models.Model):
    """A rate-limit counter, used only when there is no Redis (routing.access.limits): the window it counts in ends at
    `window_end` (epoch seconds). State, not configuration: saving one does not change the config token."""

    name = models.CharField(max_length=120, primary_key=True)
    window_end = models.FloatField(default=0.0)
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.value}"


class StreamLease(models.Model):
    """One running stream counted against a concurrent-streams limit, when there is no Redis. The worker
    serving it renews the lease while it runs, so a crashed worker's streams stop counting when theirs lapse."""

    subject = models.CharField(max_length=120, db_index=True)
    lease = models.CharField(max_length=64)
    expires_at = models.FloatField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subject", "lease"], name="unique_stream_lease")]

    def __str__(self) -> str:
        return f"{self.subject} {self.lease}"


def validate_prefix_path(value: str) -> None:
    from routing.dataplane.endpoints import prefix_path_problem

    problem = prefix_path_problem(value)
    if problem is not None:
        raise ValidationError(problem)


class PathPrefix(models.Model):
    """A path prefix (such as /team-a) under which the client APIs are served again, reaching only some aliases:
    /team-a/v1/messages, /team-a/v1/chat/completions, /team-a/v1beta/models/…, the Responses WebSocket."""

    path = models.CharField(
        max_length=100,
        unique=True,
        validators=[validate_prefix_path],
        help_text="Starts with /, e.g. /team-a; letters, digits, - _ . and further / segments.",
    )
    aliases = models.JSONField(
        "reachable aliases",
        default=list,
        validators=[validate_model_list],
        help_text='Alias names or glob patterns reachable under this prefix, e.g. ["smart", "gpt-*"]; other models '
        "answer 404 there.",
    )
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["path"]
        verbose_name = "path prefix"
        verbose_name_plural = "path prefixes"

    def __str__(self) -> str:
        return self.path


class SsoIdentity(models.Model):
    """The person an identity provider knows as `subject` (OpenID Connect's `sub`, stable where an email address
    may change) is this user: single sign-on finds them by it first (llmproxy_site.sso)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="sso_identities")
    issuer = models.CharField(max_length=500)
    subject = models.CharField(max_length=255)
    last_sign_in = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique_subject")]
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
