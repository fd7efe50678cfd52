"""Sign-in throttling on the people's sign-in page and the admin's (llmproxy_site.signin): a handful of wrong
passwords, then even the right one is refused until the window ends; other people are not locked out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db

PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture(autouse=True)
def fresh_counts(settings) -> Iterator[None]:
    settings.SIGNIN_MAX_FAILURES = 3
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("olga", password="right-password", is_staff=True)


def sign_in(client: Client, page: str, username: str, password: str) -> tuple[bool, str]:
    response = client.post(page, {"username": username, "password": password})
    return response.status_code == 302, response.content.decode()


@pytest.mark.parametrize("page", PAGES)
def test_wrong_passwords_lock_the_username_then_the_window_ends(page, staff, settings):
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(3):
        signed_in, html = sign_in(client, page, "olga", "guess")
        assert not signed_in and "Too many failed sign-ins" not in html
    signed_in, html = sign_in(client, page, "olga", "right-password")
    assert not signed_in and "Too many failed sign-ins. Try again in 15 minutes." in html
    # Another address trying the same username is refused too: guessing is limited per account.
    signed_in, _ = sign_in(Client(REMOTE_ADDR="198.51.100.9"), page, "olga", "right-password")
    assert not signed_in

    cache.clear()  # the window ended
    assert sign_in(client, page, "olga", "right-password")[0]


def test_one_address_guessing_many_usernames_is_locked_out(staff):
    User.objects.create_user("pat", password="pat-password")
    guesser = Client(REMOTE_ADDR="203.0.113.5")
    for name in ("a", "b", "c"):
        assert not sign_in(guesser, "/accounts/login/", name, "guess")[0]
    signed_in, html = sign_in(guesser, "/accounts/login/", "pat", "pat-password")
    assert not signed_in and "Too many failed sign-ins" in html
    assert sign_in(Client(REMOTE_ADDR="198.51.100.9"), "/accounts/login/", "pat", "pat-password")[0]


def test_a_success_forgives_earlier_failures_of_the_username(staff):
    client = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(2):
        assert not sign_in(client, "/accounts/login/", "olga", "typo")[0]
    assert sign_in(client, "/accounts/login/", "olga", "right-password")[0]
    other = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(2):
        assert not sign_in(other, "/accounts/login/", "olga", "typo")[0]
    assert sign_in(other, "/accounts/login/", "olga", "right-password")[0]
