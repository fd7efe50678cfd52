# Two commands matter: `make run` serves the proxy, `make test` runs the test suite.
# Both work on a fresh machine: they create .venv and install what they need first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8080
export HOST PORT

.PHONY: run test test-sqlite test-postgres lint typecheck bench clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# The browser tests drive Debian's chromium (a browser download is impossible offline); install it once.
BROWSER := /usr/bin/chromium
$(BROWSER):
	@echo "Installing Debian's chromium for the browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium

# Secrets generated once per checkout and kept out of git; settings read them from .env.
.env:
	$(PYTHON) -c "import secrets, base64; print('SECRET_KEY=' + secrets.token_urlsafe(50)); print('ENCRYPTION_KEYS=' + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())" > $@
	@echo "Wrote generated SECRET_KEY and ENCRYPTION_KEYS to .env (keep it: stored provider keys need it)."

run: $(VENV)/.installed .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	@echo "Admin at http://$(HOST):$(PORT)/admin/"
	@# WORKERS processes (default: one per core) of the server with the request limits (llmproxy_site/server.py),
	@# sharing one socket under supervisord (llmproxy_site/serve.py, docs/deployment.md "Workers").
	$(PY) -m llmproxy_site.serve --host $(HOST) --port $(PORT)

# The whole suite on SQLite, then again on PostgreSQL when DATABASE_URL points at one.
test: $(VENV)/.installed-dev $(BROWSER)
	$(MAKE) --no-print-directory test-sqlite
	@case "$$DATABASE_URL" in postgres*) $(MAKE) --no-print-directory test-postgres;; *) echo "DATABASE_URL is not PostgreSQL: PostgreSQL run skipped";; esac

test-sqlite: $(VENV)/.installed-dev
	env -u DATABASE_URL $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy .

bench: $(VENV)/.installed-dev
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache test_db.sqlite3*
