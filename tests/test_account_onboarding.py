"""/me/ gets a teammate going alone: ready-to-paste set-up for each client with this proxy's URL and their key,
the models their access lists allow, their budgets (what is left) and rate limits, and their recent failures."""

from __future__ import annotations

import html
import re
import tomllib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from routing.launchers import claude_launch, codex_config, gemini_connection
from routing.models import GroupPolicy, KeyPolicy, ModelAlias, ProxyKey, Upstream, UserPolicy
from tests.conftest import add_route
from tests.test_account import entry, logged_in
from usage.models import Outcome
from usage.rollups import apply_rollups

ME = "/me/"


def snippet(text: str, slug: str) -> str:
    match = re.search(rf'<pre id="{slug}-text"[^>]*>(.*?)</pre>', text, re.S)
    assert match, slug
    return html.unescape(match.group(1))


def section(text: str, name: str) -> str:
    match = re.search(rf'<section class="card" id="{name}">(.*?)</section>', text, re.S)
    assert match, name
    return match.group(1)


def listed_models(text: str) -> list[list[str]]:
    """The alias names of each model list on the page, in order."""
    blocks = re.findall(r'<div class="model-list">(.*?)</div>', section(text, "models"), re.S)
    return [
        [
            html.unescape(n)
            for ul in re.findall(r'<ul class="models aliases">(.*?)</ul>', block, re.S)
            for n in re.findall(r"<code[^>]*>([^<]+)</code>", ul)
        ]
        for block in blocks
    ]


@pytest.fixture(autouse=True)
def _host(settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "llm.example.com"]


def test_a_new_keys_setup_carries_the_key_and_this_proxys_url(alice):
    add_route("anthropic", "anthropic", "https://api.anthropic.com", alias="claude-sonnet-4-5")
    client = logged_in(alice, HTTP_HOST="llm.example.com")
    client.post("/me/keys/", {"label": "laptop"})
    text = client.get(ME).content.decode()
    plaintext = re.search(r'id="new-key-plaintext" type="text" readonly value="([^"]+)"', text).group(1)  # type: ignore[union-attr]
    url = "http://llm.example.com"

    claude = snippet(text, "setup-claude")
    for name, value in claude_launch(url, plaintext).set_env.items():
        assert f"export {name}={value}" in claude
    assert f"export ANTHROPIC_BASE_URL={url}\n" in claude
    assert claude.endswith("\nclaude")

    config = tomllib.loads(snippet(text, "setup-codex-config"))
    assert config == tomllib.loads(codex_config(url, model="claude-sonnet-4-5"))
    assert config["model_providers"]["proxy"]["base_url"] == f"{url}/v1"
    assert f"export LLMPROXY_KEY={plaintext}\ncodex" in snippet(text, "setup-codex")

    gemini = snippet(text, "setup-gemini")
    for name, value in gemini_connection(url, plaintext).items():
        assert f"export {name}={value}" in gemini
    assert '"selectedType": "gemini-api-key"' in snippet(text, "setup-gemini-settings")

    openai = snippet(text, "setup-openai")
    assert f'OpenAI(base_url="{url}/v1", api_key="{plaintext}")' in openai
    assert 'model="claude-sonnet-4-5"' in openai  # an alias they may use
    assert f'Anthropic(base_url="{url}", api_key="{plaintext}")' in snippet(text, "setup-anthropic")
    genai = snippet(text, "setup-genai")
    assert f'genai.Client(api_key="{plaintext}", http_options=types.HttpOptions(base_url="{url}"))' in genai
    boto3 = snippet(text, "setup-boto3")
    assert f'os.environ["AWS_BEARER_TOKEN_BEDROCK"] = "{plaintext}"' in boto3
    assert f'endpoint_url="{url}"' in boto3
    assert "only over HTTPS" in text  # this proxy was reached over plain http

    # Later renders never carry the key: the snippets read it from $LLMPROXY_KEY.
    again = client.get(ME).content.decode()
    assert plaintext not in again
    assert 'export ANTHROPIC_API_KEY="$LLMPROXY_KEY"' in snippet(again, "setup-claude")
    assert 'export GEMINI_API_KEY="$LLMPROXY_KEY"' in snippet(again, "setup-gemini")
    assert 'api_key=os.environ["LLMPROXY_KEY"]' in snippet(again, "setup-openai")
    assert snippet(again, "setup-openai").startswith("import os\n")


@pytest.mark.parametrize("trusted", [True, False])
def test_the_url_is_the_one_the_browser_used_behind_a_trusted_proxy(alice, settings, trusted):
    if trusted:
        settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = logged_in(alice, HTTP_HOST="llm.example.com", HTTP_X_FORWARDED_PROTO="https")
    text = client.get(ME).content.decode()
    scheme = "https" if trusted else "http"
    assert f"export ANTHROPIC_BASE_URL={scheme}://llm.example.com\n" in snippet(text, "setup-claude")
    assert f'endpoint_url="{scheme}://llm.example.com"' in snippet(text, "setup-boto3")
    assert ("only over HTTPS" in text) is not trusted


@pytest.fixture
def catalogue(transactional_db):
    """Aliases: two exact, one pattern, one disabled, one on a disabled upstream; one upstream open to direct
    names."""
    anthropic = add_route("anthropic", "anthropic", "https://api.anthropic.com", alias="claude-sonnet-4-5")
    ModelAlias.objects.create(name="claude-*haiku*", upstream=anthropic)
    ModelAlias.objects.create(name="gpt-5", upstream=anthropic, enabled=False)
    add_route("openai", "openai-chat", "https://api.openai.com/v1", alias="gpt-4.1", allow_direct_models=False)
    add_route("old", "openai-chat", "https://old.example.com/v1", alias="retired", enabled=False)
    Upstream.objects.filter(name="anthropic").update(allow_direct_models=True)


def test_without_access_lists_every_alias_is_listed_and_patterns_as_patterns(alice, catalogue):
    text = logged_in(alice).get(ME).content.decode()
    assert listed_models(text) == [["claude-sonnet-4-5", "claude-*haiku*", "gpt-4.1"]]
    models = section(text, "models")
    assert '<code class="pattern" title="Any model name matching this pattern">claude-*haiku*</code>' in models
    assert "retired" not in models and "gpt-5" not in models
    assert "<code>anthropic/*</code>" in models  # direct names of the one upstream that allows them
    assert "openai/*" not in models


def test_the_models_are_what_the_user_group_and_key_lists_allow(alice, catalogue):
    team = Group.objects.create(name="research")
    alice.groups.add(team)
    GroupPolicy.objects.create(group=team, allowed_models=["claude-*", "gpt-4.1"])
    UserPolicy.objects.create(user=alice, allowed_models=["claude-sonnet-4-5", "claude-3-5-haiku", "gpt-4.1"])
    narrow, _ = ProxyKey.issue(alice, label="ci")
    KeyPolicy.objects.create(key=narrow, allowed_models=["gpt-4.1"])
    closed, _ = ProxyKey.issue(alice, label="closed")
    KeyPolicy.objects.create(key=closed, allowed_models=["o3"])
    ProxyKey.issue(alice, label="laptop")

    text = logged_in(alice).get(ME).content.decode()
    # The pattern alias is not open whole: the names of the lists it serves are.
    # Newest key first, as in the key list.
    assert listed_models(text) == [["claude-sonnet-4-5", "claude-3-5-haiku", "gpt-4.1"], [], ["gpt-4.1"]]
    models = section(text, "models")
    assert "Your other keys" in models and "Key &#x27;ci&#x27;" in models
    assert "user &#x27;alice&#x27;, group &#x27;research&#x27;" in models
    assert "No alias is open to you" in models  # the key 'closed'
    assert "anthropic/*" not in models  # no list allows the direct names

    # A group list that allows the pattern whole shows it as the pattern.
    UserPolicy.objects.filter(user=alice).update(allowed_models=[])
    text = logged_in(alice).get(ME).content.decode()
    assert listed_models(text)[0] == ["claude-sonnet-4-5", "claude-*haiku*", "gpt-4.1"]
    assert "<code>anthropic/*</code>" not in section(text, "models")


def test_budgets_show_what_is_spent_and_left_and_limits_as_configured(alice, catalogue):
    team = Group.objects.create(name="research")
    alice.groups.add(team)
    teammate = User.objects.create_user("carol")
    teammate.groups.add(team)
    GroupPolicy.objects.create(group=team, budget_usd=Decimal("2500"), budget_period="month")
    UserPolicy.objects.create(
        user=alice, budget_usd=Decimal("1200"), budget_period="month", requests_per_minute=1500, tokens_per_minute=None
    )
    key, _ = ProxyKey.issue(alice, label="laptop")
    KeyPolicy.objects.create(key=key, budget_usd=Decimal("10"), budget_period="day", concurrent_streams=3)
    rows = [
        entry(alice, 0, key=key, cost_usd=Decimal("4.25")),
        entry(alice, 0, cost_usd=Decimal("1000.50")),
        entry(teammate, 0, cost_usd=Decimal("300")),
    ]
    apply_rollups(rows)

    text = logged_in(alice).get(ME).content.decode()
    budgets = {
        html.unescape(re.sub(r"<[^>]+>", "", cells[0])).strip(): [re.sub(r"<[^>]+>", "", c).strip() for c in cells]
        for cells in (
            re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r'<tr class="budget">(.*?)</tr>', text, re.S)
        )
    }
    assert budgets["user 'alice'"][1:5] == ["this month", "$1,200.00", "$1,004.75", "$195.25"]
    assert budgets["group 'research'"][1:5] == ["this month", "$2,500.00", "$1,304.75", "$1,195.25"]
    assert budgets["key 'laptop'"][1:5] == ["today", "$10.00", "$4.25", "$5.75"]
    limits = section(text, "limits")
    assert re.search(r"user &#x27;alice&#x27;</td>\s*<td class=\"num\">1,500</td>", limits)
    assert "unlimited" in limits
    assert re.search(r"key &#x27;laptop&#x27;</td>(\s*<td[^>]*>.*?</td>){2}\s*<td class=\"num\">3</td>", limits, re.S)


def test_no_budget_or_limit(alice, catalogue):
    text = logged_in(alice).get(ME).content.decode()
    assert "No budget applies to you." in text
    assert "No rate limit applies to you." in text
    assert "No failed requests in the last 30 days." in text


def test_recent_failures_are_the_users_own_newest_ten_with_reasons(alice, catalogue):
    bob = User.objects.create_user("bob")
    key, _ = ProxyKey.issue(alice, label="laptop")
    entry(alice, 0.5, outcome=Outcome.OK)
    for n in range(12):
        entry(
            alice,
            1 + n / 100,
            key=key,
            requested_model=f"model-{n}",
            outcome=Outcome.CLIENT_ERROR,
            status=403,
            error_type="permission_error",
            error_message=f"The model list of key 'laptop' does not allow model-{n}",
        )
    entry(alice, 0.1, requested_model="slow", outcome=Outcome.TIMEOUT, status=504, error_message="")
    entry(bob, 0, outcome=Outcome.UPSTREAM_ERROR, status=502, error_message="bob's failure")
    entry(alice, 40, outcome=Outcome.UPSTREAM_ERROR, status=502, error_message="too old")

    text = section(logged_in(alice).get(ME).content.decode(), "failures")
    rows = re.findall(r'<tr class="failure">(.*?)</tr>', text, re.S)
    assert len(rows) == 10
    assert "slow" in rows[0] and "504" in rows[0] and "Timeout" in rows[0]  # no message: the outcome
    assert "model-0" in rows[1] and "403" in rows[1]
    assert "permission_error" in rows[1]
    assert "does not allow model-0" in html.unescape(rows[1])
    assert f"{key.prefix}…" in rows[1]
    assert "model-8" in rows[9] and "model-9" not in text
    assert "bob&#x27;s failure" not in text and "too old" not in text


def test_numbers_have_thousands_separators(alice, catalogue):
    for _ in range(2):
        entry(alice, 0, input_tokens=1_234_567, output_tokens=2_000)
    text = logged_in(alice).get(ME).content.decode()
    assert "2,469,134" in text
    assert "4,000" in text


def test_an_expired_or_revoked_key_has_no_model_list_of_its_own(alice, catalogue):
    old, _ = ProxyKey.issue(alice, label="old", expires_at=timezone.now() - timedelta(days=1))
    KeyPolicy.objects.create(key=old, allowed_models=["gpt-4.1"])
    text = logged_in(alice).get(ME).content.decode()
    assert len(listed_models(text)) == 1


def test_the_page_needs_no_key(alice, catalogue):
    response = Client().get(ME)
    assert response.status_code == 302


@pytest.mark.parametrize("key", [None, "sk-llmp-abc\"'$x"])
def test_every_snippet_is_valid_in_its_language(key):
    import json
    import shlex

    from routing.client_setup import client_snippets

    for s in client_snippets("https://llm.example.com/", key, "m"):
        if s.language == "python":
            compile(s.text, s.slug, "exec")
        elif s.language == "json":
            json.loads(s.text)
        elif s.language == "toml":
            tomllib.loads(s.text)
        else:
            for line in s.text.splitlines():
                shlex.split(line, comments=True)
                if key and line.startswith("export ") and "KEY" in line.split("=")[0]:
                    assert shlex.split(line)[1].endswith("=" + key)


def test_the_set_up_is_open_for_a_new_key_and_folded_once_they_have_keys(alice):
    client = logged_in(alice)
    assert "<details open>" in section(client.get(ME).content.decode(), "setup")  # no key yet
    client.post("/me/keys/", {"label": "laptop"})
    assert "<details open>" in section(client.get(ME).content.decode(), "setup")  # the new key's set-up
    folded = section(client.get(ME).content.decode(), "setup")
    assert "<details>" in folded and "export ANTHROPIC_BASE_URL=" in folded
