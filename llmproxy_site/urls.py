from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from llmproxy_site.signin import AdminSignInForm

admin.site.login_form = AdminSignInForm  # throttled sign-in (llmproxy_site.signin)

handler403 = "usage.views.permission_denied"  # the site's own page, with a way back

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("usage.urls")),
    path("", include("routing.account")),  # /me/ (own keys and usage) and /dashboard/live/
]
