"""A small OpenID Connect provider for the single sign-on tests: the authorization code flow as OpenID Connect
Core 1.0 and Discovery 1.0 describe it, enough for an unmodified relying party (mozilla-django-oidc).

    with LocalOidcProvider(client_id="llmproxy", client_secret="s3cret") as op:
        op.person = {"sub": "u-1", "email": "dana@example.com", "groups": ["engineering"]}
        ... OIDC_ISSUER=op.issuer ...

- `/.well-known/openid-configuration`: the discovery document;
- `/authorize`: checks the client, redirect URI, `response_type=code` and the `openid` scope, then approves
  `person` at once (no login form: a test's browser signs in as whoever the test set) and redirects back with
  `code` and `state`; remembers the nonce and the PKCE challenge for the code. No `person`: `error=access_denied`;
- `/token`: the client authenticated by `client_secret_basic` or `client_secret_post`, the code used once, the
  redirect URI the same, the PKCE verifier matching; answers an access token and an RS256 ID token (iss, sub, aud,
  exp, iat, auth_time, nonce, and the groups claim) signed with a key made at start;
- `/userinfo`: the person's profile claims (email, names) for the bearer access token;
- `/jwks`: the public key, with its `kid`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.fakes.server import FakeUpstream, Request, Response

# Which claims go where: the ID token carries the identity and the groups (as Okta's and Keycloak's group
# mappers put them there), the userinfo endpoint the profile; the relying party has to read both.
PROFILE_CLAIMS = ("email", "email_verified", "name", "given_name", "family_name", "preferred_username")
TOKEN_LIFETIME = 300


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    claims: dict[str, Any]


@dataclass
class OidcProvider:
    """The provider's handler (served by `FakeUpstream`); `issuer` is set once the port is known."""

    client_id: str
    client_secret: str
    groups_claim: str = "groups"
    issuer: str = ""
    person: dict[str, Any] | None = None  # whom /authorize approves
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    codes: dict[str, Grant] = field(default_factory=dict)
    access_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorizations: list[dict[str, str]] = field(default_factory=list)  # the query of each /authorize request
    token_requests: list[Request] = field(default_factory=list)
    # A provider gone wrong, for the relying party's checks: ID tokens for this audience instead of the client.
    id_token_audience: str | None = None

    def __call__(self, request: Request) -> Response:
        routes = {
            ("GET", "/.well-known/openid-configuration"): self.discovery,
            ("GET", "/authorize"): self.authorize,
            ("POST", "/token"): self.token,
            ("GET", "/userinfo"): self.userinfo,
            ("POST", "/userinfo"): self.userinfo,
            ("GET", "/jwks"): self.jwks,
        }
        route = routes.get((request.method, request.path))
        return route(request) if route else _json(404, {"error": "not_found"})

    def discovery(self, request: Request) -> Response:
        return _json(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "code_challenge_methods_supported": ["S256", "plain"],
                "grant_types_supported": ["authorization_code"],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", self.groups_claim, *PROFILE_CLAIMS],
            },
        )

    def authorize(self, request: Request) -> Response:
        query = request.query
        self.authorizations.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri.startswith(("http://", "https://")):
            # Core 3.1.2.6: never redirect to an unverified URI; tell the user agent instead.
            return _json(400, {"error": "invalid_request", "error_description": "unknown client or redirect_uri"})
        state = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **state})
        if "openid" not in query.get("scope", "").split():
            return _redirect(redirect_uri, {"error": "invalid_scope", **state})
        if self.person is None:
            return _redirect(redirect_uri, {"error": "access_denied", **state})
        code = secrets.token_urlsafe(24)
        self.codes[code] = Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            nonce=query.get("nonce"),
            code_challenge=query.get("code_challenge"),
            code_challenge_method=query.get("code_challenge_method"),
            claims=dict(self.person),
        )
        return _redirect(redirect_uri, {"code": code, **state})

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            # RFC 6749 2.3.1: both parts are form-urlencoded before they are joined.
            pairs = dict(parse_qsl(f"i={client_id}&s={secret}"))
            return pairs.get("i") == self.client_id and pairs.get("s") == self.client_secret
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def token(self, request: Request) -> Response:
        self.token_requests.append(request)
        form = dict(parse_qsl(request.body.decode()))
        if not self._client_authenticated(request, form):
            return _json(401, {"error": "invalid_client"}, {"www-authenticate": 'Basic realm="token"'})
        if form.get("grant_type") != "authorization_code":
            return _json(400, {"error": "unsupported_grant_type"})
        grant = self.codes.pop(form.get("code", ""), None)  # a code works once
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _json(400, {"error": "invalid_grant"})
        if grant.code_challenge is not None and not _pkce_matches(grant, form.get("code_verifier", "")):
            return _json(400, {"error": "invalid_grant", "error_description": "PKCE verification failed"})
        now = int(time.time())
        claims = grant.claims
        id_claims = {
            "iss": self.issuer,
            "sub": claims["sub"],
            "aud": self.id_token_audience or self.client_id,
            "exp": now + TOKEN_LIFETIME,
            "iat": now,
            "auth_time": now,
        }
        if grant.nonce is not None:
            id_claims["nonce"] = grant.nonce
        if self.groups_claim in claims:
            id_claims[self.groups_claim] = claims[self.groups_claim]
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = claims
        id_token = jwt.encode(id_claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "id_token": id_token,
        }
        return _json(200, body, {"cache-control": "no-store", "pragma": "no-cache"})

    def userinfo(self, request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        claims = self.access_tokens.get(authorization[7:]) if authorization.lower().startswith("bearer ") else None
        if claims is None:
            return _json(401, {"error": "invalid_token"}, {"www-authenticate": 'Bearer error="invalid_token"'})
        return _json(200, {"sub": claims["sub"], **{k: claims[k] for k in PROFILE_CLAIMS if k in claims}})

    def jwks(self, request: Request) -> Response:
        public = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return _json(200, {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]})


def _pkce_matches(grant: Grant, verifier: str) -> bool:
    if grant.code_challenge_method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant.code_challenge
    return verifier == grant.code_challenge  # "plain"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"content-type": "application/json", **(headers or {})}, json.dumps(body).encode())


def _redirect(uri: str, params: dict[str, str]) -> Response:
    separator = "&" if urlsplit(uri).query else "?"
    return Response(302, {"location": f"{uri}{separator}{urlencode(params)}", "cache-control": "no-store"})


class LocalOidcProvider:
    """`OidcProvider` served on 127.0.0.1 (a free port) for the length of a `with` block."""

    def __init__(self, client_id: str, client_secret: str, groups_claim: str = "groups") -> None:
        self.provider = OidcProvider(client_id, client_secret, groups_claim)
        self.server = FakeUpstream(self.provider)

    def __enter__(self) -> OidcProvider:
        self.server.start()
        self.provider.issuer = self.server.url
        return self.provider

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()
