"""Pages for people (not the data plane): the landing redirect and the staff dashboard."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Staff land on the dashboard, everyone else on their own usage and keys."""
    return redirect("/dashboard/" if request.user.is_staff else "/me/")
