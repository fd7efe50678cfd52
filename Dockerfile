# The proxy's image: the same multi-worker server as `make run` (llmproxy_site.serve: supervisord and WORKERS
# daphne processes on one socket), as a non-root user, SQLite under /data unless DATABASE_URL says otherwise.
# docs/deployment.md "Image". Build: docker build -t llmproxy .  (or podman/buildah)
#
# PYTHON_IMAGE: any Debian-based image with python3 (and its venv module) of the version requirements.txt is
# pinned for (3.11); the official python image by default.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the virtual environment, from requirements.txt only (a code change does not reinstall it) ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Every pinned requirement has a binary wheel for Linux x86-64 and arm64: nothing is compiled. A platform
# without them would need `apt-get install build-essential` here (this stage only; the final one has none).
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile -r /tmp/requirements.txt \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# --- final: the environment and the code, no compilers, no pip cache ---
FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home --shell /usr/sbin/nologin llmproxy \
    && mkdir -p /data \
    && chown llmproxy:llmproxy /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . /app
RUN /opt/venv/bin/python -m compileall -q /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8080 \
    WORKERS=2 \
    DATABASE_URL=sqlite:////data/db.sqlite3 \
    LEDGER_SPOOL_DIR=/data/spool
# SQLite database and ledger spool. With DATABASE_URL pointing at PostgreSQL only the spool is kept here.
VOLUME /data
USER llmproxy
EXPOSE 8080
# Liveness only (the process answers); readiness (/health/ready: database, configuration, draining) is for
# the load balancer. Python, as the image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8080'), timeout=4)"]
# The server drains on SIGTERM (DRAIN_DELAY_SECONDS, then SHUTDOWN_GRACE_SECONDS): give `docker stop` time,
# e.g. `docker stop -t 30` (Compose: stop_grace_period; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# `prepare` (migrate, admin account, configuration files) runs once before the servers: the Compose file's
# `prepare` service, the Kubernetes Job. A lone container on SQLite runs it first itself: see docs.
CMD ["python", "-m", "llmproxy_site.serve", "--run-dir", "/tmp/llmproxy"]
