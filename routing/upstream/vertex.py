"""Google Vertex AI as an upstream: its URLs, which API each model speaks there, and its OAuth access tokens.

On Vertex, Gemini models speak the Gemini API under `.../publishers/google/models/{model}:generateContent`, and
Anthropic's Claude models the Messages API under `.../publishers/anthropic/models/{model}:rawPredict` (the model
in the URL, not the body, and `anthropic_version: vertex-2023-10-16` in the body), as Anthropic's own Vertex
client sends them. Requests carry an OAuth access token, minted from a service-account key (or the machine's
application default credentials) with google-auth, refreshed before it expires and shared by every request of
the process: one refresh at a time, on a worker thread (google-auth's refresh is synchronous I/O), so the request
path only reads the cached token.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
from typing import Any
from urllib.parse import quote

import httpx

from routing.runtime.looplock import LoopLock
from translation.dialect import Dialect
from translation.operation import Operation

logger = logging.getLogger(__name__)

KIND = "vertex"
LABEL = "Google Vertex AI"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# What Anthropic's Vertex endpoint expects in the body instead of an `anthropic-version` header.
ANTHROPIC_VERSION = "vertex-2023-10-16"
# A token is refreshed when less than this is left of its life (seconds), so none expires in flight.
REFRESH_MARGIN = 60.0
_TOKEN_TIMEOUT = 10.0


def wire_for(model: str) -> Dialect:
    """The API a Vertex model speaks: Anthropic's publisher serves Claude, Google's the rest."""
    return Dialect.ANTHROPIC if model.lower().startswith("claude") else Dialect.GEMINI


def default_base_url(location: str) -> str:
    """As Google's and Anthropic's SDKs derive it from the location."""
    if location == "global":
        return "https://aiplatform.googleapis.com/v1"
    return f"https://{location}-aiplatform.googleapis.com/v1"


def endpoint_url(base_url: str, project: str, location: str, operation: Operation, model: str, stream: bool) -> str:
    root = f"{base_url.rstrip('/')}/projects/{quote(project, safe='')}/locations/{quote(location, safe='')}"
    if wire_for(model) is Dialect.ANTHROPIC:
        if operation is Operation.COUNT_TOKENS:
            return f"{root}/publishers/anthropic/models/count-tokens:rawPredict"
        method = "streamRawPredict" if stream else "rawPredict"
        return f"{root}/publishers/anthropic/models/{quote(model, safe='.-_@')}:{method}"
    if operation is Operation.COUNT_TOKENS:
        method = "countTokens"
    else:
        method = "streamGenerateContent" if stream else "generateContent"
    url = f"{root}/publishers/google/models/{quote(model, safe='.-_@')}:{method}"
    return url + "?alt=sse" if stream and operation is Operation.GENERATE else url


def anthropic_body(payload: dict[str, Any], operation: Operation) -> dict[str, Any]:
    """A Messages body as Vertex takes it: the version in the body, and for a generation the model in the URL
    (a token count names it in the body, as Anthropic's Vertex client sends it)."""
    body = {name: value for name, value in payload.items() if name != "model" or operation is Operation.COUNT_TOKENS}
    body.setdefault("anthropic_version", ANTHROPIC_VERSION)
    return body


# --- credentials ---------------------------------------------------------------------------------------------


class CredentialsError(ValueError):
    pass


def load_credentials(service_account: str | None, token_url: str) -> Any:
    """google-auth credentials from a service-account key (its JSON, or the path of its file), else the
    application default credentials. Reads files: call it where the configuration loads, not on the event loop."""
    import google.auth
    from google.oauth2 import service_account as sa

    if service_account:
        text = service_account.strip()
        if not text.startswith("{"):
            try:
                with open(os.path.expanduser(text), encoding="utf-8") as key_file:
                    text = key_file.read()
            except OSError as exc:
                raise CredentialsError(f"the service-account key file cannot be read: {exc.strerror}") from exc
        try:
            info = json.loads(text)
        except ValueError as exc:
            raise CredentialsError("the service-account key is not valid JSON") from exc
        if token_url:
            info = {**info, "token_uri": token_url}
        try:
            return sa.Credentials.from_service_account_info(info, scopes=SCOPES)  # type: ignore[no-untyped-call]
        except (ValueError, KeyError) as exc:
            raise CredentialsError(f"not a service-account key: {exc}") from exc
    try:
        credentials, _ = google.auth.default(scopes=SCOPES)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise CredentialsError(f"no application default credentials: {exc}") from exc
    return credentials


class _Transport:
    """google-auth's synchronous request interface, over httpx (what the token refresh calls)."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        **_: Any,
    ) -> Any:
        from google.auth import exceptions

        try:
            response = self._client.request(method, url, content=body, headers=headers, timeout=timeout or 10)
        except httpx.HTTPError as exc:
            raise exceptions.TransportError(str(exc)) from exc  # type: ignore[no-untyped-call]
        return _Response(response)


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.data = response.content


class AccessTokens:
    """The current access token of each Vertex upstream's credentials, refreshed one at a time per process."""

    def __init__(self) -> None:
        self._refresh = LoopLock()

    async def token(self, credentials: Any) -> str:
        if _fresh(credentials):
            return str(credentials.token)
        async with self._refresh.get():
            if not _fresh(credentials):  # another request may have refreshed it while this one waited
                await asyncio.to_thread(_refresh, credentials)
        return str(credentials.token)


def _fresh(credentials: Any) -> bool:
    if not credentials.token or credentials.expiry is None:
        return False
    expiry: datetime.datetime = credentials.expiry  # google-auth keeps it naive, in UTC
    left = expiry - datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    return left.total_seconds() > REFRESH_MARGIN


def _refresh(credentials: Any) -> None:
    with httpx.Client(timeout=_TOKEN_TIMEOUT) as client:
        credentials.refresh(_Transport(client))


access_tokens = AccessTokens()
