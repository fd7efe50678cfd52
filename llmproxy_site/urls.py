from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from llmproxy_site.signin import AdminSignInForm
from llmproxy_site.sso import SsoCallbackView, SsoSignInView

admin.site.login_form = AdminSignInForm  # throttled sign-in (llmproxy_site.signin)

handler403 = "usage.views.permission_denied"  # the site's own page, with a way back

urlpatterns = [
    path("admin/", admin.site.urls),
    # Single sign-on (llmproxy_site.sso): 404 unless configured.
    path("accounts/sso/", SsoSignInView.as_view(), name="sso-sign-in"),
    path("accounts/sso/callback/", SsoCallbackView.as_view(), name="sso-callback"),
    path("", include("usage.urls")),
    path("", include("routing.account")),  # /me/ (own keys and usage) and /dashboard/live/
]
