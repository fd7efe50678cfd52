"""The operator's console: upstreams, model aliases and proxy keys, effective on the next request."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from routing.admin_check import upstream_check_view
from routing.admin_status import LAST_SEEN_DAYS, LastSeen, credential_status, last_seen, missing_variables
from routing.invitations import invite, link_valid_for, pending_invitee
from routing.models import (
    AuditEntry,
    BudgetPeriod,
    GroupPolicy,
    KeyPolicy,
    ModelAlias,
    PathPrefix,
    ProxyKey,
    SsoIdentity,
    Upstream,
    UserPolicy,
)
from routing.upstream.health import CircuitState, CircuitView, circuit_views

# URL fields of an upstream, which never get a guessed https scheme (local upstreams are plain http).
URL_FIELDS = ("base_url", "token_url")

TLS_OFF_WARNING = (
    "TLS certificate verification is OFF for this upstream: anyone on the network path can read its API key and "
    "traffic. Use a CA bundle instead."
)


def _upstream_formfield(db_field: Any, kwargs: dict[str, Any]) -> Any:
    if db_field.name in URL_FIELDS:
        # Local upstreams (Ollama, vLLM) are plain http: never guess https for a scheme-less URL.
        kwargs.update(assume_scheme="http", widget=forms.URLInput(attrs={"size": 60}))
    return db_field.formfield(**kwargs)


class UpstreamForm(forms.ModelForm[Upstream]):
    # Write-only: a stored key is never rendered back into the page.
    api_key = forms.CharField(
        label="API key (stored encrypted)",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored key. Several keys separated by spaces make a key pool (used "
        "round-robin). Or name an environment variable above instead.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)
    proxy_auth = forms.CharField(
        label="Proxy credentials (stored encrypted)",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="USER:PASSWORD for the egress proxy. Leave empty to keep the stored ones; or name a variable above.",
    )
    clear_proxy_auth = forms.BooleanField(label="Remove the stored proxy credentials", required=False)

    class Meta:
        model = Upstream
        fields = "__all__"
        formfield_callback = staticmethod(lambda db_field, **kwargs: _upstream_formfield(db_field, kwargs))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        from routing.upstream.client import ENDPOINT_SUFFIXES

        base_url = cleaned.get("base_url") or ""
        if base_url.rstrip("/").endswith(ENDPOINT_SUFFIXES):
            self.add_error("base_url", "Give the base URL, not a full endpoint URL (drop the last path segment).")
        keeps_stored = self.instance.has_stored_key and not cleaned.get("clear_api_key")
        if cleaned.get("api_key_env") and (cleaned.get("api_key") or keeps_stored):
            self.add_error("api_key_env", "Use either an environment variable or a stored key, not both.")
        keeps_proxy_auth = self.instance.has_stored_proxy_auth and not cleaned.get("clear_proxy_auth")
        if cleaned.get("proxy_auth_env") and (cleaned.get("proxy_auth") or keeps_proxy_auth):
            self.add_error("proxy_auth_env", "Use either an environment variable or stored credentials, not both.")
        if cleaned.get("proxy_auth") and ":" not in cleaned["proxy_auth"]:
            self.add_error("proxy_auth", "Give USER:PASSWORD.")
        # Set before the model's own checks run (after this method), so "not both" sees the final state.
        if cleaned.get("clear_proxy_auth"):
            self.instance.set_proxy_auth("")
        if cleaned.get("proxy_auth"):
            self.instance.set_proxy_auth(cleaned["proxy_auth"])
        return cleaned

    def save(self, commit: bool = True) -> Upstream:
        upstream = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            upstream.set_api_key("")
        if self.cleaned_data.get("api_key"):
            upstream.set_api_key(self.cleaned_data["api_key"])
        if commit:
            upstream.save()
        return upstream


# Shown read-only to staff who are not superusers (with the form fields that set a key left out).
SUPERUSER_ONLY_FIELDS = (
    "base_url",
    "credential_source",
    "auth_header",
    "forward_client_key",
    "api_key",
    "clear_api_key",
    # The network decides who can read the traffic: a proxy of one's own, or verification off, would show the key.
    "proxy_url",
    "proxy_auth_env",
    "proxy_credentials",
    "proxy_auth",
    "clear_proxy_auth",
    "ca_bundle",
    "verify_tls",
    # A cloud's credentials and where its tokens are minted: the same reasons.
    "credentials_env",
    "token_url",
    "aws_access_key_id_env",
    "aws_secret_access_key_env",
    "aws_session_token_env",
)
BEDROCK_FIELDS = ("aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env")


_circuits_read: tuple[float, list[CircuitView]] = (0.0, [])


def _recent_circuit_views() -> list[CircuitView]:
    """The circuits, read once per second at most (the upstream list asks for each row)."""
    global _circuits_read
    read_at, views = _circuits_read
    if time.monotonic() - read_at > 1.0:
        views = circuit_views()
        _circuits_read = (time.monotonic(), views)
    return views


def _circuit_text(view: CircuitView) -> str:
    parts = [view.target, str(view.state)]
    if view.state is CircuitState.OPEN:
        until = datetime.fromtimestamp(view.open_until, tz=UTC).strftime("%H:%M:%S UTC")
        parts.append(f"until {until}")
    if view.error_rate is not None:
        parts.append(f"{view.error_rate:.0%} errors (5 min, this worker)")
    if view.last_error and view.state is not CircuitState.CLOSED:
        parts.append(view.last_error[:120])
    return " · ".join(parts)


STATUS_FIELDS = ("credential_status", "last_success", "last_error")


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class ModelAliasInline(admin.TabularInline[ModelAlias, Upstream]):
    model = ModelAlias
    extra = 0
    fields = ("name", "upstream_model", "priority", "enabled")


@admin.register(Upstream)
class UpstreamAdmin(admin.ModelAdmin[Upstream]):
    form = UpstreamForm
    list_display = (
        "name",
        "format",
        "base_url",
        "credential_status",
        "last_exchanges",
        "network",
        "circuits",
        "check_link",
        "enabled",
        "updated_at",
    )
    list_filter = ("format", "enabled")
    search_fields = ("name", "base_url")
    inlines = [ModelAliasInline]
    actions = ["check_selected"]
    fieldsets = (
        (None, {"fields": ("name", "format", "base_url", "enabled")}),
        ("Credential", {"fields": ("api_key_env", "api_key", "clear_api_key", "auth_header", "forward_client_key")}),
        ("Request options", {"fields": ("headers", "query_params", "timeout", "connect_timeout", "translation_flags")}),
        (
            "Network",
            {"fields": ("proxy_url", "proxy_auth_env", "proxy_auth", "clear_proxy_auth", "ca_bundle", "verify_tls")},
        ),
        ("Limits", {"fields": ("default_max_tokens", "context_window")}),
        ("Routing", {"fields": ("allow_direct_models",)}),
        ("Google Vertex AI", {"fields": ("project", "location", "credentials_env", "token_url")}),
        ("AWS Bedrock (the region is the location above)", {"fields": BEDROCK_FIELDS}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A new upstream sets a base URL and a credential: superusers only (see `get_readonly_fields`).
        return bool(request.user.is_superuser) and super().has_add_permission(request)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in URL_FIELDS:
            return _upstream_formfield(db_field, kwargs)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Upstream | None = None) -> Any:
        # The base URL and the credential decide where a stored key is sent: staff who could change them could
        # point an upstream at a server of their own and read the key. They see them, read-only.
        shown = STATUS_FIELDS if obj is not None else ()
        return shown if request.user.is_superuser else (*shown, *SUPERUSER_ONLY_FIELDS)

    def get_fieldsets(self, request: HttpRequest, obj: Upstream | None = None) -> Any:
        status = [("Status", {"fields": STATUS_FIELDS})] if obj is not None else []
        if request.user.is_superuser:
            return [*status, *self.fieldsets]
        read_only = {
            "Credential": ("credential_source", "auth_header", "forward_client_key"),
            "Network": ("proxy_url", "proxy_credentials", "ca_bundle", "verify_tls"),
        }
        return [
            *status,
            *((name, {"fields": read_only.get(name or "", opts["fields"])}) for name, opts in self.fieldsets),
        ]

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        # The page's upstreams get their last success and error from two ledger queries, not two per row.
        changelist.result_list = list(changelist.result_list)
        seen = last_seen(u.name for u in changelist.result_list)
        for upstream in changelist.result_list:
            upstream._last_seen = seen.get(upstream.name, LastSeen())
        return changelist

    def get_urls(self) -> list[URLPattern]:
        check = self.admin_site.admin_view(self.check_view)
        return [path("check/", check, name="routing_upstream_check"), *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        upstream = self.get_object(request, object_id)
        if request.method == "GET" and upstream is not None and not upstream.verify_tls:
            messages.warning(request, TLS_OFF_WARNING)
        # "Test connection" and "Fetch models" run the check, which sends the stored key: as on the list.
        extra_context = {**(extra_context or {}), "may_check": self.has_change_permission(request, upstream)}
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: Upstream, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not obj.verify_tls:
            messages.warning(request, f"{obj.name}: {TLS_OFF_WARNING}")
        if missing := missing_variables(obj):
            messages.warning(
                request,
                f"{obj.name}: environment variable {', '.join(missing)} is not set in the proxy's environment: its "
                "requests go out without that credential until it is set and the proxy restarted.",
            )

    @admin.display(description="credential usable")
    def credential_status(self, obj: Upstream) -> str:
        status = credential_status(obj)
        if status.usable:
            return format_html('<span class="credential-ok">{}</span>', status.text)
        return format_html('<strong class="credential-missing" style="color:#ba2121">{}</strong>', status.text)

    def _last_seen(self, obj: Upstream) -> LastSeen:
        seen = getattr(obj, "_last_seen", None)
        if seen is None:
            seen = obj._last_seen = last_seen([obj.name]).get(obj.name, LastSeen())  # type: ignore[attr-defined]
        return seen

    @admin.display(description="last success")
    def last_success(self, obj: Upstream) -> str:
        seen = self._last_seen(obj)
        return _when(seen.ok_at) if seen.ok_at else f"none in {LAST_SEEN_DAYS} days"

    @admin.display(description="last success / error")
    def last_exchanges(self, obj: Upstream) -> str:
        """The list's one column for both (the form shows them apart, with the whole message)."""
        seen = self._last_seen(obj)
        if seen.ok_at is None and seen.error_at is None:
            return f"none in {LAST_SEEN_DAYS} days"
        ok = format_html("ok {}", _when(seen.ok_at)) if seen.ok_at else "no success"
        if seen.error_at is None:
            return ok
        status = f"HTTP {seen.error_status}: " if seen.error_status else ""
        return format_html(
            '{}<br><span class="last-error">error {}</span><br><span class="last-error-message">{}{}</span>',
            ok,
            _when(seen.error_at),
            status,
            seen.error_message[:80],
        )

    @admin.display(description="last error")
    def last_error(self, obj: Upstream) -> str:
        seen = self._last_seen(obj)
        if seen.error_at is None:
            return f"none in {LAST_SEEN_DAYS} days"
        status = f"HTTP {seen.error_status}: " if seen.error_status else ""
        return format_html(
            '{}<br><span class="last-error-message">{}{}</span>', _when(seen.error_at), status, seen.error_message[:200]
        )

    @admin.display(description="credential")
    def credential_source(self, obj: Upstream) -> str:
        if obj.api_key_env:
            return f"${obj.api_key_env}"
        return "stored (encrypted)" if obj.has_stored_key else "none"

    @admin.display(description="proxy credentials")
    def proxy_credentials(self, obj: Upstream) -> str:
        if obj.proxy_auth_env:
            return f"${obj.proxy_auth_env}"
        return "stored (encrypted)" if obj.has_stored_proxy_auth else "none"

    @admin.display(description="network")
    def network(self, obj: Upstream) -> str:
        parts = []
        if obj.proxy_url:
            parts.append(format_html("via {}", obj.proxy_url))
        if obj.ca_bundle:
            parts.append(format_html("CA {}", obj.ca_bundle))
        if not obj.verify_tls:
            parts.append(format_html('<strong style="color:#ba2121">{}</strong>', "TLS NOT VERIFIED"))
        return format_html_join(", ", "{}", ((p,) for p in parts)) or "direct"

    @admin.display(description="circuits")
    def circuits(self, obj: Upstream) -> str:
        """The circuit breakers of the targets on this upstream (routing.upstream.health): those not closed, or
        with failures in the last minutes."""
        views = [v for v in _recent_circuit_views() if v.target.startswith(f"{obj.name}/")]
        shown = [v for v in views if v.state is not CircuitState.CLOSED or v.error_rate]
        if not shown:
            return "closed"
        return format_html_join(mark_safe("<br>"), "{}", ((_circuit_text(v),) for v in shown))

    @admin.display(description="check")
    def check_link(self, obj: Upstream) -> str:
        return format_html('<a href="{}?ids={}">Check</a>', reverse("admin:routing_upstream_check"), obj.pk)

    @admin.action(description="Check selected upstreams (model list, credential, latency)")
    def check_selected(self, request: HttpRequest, queryset: QuerySet[Upstream]) -> HttpResponse:
        ids = ",".join(str(pk) for pk in queryset.values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:routing_upstream_check')}?ids={ids}")

    def check_view(self, request: HttpRequest) -> HttpResponse:
        return upstream_check_view(self, request)


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin[ModelAlias]):
    list_display = ("name", "upstream", "upstream_model", "target_count", "scenario_names", "priority", "enabled")
    fieldsets = (
        (None, {"fields": ("name", "upstream", "upstream_model", "priority", "enabled")}),
        ("Targets, balancing and fallbacks", {"fields": ("weight", "targets")}),
        ("Scenario routing", {"fields": ("scenarios",)}),
        ("Debugging", {"fields": ("capture_bodies",)}),
        ("Limits", {"fields": ("max_output_tokens", "default_max_tokens", "context_window")}),
        (
            "Request shaping",
            {
                "fields": (
                    "system_replacements",
                    "system_append",
                    "summarize_tool_history",
                    "default_params",
                    "override_params",
                    "extra_body",
                )
            },
        ),
    )
    list_editable = ("priority", "enabled")
    list_filter = ("upstream", "enabled")
    search_fields = ("name", "upstream_model")

    @admin.display(description="targets")
    def target_count(self, obj: ModelAlias) -> str:
        fallbacks = sum(1 for t in obj.targets or () if t.get("fallback"))
        total = 1 + len(obj.targets or ())
        return f"{total} ({fallbacks} fallback)" if fallbacks else str(total)

    @admin.display(description="scenarios")
    def scenario_names(self, obj: ModelAlias) -> str:
        return ", ".join(obj.scenarios or {}) or "—"


@admin.register(PathPrefix)
class PathPrefixAdmin(admin.ModelAdmin[PathPrefix]):
    list_display = ("path", "alias_list", "enabled", "updated_at")
    list_editable = ("enabled",)
    fields = ("path", "aliases", "enabled")

    def get_form(self, request: HttpRequest, obj: PathPrefix | None = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("field_classes", {"aliases": ModelListField})
        kwargs.setdefault("help_texts", {"aliases": "One alias name or glob pattern per line (smart, gpt-*)."})
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="reachable aliases")
    def alias_list(self, obj: PathPrefix) -> str:
        return ", ".join(obj.aliases or ())


# --- model access, budgets and rate limits (routing.access.policy) -------------------------------------------------


class ModelListField(forms.CharField):
    """A list of model names or patterns, edited one per line (commas work too)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("encoder", None)  # what the model's JSONField hands its form field
        kwargs.pop("decoder", None)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "cols": 40}))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("["):
            try:
                value = json.loads(value)
            except ValueError:
                return value
        return "\n".join(str(v) for v in value) if isinstance(value, list | tuple) else value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        text = super().to_python(value) or ""
        return [name.strip() for line in text.splitlines() for name in line.split(",") if name.strip()]


MODEL_LIST_HELP = (
    "One alias name or glob pattern per line (claude-*, up/*). Empty: no restriction at this level. A request must "
    "be allowed by the key's list, its user's list and one of the lists of the user's groups (those that have one)."
)
BUDGET_FIELDS = ("allowed_models", "budget_usd", "budget_period", "spent_this_period")
LIMIT_FIELDS = ("requests_per_minute", "tokens_per_minute", "concurrent_streams")


def _spent(obj: KeyPolicy | UserPolicy | GroupPolicy | None) -> str:
    if obj is None or obj.pk is None:
        return "—"
    from routing.access.budgets import period_spend

    if isinstance(obj, KeyPolicy):
        spent = period_spend(obj.budget_period, key_id=obj.key_id)
    elif isinstance(obj, UserPolicy):
        spent = period_spend(obj.budget_period, user_ids=[obj.user_id])
    else:
        spent = period_spend(obj.budget_period, user_ids=list(obj.group.user_set.values_list("pk", flat=True)))
    return _usd(spent)


def _usd(amount: Decimal) -> str:
    """Dollars with four decimals; a small non-zero amount is not rounded to nothing."""
    if 0 < amount < Decimal("0.0001"):
        return "< $0.0001"
    return f"${amount:,.4f}"


class PolicyInline(admin.StackedInline[Any, Any]):
    """One optional policy row under its key, user or group."""

    extra = 1
    max_num = 1
    readonly_fields = ("spent_this_period",)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("field_classes", {"allowed_models": ModelListField})
        kwargs.setdefault("help_texts", {"allowed_models": MODEL_LIST_HELP})
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="spent this period (USD)")
    def spent_this_period(self, obj: KeyPolicy | UserPolicy | GroupPolicy | None) -> str:
        return _spent(obj)


class KeyPolicyInline(PolicyInline):
    model = KeyPolicy
    fieldsets = (("Model access and budget", {"fields": BUDGET_FIELDS}), ("Rate limits", {"fields": LIMIT_FIELDS}))


class UserPolicyInline(PolicyInline):
    model = UserPolicy
    verbose_name = verbose_name_plural = "proxy: model access, budget and rate limits"
    fieldsets = (("Model access and budget", {"fields": BUDGET_FIELDS}), ("Rate limits", {"fields": LIMIT_FIELDS}))


class GroupPolicyInline(PolicyInline):
    model = GroupPolicy
    verbose_name = verbose_name_plural = "proxy: model access and budget (shared by the members)"
    fields = BUDGET_FIELDS


class ProxyKeyAddForm(forms.ModelForm[ProxyKey]):
    class Meta:
        model = ProxyKey
        fields = ("user", "label", "expires_at")


class KeyStatusFilter(admin.SimpleListFilter):
    """Active, expired or revoked, as the status column says (a revoked key that also expired is revoked)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ProxyKey]) -> QuerySet[ProxyKey]:
        now = timezone.now()
        live = queryset.filter(revoked_at__isnull=True)
        if self.value() == "active":
            return live.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        if self.value() == "expired":
            return live.filter(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ProxyKey)
class ProxyKeyAdmin(admin.ModelAdmin[ProxyKey]):
    list_display = ("prefix", "user", "label", "created_at", "last_used_at", "expires_at", "status")
    list_filter = (KeyStatusFilter, "user")
    search_fields = ("prefix", "label", "user__username")
    readonly_fields = ("prefix", "created_at", "last_used_at", "spent")
    fields = (
        "user",
        "label",
        "prefix",
        "created_at",
        "last_used_at",
        "spent",
        "expires_at",
        "revoked_at",
        "capture_bodies",
    )
    actions = ["revoke"]
    inlines = [KeyPolicyInline]

    def get_form(self, request: HttpRequest, obj: ProxyKey | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ProxyKeyAddForm
            kwargs["fields"] = ProxyKeyAddForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ProxyKey | None = None) -> Any:
        return ProxyKeyAddForm.Meta.fields if obj is None else self.fields

    def get_inlines(self, request: HttpRequest, obj: ProxyKey | None) -> Any:
        return [] if obj is None else self.inlines  # limits are set once the key exists

    def get_readonly_fields(self, request: HttpRequest, obj: ProxyKey | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: ProxyKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        plaintext = obj.assign_new_secret()
        super().save_model(request, obj, form, change)
        messages.warning(request, f"New key for {obj.user}: {plaintext} (copy it now: it is not shown again).")

    @admin.display(description="spent this period (USD)")
    def spent(self, obj: ProxyKey) -> str:
        """The key's spend in its budget's period (this calendar month, UTC, when it has no budget)."""
        from routing.access.budgets import period_spend

        policy = KeyPolicy.objects.filter(key=obj).first()
        period = policy.budget_period if policy is not None else BudgetPeriod.MONTH
        label = dict(BudgetPeriod.choices)[period]
        return f"{_usd(period_spend(period, key_id=obj.pk))} ({label})"

    @admin.display(description="status")
    def status(self, obj: ProxyKey) -> str:
        if obj.revoked_at:
            return "revoked"
        if obj.expires_at and obj.expires_at <= timezone.now():
            return "expired"
        return "active"

    @admin.action(description="Revoke selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ProxyKey]) -> None:
        count = 0
        for key in queryset.filter(revoked_at__isnull=True):
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])  # save(), not update(): the signal reloads every worker
            count += 1
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin[AuditEntry]):
    """Read-only: entries are written by routing.audit in the transaction of the change they record."""

    list_display = ("at", "actor", "action", "model", "object_repr", "changed_fields")
    list_filter = ("model", "action", "actor", "at")
    date_hierarchy = "at"
    search_fields = ("actor", "object_repr", "object_id", "via")
    fields = ("at", "actor", "actor_user", "via", "action", "model", "object_id", "object_repr", "changes_table")
    readonly_fields = fields
    list_select_related = ("actor_user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEntry | None = None) -> bool:
        return False

    @admin.display(description="fields")
    def changed_fields(self, obj: AuditEntry) -> str:
        return ", ".join(obj.changes) if isinstance(obj.changes, dict) else ""

    @admin.display(description="changes")
    def changes_table(self, obj: AuditEntry) -> str:
        changes = obj.changes if isinstance(obj.changes, dict) else {}
        if not changes:
            return "—"
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
            ((name, *_before_after(value)) for name, value in changes.items()),
        )
        return format_html("<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>", rows)


def _before_after(value: Any) -> tuple[str, str]:
    """A [before, after] pair as text; a secret's single word ("set", "changed", "cleared") spans both."""
    if isinstance(value, list) and len(value) == 2:
        return _as_text(value[0]), _as_text(value[1])
    return "(secret)", str(value)


def _as_text(value: Any) -> str:
    return "—" if value is None else json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


class InviteForm(forms.Form):
    email = forms.EmailField(
        help_text="Their account is named by it; the invitation link goes there if email is set up."
    )
    groups = forms.ModelMultipleChoiceField(
        Group.objects.all(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Teams whose model access and budgets apply to them.",
    )

    def clean_email(self) -> str:
        email: str = self.cleaned_data["email"]
        if User.objects.filter(Q(email__iexact=email) | Q(username__iexact=email)).exists() and not pending_invitee(
            email
        ):
            raise forms.ValidationError("Someone with this address already has an account.")
        return email


# Users and groups (teams) get their proxy access, budget and limits on their own admin pages.
class ProxyUserAdmin(UserAdmin[User]):
    inlines = [*UserAdmin.inlines, UserPolicyInline]
    change_list_template = "admin/auth/user/proxy_change_list.html"  # adds "Invite a teammate"

    def get_urls(self) -> list[URLPattern]:
        invite = path("invite/", self.admin_site.admin_view(self.invite_view), name="auth_user_invite")
        return [invite, *super().get_urls()]

    def invite_view(self, request: HttpRequest) -> HttpResponse:
        """A teammate's account and set-your-password link (routing.invitations); the link is on this answer only."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = InviteForm(request.POST if request.method == "POST" else None)
        invitation = None
        if request.method == "POST" and form.is_valid():
            invitation = invite(request, form.cleaned_data["email"], form.cleaned_data["groups"])
            if invitation.created:
                self.log_addition(request, invitation.user, [{"added": {}}])
            form = InviteForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Invite a teammate",
            "opts": self.opts,
            "form": form,
            "invitation": invitation,
            "valid_for": link_valid_for(),
            "email_configured": bool(settings.EMAIL_CONFIGURED),
        }
        return TemplateResponse(request, "admin/auth/user/invite.html", context)


class ProxyGroupAdmin(GroupAdmin):
    inlines = [*GroupAdmin.inlines, GroupPolicyInline]


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin[SsoIdentity]):
    """Which user each identity provider's subject signs in as (llmproxy_site.sso). Made by sign-in; deleting one
    makes the subject's next sign-in match a user by email address again."""

    list_display = ["subject", "user", "issuer", "last_sign_in"]
    search_fields = ["subject", "user__username", "user__email"]
    readonly_fields = ["user", "issuer", "subject", "last_sign_in"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SsoIdentity | None = None) -> bool:
        return False


admin.site.unregister(User)
admin.site.register(User, ProxyUserAdmin)
admin.site.unregister(Group)
admin.site.register(Group, ProxyGroupAdmin)

# The admin says what it is: the proxy's name in the header and the title (and, in templates/admin/base_site.html,
# links to the dashboards).
admin.site.site_header = "llmproxy administration"
admin.site.site_title = "llmproxy admin"
admin.site.index_title = "Upstreams, aliases, keys and usage"
admin.site.site_url = None  # the links above say where to go; "View site" would lead to the same home page
