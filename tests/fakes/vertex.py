"""A fake Google Vertex AI: an OAuth token endpoint for one service account, and the Gemini and Anthropic
publishers' endpoints, which accept only the access tokens that endpoint issued and has not let expire.

The token endpoint takes the JWT-bearer grant google-auth sends for a service-account key: the assertion must be
signed (RS256) by the account's private key, name the account as issuer, Google's token endpoint as audience, and the
cloud-platform scope. Behind the token check, requests are answered by the ordinary Gemini and Anthropic fakes
(`gemini`, `anthropic`: script them as usual), after the same checks Vertex makes of the shape: a Claude model in
the URL and `anthropic_version: vertex-2023-10-16` in the body, never a `model` field there.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.anthropic import AnthropicFake
from tests.fakes.base import json_response
from tests.fakes.gemini import GeminiFake
from tests.fakes.server import Headers, Request, Response

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# google-auth signs every service-account assertion for Google's token endpoint, wherever it posts it.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
ROUTE = re.compile(r"/v1/projects/([^/]+)/locations/([^/]+)/publishers/(google|anthropic)/models/([^/:]+):([A-Za-z]+)")


def service_account(project: str = "llmproxy-test") -> tuple[dict[str, Any], Any]:
    """A fresh service-account key (the JSON a console download holds) and its public key."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": "fake-key-1",
        "private_key": pem,
        "client_email": f"proxy@{project}.iam.gserviceaccount.com",
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info, private.public_key()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class VertexFake:
    def __init__(self, account: dict[str, Any], public_key: Any, *, project: str, location: str) -> None:
        self.account = account
        self.public_key = public_key
        self.project = project
        self.location = location
        self.token_lifetime = 3600  # seconds, as Google issues them
        self.gemini = GeminiFake(strict=False)
        self.anthropic = AnthropicFake(strict=False)
        self.tokens: dict[str, float] = {}  # issued access token -> when it expires (time.time())
        self.refused: list[str] = []  # why requests were refused, for the tests' messages
        self._serial = itertools.count(1)
        self.token_url = ""  # set by the test once the server has a port: the audience assertions must name

    def __call__(self, request: Request) -> Response:
        if request.path == "/token":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0.0) <= time.time():
            self.refused.append(f"token {token[:12]!r}")
            return self._status(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        match = ROUTE.fullmatch(request.path)
        if match is None:
            return self._status(404, "NOT_FOUND", f"Not found: {request.path}")
        project, location, publisher, model, method = match.groups()
        if (project, location) != (self.project, self.location):
            return self._status(404, "NOT_FOUND", f"Project {project} in {location} is not this fake's")
        if publisher == "google":
            query = f"?{request.target.partition('?')[2]}" if "?" in request.target else ""
            return self.gemini(_replace(request, f"/v1beta/models/{model}:{method}{query}"))
        return self._anthropic(request, model, method)

    def _anthropic(self, request: Request, model: str, method: str) -> Response:
        body = request.json if isinstance(request.json, dict) else {}
        if body.get("anthropic_version") != "vertex-2023-10-16":
            return self._status(400, "INVALID_ARGUMENT", "anthropic_version: vertex-2023-10-16 is required")
        body = {k: v for k, v in body.items() if k != "anthropic_version"}
        headers = [*request.headers.raw, ("anthropic-version", "2023-06-01")]
        if model == "count-tokens" and method == "rawPredict":
            return self.anthropic(_replace(request, "/v1/messages/count_tokens", body, headers))
        if "model" in body:
            return self._status(400, "INVALID_ARGUMENT", "model: not allowed in the body (it is in the URL)")
        if method not in ("rawPredict", "streamRawPredict"):
            return self._status(404, "NOT_FOUND", f"Unknown method {method}")
        return self.anthropic(_replace(request, "/v1/messages", {**body, "model": model}, headers))

    def _token(self, request: Request) -> Response:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return json_response({"error": "unsupported_grant_type"}, 400)
        problem = self._assertion_problem(form.get("assertion", ""))
        if problem:
            self.refused.append(problem)
            return json_response({"error": "invalid_grant", "error_description": problem}, 400)
        token = f"ya29.fake-{next(self._serial)}"
        self.tokens[token] = time.time() + self.token_lifetime
        return json_response({"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"})

    def _assertion_problem(self, assertion: str) -> str | None:
        try:
            header, payload, signature = assertion.split(".")
            self.public_key.verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
            claims = json.loads(_b64(payload))
        except Exception as exc:
            return f"the assertion is not signed by the service account's key ({type(exc).__name__})"
        if claims.get("iss") != self.account["client_email"]:
            return f"issuer {claims.get('iss')!r} is not the service account"
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return f"audience {claims.get('aud')!r} is not Google's token endpoint"
        if SCOPE not in str(claims.get("scope", "")).split():
            return "the cloud-platform scope was not asked for"
        if float(claims.get("exp", 0)) < time.time():
            return "the assertion has expired"
        return None

    @staticmethod
    def _status(code: int, status: str, message: str) -> Response:
        return json_response({"error": {"code": code, "message": message, "status": status}}, code)


def _replace(
    request: Request,
    path: str,
    body: dict[str, Any] | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Request:
    content = request.body if body is None else json.dumps(body).encode()
    return Request(
        request.method,
        path,
        Headers(headers if headers is not None else request.headers.raw),
        content,
        json.loads(content) if content else None,
    )
