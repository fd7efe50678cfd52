"""Groups, users, keys' model access, budgets and rate limits as a file: importconfig (idempotent), exportconfig
(round trip, never a secret), and `importconfig --check` errors that name the line."""

from __future__ import annotations

import io
import textwrap
from decimal import Decimal

import httpx
import pytest
import yaml
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import CommandError

from routing.models import GroupPolicy, KeyPolicy, ProxyKey, UserPolicy
from tests.conftest import add_route

CONFIG = textwrap.dedent(
    """\
    groups:
      - name: research
        models: [fast, "claude-*"]
        budget: {usd: 50, period: month}
      - name: interns
        budget: {usd: 5.5, period: day}
      - name: everyone
    users:
      - username: alice
        groups: [research, everyone]
        budget: {usd: 20, period: week}
        limits: {requests_per_minute: 60, concurrent_streams: 4}
        keys:
          - label: laptop
            models: [fast]
            limits: {tokens_per_minute: 200000}
          - label: ci
            budget: {usd: 1, period: none}
      - username: bob
        active: false
        groups: [interns]
    """
)


def run(*args: str, stdin: str | None = None) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def import_text(tmp_path, text: str, *options: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return run("importconfig", *options, str(path))


@pytest.fixture
def keys(transactional_db) -> dict[str, str]:
    alice = User.objects.create_user("alice")
    return {label: ProxyKey.issue(alice, label=label)[1] for label in ("laptop", "ci")}


def test_import_creates_groups_users_and_policies_and_is_idempotent(tmp_path, keys):
    first = import_text(tmp_path, CONFIG)
    assert "created group research" in first
    assert "created user bob" in first
    assert "updated key alice/laptop" in first
    assert "4 created, 3 updated, 0 unchanged" in first  # 3 groups, bob; alice and her two keys' policies
    assert "0 created, 0 updated, 7 unchanged" in import_text(tmp_path, CONFIG)

    research = GroupPolicy.objects.get(group__name="research")
    assert (research.allowed_models, research.budget_usd, research.budget_period) == (
        ["fast", "claude-*"],
        Decimal(50),
        "month",
    )
    assert GroupPolicy.objects.get(group__name="interns").budget_usd == Decimal("5.50")
    assert not GroupPolicy.objects.filter(group__name="everyone").exists()  # nothing restricts: no row
    alice = User.objects.get(username="alice")
    assert sorted(alice.groups.values_list("name", flat=True)) == ["everyone", "research"]
    policy = UserPolicy.objects.get(user=alice)
    assert (policy.budget_usd, policy.budget_period, policy.requests_per_minute, policy.concurrent_streams) == (
        Decimal(20),
        "week",
        60,
        4,
    )
    assert policy.tokens_per_minute is None
    laptop = KeyPolicy.objects.get(key__label="laptop")
    assert (laptop.allowed_models, laptop.tokens_per_minute, laptop.budget_usd) == (["fast"], 200000, None)
    assert KeyPolicy.objects.get(key__label="ci").budget_period == "none"
    bob = User.objects.get(username="bob")
    assert not bob.is_active
    assert not bob.has_usable_password()


def test_what_a_file_leaves_out_is_no_restriction(tmp_path, keys):
    import_text(tmp_path, CONFIG)
    lighter = CONFIG.replace("        models: [fast]\n", "").replace("    budget: {usd: 20, period: week}\n", "")
    report = import_text(tmp_path, lighter)
    assert "updated user alice" in report and "updated key alice/laptop" in report
    assert UserPolicy.objects.get(user__username="alice").budget_usd is None
    assert KeyPolicy.objects.get(key__label="laptop").allowed_models == []


def test_export_round_trips_and_names_keys_only_by_label(tmp_path, keys):
    import_text(tmp_path, CONFIG)
    ProxyKey.issue(User.objects.get(username="bob"))  # no label: cannot be named in a file
    exported = run("exportconfig")
    for plaintext in keys.values():
        assert plaintext not in exported
    for key in ProxyKey.objects.all():
        assert key.key_hash not in exported
    assert "# Proxy keys without a unique label (not listed, nor their limits): bob/sk-llmp-" in exported
    document = yaml.safe_load(exported)
    assert document["groups"][0] == {"name": "everyone"}
    alice = next(u for u in document["users"] if u["username"] == "alice")
    assert alice == {
        "username": "alice",
        "active": True,
        "groups": ["everyone", "research"],
        "budget": {"usd": 20, "period": "week"},
        "limits": {"requests_per_minute": 60, "concurrent_streams": 4},
        "keys": [
            {"label": "ci", "budget": {"usd": 1, "period": "none"}},
            {"label": "laptop", "models": ["fast"], "limits": {"tokens_per_minute": 200000}},
        ],
    }
    report = import_text(tmp_path, exported)
    assert "0 created, 0 updated" in report
    assert run("exportconfig") == exported


def test_a_key_that_captures_bodies_imports_and_exports(tmp_path, keys):
    import_text(tmp_path, CONFIG.replace("budget: {usd: 1, period: none}", "capture_bodies: true"))
    assert ProxyKey.objects.get(label="ci").capture_bodies is True
    assert ProxyKey.objects.get(label="laptop").capture_bodies is False  # off unless asked
    exported = run("exportconfig")
    alice = next(u for u in yaml.safe_load(exported)["users"] if u["username"] == "alice")
    assert {k["label"]: k.get("capture_bodies") for k in alice["keys"]} == {"ci": True, "laptop": None}
    assert "0 created, 0 updated" in import_text(tmp_path, exported)
    import_text(tmp_path, CONFIG)  # the file no longer asks: off again
    assert ProxyKey.objects.get(label="ci").capture_bodies is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CONFIG.replace("period: month", "period: fortnight"), "line 4: groups[0] (research): budget: period must"),
        (CONFIG.replace("usd: 20", "usd: lots"), "line 11: users[0] (alice): budget: usd must be a number"),
        (CONFIG.replace("usd: 5.5", "usd: -1"), "line 6: groups[1] (interns): budget: usd must be"),
        (
            CONFIG.replace("concurrent_streams: 4", "concurrent_streams: 0"),
            "line 12: users[0] (alice): limits: concurrent_streams must be a whole number, 1 or more",
        ),
        (
            CONFIG.replace("tokens_per_minute: 200000", "tokens_per_hour: 5"),
            "line 16: users[0] (alice): keys[0] (laptop): limits: unknown field tokens_per_hour",
        ),
        (CONFIG.replace("    active: false\n", "    active: nope\n"), "line 20: users[1] (bob): active must be true"),
        (CONFIG.replace("    keys:\n", "    colour: red\n    keys:\n"), "line 13: users[0]: unknown field(s) colour"),
        (CONFIG.replace("groups: [interns]", "groups: interns"), "line 21: users[1] (bob): groups must be a list"),
        (
            CONFIG.replace("- label: ci", "- label: laptop"),
            "line 17: users[0] (alice): keys[1]: label 'laptop' appears twice",
        ),
        (CONFIG + "  - username: alice\n", "line 22: users[2]: username 'alice' appears twice"),
        (CONFIG.replace("models: [fast]", "models: fast"), "line 15: users[0] (alice): keys[0] (laptop): models must"),
        (CONFIG + "teams: []\n", "line 22: top level: unknown section(s) teams"),
        (
            CONFIG.replace("budget: {usd: 1, period: none}", "capture_bodies: yes please"),
            "line 18: users[0] (alice): keys[1]: capture_bodies must be true or false",
        ),
        # Found against the database (still without applying anything):
        (
            CONFIG.replace("[research, everyone]", "[research, nobody]"),
            "line 10: users[0] (alice): no group named 'nobody'",
        ),
        (
            CONFIG.replace("label: ci", "label: desktop"),
            "line 17: users[0] (alice): keys[1]: alice has no key labelled 'desktop' (keys are made with "
            "`manage.py createkey --user alice --label desktop`",
        ),
        (
            "upstreams:\n  - name: a\n    format: gemini\n    base_url: http://x\n"
            "aliases:\n  - name: m\n    upstream: b\n",
            "line 7: aliases[0]: no upstream named 'b'",
        ),
    ],
)
def test_check_reports_errors_with_their_line_and_applies_nothing(tmp_path, keys, text, message):
    with pytest.raises(CommandError) as caught:
        import_text(tmp_path, text, "--check")
    assert message in str(caught.value)
    assert not Group.objects.exists()
    assert not KeyPolicy.objects.exists()
    assert not User.objects.filter(username="bob").exists()


def test_check_of_a_good_file_says_what_it_would_do_and_does_nothing(tmp_path, keys):
    report = import_text(tmp_path, CONFIG, "--check")
    assert report.strip() == "configuration file is valid: it would create 4, update 3 and leave 0 unchanged"
    assert not Group.objects.exists()
    assert not UserPolicy.objects.exists()


def test_an_imported_access_list_reaches_the_running_server(tmp_path, keys, proxy):
    add_route("up", "openai-chat", "http://127.0.0.1:9/v1", alias="fast")
    add_route("other", "openai-chat", "http://127.0.0.1:9/v1", alias="smart")
    proxy.sync()
    headers = {"authorization": f"Bearer {keys['laptop']}"}
    assert [m["id"] for m in httpx.get(proxy.url + "/v1/models", headers=headers).json()["data"]] == ["fast", "smart"]
    import_text(tmp_path, CONFIG)
    proxy.sync()
    assert [m["id"] for m in httpx.get(proxy.url + "/v1/models", headers=headers).json()["data"]] == ["fast"]
