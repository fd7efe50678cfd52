"""Single sign-on (llmproxy_site.sso) through a local OpenID Connect provider (tests/fakes/oidc_provider.py): the
whole code flow as a browser drives it, the directory's groups and rights landing on the Django user, and the
client secret kept off pages and logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from routing.models import SsoIdentity
from tests.fakes.oidc_provider import LocalOidcProvider, OidcProvider

CLIENT_ID = "llmproxy-test"
CLIENT_SECRET = "oidc-client-secret-never-shown-7f3a9c"
DANA = {
    "sub": "00u-dana",
    "email": "dana@example.com",
    "email_verified": True,
    "given_name": "Dana",
    "family_name": "Scully",
    "groups": ["engineering", "llmproxy-admins", "everyone-at-example"],
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def op() -> Iterator[OidcProvider]:
    with LocalOidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        yield provider


@pytest.fixture
def sso(op: OidcProvider, settings) -> OidcProvider:
    settings.OIDC_ISSUER = op.issuer
    settings.OIDC_RP_CLIENT_ID = CLIENT_ID
    settings.OIDC_RP_CLIENT_SECRET = CLIENT_SECRET
    settings.OIDC_PROVIDER_NAME = "Example IdP"
    settings.OIDC_STAFF_GROUP = "llmproxy-admins"
    Group.objects.create(name="engineering")
    Group.objects.create(name="llmproxy-admins")
    return op


def sign_in(client: Client, op: OidcProvider, next_path: str = "/me/"):
    """The browser's round trip: our sign-in URL → the provider's authorization endpoint → our callback."""
    start = client.get(f"/accounts/sso/?next={next_path}")
    assert start.status_code == 302, start
    assert start["Location"].startswith(f"{op.issuer}/authorize?")
    approval = httpx.get(start["Location"], follow_redirects=False)
    assert approval.status_code == 302, approval.text
    back = urlsplit(approval.headers["location"])
    assert back.path == "/accounts/sso/callback/"
    return client.get(f"{back.path}?{back.query}")


def signed_in_as(client: Client) -> str | None:
    page = client.get("/me/")
    return page.context["user"].get_username() if page.status_code == 200 else None


def test_sign_in_creates_the_user_with_the_directory_groups_and_staff_rights(client, sso):
    sso.person = DANA
    answer = sign_in(client, sso)
    assert answer.status_code == 302 and answer["Location"] == "/me/"
    assert signed_in_as(client) == "dana@example.com"

    dana = User.objects.get(email="dana@example.com")
    # Only the groups that exist in Django ("everyone-at-example" does not): access and budgets hang on them.
    assert sorted(dana.groups.values_list("name", flat=True)) == ["engineering", "llmproxy-admins"]
    assert dana.is_staff and not dana.is_superuser
    assert (dana.first_name, dana.last_name) == ("Dana", "Scully")
    assert not dana.has_usable_password()  # only the provider opens this account
    assert SsoIdentity.objects.get(user=dana).subject == "00u-dana"

    # The request carried state, a nonce and a PKCE challenge; the provider put the nonce in the ID token,
    # and the relying party checked it.
    asked = sso.authorizations[-1]
    assert asked["nonce"] and asked["state"] and asked["code_challenge_method"] == "S256"
    assert set(asked["scope"].split()) >= {"openid", "email"}
    # A staff member reaches the admin.
    assert client.get("/admin/").status_code == 200


def test_the_next_sign_in_follows_the_directory(client, sso):
    sso.person = DANA
    sign_in(client, sso)
    client.post("/accounts/logout/")
    assert signed_in_as(client) is None

    # Left the admins, changed address: the same person (by subject), with fewer rights.
    sso.person = {**DANA, "email": "dana.scully@example.com", "groups": ["engineering"]}
    sign_in(client, sso)
    assert signed_in_as(client) == "dana@example.com"
    dana = User.objects.get()
    assert dana.email == "dana.scully@example.com"
    assert list(dana.groups.values_list("name", flat=True)) == ["engineering"]
    assert not dana.is_staff
    assert client.get("/admin/").status_code == 302  # to the admin's sign-in

    # No groups claim at all: a member of nothing (a revocation in the directory takes effect).
    client.post("/accounts/logout/")
    sso.person = {k: v for k, v in DANA.items() if k != "groups"}
    sign_in(client, sso)
    assert not User.objects.get().groups.exists()


def test_an_existing_account_is_found_by_its_email_address(client, sso):
    alice = User.objects.create_user("alice", email="Dana@Example.com", password="alice-password")
    sso.person = DANA
    sign_in(client, sso)
    assert signed_in_as(client) == "alice"
    assert SsoIdentity.objects.get().user == alice
    alice.refresh_from_db()
    assert alice.check_password("alice-password")  # password sign-in still works for her


def test_an_unverified_address_does_not_take_an_existing_account(client, sso):
    User.objects.create_user("dana@example.com", email="dana@example.com", password="pw")
    sso.person = {**DANA, "sub": "someone-else", "email_verified": False}
    sign_in(client, sso)
    assert signed_in_as(client) == "dana@example.com-2"


def test_an_address_linked_to_another_subject_is_refused(client, sso):
    sso.person = DANA
    sign_in(client, sso)
    client.post("/accounts/logout/")
    sso.person = {**DANA, "sub": "00u-new-hire"}  # the mailbox was given to someone else
    answer = sign_in(client, sso)
    assert answer["Location"] == "/accounts/login/"
    assert signed_in_as(client) is None
    assert User.objects.count() == 1


def test_superuser_group_and_created_groups(client, sso, settings):
    settings.OIDC_SUPERUSER_GROUP = "platform"
    settings.OIDC_CREATE_GROUPS = True
    settings.OIDC_GROUPS_CLAIM = "roles"
    op = sso
    op.person = {**DANA, "roles": ["platform", "data-science"]}
    # The fake puts the configured claim in the ID token under its own name.
    op.groups_claim = "roles"
    sign_in(client, op)
    dana = User.objects.get()
    assert dana.is_superuser and dana.is_staff
    assert sorted(dana.groups.values_list("name", flat=True)) == ["data-science", "platform"]


def test_an_empty_groups_claim_setting_leaves_groups_and_rights_to_the_admin(client, sso, settings):
    settings.OIDC_GROUPS_CLAIM = ""
    dana = User.objects.create_user("dana", email="dana@example.com", is_staff=True)
    dana.groups.add(Group.objects.get(name="engineering"))
    sso.person = {**DANA, "groups": []}
    sign_in(client, sso)
    dana.refresh_from_db()
    assert dana.is_staff and list(dana.groups.values_list("name", flat=True)) == ["engineering"]


def test_only_the_allowed_groups_may_sign_in_when_set(client, sso, settings):
    settings.OIDC_ALLOWED_GROUPS = ["engineering", "data-science"]
    sso.person = {**DANA, "sub": "00u-sales", "email": "sam@example.com", "groups": ["sales"]}
    answer = sign_in(client, sso)
    assert answer["Location"] == "/accounts/login/"
    assert signed_in_as(client) is None
    assert not User.objects.exists()  # no account is made for them
    sso.person = DANA  # in engineering
    sign_in(client, sso)
    assert signed_in_as(client) == "dana@example.com"


def test_an_inactive_user_is_not_signed_in(client, sso):
    User.objects.create_user("dana", email="dana@example.com", is_active=False)
    sso.person = DANA
    answer = sign_in(client, sso)
    assert answer["Location"] == "/accounts/login/"
    page = client.get("/accounts/login/")
    assert "Signing in with Example IdP did not work" in page.content.decode()
    assert signed_in_as(client) is None


def test_the_provider_refusing_is_said_on_the_sign_in_page(client, sso):
    sso.person = None  # the provider answers error=access_denied
    answer = sign_in(client, sso)
    assert answer["Location"] == "/accounts/login/"
    assert "did not work" in client.get("/accounts/login/").content.decode()


def test_a_replayed_callback_signs_nobody_in(client, sso):
    sso.person = DANA
    start = client.get("/accounts/sso/")
    callback = httpx.get(start["Location"], follow_redirects=False).headers["location"]
    back = urlsplit(callback)
    assert client.get(f"{back.path}?{back.query}")["Location"] == "/"
    other = Client()
    other.get("/accounts/sso/")  # a session with a state of its own
    replay = other.get(f"{back.path}?{back.query}")
    assert replay.status_code in (302, 400)
    assert signed_in_as(other) is None


def test_a_discovery_document_for_another_issuer_is_refused(client, sso, settings):
    # The same server under another name: its document names 127.0.0.1, not localhost (Discovery 4.3).
    settings.OIDC_ISSUER = sso.issuer.replace("127.0.0.1", "localhost")
    answer = client.get("/accounts/sso/")
    assert answer["Location"] == "/accounts/login/"
    assert "did not work" in client.get("/accounts/login/").content.decode()


def test_an_id_token_for_another_client_is_refused(client, sso):
    sso.person = DANA
    sso.id_token_audience = "another-client"  # signed by the provider, but not meant for this relying party
    answer = sign_in(client, sso)
    assert answer["Location"] == "/accounts/login/"
    assert signed_in_as(client) is None
    assert not User.objects.exists()


def test_password_sign_in_stays_beside_it(client, sso):
    User.objects.create_user("bob", password="bob-password")
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Example IdP" in page and 'name="password"' in page
    assert "Sign in with Example IdP" in client.get("/admin/login/").content.decode()
    answer = client.post("/accounts/login/", {"username": "bob", "password": "bob-password"})
    assert answer.status_code == 302
    assert signed_in_as(client) == "bob"


def test_off_unless_configured(client):
    assert client.get("/accounts/sso/").status_code == 404
    assert client.get("/accounts/sso/callback/?code=x&state=y").status_code == 404
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in client.get("/admin/login/").content.decode()


def test_the_client_secret_is_never_on_a_page_a_url_or_a_log(client, sso, caplog):
    caplog.set_level(logging.DEBUG)
    sso.person = DANA
    pages = [client.get("/accounts/login/"), client.get("/admin/login/")]
    start = client.get("/accounts/sso/?next=/admin/")
    approval = httpx.get(start["Location"], follow_redirects=False)
    back = urlsplit(approval.headers["location"])
    pages.append(client.get(f"{back.path}?{back.query}"))
    pages += [client.get("/me/"), client.get("/admin/"), client.get("/admin/routing/ssoidentity/")]
    for page in pages:
        assert CLIENT_SECRET not in page.content.decode()
        assert CLIENT_SECRET not in str(page.headers)
    assert CLIENT_SECRET not in start["Location"] and CLIENT_SECRET not in approval.headers["location"]
    assert CLIENT_SECRET not in caplog.text
    # At the token endpoint it went in the Authorization header (client_secret_basic), not the form body.
    token_request = sso.token_requests[-1]
    assert token_request.headers["authorization"].startswith("Basic ")
    assert CLIENT_SECRET not in token_request.body.decode()
    assert "code_verifier" in parse_qs(token_request.body.decode())


def test_the_admin_lists_who_signed_in_as_which_subject(client, sso):
    sso.person = DANA
    sign_in(client, sso)
    User.objects.create_superuser("root", password="root-password")
    operator = Client()
    operator.login(username="root", password="root-password")
    listing = operator.get("/admin/routing/ssoidentity/")
    assert listing.status_code == 200
    assert "00u-dana" in listing.content.decode()
    assert operator.get("/admin/routing/ssoidentity/add/").status_code == 403
