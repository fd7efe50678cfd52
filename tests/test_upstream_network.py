"""The network between proxy and upstream: an upstream's egress proxy (with credentials that never come back out),
the process's HTTP(S)_PROXY / NO_PROXY, a CA bundle, and TLS verification switched off.

The proxy runs in-process (tests/inprocess.py); the fake upstreams, the forward proxy and the TLS front are real
servers on 127.0.0.1, so every byte goes through the product's own transport."""

from __future__ import annotations

import base64
import logging

import openai
import pytest
from django.contrib.auth.models import User
from django.test import Client

from routing.config.configfile import ConfigFileError, export_config, import_config
from routing.models import AuditEntry, ModelAlias, Upstream
from routing.upstream.network import reload_environment
from tests.fakes.providers import fake_upstream
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from tests.netservers import ForwardProxy, TlsFront, make_certificate

PROXY_USER, PROXY_PASSWORD = "egress-user", "proxy-pass-4821-secret"
PROXY_AUTH = f"{PROXY_USER}:{PROXY_PASSWORD}"
BASIC = "Basic " + base64.b64encode(PROXY_AUTH.encode()).decode()
ENV_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _no_process_proxy(monkeypatch):
    # The proxy reads these at start and on each configuration reload (never per request): re-read them here.
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    reload_environment()
    yield
    monkeypatch.undo()
    reload_environment()  # what the next test finds is the environment's own again


def upstream(base_url: str, **fields) -> Upstream:
    proxy_auth = fields.pop("proxy_auth", None)
    row = Upstream(name="corp", format="openai-chat", base_url=base_url, **fields)
    if proxy_auth:
        row.set_proxy_auth(proxy_auth)
    row.full_clean()
    row.save()
    ModelAlias.objects.create(name="m", upstream=row, upstream_model="gpt-5")
    return row


def ask(inproc: InProcessProxy, key: str) -> str:
    client = openai.OpenAI(api_key=key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
    answer = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Hi"}])
    return answer.choices[0].message.content or ""


def test_an_upstreams_egress_proxy_carries_its_traffic_with_its_credentials(inproc, alice_key):
    with fake_upstream("openai-chat") as fake, ForwardProxy(credentials=PROXY_AUTH) as egress:
        upstream(fake.url + "/v1", proxy_url=egress.url, proxy_auth=PROXY_AUTH)
        inproc.sync()

        assert "Hello from" in ask(inproc, alice_key)

        assert [(s.method, s.target, s.proxy_authorization) for s in egress.seen] == [
            ("POST", fake.url + "/v1/chat/completions", BASIC)
        ]
        # The proxy took its credentials off; the upstream got the request and nothing of the proxy's.
        assert len(fake.requests) == 1
        assert "proxy-authorization" not in fake.requests[0].headers


def test_proxy_credentials_from_the_environment_and_a_refusal_that_shows_none(inproc, alice_key, monkeypatch, caplog):
    monkeypatch.setenv("EGRESS_PROXY_AUTH", f"{PROXY_USER}:wrong-password-7731")
    with fake_upstream("openai-chat") as fake, ForwardProxy(credentials=PROXY_AUTH) as egress:
        upstream(fake.url + "/v1", proxy_url=egress.url, proxy_auth_env="EGRESS_PROXY_AUTH")
        inproc.sync()

        with caplog.at_level(logging.DEBUG), pytest.raises(openai.APIStatusError) as refused:
            ask(inproc, alice_key)
        assert refused.value.status_code == 502
        assert "egress proxy refused" in refused.value.message
        assert "wrong-password-7731" not in str(refused.value.response.text)
        assert "wrong-password-7731" not in caplog.text
        assert fake.requests == []
        assert egress.seen[0].proxy_authorization is not None

        monkeypatch.setenv("EGRESS_PROXY_AUTH", PROXY_AUTH)
        Upstream.objects.get(name="corp").save()  # a config change: the route table (and variables) reload
        inproc.sync()
        assert "Hello from" in ask(inproc, alice_key)
        assert egress.seen[-1].proxy_authorization == BASIC


def test_an_https_upstream_through_connect_trusts_its_ca_bundle(inproc, alice_key, tmp_path):
    certificate = make_certificate(tmp_path)
    with fake_upstream("openai-chat") as fake, TlsFront(certificate, fake.port) as front, ForwardProxy() as egress:
        upstream(front.url + "/v1", proxy_url=egress.url, ca_bundle=str(certificate.cert_path))
        inproc.sync()

        assert "Hello from" in ask(inproc, alice_key)
        assert [(s.method, s.target) for s in egress.seen] == [("CONNECT", f"127.0.0.1:{front.port}")]
        assert len(fake.requests) == 1


def test_an_unknown_authority_is_refused_unless_verification_is_off(inproc, alice_key, tmp_path):
    certificate = make_certificate(tmp_path)
    with fake_upstream("openai-chat") as fake, TlsFront(certificate, fake.port) as front:
        row = upstream(front.url + "/v1")
        inproc.sync()
        with pytest.raises(openai.APIStatusError) as refused:
            ask(inproc, alice_key)
        assert refused.value.status_code == 502
        assert "certificate" in refused.value.message.lower()
        assert fake.requests == []

        row.verify_tls = False
        row.save()
        inproc.sync()
        assert "Hello from" in ask(inproc, alice_key)

        # A missing CA bundle fails closed: never the system's authorities, never no verification.
        row.verify_tls, row.ca_bundle = True, str(tmp_path / "missing.pem")
        row.save()
        inproc.sync()
        with pytest.raises(openai.APIStatusError):
            ask(inproc, alice_key)


def test_the_process_proxy_variables_apply_unless_the_upstream_sets_its_own(inproc, alice_key, monkeypatch):
    with fake_upstream("openai-chat") as fake, ForwardProxy() as process_proxy, ForwardProxy() as own:
        row = upstream(fake.url + "/v1")
        inproc.sync()
        monkeypatch.setenv("HTTP_PROXY", process_proxy.url)
        assert "Hello from" in ask(inproc, alice_key)
        assert process_proxy.seen == []  # read at start and on a configuration reload, not per request
        row.save()
        inproc.sync()
        assert "Hello from" in ask(inproc, alice_key)
        assert [s.target for s in process_proxy.seen] == [fake.url + "/v1/chat/completions"]

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        reload_environment()
        assert "Hello from" in ask(inproc, alice_key)
        assert len(process_proxy.seen) == 1  # bypassed
        monkeypatch.delenv("NO_PROXY")
        reload_environment()

        row.proxy_url = own.url
        row.save()
        inproc.sync()
        assert "Hello from" in ask(inproc, alice_key)
        assert len(process_proxy.seen) == 1
        assert [s.target for s in own.seen] == [fake.url + "/v1/chat/completions"]
        assert len(fake.requests) == 4


@pytest.fixture
def operator(transactional_db) -> Client:
    User.objects.create_superuser("operator", password="operator-password")
    client = Client()
    client.force_login(User.objects.get(username="operator"))
    return client


def test_proxy_credentials_never_appear_in_pages_exports_or_the_audit_log(operator, caplog):
    with fake_upstream("openai-chat") as fake, ForwardProxy(credentials="someone:else") as egress:
        row = upstream(fake.url + "/v1", proxy_url=egress.url, proxy_auth=PROXY_AUTH)
        assert PROXY_PASSWORD not in row.proxy_auth_encrypted
        pages = ("/admin/routing/upstream/", f"/admin/routing/upstream/{row.pk}/change/")
        with caplog.at_level(logging.DEBUG):
            check = operator.get(f"/admin/routing/upstream/check/?ids={row.pk}").content.decode()
        assert "egress proxy rejected its credentials" in check  # the check went through it, and was refused
        for html in [check, *(operator.get(page).content.decode() for page in pages)]:
            assert PROXY_PASSWORD not in html and row.proxy_auth_encrypted not in html
            assert egress.url in html
        assert PROXY_PASSWORD not in caplog.text
    exported = export_config()
    assert PROXY_PASSWORD not in exported and row.proxy_auth_encrypted not in exported
    assert "corp (proxy credentials)" in exported
    entry = AuditEntry.objects.filter(model="routing.upstream").latest("at")
    assert entry.changes["proxy_auth_encrypted"] == "set"
    assert entry.changes["proxy_url"] == [None, egress.url]


def test_the_admin_stores_proxy_credentials_and_warns_when_tls_is_not_verified(operator):
    form = {
        "name": "corp",
        "format": "openai-chat",
        "base_url": "https://llm.corp.example/v1",
        "enabled": "on",
        "auth_header": "auto",
        "headers": "{}",
        "query_params": "{}",
        "timeout": "600",
        "connect_timeout": "10",
        "translation_flags": "{}",
        "proxy_url": "http://egress.corp:3128",
        "proxy_auth": PROXY_AUTH,
        "aliases-TOTAL_FORMS": "0",
        "aliases-INITIAL_FORMS": "0",
        "aliases-MIN_NUM_FORMS": "0",
        "aliases-MAX_NUM_FORMS": "1000",
    }  # verify_tls left unticked
    response = operator.post("/admin/routing/upstream/add/", form, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "TLS certificate verification is OFF" in html
    assert "TLS NOT VERIFIED" in html  # the upstream list
    assert PROXY_PASSWORD not in html
    row = Upstream.objects.get(name="corp")
    assert not row.verify_tls
    from routing.config.secrets import decrypt

    assert decrypt(row.proxy_auth_encrypted) == PROXY_AUTH
    assert (
        "TLS certificate verification is OFF"
        in operator.get(f"/admin/routing/upstream/{row.pk}/change/").content.decode()
    )

    refused = operator.post(
        "/admin/routing/upstream/add/", {**form, "name": "leaky", "proxy_url": f"http://{PROXY_AUTH}@egress:3128"}
    )
    assert "not in the URL" in refused.content.decode()
    assert not Upstream.objects.filter(name="leaky").exists()


NETWORK_YAML = """
upstreams:
  - name: corp
    format: openai-chat
    base_url: https://llm.corp.example/v1
    proxy_url: "http://egress.corp:3128"
    proxy_auth: "egress-user:proxy-pass-4821-secret"
    ca_bundle: /etc/ssl/corp.pem
    verify_tls: true
    default_max_tokens: 4096
    context_window: 32768
  - {name: lab, format: anthropic, base_url: "https://lab.example", proxy_url: "http://egress:3128",
     proxy_auth_env: LAB_PROXY_AUTH, verify_tls: false}
aliases:
  - {name: local, upstream: corp, model: qwen3, default_max_tokens: 2048, context_window: 16384}
"""


@pytest.mark.django_db
def test_the_config_file_carries_the_network_and_limits_and_reads_its_export_back():
    report = import_config(NETWORK_YAML)
    assert len(report.created) == 3
    corp = Upstream.objects.get(name="corp")
    assert (corp.proxy_url, corp.ca_bundle, corp.verify_tls) == ("http://egress.corp:3128", "/etc/ssl/corp.pem", True)
    assert (corp.default_max_tokens, corp.context_window) == (4096, 32768)
    lab = Upstream.objects.get(name="lab")
    assert (lab.proxy_auth_env, lab.verify_tls, lab.proxy_auth_encrypted) == ("LAB_PROXY_AUTH", False, "")
    alias = ModelAlias.objects.get(name="local")
    assert (alias.default_max_tokens, alias.context_window) == (2048, 16384)

    exported = export_config()
    assert PROXY_PASSWORD not in exported
    for line in ("proxy_url: http://egress.corp:3128", "ca_bundle: /etc/ssl/corp.pem", "default_max_tokens: 4096"):
        assert line in exported
    assert "verify_tls: false" in exported and "proxy_auth_env: LAB_PROXY_AUTH" in exported
    again = import_config(exported)
    assert again.created == [] and again.updated == []
    from routing.config.secrets import decrypt

    assert decrypt(Upstream.objects.get(name="corp").proxy_auth_encrypted) == PROXY_AUTH  # kept


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("proxy_url", '"http://user:pw@egress:3128"', "not in the URL"),
        ("proxy_url", '"socks5://egress:1080"', "http:// or https://"),
        ("proxy_auth_env", "SECRET_KEY", "the proxy's own settings"),
        ("verify_tls", '"no"', "true or false"),
        ("context_window", "0", "1 or more"),
    ],
)
def test_the_config_file_refuses_bad_network_settings(field, value, message):
    text = f"upstreams:\n  - {{name: a, format: openai-chat, base_url: 'http://x', {field}: {value}}}\n"
    with pytest.raises(ConfigFileError, match=message):
        import_config(text)
