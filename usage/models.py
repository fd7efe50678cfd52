"""The usage ledger: one row per exchange, and the per-model price overrides its costs use.

Rows are written only by `usage.ledger` (in batches, off the request path) and never edited afterwards. Names
(alias, upstream, models) are copied into the row rather than referenced, so a row still says what happened
after the configuration it ran under was changed or deleted.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from translation.operation import Operation


class Outcome(models.TextChoices):
    OK = "ok", "OK"
    CLIENT_ERROR = "client_error", "Client error"
    UPSTREAM_ERROR = "upstream_error", "Upstream error"
    TIMEOUT = "timeout", "Timeout"
    CANCELLED = "cancelled", "Cancelled by client"


# The operations a ledger row can record (translation.operation.Operation is the one enum; these are its labels).
OPERATION_CHOICES = [(Operation.GENERATE.value, "Generate"), (Operation.COUNT_TOKENS.value, "Count tokens")]


# Token counts: None means the upstream did not report the number, which is not the same as 0.
def _tokens(verbose_name: str) -> models.PositiveBigIntegerField[int | None, int | None]:
    return models.PositiveBigIntegerField(verbose_name, null=True, blank=True)


def _per_mtok(verbose_name: str) -> models.DecimalField[Decimal | None, Decimal | None]:
    return models.DecimalField(verbose_name, max_digits=12, decimal_places=6, null=True, blank=True)


class LedgerEntry(models.Model):
    # The exchange's own id (usage.ledger.ExchangeRecord.id, unique across processes and restarts): a row
    # replayed from a worker's spool after a crash is never written twice. Empty on rows written before it.
    exchange_id = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    # Who. The key and the user are kept as references (dashboards group by them); SET_NULL keeps the row
    # when either is deleted.
    key = models.ForeignKey(
        "routing.ProxyKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="ledger_entries"
    )
    client_program = models.CharField(max_length=64, blank=True, help_text="From the User-Agent: Claude Code, …")
    client_version = models.CharField(max_length=32, blank=True)
    client_session = models.CharField(max_length=128, blank=True, help_text="The client's own session id, if sent.")

    # What was asked, and where it went.
    dialect = models.CharField("client API", max_length=32)
    endpoint = models.CharField(max_length=200, help_text="Request path; ws: for Responses over WebSocket.")
    operation = models.CharField(max_length=16, choices=OPERATION_CHOICES, default=Operation.GENERATE.value)
    stream = models.BooleanField(default=False)
    requested_model = models.CharField(max_length=200, blank=True)
    alias = models.CharField(max_length=200, blank=True)
    upstream = models.CharField(max_length=64, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    scenario = models.CharField(
        max_length=16, blank=True, help_text="The alias's scenario target that served it (think, background, …)."
    )
    upstream_request_id = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=1, help_text="Upstream attempts made; more than one: the targets before the last one failed."
    )
    fallback = models.BooleanField(
        default=False,
        help_text="Served by another target than the alias's first choice: after an attempt failed, or by a "
        "fallback target while the others rest.",
    )
    failed_attempts = models.JSONField(
        default=list, blank=True, help_text="The attempts that failed before the one that served, and why."
    )

    # How it ended.
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    status = models.PositiveSmallIntegerField(help_text="HTTP status the client got (WebSocket: of its error event).")
    error_type = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    warnings = models.CharField(max_length=500, blank=True, help_text="Features the translation dropped.")

    # Usage, normalised (translation.usage): input excludes cache reads and writes; output includes reasoning.
    input_tokens = _tokens("input tokens")
    output_tokens = _tokens("output tokens")
    cache_read_tokens = _tokens("cache-read tokens")
    cache_write_tokens = _tokens("cache-write tokens")
    reasoning_tokens = _tokens("reasoning tokens")
    usage_partial = models.BooleanField(
        default=False, help_text="The stream ended early: the numbers are what was reported up to then."
    )

    # Cost: None means unpriced (no known price for the model), never "free".
    cost_usd = models.DecimalField("cost (USD)", max_digits=16, decimal_places=8, null=True, blank=True)
    price_source = models.CharField(max_length=200, blank=True)
    price_input = _per_mtok("input $/Mtok")
    price_output = _per_mtok("output $/Mtok")
    price_cache_read = _per_mtok("cache read $/Mtok")
    price_cache_write = _per_mtok("cache write $/Mtok")

    # Speed.
    ttft_ms = models.PositiveIntegerField("time to first token (ms)", null=True, blank=True)
    duration_ms = models.PositiveIntegerField("duration (ms)")
    tokens_per_second = models.FloatField("output tokens/s", null=True, blank=True)

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger"
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["started_at"], name="ledger_started"),
            models.Index(fields=["user", "started_at"], name="ledger_user_started"),
            models.Index(fields=["key", "started_at"], name="ledger_key_started"),
            models.Index(fields=["alias", "started_at"], name="ledger_alias_started"),
            models.Index(fields=["upstream_model", "started_at"], name="ledger_model_started"),
            models.Index(fields=["outcome", "started_at"], name="ledger_outcome_started"),
            # The dashboard's fallbacks panel reads only these rows, a small share of all.
            models.Index(fields=["started_at"], condition=models.Q(fallback=True), name="ledger_fallback_started"),
            # The dashboard's errors panel: failures only (a few percent of the rows), with every column it groups
            # by, so that PostgreSQL answers from the index alone (90 days of a 10M-row ledger: 325 ms -> 22 ms).
            models.Index(
                fields=["started_at", "upstream", "alias", "status", "error_type", "id"],
                condition=~models.Q(outcome__in=["cancelled", "ok"]),  # in the order usage.queries.errors asks
                name="ledger_failed_started",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M:%S} {self.requested_model or self.endpoint} {self.outcome}"


class Capture(models.Model):
    """The bodies of one exchange, kept for debugging when its key or alias asks for it (usage.captures).

    It names its ledger row by `exchange_id` rather than a foreign key: the ledger may be a partitioned table,
    which a foreign key can reference only together with its partition key. Every body is redacted of anything
    shaped like a credential and cut at CAPTURE_MAX_BYTES (`truncated` names the bodies that were); only an
    allow-list of headers is kept. Deleted after CAPTURE_RETENTION_DAYS.
    """

    exchange_id = models.CharField(max_length=64, unique=True, editable=False)
    captured_at = models.DateTimeField(help_text="When the exchange started.")
    requested_model = models.CharField(max_length=200, blank=True)
    client_status = models.PositiveSmallIntegerField("status to the client", null=True, blank=True)
    upstream_url = models.CharField(max_length=2000, blank=True, help_text="Without its query string.")
    upstream_status = models.PositiveSmallIntegerField(null=True, blank=True)
    client_request = models.TextField("request from the client", blank=True)
    upstream_request = models.TextField("request sent upstream", blank=True)
    upstream_response = models.TextField("answer from the upstream", blank=True)
    client_response = models.TextField("answer to the client", blank=True)
    # {"client_request": {name: value}, "upstream_request": {…}, "upstream_response": {…}}: allow-listed only.
    headers = models.JSONField(default=dict, blank=True)
    truncated = models.JSONField(default=list, blank=True, help_text="The bodies cut at CAPTURE_MAX_BYTES.")

    class Meta:
        ordering = ["-captured_at"]
        indexes = [models.Index(fields=["captured_at"], name="capture_captured")]

    def __str__(self) -> str:
        return f"capture of {self.exchange_id}"


class ModelPrice(models.Model):
    """An operator's price for models `genai-prices` does not know (local, fine-tuned) or prices differently."""

    model_pattern = models.CharField(
        max_length=200,
        help_text="Upstream model name; * and ? match any text (e.g. llama3*). An exact name wins over a pattern.",
    )
    upstream = models.CharField(
        max_length=64, blank=True, help_text="Upstream name this price is limited to; empty for every upstream."
    )
    input_per_mtok = models.DecimalField("input $/Mtok", max_digits=12, decimal_places=6)
    output_per_mtok = models.DecimalField("output $/Mtok", max_digits=12, decimal_places=6)
    cache_read_per_mtok = models.DecimalField(
        "cache read $/Mtok", max_digits=12, decimal_places=6, null=True, blank=True, help_text="Empty: input price."
    )
    cache_write_per_mtok = models.DecimalField(
        "cache write $/Mtok", max_digits=12, decimal_places=6, null=True, blank=True, help_text="Empty: input price."
    )
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "model price"
        ordering = ["model_pattern", "upstream"]
        constraints = [models.UniqueConstraint(fields=["model_pattern", "upstream"], name="model_price_unique")]

    def __str__(self) -> str:
        where = f" on {self.upstream}" if self.upstream else ""
        return f"{self.model_pattern}{where}"


# Rollups of the ledger, for the dashboards: kept by `usage.rollups.apply_rollups`, which the ledger's write path
# calls in the transaction that inserts the rows, so they never disagree with the ledger. Each row sums one period:
# an hour (`hours` = 1) or a UTC day (`hours` = 24; every row counts in both). A range is read from whole days plus
# the hours at its ends. Names and ids are copied as plain values (0 = none: a unique constraint treats NULLs as
# distinct, and the write is an upsert). `unrouted_model` is the model a client asked for when it matched no route
# (no alias, no upstream model), so that the dashboards can name it; it is empty for every routed row, so the
# names a glob alias takes do not multiply the rows.
class Period(models.IntegerChoices):
    HOUR = 1, "hour"
    DAY = 24, "day"


class UsageRollup(models.Model):
    hours = models.PositiveSmallIntegerField(choices=Period.choices)
    period = models.DateTimeField(help_text="Start of the hour or day (UTC).")
    user_id = models.PositiveBigIntegerField(default=0)
    key_id = models.PositiveBigIntegerField(default=0)
    alias = models.CharField(max_length=200, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    client_program = models.CharField(max_length=64, blank=True)
    upstream = models.CharField(max_length=64, blank=True)
    outcome = models.CharField(max_length=16, blank=True)
    unrouted_model = models.CharField(max_length=200, blank=True, help_text="The model asked for, when unrouted.")

    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0, help_text="Client errors, upstream errors and timeouts.")
    client_errors = models.PositiveBigIntegerField(default=0)
    upstream_errors = models.PositiveBigIntegerField(default=0)
    timeouts = models.PositiveBigIntegerField(default=0)
    cancelled = models.PositiveBigIntegerField(default=0)
    no_usage = models.PositiveBigIntegerField(default=0, help_text="Rows without any token count.")
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=20, decimal_places=8, default=0, help_text="Sum over priced rows.")
    unpriced = models.PositiveBigIntegerField(default=0, help_text="Rows without a cost.")

    class Meta:
        verbose_name = "usage rollup"
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "hours",
                    "period",
                    "user_id",
                    "key_id",
                    "alias",
                    "upstream_model",
                    "client_program",
                    "upstream",
                    "outcome",
                    "unrouted_model",
                ],
                name="usage_rollup_dimensions_unique",
            )
        ]

    def __str__(self) -> str:
        name = self.alias or self.upstream_model or self.unrouted_model
        return f"{self.period:%Y-%m-%d %H}h+{self.hours}h {name}: {self.requests}"


# Speed histograms of the exchanges that worked: quarter-octave buckets (each bucket's upper bound is 2^(1/4) ≈ 1.19
# times its lower bound), one row per period, user, key, alias, upstream, upstream model, client program and metric
# (the dashboard's filters); `usage.rollups` knows the bounds.
LATENCY_BUCKETS = 96


class LatencyRollup(models.Model):
    class Metric(models.IntegerChoices):
        DURATION = 0, "duration (ms)"
        TTFT = 1, "time to first token (ms)"
        TOKENS_PER_SECOND = 2, "output tokens/s"

    hours = models.PositiveSmallIntegerField(choices=Period.choices)
    period = models.DateTimeField(help_text="Start of the hour or day (UTC).")
    user_id = models.PositiveBigIntegerField(default=0)
    key_id = models.PositiveBigIntegerField(default=0)
    alias = models.CharField(max_length=200, blank=True)
    upstream = models.CharField(max_length=64, blank=True)
    upstream_model = models.CharField(max_length=200, blank=True)
    client_program = models.CharField(max_length=64, blank=True)
    metric = models.PositiveSmallIntegerField(choices=Metric.choices)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        verbose_name = "latency rollup"
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "hours",
                    "period",
                    "user_id",
                    "key_id",
                    "alias",
                    "upstream",
                    "upstream_model",
                    "client_program",
                    "metric",
                ],
                name="latency_rollup_dimensions_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.period:%Y-%m-%d %H}h+{self.hours}h {self.upstream_model} metric {self.metric}: {self.count}"


for _i in range(LATENCY_BUCKETS):
    LatencyRollup.add_to_class(f"b{_i}", models.PositiveIntegerField(default=0))


class AlertKind(models.TextChoices):
    BUDGET = "budget", "Budget threshold"
    CIRCUIT_OPEN = "circuit_open", "Circuit opened"
    ERROR_RATE = "error_rate", "Error rate"


class Alert(models.Model):
    """An alert for the operators (routing.runtime.alerts): a budget reaching 80 % or 100 % of its period, an
    upstream's circuit opening, its error rate over the threshold. The unique `key` is the claim that lets one
    replica of many send it: a budget threshold's key names its period and amount (sent once per period); an
    upstream's names the event, and a later one is claimed again only after ALERT_QUIET_SECONDS (`raised_at`,
    `times`)."""

    key = models.CharField(max_length=255, unique=True, editable=False)
    kind = models.CharField(max_length=16, choices=AlertKind.choices)
    subject = models.CharField(max_length=300, help_text="The budget (whose, which period) or the upstream target.")
    text = models.TextField(help_text="What was sent (the payload's `text`).")
    payload = models.JSONField(default=dict, blank=True)
    raised_at = models.DateTimeField(help_text="The last time it was raised (claimed and sent).")
    times = models.PositiveIntegerField(default=1, help_text="How often it was raised (an upstream's event recurs).")
    delivery = models.CharField(max_length=500, blank=True, help_text="Empty while it is being sent.")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at"]
        indexes = [models.Index(fields=["raised_at"], name="alert_raised")]

    def __str__(self) -> str:
        return self.text[:100]
