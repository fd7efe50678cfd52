"""Invitations (routing.invitations): an operator invites a teammate from the user admin; the set-your-password link
works once, expires, and signs the teammate in on /me/."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail
from django.test import Client

pytestmark = pytest.mark.django_db

INVITE = "/admin/auth/user/invite/"
LINK = re.compile(r'id="invitation-link" readonly value="(http://testserver/accounts/invitation/[^"]+)"')


@pytest.fixture
def operator(client: Client) -> Client:
    User.objects.create_superuser("root", password="root-password")
    client.login(username="root", password="root-password")
    return client


def invite(operator: Client, email: str, groups: list[Group] | None = None) -> str:
    page = operator.post(INVITE, {"email": email, "groups": [g.pk for g in groups or []]})
    assert page.status_code == 200
    found = LINK.search(page.content.decode())
    assert found, page.content.decode()
    return found.group(1)


def accept(link: str, password: str = "a-long-new-passphrase") -> tuple[Client, object]:
    teammate = Client()
    form = teammate.get(link, follow=True)
    answer = teammate.post(form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password})
    return teammate, answer


def test_the_user_admin_offers_it(operator):
    assert INVITE in operator.get("/admin/auth/user/").content.decode()
    page = operator.get(INVITE).content.decode()
    assert 'name="email"' in page and "Email is not set up" in page


def test_an_invited_teammate_sets_a_password_and_lands_on_their_page(operator):
    engineering = Group.objects.create(name="engineering")
    link = invite(operator, "erin@example.com", [engineering])
    erin = User.objects.get(email="erin@example.com")
    assert erin.username == "erin@example.com"
    assert not erin.has_usable_password()
    assert list(erin.groups.all()) == [engineering]
    assert len(mail.outbox) == 0  # no EMAIL_URL: the operator passes the link on

    teammate, answer = accept(link)
    assert answer.status_code == 302 and answer["Location"] == "/me/"
    me = teammate.get("/me/")
    assert me.status_code == 200 and me.context["user"] == erin
    assert "Create your proxy key" in me.content.decode()
    erin.refresh_from_db()
    assert erin.check_password("a-long-new-passphrase")
    # And the password works on the sign-in page.
    assert Client().login(username="erin@example.com", password="a-long-new-passphrase")


def test_a_used_link_says_so(operator):
    link = invite(operator, "erin@example.com")
    accept(link)
    again = Client().get(link, follow=True)
    page = again.content.decode()
    assert "This link has been used" in page and 'name="new_password1"' not in page


def test_an_expired_link_says_so(operator, monkeypatch, settings):
    link = invite(operator, "erin@example.com")
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(PasswordResetTokenGenerator, "_now", lambda self: later)
    page = Client().get(link, follow=True).content.decode()
    assert "This link no longer works" in page and "expired" in page
    assert 'name="new_password1"' not in page
    assert not User.objects.get(email="erin@example.com").has_usable_password()


def test_a_tampered_link_says_so(operator):
    link = invite(operator, "erin@example.com")
    page = Client().get(link[:-3] + "abc/", follow=True).content.decode()
    assert "This link no longer works" in page


def test_the_link_is_emailed_when_email_is_configured(operator, settings):
    settings.EMAIL_CONFIGURED = True  # as EMAIL_URL sets it; pytest-django delivers to mail.outbox
    page = operator.post(INVITE, {"email": "erin@example.com"}).content.decode()
    assert "It was also emailed to erin@example.com" in page
    link = LINK.search(page).group(1)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["erin@example.com"] and link in message.body


def test_inviting_again_gives_a_fresh_link_and_an_existing_account_is_refused(operator):
    invite(operator, "erin@example.com")
    second = operator.post(INVITE, {"email": "Erin@example.com"}).content.decode()
    assert "A new link for erin@example.com" in second
    assert User.objects.filter(email__iexact="erin@example.com").count() == 1

    User.objects.create_user("frank", email="frank@example.com", password="pw")
    refused = operator.post(INVITE, {"email": "frank@example.com"}).content.decode()
    assert "already has an account" in refused and LINK.search(refused) is None


def test_only_operators_who_may_add_users_can_invite(client):
    User.objects.create_user("viewer", password="pw", is_staff=True)
    client.login(username="viewer", password="pw")
    assert client.get(INVITE).status_code == 403
    assert client.post(INVITE, {"email": "x@example.com"}).status_code == 403
    assert not User.objects.filter(email="x@example.com").exists()


def test_the_link_is_in_no_log(operator, caplog):
    caplog.set_level(logging.DEBUG)
    link = invite(operator, "erin@example.com")
    accept(link)
    token = link.rstrip("/").rsplit("/", 1)[-1]
    assert token not in caplog.text
