"""The admin's upstream "Check" page: what each chosen upstream answers, and aliases made from its model list.

GET ?ids=1,2 checks those upstreams (routing.upstream.check) and shows the results (with models=0, as the upstream
form's "Test connection" asks: the number of models, not the list); a POST with the models ticked
there creates an alias per model (same name as the model, exact match) and returns to the alias list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from routing.config.upstream_check import check_upstreams
from routing.models import ModelAlias, Upstream

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

# The page lists at most this many models per upstream (providers list hundreds; the rest are named by count).
SHOWN_MODELS = 500


def _ids(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip().isdigit()]


def upstream_check_view(model_admin: ModelAdmin[Upstream], request: HttpRequest) -> HttpResponse:
    # The check sends the stored credential: only those who may change upstreams may make it do so.
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    if request.method == "POST":
        return _create_aliases(request)
    upstreams = list(Upstream.objects.filter(pk__in=_ids(request.GET.get("ids", ""))).order_by("name"))
    results = check_upstreams(upstreams) if upstreams else []
    existing = set(ModelAlias.objects.values_list("name", flat=True))
    rows = [
        {
            "result": result,
            "models": [{"id": m, "aliased": m in existing} for m in result.models[:SHOWN_MODELS]],
            "more": max(0, len(result.models) - SHOWN_MODELS),
        }
        for result in results
    ]
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "title": "Check upstreams",
        "opts": model_admin.model._meta,
        "rows": rows,
        # "Test connection" (models=0) reports the connection and counts the models; the list comes on asking.
        "show_models": request.GET.get("models") != "0",
        "ids": request.GET.get("ids", ""),
        "may_add_aliases": request.user.has_perm("routing.add_modelalias"),
    }
    return TemplateResponse(request, "admin/routing/upstream/check.html", context)


def _create_aliases(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm("routing.add_modelalias"):
        raise PermissionDenied
    chosen = [value.partition(":") for value in request.POST.getlist("model")]
    upstreams = {u.pk: u for u in Upstream.objects.filter(pk__in=_ids(",".join(pk for pk, _, _ in chosen)))}
    created, skipped = [], []
    with transaction.atomic():
        existing = set(ModelAlias.objects.values_list("name", flat=True))
        for pk, _, model in chosen:
            upstream = upstreams.get(int(pk)) if pk.isdigit() else None
            if upstream is None or not model:
                continue
            if model in existing:
                skipped.append(model)
                continue
            # Saved one by one (not bulk): the audit log and the workers' reload see each.
            ModelAlias.objects.create(name=model, upstream=upstream, upstream_model=model)
            existing.add(model)
            created.append(model)
    if created:
        messages.success(request, f"Created {len(created)} alias(es): {', '.join(created)}")
    if skipped:
        messages.warning(request, f"Already aliases (left as they are): {', '.join(skipped)}")
    return HttpResponseRedirect(reverse("admin:routing_modelalias_changelist"))
