"""The upstream list and form tell an operator whether an upstream can work: whether its credential can be read
(a variable missing, a stored secret set — never the value), when it last worked and last failed (from the
ledger), and a warning when an upstream is saved naming a variable the proxy does not have."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from routing.models import Upstream
from usage.models import LedgerEntry, Outcome

STORED_SECRET = "sk-stored-secret-0123456789"
LIST = "/admin/routing/upstream/"


@pytest.fixture
def operator(db) -> Client:
    user = User.objects.create_superuser("operator", password="unused")
    client = Client()
    client.force_login(user)
    return client


def upstream(name: str, **fields) -> Upstream:
    row = Upstream(name=name, format=fields.pop("format", "openai-chat"), base_url="http://127.0.0.1:9/v1", **fields)
    row.save()
    return row


def exchange(upstream_name: str, minutes_ago: int, outcome: str = Outcome.OK, **fields) -> LedgerEntry:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    defaults = {
        "started_at": started,
        "finished_at": started + timedelta(seconds=1),
        "dialect": "openai-chat",
        "endpoint": "/v1/chat/completions",
        "requested_model": "gpt-5",
        "upstream": upstream_name,
        "upstream_model": "gpt-5",
        "outcome": outcome,
        "status": 200,
        "duration_ms": 1000,
    }
    return LedgerEntry.objects.create(**{**defaults, **fields})


def row_of(html: str, name: str) -> str:
    """The changelist row of one upstream (its cells up to the next row)."""
    match = re.search(rf"<tr>(?:(?!</tr>).)*?>{re.escape(name)}</a>.*?</tr>", html, re.S)
    assert match, f"no row for {name}"
    return match.group(0)


def test_the_list_names_a_missing_variable_and_a_set_one(operator, monkeypatch):
    monkeypatch.setenv("STATUS_SET_API_KEY", "sk-value-in-env-0123")
    monkeypatch.delenv("STATUS_GONE_API_KEY", raising=False)
    upstream("pool", api_key_env="STATUS_SET_API_KEY,STATUS_GONE_API_KEY")
    upstream("fine", api_key_env="STATUS_SET_API_KEY")
    stored = Upstream(name="stored", format="anthropic", base_url="http://127.0.0.1:9")
    stored.set_api_key(STORED_SECRET)
    stored.save()
    upstream("local")

    html = operator.get(LIST).content.decode()
    pool = row_of(html, "pool")
    assert "$STATUS_SET_API_KEY set" in pool and "$STATUS_GONE_API_KEY NOT SET" in pool
    assert "credential-missing" in pool
    fine = row_of(html, "fine")
    assert "$STATUS_SET_API_KEY set" in fine and "credential-missing" not in fine
    assert "stored key set" in row_of(html, "stored")
    assert "none" in row_of(html, "local")
    assert STORED_SECRET not in html and "sk-value-in-env-0123" not in html
    assert stored.api_key_encrypted not in html


def test_cloud_credentials_are_checked_too(operator, monkeypatch):
    monkeypatch.delenv("STATUS_SA_JSON", raising=False)
    monkeypatch.setenv("STATUS_AWS_ID", "AKIAEXAMPLE")
    monkeypatch.delenv("STATUS_AWS_SECRET", raising=False)
    Upstream.objects.create(
        name="vertex", format="vertex", project="p", location="us-east5", credentials_env="STATUS_SA_JSON"
    )
    Upstream.objects.create(
        name="bedrock",
        format="bedrock",
        location="us-east-1",
        aws_access_key_id_env="STATUS_AWS_ID",
        aws_secret_access_key_env="STATUS_AWS_SECRET",
    )
    html = operator.get(LIST).content.decode()
    assert "$STATUS_SA_JSON NOT SET" in row_of(html, "vertex")
    bedrock = row_of(html, "bedrock")
    assert "$STATUS_AWS_ID set" in bedrock and "$STATUS_AWS_SECRET NOT SET" in bedrock


def test_the_list_shows_the_last_success_and_the_last_error_from_the_ledger(operator):
    upstream("busy")
    upstream("quiet")
    exchange("busy", 90)
    ok = exchange("busy", 30)
    exchange("busy", 60, Outcome.UPSTREAM_ERROR, status=502, error_message="Upstream busy is unreachable: old")
    failed = exchange("busy", 10, Outcome.UPSTREAM_ERROR, status=401, error_message="Upstream busy: invalid api key")
    exchange("busy", 5, Outcome.CLIENT_ERROR, status=400, error_message="the client's own mistake")

    html = operator.get(LIST).content.decode()
    busy = row_of(html, "busy")
    assert ok.started_at.strftime("%Y-%m-%d %H:%M UTC") in busy
    assert failed.started_at.strftime("%Y-%m-%d %H:%M UTC") in busy
    assert "HTTP 401: Upstream busy: invalid api key" in busy
    assert "unreachable: old" not in busy and "own mistake" not in busy
    assert "none in 30 days" not in busy
    assert "none in 30 days" in row_of(html, "quiet")


def test_the_list_reads_the_ledger_in_a_fixed_number_of_queries(operator):
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert operator.get(LIST).status_code == 200
        return len(captured.captured_queries)

    upstream("first")
    exchange("first", 3, Outcome.UPSTREAM_ERROR, status=500, error_message="boom")
    before = count()
    for n in range(8):
        upstream(f"more{n}")
        exchange(f"more{n}", 2)
        exchange(f"more{n}", 1, Outcome.TIMEOUT, status=504, error_message="slow")
    assert count() == before


def test_the_change_form_shows_the_status(operator, monkeypatch):
    monkeypatch.delenv("STATUS_GONE_API_KEY", raising=False)
    row = upstream("gone", api_key_env="STATUS_GONE_API_KEY")
    exchange("gone", 4, Outcome.UPSTREAM_ERROR, status=401, error_message="Upstream gone: no key")
    html = operator.get(f"{LIST}{row.pk}/change/").content.decode()
    assert "$STATUS_GONE_API_KEY NOT SET" in html
    assert "HTTP 401: Upstream gone: no key" in html
    assert "none in 30 days" in html  # no success


FORM = {
    "name": "envless",
    "format": "openai-chat",
    "base_url": "http://127.0.0.1:9/v1",
    "enabled": "on",
    "api_key_env": "STATUS_GONE_API_KEY",
    "api_key": "",
    "auth_header": "auto",
    "headers": "{}",
    "query_params": "{}",
    "timeout": "600",
    "connect_timeout": "10",
    "allow_direct_models": "on",
    "verify_tls": "on",
    "aliases-TOTAL_FORMS": "0",
    "aliases-INITIAL_FORMS": "0",
    "aliases-MIN_NUM_FORMS": "0",
    "aliases-MAX_NUM_FORMS": "1000",
}


def test_saving_an_upstream_whose_variable_is_missing_warns(operator, monkeypatch):
    monkeypatch.delenv("STATUS_GONE_API_KEY", raising=False)
    response = operator.post(f"{LIST}add/", FORM, follow=True)
    assert response.status_code == 200
    warnings = [str(m) for m in response.context["messages"] if m.level_tag == "warning"]
    assert any("STATUS_GONE_API_KEY is not set" in text for text in warnings), warnings

    monkeypatch.setenv("STATUS_GONE_API_KEY", "sk-now-it-is-there")
    row = Upstream.objects.get(name="envless")
    response = operator.post(f"{LIST}{row.pk}/change/", FORM, follow=True)
    assert not [m for m in response.context["messages"] if m.level_tag == "warning"]


def test_a_bedrock_upstreams_key_variables_are_on_its_form(operator):
    row = Upstream.objects.create(
        name="bedrock", format="bedrock", location="us-east-1", aws_access_key_id_env="STATUS_AWS_ID"
    )
    html = operator.get(f"{LIST}{row.pk}/change/").content.decode()
    for field in ("aws_access_key_id_env", "aws_secret_access_key_env", "aws_session_token_env"):
        assert f'name="{field}"' in html
