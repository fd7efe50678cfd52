"""Every change to upstreams, aliases, keys and access is in the audit log: who, when, what, secrets masked."""

from __future__ import annotations

import io
import json

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import AsyncClient, Client
from django.utils import timezone

from routing import audit
from routing.models import AuditEntry, ModelAlias, ProxyKey, Upstream

STORED_KEY = "sk-ant-stored-secret-0123456789"
HEADER_SECRET = "Bearer sk-header-secret-9876543210"


@pytest.fixture
def operator(transactional_db) -> Client:
    User.objects.create_superuser("operator", password="operator-password")
    client = Client()
    assert client.login(username="operator", password="operator-password")
    return client


def upstream_form(**overrides: str) -> dict[str, str]:
    form = {
        "name": "claude",
        "format": "anthropic",
        "base_url": "http://127.0.0.1:9",
        "enabled": "on",
        "api_key_env": "",
        "api_key": STORED_KEY,
        "auth_header": "auto",
        "headers": json.dumps({"Authorization": HEADER_SECRET, "X-Team": "ml"}),
        "query_params": "{}",
        "timeout": "600",
        "connect_timeout": "10",
        "translation_flags": "{}",
        "allow_direct_models": "on",
        "aliases-TOTAL_FORMS": "1",
        "aliases-INITIAL_FORMS": "0",
        "aliases-MIN_NUM_FORMS": "0",
        "aliases-MAX_NUM_FORMS": "1000",
        "aliases-0-name": "sonnet",
        "aliases-0-upstream_model": "claude-sonnet-4-5",
        "aliases-0-priority": "100",
        "aliases-0-enabled": "on",
    }
    form.update(overrides)
    return form


def add_upstream(client: Client) -> Upstream:
    response = client.post("/admin/routing/upstream/add/", upstream_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    return Upstream.objects.get(name="claude")


def edit_upstream(client: Client, upstream: Upstream, **overrides: str) -> None:
    alias = ModelAlias.objects.get(name="sonnet")
    form = upstream_form(
        **{
            "aliases-INITIAL_FORMS": "1",
            "aliases-0-id": str(alias.pk),
            "aliases-0-upstream": str(upstream.pk),
            **overrides,
        }
    )
    response = client.post(f"/admin/routing/upstream/{upstream.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]


def entries(model: str, action: str | None = None) -> list[AuditEntry]:
    found = AuditEntry.objects.filter(model=model).order_by("id")
    return list(found.filter(action=action) if action else found)


def secrets_of(upstream: Upstream) -> list[str]:
    return [STORED_KEY, upstream.api_key_encrypted, HEADER_SECRET, "sk-header-secret"]


def assert_no_secret(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        if secret:
            assert secret not in text


def test_admin_create_is_recorded_with_the_operator_and_masked_secrets(operator):
    upstream = add_upstream(operator)

    (created,) = entries("routing.upstream", "create")
    assert created.actor == "operator"
    assert created.actor_user == User.objects.get(username="operator")
    assert created.via == "/admin/routing/upstream/add/"
    assert created.object_id == str(upstream.pk)
    assert created.object_repr == "claude"
    changes = created.changes
    assert changes["name"] == [None, "claude"]
    assert changes["base_url"] == [None, "http://127.0.0.1:9"]
    assert changes["api_key_encrypted"] == "set"
    assert changes["headers"] == [None, {"Authorization": "***", "X-Team": "ml"}]
    assert "created_at" not in changes and "updated_at" not in changes
    assert_no_secret(json.dumps(changes), secrets_of(upstream))

    (alias,) = entries("routing.modelalias", "create")
    assert alias.actor == "operator"
    assert alias.changes["upstream"] == [None, upstream.pk]
    assert alias.changes["upstream_model"] == [None, "claude-sonnet-4-5"]


def test_admin_update_records_only_what_changed(operator):
    upstream = add_upstream(operator)
    before_ciphertext = upstream.api_key_encrypted
    edit_upstream(
        operator,
        upstream,
        base_url="http://127.0.0.1:10",
        api_key="sk-ant-replacement-secret-000",
        headers=json.dumps({"Authorization": "Bearer sk-other-header-secret", "X-Team": "ml"}),
    )
    (updated,) = entries("routing.upstream", "update")
    assert updated.actor == "operator"
    assert updated.changes == {
        "base_url": ["http://127.0.0.1:9", "http://127.0.0.1:10"],
        "api_key_encrypted": "changed",
        "headers": [{"Authorization": "***", "X-Team": "ml"}, {"Authorization": "*** (changed)", "X-Team": "ml"}],
    }
    upstream.refresh_from_db()
    text = json.dumps(updated.changes)
    assert_no_secret(text, [*secrets_of(upstream), before_ciphertext, "sk-ant-replacement", "sk-other-header"])
    assert not entries("routing.modelalias", "update")  # the untouched inline wrote nothing

    same_headers = json.dumps({"Authorization": "Bearer sk-other-header-secret", "X-Team": "ml"})
    edit_upstream(
        operator, upstream, api_key="", clear_api_key="on", base_url="http://127.0.0.1:10", headers=same_headers
    )
    cleared = entries("routing.upstream", "update")[-1]
    assert cleared.changes == {"api_key_encrypted": "cleared"}


def test_secrets_never_reach_the_audit_pages_nor_the_export(operator):
    upstream = add_upstream(operator)
    edit_upstream(operator, upstream, api_key="sk-ant-replacement-secret-000", base_url="http://127.0.0.1:10")
    response = operator.post(
        "/admin/routing/proxykey/add/", {"user": User.objects.get(username="operator").pk, "label": "ci"}
    )
    assert response.status_code == 302
    key = ProxyKey.objects.get(label="ci")
    upstream.refresh_from_db()
    secrets = [*secrets_of(upstream), "sk-ant-replacement", key.key_hash]

    (key_entry,) = entries("routing.proxykey", "create")
    assert key_entry.changes["key_hash"] == "set"
    assert key_entry.changes["label"] == [None, "ci"]
    assert key_entry.changes["prefix"] == [None, key.prefix]  # the display prefix, as the key list shows it

    pages = ["/admin/routing/auditentry/"] + [
        f"/admin/routing/auditentry/{entry.pk}/change/" for entry in AuditEntry.objects.all()
    ]
    for page in pages:
        response = operator.get(page)
        assert response.status_code == 200, page
        assert_no_secret(response.content.decode(), secrets)
    detail = operator.get(f"/admin/routing/auditentry/{key_entry.pk}/change/").content.decode()
    assert "key_hash" in detail and "set" in detail

    out = io.StringIO()
    call_command("exportconfig", stdout=out)
    assert_no_secret(out.getvalue(), [STORED_KEY, upstream.api_key_encrypted, "sk-ant-replacement", key.key_hash])


def test_the_audit_log_is_read_only_and_filterable(operator):
    add_upstream(operator)
    assert operator.get("/admin/routing/auditentry/add/").status_code == 403
    entry = AuditEntry.objects.first()
    assert operator.post(f"/admin/routing/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()

    listing = operator.get("/admin/routing/auditentry/?model=routing.modelalias&action=create&actor=operator")
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    search = operator.get("/admin/routing/auditentry/?q=sonnet")
    assert search.context["cl"].result_count == 1


def test_deleting_an_upstream_records_it_and_its_aliases(operator):
    upstream = add_upstream(operator)
    response = operator.post(f"/admin/routing/upstream/{upstream.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    (deleted,) = entries("routing.upstream", "delete")
    assert (deleted.actor, deleted.object_repr) == ("operator", "claude")
    assert deleted.changes["name"] == ["claude", None]
    assert deleted.changes["api_key_encrypted"] == "cleared"
    assert deleted.changes["headers"] == [{"Authorization": "***", "X-Team": "ml"}, None]
    assert [e.object_repr for e in entries("routing.modelalias", "delete")] == ["sonnet → claude/claude-sonnet-4-5"]


def empty_inlines(client: Client, url: str) -> dict[str, str]:
    """The management forms of whatever inlines the change page has, adding and changing none of them."""
    data = {}
    for inline in client.get(url).context["inline_admin_formsets"]:
        formset = inline.formset
        assert not formset.initial_forms, "only for objects that have no inline rows yet"
        for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS"):
            value = formset.management_form[name].value()
            data[f"{formset.prefix}-{name}"] = "0" if name in ("TOTAL_FORMS", "INITIAL_FORMS") else str(value)
    return data


def test_access_changes_to_users_and_groups(operator):
    bob = User.objects.create_user("bob", password="bob-password")
    bob.date_joined = bob.date_joined.replace(microsecond=0)  # as the admin form posts it back
    bob.save()
    devs = Group.objects.create(name="devs")
    AuditEntry.objects.all().delete()
    form = {
        "username": "bob",
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_staff": "on",  # is_active left out: deactivated
        "groups": [str(devs.pk)],
        "date_joined_0": bob.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": bob.date_joined.strftime("%H:%M:%S"),
        "initial-date_joined_0": bob.date_joined.strftime("%Y-%m-%d"),
        "initial-date_joined_1": bob.date_joined.strftime("%H:%M:%S"),
    }
    url = f"/admin/auth/user/{bob.pk}/change/"
    response = operator.post(url, {**form, **empty_inlines(operator, url)})
    assert response.status_code == 302, response.content.decode()[:3000]
    updates = entries("auth.user", "update")
    assert all(e.actor == "operator" and e.object_repr == "bob" for e in updates)
    merged = {name: change for e in updates for name, change in e.changes.items()}
    assert merged["is_active"] == [True, False]
    assert merged["is_staff"] == [False, True]
    assert merged["groups"] == [[], ["devs"]]
    assert "date_joined" not in merged

    # From the group's side too, and a password change shows no hash.
    devs.user_set.remove(bob)
    assert entries("auth.user", "update")[-1].changes == {"groups": [["devs"], []]}
    bob.refresh_from_db()
    bob.set_password("new-password")
    bob.save()
    last = entries("auth.user", "update")[-1]
    assert last.changes == {"password": "changed"}
    assert last.actor == "system"
    assert bob.password not in json.dumps(last.changes)


def test_a_save_of_some_fields_records_only_those(transactional_db):
    owner = User.objects.create_user("frank")
    key, _ = ProxyKey.issue(owner, label="old")
    stale = ProxyKey.objects.get(pk=key.pk)
    key.label = "new"
    key.save()
    stale.revoked_at = timezone.now()
    stale.save(update_fields=["revoked_at"])  # its label is stale, but not written
    revoked = entries("routing.proxykey", "update")[-1]
    assert list(revoked.changes) == ["revoked_at"]
    assert ProxyKey.objects.get(pk=key.pk).label == "new"


def test_a_login_writes_nothing(operator):
    User.objects.create_user("carol", password="carol-password")
    AuditEntry.objects.all().delete()
    assert Client().login(username="carol", password="carol-password")
    assert not AuditEntry.objects.exists()


def test_management_commands_are_the_actor(transactional_db, tmp_path, settings):
    old_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old_key]
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "upstreams:\n  - {name: local, format: openai-chat, base_url: 'http://127.0.0.1:9', api_key: "
        f"'{STORED_KEY}'}}\naliases:\n  - {{name: small, upstream: local, model: qwen3}}\n"
    )
    call_command("importconfig", str(config), stdout=io.StringIO())
    assert {e.actor for e in AuditEntry.objects.all()} == {"command:importconfig"}
    assert entries("routing.upstream", "create")[0].changes["api_key_encrypted"] == "set"
    assert entries("routing.upstream", "create")[0].via == "manage.py importconfig"

    out = io.StringIO()
    call_command("createkey", "--user", "dave", "--create-user", stdout=out, stderr=io.StringIO())
    plaintext = out.getvalue().strip()
    (user_entry,) = entries("auth.user", "create")
    (key_entry,) = entries("routing.proxykey", "create")
    assert user_entry.actor == key_entry.actor == "command:createkey"
    assert key_entry.object_repr.startswith(plaintext[:14])
    assert plaintext not in json.dumps([e.changes for e in AuditEntry.objects.all()])

    upstream = Upstream.objects.get(name="local")
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]  # a new key in front, then rotate
    call_command("rotatesecrets", stdout=io.StringIO())
    upstream.refresh_from_db()
    (rotated,) = entries("routing.upstream", "update")
    assert (rotated.actor, rotated.changes) == ("command:rotatesecrets", {"api_key_encrypted": "changed"})
    assert upstream.api_key_encrypted not in json.dumps(rotated.changes)


def test_own_keys_on_the_account_page_are_attributed_to_their_owner(transactional_db):
    User.objects.create_user("erin", password="erin-password")
    client = Client()
    assert client.login(username="erin", password="erin-password")
    response = client.post("/me/keys/", {"label": "laptop"})
    assert response.status_code in (302, 303), response.content.decode()[:2000]
    (created,) = entries("routing.proxykey", "create")
    assert created.actor == "erin"
    assert created.via == "/me/keys/"


def test_the_actor_crosses_from_the_async_handler_to_the_view(transactional_db):
    """Under ASGI (daphne) the middleware runs async and the admin view in a thread."""
    User.objects.create_superuser("root", password="root-password")
    client = AsyncClient()
    async_to_sync(client.aforce_login)(User.objects.get(username="root"))
    response = async_to_sync(client.post)("/admin/routing/upstream/add/", upstream_form(name="via-asgi"))
    assert response.status_code == 302
    assert entries("routing.upstream", "create")[0].actor == "root"


def test_a_user_deleting_their_own_account_leaves_a_readable_log(operator):
    operator_user = User.objects.get(username="operator")
    ProxyKey.issue(operator_user, label="own")
    response = operator.post(f"/admin/auth/user/{operator_user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="operator").exists()
    deleted = entries("auth.user", "delete")
    assert [(e.actor, e.actor_user_id) for e in deleted] == [("operator", None)]
    assert entries("routing.proxykey", "delete")[0].actor_user_id is None


def test_other_models_register_with_one_call():
    with pytest.raises(ValueError, match="no such field"):
        audit.track(Upstream, secret_fields=("not_a_field",))
    with pytest.raises(ValueError, match="no such field"):
        audit.track(Upstream, ignore_fields=("typo",))


def test_model_price_changes_are_audited(operator):
    from decimal import Decimal

    from usage.models import ModelPrice

    price = ModelPrice.objects.create(model_pattern="claude-*", input_per_mtok=Decimal(3), output_per_mtok=Decimal(15))
    price.output_per_mtok = Decimal(12)
    price.save()
    price.delete()
    created, updated, deleted = entries("usage.modelprice")
    assert [created.action, updated.action, deleted.action] == ["create", "update", "delete"]
    assert updated.changes == {"output_per_mtok": ["15", "12"]}


def test_path_prefixes_and_scenario_targets_edited_in_the_admin_are_recorded(operator):
    response = operator.post(
        "/admin/routing/pathprefix/add/", {"path": "/team-a", "aliases": "smart\ngpt-*", "enabled": "on"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    from routing.models import PathPrefix

    assert PathPrefix.objects.get().aliases == ["smart", "gpt-*"]
    created = entries("routing.pathprefix", "create")
    assert [e.actor for e in created] == ["operator"]
    assert created[0].changes["aliases"] == [None, ["smart", "gpt-*"]]
    refused = operator.post("/admin/routing/pathprefix/add/", {"path": "/admin", "aliases": "smart"})
    assert refused.status_code == 200 and "already a path of the proxy" in refused.content.decode()

    upstream = Upstream.objects.create(name="up", format="anthropic", base_url="http://127.0.0.1:1")
    alias = ModelAlias.objects.create(name="smart", upstream=upstream)
    form = {
        "name": "smart",
        "upstream": str(upstream.pk),
        "upstream_model": "",
        "priority": "100",
        "enabled": "on",
        "weight": "1",
        "targets": "[]",
        "system_replacements": "[]",
        "default_params": "{}",
        "override_params": "{}",
        "extra_body": "{}",
        "scenarios": json.dumps({"think": {"upstream": "up", "model": "reasoner"}}),
    }
    response = operator.post(f"/admin/routing/modelalias/{alias.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = entries("routing.modelalias", "update")
    assert updated[-1].changes["scenarios"] == [{}, {"think": {"upstream": "up", "model": "reasoner"}}]
    bad = operator.post(
        f"/admin/routing/modelalias/{alias.pk}/change/",
        {**form, "scenarios": json.dumps({"think": {"upstream": "nowhere", "model": "r"}})},
    )
    assert bad.status_code == 200 and "no upstream named nowhere" in bad.content.decode()
    # Targets are audited like the rest of an alias.
    targets = [{"upstream": "up", "model": "other", "weight": 2, "fallback": True}]
    response = operator.post(f"/admin/routing/modelalias/{alias.pk}/change/", {**form, "targets": json.dumps(targets)})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert entries("routing.modelalias", "update")[-1].changes["targets"] == [[], targets]
