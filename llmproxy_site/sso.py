"""Single sign-on with an OpenID Connect provider (docs/sign-in.md), on mozilla-django-oidc.

Off unless OIDC_ISSUER and OIDC_CLIENT_ID are set. Then the sign-in pages offer "Sign in with <provider>": the
browser goes to the provider's authorization endpoint (authorization code flow with state, nonce and PKCE), comes
back to `/accounts/sso/callback/`, and the library exchanges the code for tokens and checks the ID token's
signature (the provider's JWKS), expiry and nonce; `SsoBackend` adds the issuer and audience checks OpenID Connect
Core 3.1.3.7 asks for, then finds the person and applies their directory:

- the person is the user linked to the ID token's subject at this issuer (`SsoIdentity`); failing that the one
  user with the token's email address (unless the provider says the address is unverified), which is then linked;
  failing that a new user named by the address, without a password;
- their Django groups become those named in the groups claim (OIDC_GROUPS_CLAIM), so model access, budgets and
  limits (routing.access) follow the company's directory; staff and superuser rights follow OIDC_STAFF_GROUP and
  OIDC_SUPERUSER_GROUP.

The provider's endpoints come from `<issuer>/.well-known/openid-configuration`, read at the first sign-in of each
process and kept. Nothing here talks to the provider before someone clicks the button: Django builds a backend
for every password sign-in and every request of a signed-in person, so constructing one does no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from routing.models import SsoIdentity

log = logging.getLogger(__name__)

USERNAME_MAX = 150


def enabled() -> bool:
    return bool(settings.OIDC_ISSUER and settings.OIDC_RP_CLIENT_ID)


def sign_in_choices(request: HttpRequest) -> dict[str, Any]:
    """Template context: the provider's name when single sign-on is on (the sign-in pages show its button)."""
    return {"sso_provider_name": settings.OIDC_PROVIDER_NAME if enabled() else ""}


# --- the provider's endpoints (OpenID Connect Discovery 1.0) ---------------------------------------------------


class ProviderUnreachableError(Exception):
    """The provider's discovery document could not be read, or does not describe the configured issuer."""


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str
    jwks: str


_discovered: dict[str, Endpoints] = {}  # by issuer; a failed look-up is not kept, the next sign-in tries again


def _same_issuer(a: str, b: str) -> bool:
    # Some providers name themselves with a trailing slash (Auth0); OIDC_ISSUER may be written either way.
    return a.rstrip("/") == b.rstrip("/")


def endpoints() -> Endpoints:
    issuer = settings.OIDC_ISSUER
    found = _discovered.get(issuer)
    if found is not None:
        return found
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        answer = httpx.get(url, timeout=settings.OIDC_TIMEOUT, follow_redirects=True)
        answer.raise_for_status()
        document = answer.json()
        if not _same_issuer(str(document.get("issuer", "")), issuer):
            raise ProviderUnreachableError(f"{url} names the issuer {document.get('issuer')!r}, not {issuer!r}")
        found = Endpoints(
            authorization=document["authorization_endpoint"],
            token=document["token_endpoint"],
            userinfo=document["userinfo_endpoint"],
            jwks=document["jwks_uri"],
        )
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProviderUnreachableError(f"{url}: {type(exc).__name__}: {exc}") from exc
    _discovered[issuer] = found
    return found


_ENDPOINT_SETTINGS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization",
    "OIDC_OP_TOKEN_ENDPOINT": "token",
    "OIDC_OP_USER_ENDPOINT": "userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "jwks",
}


def _setting(attr: str, *default: Any) -> Any:
    """The library's settings look-up, with the endpoints from discovery."""
    if attr in _ENDPOINT_SETTINGS:
        return getattr(endpoints(), _ENDPOINT_SETTINGS[attr])
    return import_from_settings(attr, *default)


# --- who signed in, and their directory ------------------------------------------------------------------------


def _free_username(email: str) -> str:
    base = email[:USERNAME_MAX]
    candidate, n = base, 1
    while User.objects.filter(username__iexact=candidate).exists():
        n += 1
        suffix = f"-{n}"
        candidate = base[: USERNAME_MAX - len(suffix)] + suffix
    return candidate


def person_for(claims: dict[str, Any]) -> User:
    """The user these verified claims (with `sub` and `email`) describe: linked by subject, else matched by email
    and linked, else created without a password. Their email and names follow the provider."""
    issuer, subject, email = settings.OIDC_ISSUER, str(claims["sub"]), str(claims["email"])
    identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is not None:
        user = identity.user
        SsoIdentity.objects.filter(pk=identity.pk).update(last_sign_in=timezone.now())
    else:
        # An address the provider has not verified could be anyone's: it may create an account, never take one.
        matches = [] if claims.get("email_verified") is False else list(User.objects.filter(email__iexact=email)[:2])
        if len(matches) > 1:
            raise SuspiciousOperation(f"several users have the email address of subject {subject!r}")
        if matches:
            user = matches[0]
            if user.sso_identities.filter(issuer=issuer).exists():
                # The address now belongs to someone else at the provider (a reused mailbox): not their account.
                raise SuspiciousOperation(f"the user with subject {subject!r}'s address is linked to another subject")
        else:
            user = get_user_model().objects.create_user(_free_username(email), email=email)
        SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    changed = []
    for field, claim in (("email", "email"), ("first_name", "given_name"), ("last_name", "family_name")):
        value = claims.get(claim)
        if isinstance(value, str) and value and getattr(user, field) != value[:150]:
            setattr(user, field, value[:150])
            changed.append(field)
    if changed:
        user.save(update_fields=changed)
    return user


def directory_groups(claims: dict[str, Any]) -> set[str]:
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list):
        return {str(item) for item in value if isinstance(item, str | int)}
    return set()  # absent: a member of no group (the directory is the truth, a revocation must take effect)


def apply_directory(user: User, claims: dict[str, Any]) -> None:
    """Sets the user's Django groups and admin rights from the claims (nothing when OIDC_GROUPS_CLAIM is empty).
    Writes only what changed: a change of groups or rights reloads every worker's configuration."""
    if not settings.OIDC_GROUPS_CLAIM:
        return
    names = directory_groups(claims)
    if settings.OIDC_CREATE_GROUPS:
        groups = [Group.objects.get_or_create(name=name)[0] for name in sorted(names) if len(name) <= 150]
    else:
        groups = list(Group.objects.filter(name__in=names))
    if {g.pk for g in groups} != set(user.groups.values_list("pk", flat=True)):
        user.groups.set(groups)
    rights: dict[str, bool] = {}
    superuser = settings.OIDC_SUPERUSER_GROUP in names if settings.OIDC_SUPERUSER_GROUP else None
    if settings.OIDC_STAFF_GROUP:
        rights["is_staff"] = settings.OIDC_STAFF_GROUP in names or bool(superuser)
    if superuser is not None:
        rights["is_superuser"] = superuser
        if superuser:
            rights["is_staff"] = True  # the admin's own door
    changed = [field for field, value in rights.items() if getattr(user, field) != value]
    for field in changed:
        setattr(user, field, rights[field])
    if changed:
        user.save(update_fields=changed)


# --- the library's parts, configured -----------------------------------------------------------------------------


class SsoBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """mozilla-django-oidc's backend with endpoints from discovery, the ID token's issuer and audience checked, and
    the person found and given their directory as above."""

    get_settings = staticmethod(_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The library reads every endpoint here; this backend reads them (discovering them) only when used.
        self.UserModel = get_user_model()
        self.OIDC_RP_IDP_SIGN_KEY = None

    @property
    def OIDC_OP_TOKEN_ENDPOINT(self) -> str:
        return endpoints().token

    @property
    def OIDC_OP_USER_ENDPOINT(self) -> str:
        return endpoints().userinfo

    @property
    def OIDC_OP_JWKS_ENDPOINT(self) -> str:
        return endpoints().jwks

    @property
    def OIDC_RP_CLIENT_ID(self) -> str:
        return str(settings.OIDC_RP_CLIENT_ID)

    @property
    def OIDC_RP_CLIENT_SECRET(self) -> str:
        return str(settings.OIDC_RP_CLIENT_SECRET)

    @property
    def OIDC_RP_SIGN_ALGO(self) -> str:
        return str(settings.OIDC_RP_SIGN_ALGO)

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> User | None:
        if not enabled() or "password" in credentials:  # a password sign-in is ModelBackend's
            return None
        user: User | None = super().authenticate(request, **credentials)
        return user

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        client_id = self.OIDC_RP_CLIENT_ID
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if not _same_issuer(str(payload.get("iss", "")), settings.OIDC_ISSUER):
            raise SuspiciousOperation("the ID token comes from another issuer")
        if client_id not in audiences or (len(audiences) > 1 and payload.get("azp") != client_id):
            raise SuspiciousOperation("the ID token is meant for another client")
        if "exp" not in payload:
            raise SuspiciousOperation("the ID token has no expiry")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The ID token's claims with the userinfo endpoint's on top (some providers put groups in only one)."""
        info: dict[str, Any] = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):  # OpenID Connect Core 5.3.2
            raise SuspiciousOperation("the userinfo answer is about another subject")
        return {**payload, **info}

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        return bool(claims.get("sub")) and bool(claims.get("email"))

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> User:
        claims = self.get_userinfo(access_token, id_token, payload)
        if not self.verify_claims(claims):
            raise SuspiciousOperation("the provider gave no subject or no email address (is the email scope granted?)")
        allowed = set(settings.OIDC_ALLOWED_GROUPS)
        if allowed and not allowed & directory_groups(claims):
            raise SuspiciousOperation(f"subject {claims['sub']!r} is in none of OIDC_ALLOWED_GROUPS")
        with transaction.atomic():
            user = person_for(claims)
            apply_directory(user, claims)
        return user

    def get_user(self, user_id: int) -> User | None:
        user: User | None = super().get_user(user_id)
        return user if user is not None and user.is_active else None


def _failure(request: HttpRequest, reason: str) -> HttpResponse:
    log.warning("single sign-on did not sign anyone in: %s", reason)
    messages.error(
        request, f"Signing in with {settings.OIDC_PROVIDER_NAME} did not work. Try again, or ask an operator."
    )
    return HttpResponseRedirect(settings.LOGIN_URL)


class SsoSignInView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """GET /accounts/sso/?next=…: off to the provider's authorization endpoint."""

    get_settings = staticmethod(_setting)

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the library's would look the endpoint up before any request

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("single sign-on is not configured")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = endpoints().authorization
        except ProviderUnreachableError as exc:
            return _failure(request, str(exc))
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        response: HttpResponse = super().get(request)
        return response


class SsoCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """GET /accounts/sso/callback/?code=…&state=…: where the provider sends the browser back."""

    get_settings = staticmethod(_setting)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not enabled():
            raise Http404("single sign-on is not configured")
        try:
            response: HttpResponse = super().get(request)
        except (ProviderUnreachableError, requests.RequestException, jwt.PyJWTError, SuspiciousOperation) as exc:
            return _failure(request, f"{type(exc).__name__}: {exc}")
        return response

    def login_failure(self) -> HttpResponse:
        error = self.request.GET.get("error")
        reason = f"the provider answered {error!r}" if error else "no user (inactive, or claims refused)"
        return _failure(self.request, reason)
