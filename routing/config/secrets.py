"""Provider credentials at rest: encrypted with Fernet keys from the environment, rotatable.

`ENCRYPTION_KEYS` lists keys newest first: the first encrypts, all of them decrypt, so an operator rotates
by putting a new key in front and running `manage.py rotatesecrets` to re-encrypt what is stored.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

logger = logging.getLogger(__name__)

# What an upstream's `api_key_env` may name: a credential variable (OPENAI_API_KEY, ANTHROPIC_AUTH_TOKEN,
# AWS_SECRET_ACCESS_KEY, MISTRAL_SECRET, AWS_ACCESS_KEY_ID), never the proxy's own settings: the value of the
# named variable is sent upstream, so naming SECRET_KEY would hand it to whoever controls the upstream URL.
# (AWS_BEARER_TOKEN_BEDROCK is the name AWS's SDKs read a Bedrock API key from.)
CREDENTIAL_VARIABLE = re.compile(
    r"[A-Z][A-Z0-9_]*_(API_KEY|KEY|TOKEN|SECRET|KEY_ID)(_[0-9]+)?|AWS_BEARER_TOKEN_BEDROCK"
)
PROXY_OWN_VARIABLES = frozenset(
    {"SECRET_KEY", "ENCRYPTION_KEYS", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "ADMIN_PASSWORD"}
)


def _fernet() -> MultiFernet:
    keys: list[str] = list(settings.ENCRYPTION_KEYS)
    if not keys:
        derived = hashlib.sha256(b"llmproxy-credentials:" + settings.SECRET_KEY.encode()).digest()
        keys = [base64.urlsafe_b64encode(derived).decode()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The stored secret, or raise `ValueError` when no configured key can read it."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("stored credential cannot be decrypted with the configured ENCRYPTION_KEYS") from exc


def reencrypt(token: str) -> str:
    """The same secret encrypted under the newest key (for key rotation)."""
    return _fernet().rotate(token.encode()).decode()


def own_variable_problem(variable: str) -> str | None:
    """Why `variable` may not be named as a credential at all: it is one of the proxy's own settings (or not a
    variable name)."""
    if variable in PROXY_OWN_VARIABLES or variable.startswith(("DJANGO_", "LLMPROXY_")):
        return f"{variable} is one of the proxy's own settings, not a provider credential"
    if not re.fullmatch(r"[A-Z][A-Z0-9_]*", variable):
        return f"{variable} is not an environment variable name (upper-case letters, digits and _)"
    return None


def credential_variable_problem(variable: str) -> str | None:
    """Why `variable` may not be named as an upstream credential, or None when it may."""
    if variable in PROXY_OWN_VARIABLES or variable.startswith(("DJANGO_", "LLMPROXY_")):
        return f"{variable} is one of the proxy's own settings, not a provider credential"
    if not CREDENTIAL_VARIABLE.fullmatch(variable):
        return (
            f"{variable} does not look like a credential variable: use upper-case letters, digits and _, "
            "ending in _API_KEY, _KEY, _TOKEN, _SECRET or _KEY_ID (a numbered one, such as _KEY_2, too)"
        )
    return None


# A proxy's USER:PASSWORD may also sit in a variable named like EGRESS_PROXY_AUTH or CORP_PROXY_PASSWORD.
PROXY_AUTH_VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*_(AUTH|PASSWORD|CREDENTIALS)")


def proxy_auth_variable_problem(variable: str) -> str | None:
    """Why `variable` may not be named as an egress proxy's credentials (its value goes to the proxy)."""
    problem = credential_variable_problem(variable)
    if problem is None or problem.startswith(variable + " is one of"):
        return problem
    if PROXY_AUTH_VARIABLE.fullmatch(variable):
        return None
    return (
        f"{variable} does not look like a credential variable: use upper-case letters, digits and _, "
        "ending in _AUTH, _PASSWORD, _CREDENTIALS, _API_KEY, _KEY, _TOKEN or _SECRET"
    )


def proxy_auth_from_environment(variable: str) -> str | None:
    """An egress proxy's USER:PASSWORD named by its environment variable (None: unset or not allowed)."""
    problem = proxy_auth_variable_problem(variable)
    if problem is not None:
        logger.error("proxy credential refused: %s", problem)
        return None
    return os.environ.get(variable) or None


def credential_from_environment(variable: str) -> str | None:
    """An upstream credential named by its environment variable (read here, when the route table loads).
    A name that is not a credential variable yields nothing, whatever is stored (a row written before the rule
    existed, or by a raw update)."""
    problem = credential_variable_problem(variable)
    if problem is not None:
        logger.error("upstream credential refused: %s", problem)
        return None
    return os.environ.get(variable) or None
