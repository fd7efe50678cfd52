"""Keys, unknown models and malformed requests: each client gets its own dialect's error, never HTML."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from django.utils import timezone
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from routing.models import ProxyKey
from tests.conftest import add_route

pytestmark = pytest.mark.e2e


def test_health_endpoints_answer_without_a_key(proxy):
    assert httpx.get(proxy.url + "/health").json() == {"status": "ok"}
    assert httpx.get(proxy.url + "/healthz").status_code == 200
    ready = httpx.get(proxy.url + "/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


def test_missing_key_is_401_in_each_dialect(proxy):
    anthropic_reply = httpx.post(proxy.url + "/v1/messages", json={"model": "m", "max_tokens": 5, "messages": []})
    assert anthropic_reply.status_code == 401
    assert anthropic_reply.json()["type"] == "error"
    assert anthropic_reply.json()["error"]["type"] == "authentication_error"

    openai_reply = httpx.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": []})
    assert openai_reply.status_code == 401
    assert openai_reply.json()["error"]["code"] == "invalid_api_key"

    gemini_reply = httpx.post(proxy.url + "/v1beta/models/m:generateContent", json={"contents": []})
    assert gemini_reply.status_code == 401
    assert gemini_reply.json()["error"]["status"] == "UNAUTHENTICATED"


def test_sdks_raise_authentication_errors_for_a_wrong_key(proxy):
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="sk-llmp-wrong", base_url=proxy.url, max_retries=0).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-llmp-wrong", base_url=proxy.url + "/v1", max_retries=0).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-llmp-wrong", base_url=proxy.url + "/v1", max_retries=0).responses.create(
            model="m", input="hi"
        )
    client = genai.Client(api_key="sk-llmp-wrong", http_options=genai_types.HttpOptions(base_url=proxy.url))
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="m", contents="hi")
    assert caught.value.code == 401


def test_revoked_and_expired_keys_stop_working_without_a_restart(proxy, alice):
    key, plaintext = ProxyKey.issue(alice)
    proxy.sync()
    headers = {"x-api-key": plaintext, "anthropic-version": "2023-06-01"}
    assert httpx.get(proxy.url + "/v1/models", headers=headers).status_code == 200

    key.revoked_at = timezone.now()
    key.save()
    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers=headers).status_code == 401

    _, expiring_plaintext = ProxyKey.issue(alice, expires_at=timezone.now() - timezone.timedelta(seconds=1))
    proxy.sync()
    response = httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {expiring_plaintext}"})
    assert response.status_code == 401


def test_disabling_the_user_disables_their_keys(proxy, alice, alice_key):
    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {alice_key}"}).status_code == 200
    alice.is_active = False
    alice.save()
    proxy.sync()
    assert httpx.get(proxy.url + "/v1/models", headers={"authorization": f"Bearer {alice_key}"}).status_code == 401


def test_unknown_model_is_404_naming_the_model(proxy, alice_key):
    proxy.sync()
    client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in caught.value.message

    gemini = genai.Client(api_key=alice_key, http_options=genai_types.HttpOptions(base_url=proxy.url))
    with pytest.raises(genai_errors.ClientError) as gemini_caught:
        gemini.models.generate_content(model="no-such-model", contents="hi")
    assert gemini_caught.value.code == 404


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/messages", "anthropic"),
        ("/v1/chat/completions", "openai"),
        ("/v1/responses", "openai"),
        ("/v1beta/models/m:generateContent", "gemini"),
    ],
)
def test_malformed_json_is_400_in_the_dialect(proxy, alice_key, path, shape):
    proxy.sync()
    headers = {"authorization": f"Bearer {alice_key}", "content-type": "application/json"}
    response = httpx.post(proxy.url + path, content=b'{"model": ', headers=headers)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if shape == "anthropic":
        assert body["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert body["error"]["type"] == "invalid_request_error"


def test_missing_model_field_is_400(proxy, alice_key):
    proxy.sync()
    response = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {alice_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "model"


def test_unknown_data_plane_path_is_a_json_404(proxy):
    response = httpx.get(proxy.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert "error" in response.json()


def test_models_are_listed_in_the_callers_dialect(proxy, alice_key):
    add_route("oa", "openai-chat", "http://127.0.0.1:9/v1", alias="fast", model="gpt-4.1-mini")
    add_route("an", "anthropic", "http://127.0.0.1:9", alias="claude-*", model="")
    proxy.sync()

    openai_client = openai.OpenAI(api_key=alice_key, base_url=proxy.url + "/v1")
    assert [m.id for m in openai_client.models.list()] == ["fast"]

    anthropic_client = anthropic.Anthropic(api_key=alice_key, base_url=proxy.url)
    listed = anthropic_client.models.list()
    assert [m.id for m in listed.data] == ["fast"]
    assert listed.data[0].type == "model"

    gemini = genai.Client(api_key=alice_key, http_options=genai_types.HttpOptions(base_url=proxy.url))
    assert [m.name for m in gemini.models.list()] == ["models/fast"]

    one = httpx.get(proxy.url + "/openai/v1/models/fast", headers={"authorization": f"Bearer {alice_key}"})
    assert one.json()["id"] == "fast"
