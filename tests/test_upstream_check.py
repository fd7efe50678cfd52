"""Knowing an upstream works: the admin's Check and `manage.py checkupstreams` ask each upstream for its model list
(or one token) with its configured credential, and report reachability, latency, models and what is wrong, never
the credential. Against the fake upstreams, which answer the providers' model-list wire formats."""

from __future__ import annotations

import io
import re
import socket

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from routing.config.upstream_check import check_upstreams
from routing.models import ModelAlias, Upstream
from tests.fakes.openai_chat import OpenAIChatFake
from tests.fakes.providers import fake_upstream
from tests.fakes.server import FakeUpstream, Request, Response

RIGHT_KEY = "sk-right-key-0123456789abcdef"
WRONG_KEY = "sk-wrong-key-9876543210fedcba"


def stored(name: str, fmt: str, base_url: str, key: str | None = None, **fields) -> Upstream:
    upstream = Upstream(name=name, format=fmt, base_url=base_url, **fields)
    if key:
        upstream.set_api_key(key)
    upstream.save()
    return upstream


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fakes():
    with (
        fake_upstream("openai-chat", api_key=RIGHT_KEY) as chat,
        fake_upstream("anthropic", api_key=RIGHT_KEY) as claude,
        fake_upstream("gemini", api_key=RIGHT_KEY) as gemini,
    ):
        yield {"chat": chat, "anthropic": claude, "gemini": gemini}


@pytest.mark.django_db
def test_each_format_lists_its_models_with_the_stored_key(fakes):
    upstreams = [
        stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY),
        stored("claude", "anthropic", fakes["anthropic"].url, RIGHT_KEY),
        stored("gem", "gemini", fakes["gemini"].url, RIGHT_KEY),
    ]
    results = check_upstreams(upstreams)
    assert [(r.upstream, r.ok, r.reachable, r.status) for r in results] == [
        ("chat", True, True, 200),
        ("claude", True, True, 200),
        ("gem", True, True, 200),
    ]
    assert results[0].models == fakes["chat"].handler.models
    assert results[1].models == fakes["anthropic"].handler.models
    assert results[2].models == fakes["gemini"].handler.models  # without Gemini's "models/" prefix
    assert all(r.latency_ms is not None and r.latency_ms > 0 for r in results)
    # The Anthropic list was asked with the version header Anthropic requires, and with the key.
    request = fakes["anthropic"].requests[-1]
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert "anthropic-version" in request.headers


@pytest.mark.django_db
def test_the_check_sends_the_headers_real_traffic_sends(fakes):
    # The version the upstream's flag names (as the data plane announces it), its extra headers, and the key.
    stored(
        "claude",
        "anthropic",
        fakes["anthropic"].url,
        RIGHT_KEY,
        translation_flags={"anthropic_version": "2026-10-21"},
        headers={"x-team": "lab"},
    )
    [result] = check_upstreams(list(Upstream.objects.filter(name="claude")))
    assert result.ok, result.problems
    sent = fakes["anthropic"].requests[-1].headers
    assert (sent["anthropic-version"], sent["x-team"], sent["x-api-key"]) == ("2026-10-21", "lab", RIGHT_KEY)


@pytest.mark.django_db
def test_a_missing_variable_a_rejected_key_and_an_unreachable_host_are_each_reported(fakes, monkeypatch):
    monkeypatch.delenv("CHECK_TEST_API_KEY", raising=False)
    results = check_upstreams(
        [
            stored("no-env", "openai-chat", fakes["chat"].url + "/v1", api_key_env="CHECK_TEST_API_KEY"),
            stored("wrong", "anthropic", fakes["anthropic"].url, WRONG_KEY),
            stored("wrong-gem", "gemini", fakes["gemini"].url, WRONG_KEY),
            stored("down", "openai-chat", f"http://127.0.0.1:{closed_port()}/v1", RIGHT_KEY),
        ]
    )
    by_name = {r.upstream: r for r in results}
    assert not any(r.ok for r in results)
    assert by_name["no-env"].reachable
    assert any("CHECK_TEST_API_KEY" in p and "not set" in p for p in by_name["no-env"].problems)
    assert by_name["wrong"].status == 401
    assert any("rejected the key" in p for p in by_name["wrong"].problems)
    assert any("rejected the key" in p for p in by_name["wrong-gem"].problems)  # Gemini: 400 API_KEY_INVALID
    assert not by_name["down"].reachable and by_name["down"].latency_ms is None
    assert any("unreachable" in p for p in by_name["down"].problems)
    for result in results:
        assert WRONG_KEY not in repr(result) and RIGHT_KEY not in repr(result)


class NoModelListFake(OpenAIChatFake):
    """A Chat Completions server without `GET /v1/models`, as some local servers are."""

    def __call__(self, request: Request) -> Response:
        if request.method == "GET":
            return self.fail(404, f"Invalid URL ({request.method} {request.path})")
        return super().__call__(request)


@pytest.mark.django_db
def test_an_upstream_without_a_model_list_is_checked_with_one_token():
    with FakeUpstream(NoModelListFake(api_key=RIGHT_KEY)) as fake:
        upstream = stored("local", "openai-chat", fake.url + "/v1", RIGHT_KEY)
        [no_model] = check_upstreams([upstream])
        assert not no_model.ok and "none of its aliases names an upstream model" in no_model.problems[0]

        ModelAlias.objects.create(name="coder", upstream=upstream, upstream_model="qwen3-coder")
        [result] = check_upstreams([upstream])
        assert (result.ok, result.status, result.method) == (True, 200, "one-token request to qwen3-coder")
        request = fake.requests[-1]
        assert (request.method, request.path, request.json["max_tokens"]) == ("POST", "/v1/chat/completions", 1)


@pytest.mark.django_db
def test_a_deployment_url_has_no_list_and_is_checked_with_one_token(fakes):
    chat = fakes["chat"]
    upstream = stored(
        "azure", "openai-chat", chat.url + "/openai/deployments/{model}", RIGHT_KEY, auth_header="api-key"
    )
    ModelAlias.objects.create(name="az", upstream=upstream, upstream_model="gpt-4.1")
    [result] = check_upstreams([upstream])
    assert result.method == "one-token request to gpt-4.1"
    assert chat.requests[-1].path == "/openai/deployments/gpt-4.1/chat/completions"
    assert result.reachable and result.status == 404  # the fake is no Azure: reachable, and its error is shown
    assert any("answered an error (HTTP 404)" in p for p in result.problems)


def run_command(*args: str) -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("checkupstreams", *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


@pytest.mark.django_db
def test_the_command_exits_non_zero_when_one_fails_and_never_prints_a_key(fakes):
    stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY)
    output, error = run_command()
    assert error is None
    assert output.startswith("OK   chat: ") and "gpt-5" in output

    stored("wrong", "anthropic", fakes["anthropic"].url, WRONG_KEY)
    output, error = run_command()
    assert error is not None and error.returncode == 1
    assert "FAIL wrong" in output and "rejected the key" in output
    assert WRONG_KEY not in output and RIGHT_KEY not in output and WRONG_KEY not in str(error)

    output, error = run_command("chat", "--json")
    assert error is None and '"ok": true' in output
    _, error = run_command("nonesuch")
    assert error is not None and "no upstream named nonesuch" in str(error)


@pytest.fixture
def operator(db) -> Client:
    user = User.objects.create_superuser("operator", password="unused")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_check_shows_results_and_makes_aliases_of_chosen_models(fakes, operator):
    good = stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY)
    bad = stored("wrong", "gemini", fakes["gemini"].url, WRONG_KEY)
    ModelAlias.objects.create(name="gpt-5", upstream=good, upstream_model="gpt-5")

    action = {"action": "check_selected", "_selected_action": [good.pk, bad.pk]}
    response = operator.post("/admin/routing/upstream/", action, follow=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert "chat: OK" in html and "wrong: FAILED" in html
    assert " ms</td>" in html
    assert "rejected the key" in html
    assert "gpt-4.1" in html and "(alias exists)" in html
    assert RIGHT_KEY not in html and WRONG_KEY not in html
    assert good.api_key_encrypted not in html

    response = operator.post(
        "/admin/routing/upstream/check/", {"model": [f"{good.pk}:gpt-4.1", f"{good.pk}:gpt-5-mini", f"{good.pk}:gpt-5"]}
    )
    assert response.status_code == 302
    created = ModelAlias.objects.get(name="gpt-4.1")
    assert (created.upstream, created.upstream_model) == (good, "gpt-4.1")
    assert ModelAlias.objects.filter(name="gpt-5-mini").exists()
    assert ModelAlias.objects.filter(name="gpt-5").count() == 1


def test_staff_without_the_change_permission_cannot_make_the_check_send_a_key(fakes, db):
    user = User.objects.create_user("viewer", password="unused", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_upstream"))
    client = Client()
    client.force_login(user)
    upstream = stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY)
    assert client.get(f"/admin/routing/upstream/check/?ids={upstream.pk}").status_code == 403
    assert fakes["chat"].requests == []


@pytest.mark.django_db
def test_long_model_lists_are_read_page_by_page():
    claude_models = [f"claude-fake-{i:04}" for i in range(1500)]
    gemini_models = [f"gemini-fake-{i:04}" for i in range(2500)]
    with (
        fake_upstream("anthropic", api_key=RIGHT_KEY, models=claude_models) as claude,
        fake_upstream("gemini", api_key=RIGHT_KEY, models=gemini_models) as gemini,
    ):
        results = check_upstreams(
            [stored("claude", "anthropic", claude.url, RIGHT_KEY), stored("gem", "gemini", gemini.url, RIGHT_KEY)]
        )
        assert results[0].models == claude_models
        assert results[1].models == gemini_models
        assert [r.query.get("after_id") for r in claude.requests] == [None, "claude-fake-0999"]
        assert len(gemini.requests) == 3


def test_the_fakes_model_list_pages_read_as_the_official_sdks_read_them():
    import anthropic
    from google import genai
    from google.genai import types as genai_types

    names = [f"fake-{i}" for i in range(5)]
    with fake_upstream("anthropic", models=names) as claude, fake_upstream("gemini", models=names) as gemini:
        client = anthropic.Anthropic(api_key="k", base_url=claude.url, max_retries=0)
        assert [m.id for m in client.models.list(limit=2)] == names  # the SDK follows has_more / after_id
        assert len(claude.requests) == 3
        options = genai_types.HttpOptions(base_url=gemini.url)
        google = genai.Client(api_key="k", http_options=options)  # kept: a collected client closes its connection
        pager = google.models.list(config={"page_size": 2})
        assert [m.name for m in pager] == [f"models/{n}" for n in names]  # and nextPageToken / pageToken
        assert len(gemini.requests) == 3


@pytest.mark.django_db
def test_an_unreachable_egress_proxy_is_named_and_tls_off_is_noted(fakes):
    upstream = stored("lab", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY, verify_tls=False)
    upstream.proxy_url = f"http://127.0.0.1:{closed_port()}"
    upstream.save()
    [result] = check_upstreams([upstream])
    assert not result.reachable
    assert any("egress proxy" in p for p in result.problems)
    assert result.notes == ["TLS certificate verification is off"]
    output, _ = run_command("lab")
    assert "note: TLS certificate verification is off" in output


def test_the_upstream_form_has_test_connection_and_fetch_models(fakes, operator):
    good = stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY)
    form = operator.get(f"/admin/routing/upstream/{good.pk}/change/").content.decode()
    test_link = re.search(r'<a class="upstream-test-connection" href="([^"]+)">Test connection</a>', form)
    fetch_link = re.search(r'<a class="upstream-fetch-models" href="([^"]+)">Fetch models</a>', form)
    assert test_link and fetch_link, "the form has no Test connection / Fetch models"
    assert RIGHT_KEY not in form and good.api_key_encrypted not in form

    tested = operator.get(test_link.group(1).replace("&amp;", "&")).content.decode()
    assert "chat: OK" in tested and " ms</td>" in tested
    assert f"{len(fakes['chat'].handler.models)} offered" in tested
    assert 'name="model"' not in tested  # the connection only: no list to tick
    assert RIGHT_KEY not in tested and good.api_key_encrypted not in tested

    fetched = operator.get(fetch_link.group(1)).content.decode()
    assert f'value="{good.pk}:gpt-4.1"' in fetched
    assert "Create aliases for the ticked models" in fetched
    assert RIGHT_KEY not in fetched and good.api_key_encrypted not in fetched
    assert fakes["chat"].requests, "the check did not call the upstream"


@pytest.mark.django_db
def test_a_key_pool_with_every_variable_set_is_not_reported_missing(fakes, monkeypatch):
    monkeypatch.setenv("CHECK_POOL_A_KEY", RIGHT_KEY)
    monkeypatch.setenv("CHECK_POOL_B_KEY", RIGHT_KEY)
    pool = stored("pool", "openai-chat", fakes["chat"].url + "/v1", api_key_env="CHECK_POOL_A_KEY,CHECK_POOL_B_KEY")
    (result,) = check_upstreams([pool])
    assert result.ok, result.problems
    monkeypatch.delenv("CHECK_POOL_B_KEY")
    (result,) = check_upstreams([pool])
    assert any("CHECK_POOL_B_KEY" in p and "not set" in p for p in result.problems)
    assert not any("CHECK_POOL_A_KEY" in p for p in result.problems)


def test_staff_who_may_only_view_get_no_check_buttons(fakes, db):
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("viewer", password="unused", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_upstream"))
    client = Client()
    client.force_login(user)
    upstream = stored("chat", "openai-chat", fakes["chat"].url + "/v1", RIGHT_KEY)
    form = client.get(f"/admin/routing/upstream/{upstream.pk}/change/").content.decode()
    assert "Test connection" not in form and "Fetch models" not in form
