"""Sign-in in a real browser: single sign-on through the local OpenID Connect provider (a server started with the
OIDC settings), and an invitation from the operator's admin to the teammate's /me/."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import expect

from tests.fakes.oidc_provider import LocalOidcProvider, OidcProvider
from tests.liveserver import ProxyServer

pytestmark = pytest.mark.e2e

CLIENT_ID = "llmproxy-browser"
CLIENT_SECRET = "browser-oidc-secret-4d1e"
DANA = {"sub": "u-dana", "email": "dana@example.com", "email_verified": True, "name": "Dana", "groups": ["engineering"]}
OPS = {
    "sub": "u-olga",
    "email": "olga@example.com",
    "email_verified": True,
    "groups": ["engineering", "llmproxy-admins"],
}


@pytest.fixture(scope="module")
def op() -> Iterator[OidcProvider]:
    with LocalOidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        yield provider


@pytest.fixture(scope="module")
def sso_server(django_db_setup: None, django_db_blocker: Any, op: OidcProvider) -> Iterator[ProxyServer]:
    env = {
        "OIDC_ISSUER": op.issuer,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_PROVIDER_NAME": "Example IdP",
        "OIDC_STAFF_GROUP": "llmproxy-admins",
    }
    with ProxyServer(extra_env=env) as server:
        yield server


@pytest.fixture
def sso_page(browser: Any, sso_server: ProxyServer, transactional_db: None) -> Iterator[Any]:
    Group.objects.create(name="engineering")
    Group.objects.create(name="llmproxy-admins")
    context = browser.new_context(base_url=sso_server.url)
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()
    sso_server.drain()


def test_sign_in_with_the_provider_lands_signed_in_with_the_directory_groups(sso_page, op, sso_server):
    page = sso_page
    op.person = DANA
    page.goto("/accounts/login/?next=/me/")
    expect(page.locator("input[name=password]")).to_be_visible()  # password sign-in stays
    page.click("text=Sign in with Example IdP")
    page.wait_for_url("**/me/")
    expect(page.locator(".who")).to_have_text("dana@example.com")
    expect(page.locator("form.create")).to_be_visible()  # where they create their key

    dana = User.objects.get(email="dana@example.com")
    assert list(dana.groups.values_list("name", flat=True)) == ["engineering"]
    assert not dana.is_staff
    assert CLIENT_SECRET not in page.content()

    # Not in the staff group: the admin says so.
    page.goto("/admin/")
    expect(page.locator(".errornote")).to_contain_text("not authorized")

    # Sign-out ends the session.
    page.goto("/me/")
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
    page.goto("/me/")
    assert "/accounts/login/" in page.url
    assert CLIENT_SECRET not in sso_server.output()


def test_a_member_of_the_staff_group_signs_in_to_the_admin(sso_page, op):
    page = sso_page
    op.person = OPS
    page.goto("/admin/")
    page.click("text=Sign in with Example IdP")
    page.wait_for_url("**/admin/")
    expect(page.locator("#site-name")).to_contain_text("llmproxy administration")
    expect(page.locator("#user-tools")).to_contain_text("olga@example.com")
    olga = User.objects.get(email="olga@example.com")
    assert olga.is_staff
    assert sorted(olga.groups.values_list("name", flat=True)) == ["engineering", "llmproxy-admins"]


def test_an_operator_invites_a_teammate_who_sets_a_password_and_lands_on_their_page(browser, page, proxy):
    User.objects.create_superuser("root", password="root-password")
    engineering = Group.objects.create(name="engineering")
    page.goto("/admin/login/?next=/admin/auth/user/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "root-password")
    page.click("[type=submit]")
    page.click("text=Invite a teammate")
    page.fill("input[name=email]", "erin@example.com")
    page.check(f"input[name=groups][value='{engineering.pk}']")
    page.click("#invite-form [type=submit]")
    expect(page.locator(".invitation h2")).to_have_text("Invited erin@example.com")
    link = page.input_value("#invitation-link")
    assert link.startswith(f"{proxy.url}/accounts/invitation/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-invitation")
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == link

    teammate = browser.new_context()
    teammate.set_default_timeout(10_000)
    erin = teammate.new_page()
    erin.goto(link)
    expect(erin.locator("h1")).to_have_text("Set your password")
    assert "/set-password/" in erin.url  # the token left the address bar
    erin.fill("input[name=new_password1]", "erin-has-a-long-passphrase")
    erin.fill("input[name=new_password2]", "erin-has-a-long-passphrase")
    erin.click("text=Set password and sign in")
    erin.wait_for_url("**/me/")
    expect(erin.locator(".who")).to_have_text("erin@example.com")
    expect(erin.locator(".messages")).to_contain_text("Create your proxy key below")
    erin.fill("form.create input[name=label]", "laptop")
    erin.click("form.create button[type=submit]")
    assert erin.input_value("#new-key-plaintext").startswith("sk-llmp-")

    # The link worked once.
    erin.goto(link)
    expect(erin.locator("h1")).to_have_text("This link has been used")
    teammate.close()
    assert list(User.objects.get(email="erin@example.com").groups.all()) == [engineering]
