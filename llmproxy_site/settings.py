"""Settings: the only place the environment is read (via django-environ). Documented in docs/configuration.md."""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# `make run` writes generated secrets to .env on first start so that they survive restarts.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

HOST: str = env.str("HOST", default="127.0.0.1")
PORT: int = env.int("PORT", default=8080)
LOOPBACK = HOST in ("127.0.0.1", "localhost", "::1") or HOST.startswith("127.")
# `make run` (llmproxy_site.serve): how many server processes share the listening socket (0: one per core), and
# how long a stopping one may take (the drain delay, the ledger's grace for running exchanges, then its last write)
# before its process manager kills it.
WORKERS: int = env.int("WORKERS", default=0)
WORKER_STOP_TIMEOUT: float = env.float("WORKER_STOP_TIMEOUT", default=15.0)
# How long a stopping server lets running requests (streams above all) finish by themselves before it cancels
# them and records them as interrupted (llmproxy_site.server, usage.ledger).
SHUTDOWN_GRACE_SECONDS: float = env.float("SHUTDOWN_GRACE_SECONDS", default=2.0)
# How long a server told to stop (SIGTERM) keeps accepting new connections, with its readiness probe (/health/ready)
# answering 503, before it stops accepting and the grace above begins: time for a load balancer to take it out
# of rotation (llmproxy_site.server, docs/deployment.md "Graceful drain"). 0: stop accepting at once.
DRAIN_DELAY_SECONDS: float = env.float("DRAIN_DELAY_SECONDS", default=2.0)

# DEBUG only when asked for: a loopback address may well be a reverse proxy's upstream, and debug pages show
# settings and code. Serving on a loopback address allows a built-in SECRET_KEY; anything else is a
# deployment: a real SECRET_KEY required, and only the configured hosts accepted.
DEBUG: bool = env.bool("DEBUG", default=False)
if LOOPBACK:
    SECRET_KEY: str = env.str("SECRET_KEY", default="insecure-loopback-only-secret-key-change-me")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if not SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when HOST is not a loopback address")
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", HOST])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Browser origins (scheme://host[:port]) whose pages may call the data plane (routing.cors); empty: none.
CORS_ALLOWED_ORIGINS: list[str] = env.list("CORS_ALLOWED_ORIGINS", default=[])

# Fernet keys (comma-separated, newest first) that encrypt provider credentials stored in the database.
# Without one, a key is derived from SECRET_KEY, which ties stored secrets to it.
ENCRYPTION_KEYS: list[str] = env.list("ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "routing",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Edits made through any view are recorded with the logged-in user as actor (routing.audit).
    "routing.audit.audit_actor_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "llmproxy_site.urls"
ASGI_APPLICATION = "llmproxy_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "llmproxy_site.sso.sign_in_choices",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the server read while a management command writes; IMMEDIATE avoids lock upgrades failing.
    # synchronous=NORMAL (the setting SQLite recommends with WAL): a commit no longer waits for the disk, only a
    # checkpoint does, so the rate-limit counters' two transactions per request cost writes, not fsyncs (8.3 ->
    # 4.0-4.7 ms per request measured on these machines, docs/benchmarks.md). A process crash loses nothing; a
    # power loss may lose the last commits (the ledger spool replays its rows).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # A file, not memory, so that a server process started by the tests sees the test database.
    # Named per process so that two test runs on one machine never share (and clobber) a database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"].startswith("django.db.backends.postgresql"):
    # A database that hangs (paused, overloaded, a lock held) must not hang the server: connecting gives up
    # after DB_CONNECT_TIMEOUT seconds and a statement after DB_STATEMENT_TIMEOUT (0: no limit; migrations
    # that build indexes on a large ledger may need it, docs/deployment.md).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5),
            "options": f"-c statement_timeout={int(env.float('DB_STATEMENT_TIMEOUT', default=60.0) * 1000)}",
        }
    )
# How long a request waits for the shared rate-limit counters (database or Redis) before it is admitted
# without them (fail open; for the next LIMITS_FAIL_OPEN_SECONDS requests are admitted at once), and how
# long /health/ready waits for the database before it answers 503.
LIMITS_CHECK_TIMEOUT: float = env.float("LIMITS_CHECK_TIMEOUT", default=2.0)
LIMITS_FAIL_OPEN_SECONDS: float = env.float("LIMITS_FAIL_OPEN_SECONDS", default=10.0)
READINESS_DB_TIMEOUT: float = env.float("READINESS_DB_TIMEOUT", default=2.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL: str = env.str("REDIS_URL", default="")
if REDIS_URL:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# How often each worker process checks whether the routing configuration changed (seconds).
CONFIG_REFRESH_INTERVAL: float = env.float("CONFIG_REFRESH_INTERVAL", default=0.5)
# Team limits (routing.access.limits, routing.access.budgets): the length of a rate-limit window in seconds
# (the limits are per minute at the default; tests shorten it), the prefix of the rate-limit counters in Redis,
# and how often each worker re-reads budget spend from the database (its own spend it counts as it goes).
RATE_LIMIT_WINDOW: float = env.float("RATE_LIMIT_WINDOW", default=60.0)
RATE_LIMIT_PREFIX: str = env.str("RATE_LIMIT_PREFIX", default="llmproxy:limits:")
BUDGET_REFRESH_INTERVAL: float = env.float("BUDGET_REFRESH_INTERVAL", default=2.0)
# Days the usage ledger keeps its raw rows (0: forever); the rollups the dashboards read are kept (usage.retention).
LEDGER_RETENTION_DAYS: int = env.int("LEDGER_RETENTION_DAYS", default=0)
# Captured request/response bodies (usage.captures, docs/captures.md), for keys and aliases that ask for them: the
# most bytes kept of each body (the rest is cut and marked), and the days they are kept (0: forever).
CAPTURE_MAX_BYTES: int = env.int("CAPTURE_MAX_BYTES", default=256 * 1024)
CAPTURE_RETENTION_DAYS: int = env.int("CAPTURE_RETENTION_DAYS", default=7)
# Failover over an alias's targets (routing.dataplane.failover, routing.upstream.health): the most upstream
# attempts one request makes; the consecutive failures that open a target's circuit and how long it then rests
# (seconds; a 429's Retry-After, when given, sets the rest instead); how long a pool key the upstream refused
# (401/403) rests; the prefix under which the circuits are shared in Redis (when REDIS_URL is set).
ROUTING_MAX_ATTEMPTS: int = env.int("ROUTING_MAX_ATTEMPTS", default=3)
CIRCUIT_FAILURES: int = env.int("CIRCUIT_FAILURES", default=3)
CIRCUIT_COOLDOWN: float = env.float("CIRCUIT_COOLDOWN", default=30.0)
KEY_REJECTED_COOLDOWN: float = env.float("KEY_REJECTED_COOLDOWN", default=300.0)
HEALTH_PREFIX: str = env.str("HEALTH_PREFIX", default="llmproxy:health:")
# Largest request body the data plane accepts (bytes); coding agents send 100 KB+ with images far more.
MAX_REQUEST_BYTES: int = env.int("MAX_REQUEST_BYTES", default=64 * 1024 * 1024)
# What the proxy holds of an upstream's answer (bytes, counted after decompression, as they arrive): one stream
# event (UPSTREAM_MAX_EVENT_BYTES) and a whole non-stream body (UPSTREAM_MAX_BODY_BYTES). Past either the
# answer ends with a 502 in the client's dialect (its stream error event once a stream has started), so a
# broken upstream, a wrong content type or a gzip bomb cannot exhaust a worker's memory.
UPSTREAM_MAX_EVENT_BYTES: int = env.int("UPSTREAM_MAX_EVENT_BYTES", default=16 * 1024 * 1024)
UPSTREAM_MAX_BODY_BYTES: int = env.int("UPSTREAM_MAX_BODY_BYTES", default=64 * 1024 * 1024)
# Seconds a client has to send a whole request, head and body (llmproxy_site.server answers 408 and closes after
# that): a client that drips a byte at a time cannot hold a connection open for ever.
REQUEST_READ_TIMEOUT: float = env.float("REQUEST_READ_TIMEOUT", default=60.0)
# A Responses WebSocket connection's memory (routing.dataplane.websocket): frames waiting to be served, and the
# conversation history it keeps for `previous_response_id` (bytes of JSON; the oldest responses go first).
WEBSOCKET_MAX_QUEUED_BYTES: int = env.int("WEBSOCKET_MAX_QUEUED_BYTES", default=64 * 1024 * 1024)
WEBSOCKET_HISTORY_MAX_BYTES: int = env.int("WEBSOCKET_HISTORY_MAX_BYTES", default=64 * 1024 * 1024)
# Responses answers kept for `previous_response_id` on routes to Anthropic/Chat/Gemini (routing.conversations):
# how long (seconds), the largest entry (bytes of stored JSON; larger ones are not kept) and entries per key.
RESPONSE_STORE_TTL: int = env.int("RESPONSE_STORE_TTL", default=24 * 3600)
RESPONSE_STORE_MAX_BYTES: int = env.int("RESPONSE_STORE_MAX_BYTES", default=8 * 1024 * 1024)
RESPONSE_STORE_MAX_PER_KEY: int = env.int("RESPONSE_STORE_MAX_PER_KEY", default=1000)

# Bearer token that `GET /metrics` (Prometheus) requires; empty: the metrics are open to anyone who can reach them.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
# The reverse proxies in front of this server (comma-separated addresses). Only requests from them may set the
# client address through X-Forwarded-For (llmproxy_site.server), and then X-Forwarded-Proto tells Django the
# scheme the browser used; empty: those headers are ignored (docs/security.md).
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only a browser talking to a loopback server directly uses plain http: everywhere else cookies are Secure.
_PLAIN_LOOPBACK = LOOPBACK and not TRUSTED_PROXIES
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not _PLAIN_LOOPBACK)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not _PLAIN_LOOPBACK)
# HSTS: off until the operator knows TLS works for the host (then e.g. 31536000), docs/security.md.
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0)

# Password sign-in and single sign-on side by side (docs/sign-in.md): the OpenID Connect backend signs nobody in
# unless OIDC_ISSUER and OIDC_CLIENT_ID are set (llmproxy_site.sso).
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "llmproxy_site.sso.SsoBackend"]
# Single sign-on with an OpenID Connect provider (mozilla-django-oidc under llmproxy_site.sso). The issuer's
# endpoints are read once from <issuer>/.well-known/openid-configuration, at the first sign-in.
OIDC_ISSUER: str = env.str("OIDC_ISSUER", default="").rstrip("/")
OIDC_RP_CLIENT_ID: str = env.str("OIDC_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET: str = env.str("OIDC_CLIENT_SECRET", default="")
OIDC_PROVIDER_NAME: str = env.str("OIDC_PROVIDER_NAME", default="single sign-on")  # "Sign in with <this>"
OIDC_RP_SCOPES: str = env.str("OIDC_SCOPES", default="openid email profile")
# The claim listing the person's directory groups: their Django groups become those of its values that name a
# Django group (OIDC_CREATE_GROUPS: the others are created too). Empty: sign-in leaves groups and rights alone.
OIDC_GROUPS_CLAIM: str = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_CREATE_GROUPS: bool = env.bool("OIDC_CREATE_GROUPS", default=False)
# Directory groups whose members get the admin (is_staff) and every permission (is_superuser); empty: those rights
# are not set by sign-in.
OIDC_STAFF_GROUP: str = env.str("OIDC_STAFF_GROUP", default="")
# Directory groups whose members may sign in at all (comma-separated); empty: everyone the provider admits. A
# person in no Django group may use every model (access lists only narrow), so a company-wide provider wants it.
OIDC_ALLOWED_GROUPS: list[str] = env.list("OIDC_ALLOWED_GROUPS", default=[])
OIDC_SUPERUSER_GROUP: str = env.str("OIDC_SUPERUSER_GROUP", default="")
OIDC_RP_SIGN_ALGO: str = env.str("OIDC_SIGN_ALGO", default="RS256")
# The client authenticates at the token endpoint with HTTP Basic (client_secret_basic, the method every provider
# supports), proves the code is its own with PKCE, and waits at most OIDC_TIMEOUT seconds for the provider.
OIDC_TOKEN_USE_BASIC_AUTH = True
OIDC_USE_PKCE = True
OIDC_TIMEOUT: float = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_AUTHENTICATION_CALLBACK_URL = "sso-callback"
LOGIN_REDIRECT_URL_FAILURE = LOGIN_URL

# Invitations (routing.invitations): how long a set-your-password link stays valid (seconds), and where its email
# goes out from. EMAIL_URL (e.g. smtp+tls://user:password@smtp.example.com:587) turns the email on; without it
# the operator copies the link.
PASSWORD_RESET_TIMEOUT: int = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 24 * 3600)
# The URL itself is not kept as a setting (its password would be one no settings page masks): its parts become
# Django's EMAIL_* settings.
EMAIL_CONFIGURED: bool = bool(env.str("EMAIL_URL", default=""))
if EMAIL_CONFIGURED:
    globals().update(env.email_url("EMAIL_URL"))
EMAIL_TIMEOUT = 10  # seconds: a mail server that hangs must not hang the operator's page
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="llmproxy@localhost")

# Sign-in throttling (llmproxy_site.signin): failed attempts per username or client address, and the window.
SIGNIN_MAX_FAILURES: int = env.int("SIGNIN_MAX_FAILURES", default=5)
SIGNIN_LOCKOUT_SECONDS: int = env.int("SIGNIN_LOCKOUT_SECONDS", default=15 * 60)
# Django's cache holds only the sign-in counts: shared through Redis when there is one.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
# Lines carry the process id: the workers of `make run` (llmproxy_site.serve) share one terminal.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# Where `manage.py claude|codex|gemini` look for the CLIs besides PATH (an npm prefix); empty: .cache/clis.
CLI_PREFIX: str = env.str("CLI_PREFIX", default="")

# First start (`manage.py bootstrap`, run by `make run`).
ADMIN_USERNAME: str = env.str("ADMIN_USERNAME", default="admin")
ADMIN_PASSWORD: str = env.str("ADMIN_PASSWORD", default="")
# Quick start from the environment, on a database that has no upstream yet (claude-code-proxy's variables).
QUICKSTART: dict[str, str] = {
    name: env.str(name, default="")
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "OLLAMA_BASE_URL",
        "CHAT_BASE_URL",
        "CHAT_API_KEY",
        "PREFERRED_PROVIDER",
        "BIG_MODEL",
        "SMALL_MODEL",
    )
}

# The usage ledger's spool (usage.spool): finished exchanges on local disk until their rows are committed, so a
# crash or a database outage loses none. The directory (one subdirectory per database, then per process; empty:
# no spool, rows wait in memory only) and the most bytes of spooled rows one process keeps.
LEDGER_SPOOL_DIR: str = env.str("LEDGER_SPOOL_DIR", default=str(BASE_DIR / "var" / "spool"))
LEDGER_SPOOL_MAX_BYTES: int = env.int("LEDGER_SPOOL_MAX_BYTES", default=1024 * 1024 * 1024)

# OpenTelemetry traces (usage.tracing): one span per exchange, exported over OTLP/HTTP (protobuf) when an endpoint
# is set, with the standard OpenTelemetry variables: the collector's base URL (spans go to its /v1/traces) or the
# traces URL itself, headers for it ("name=value,name2=value2", e.g. an authorization header), the service name.
OTEL_EXPORTER_OTLP_ENDPOINT: str = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: str = env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
OTEL_EXPORTER_OTLP_HEADERS: str = env.str("OTEL_EXPORTER_OTLP_HEADERS", default="")
OTEL_SERVICE_NAME: str = env.str("OTEL_SERVICE_NAME", default="llmproxy")

# Alerts (routing.runtime.alerts): a budget reaching 80 % and 100 % of its period, an upstream target's circuit
# opening, its error rate over ALERT_ERROR_RATE among at least ALERT_ERROR_RATE_MIN_REQUESTS attempts in the last
# ALERT_ERROR_RATE_WINDOW seconds. Sent as JSON to each webhook URL (Slack-compatible: the payload has a "text")
# and by email to ALERT_EMAILS when EMAIL_URL is set (as for invitations); nothing is checked without either.
# An upstream's alert of one kind is sent again only ALERT_QUIET_SECONDS after the last. A delivery is tried up to
# ALERT_ATTEMPTS times, waiting ALERT_RETRY_SECONDS, then twice as long each time. Links in alerts start with
# ALERT_LINK_BASE_URL (the proxy's address as operators reach it).
ALERT_WEBHOOK_URLS: list[str] = env.list("ALERT_WEBHOOK_URLS", default=[])
ALERT_EMAILS: list[str] = env.list("ALERT_EMAILS", default=[])
ALERT_ERROR_RATE: float = env.float("ALERT_ERROR_RATE", default=0.25)
ALERT_ERROR_RATE_WINDOW: float = env.float("ALERT_ERROR_RATE_WINDOW", default=300.0)
ALERT_ERROR_RATE_MIN_REQUESTS: int = env.int("ALERT_ERROR_RATE_MIN_REQUESTS", default=10)
ALERT_QUIET_SECONDS: float = env.float("ALERT_QUIET_SECONDS", default=900.0)
ALERT_ATTEMPTS: int = env.int("ALERT_ATTEMPTS", default=5)
ALERT_RETRY_SECONDS: float = env.float("ALERT_RETRY_SECONDS", default=2.0)
ALERT_LINK_BASE_URL: str = env.str("ALERT_LINK_BASE_URL", default=f"http://{HOST}:{PORT}")
