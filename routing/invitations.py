"""Invitations (docs/sign-in.md): an operator names a teammate by email address in the admin (Users → Invite a
teammate); the teammate gets an account without a password and a set-your-password link, which the operator sees
once to pass on and which is emailed when EMAIL_URL is configured.

The link is Django's password-reset token: it is signed with SECRET_KEY over the account's password and last
sign-in, so it stops working once a password is set (and once the teammate signs in), and it expires after
PASSWORD_RESET_TIMEOUT seconds. Opening it shows a set-your-password form; after it the teammate is signed in and
lands on /me/, where they create their key. Nothing stores the link, and no log line carries it.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.views import PasswordResetConfirmView
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse, reverse_lazy
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Invitation:
    user: User
    link: str
    created: bool  # a new account (False: a fresh link for someone invited before who has not set a password)
    emailed: bool
    email_error: str = ""


def link_valid_for() -> str:
    hours = round(settings.PASSWORD_RESET_TIMEOUT / 3600)
    return f"{hours // 24} days" if hours >= 48 and hours % 24 == 0 else f"{max(hours, 1)} hours"


def invitation_link(request: HttpRequest, user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return request.build_absolute_uri(reverse("invitation", args=[uid, token]))


def pending_invitee(email: str) -> User | None:
    """The account invited under this address that has no password and has never signed in (inviting again gives
    it a fresh link); None for anyone else."""
    return User.objects.filter(
        email__iexact=email, password__startswith=UNUSABLE_PASSWORD_PREFIX, last_login__isnull=True
    ).first()


def invite(request: HttpRequest, email: str, groups: Iterable[Group]) -> Invitation:
    with transaction.atomic():
        user = pending_invitee(email)
        created = user is None
        if user is None:
            # No password: create_user stores an unusable one, so only the link (or single sign-on) opens it.
            user = User.objects.create_user(email, email=email)
        user.groups.add(*groups)
    link = invitation_link(request, user)
    if not settings.EMAIL_CONFIGURED:
        return Invitation(user, link, created, emailed=False)
    body = (
        f"{request.user.get_username()} invited you to the team's LLM proxy at {request.build_absolute_uri('/')}.\n\n"
        f"Set your password here (the link works once, for {link_valid_for()}):\n{link}\n\n"
        "Then create your proxy key on the page you land on."
    )
    try:
        send_mail("Your llmproxy account", body, None, [email])
    except (smtplib.SMTPException, OSError) as exc:
        log.warning("the invitation email to user %s could not be sent: %s", user.pk, type(exc).__name__)
        return Invitation(user, link, created, emailed=False, email_error=type(exc).__name__)
    return Invitation(user, link, created, emailed=True)


class AcceptInvitationView(PasswordResetConfirmView):
    """GET/POST /accounts/invitation/<uid>/<token>/: set a password, be signed in, land on /me/. Django's view
    moves the token from the URL into the session first (so the page's address, and its Referer, no longer hold
    it)."""

    template_name = "registration/invitation.html"
    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("account")
    title = "Set your password"

    def form_valid(self, form: SetPasswordForm[User]) -> HttpResponse:
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set and you are signed in. Create your proxy key below.")
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user: User | None = getattr(self, "user", None)
        # The token cannot tell "used" from "expired"; the account can: a password set means the link was used.
        context["already_used"] = not context["validlink"] and user is not None and user.has_usable_password()
        return context
