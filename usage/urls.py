"""Pages for people: log in/out, the landing redirect, the staff dashboard."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from llmproxy_site.signin import SignInForm
from usage import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=SignInForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/export.csv", views.export_csv, name="dashboard-export"),
    path("dashboard/sessions/", views.sessions, name="sessions"),
    path("me/sessions/", views.my_sessions, name="my-sessions"),
]
