"""What coding agents send that trips other proxies: Claude Code's probe, model suffixes, beta headers.

The proxy runs in-process (tests/inprocess.py): these are requests the pipeline must accept; the real CLIs
through a real server are in tests/test_real_clis.py.
"""

from __future__ import annotations

import anthropic
import pytest

from tests.conftest import add_route
from tests.fakes.script import Reply, ToolCall
from tests.inprocess import (
    http,
    passwordless_alice,  # noqa: F401  (`alice` without a password: nobody logs in here)
)


def test_claude_codes_max_tokens_probe_is_a_normal_answer(inproc, alice_key):
    with inproc.upstream("openai-chat") as fake:
        add_route("gpt", "openai-chat", fake.url + "/v1", alias="claude-*", model="gpt-5")
        fake.script(Reply(text="H", stop="max_tokens"))
        inproc.sync()
        client = anthropic.Anthropic(api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client())
        message = client.messages.create(
            model="claude-sonnet-4-5[1m]", max_tokens=1, messages=[{"role": "user", "content": "quota"}]
        )
        assert message.stop_reason == "max_tokens"
        sent = fake.requests[-1].json
        assert sent["model"] == "gpt-5"
        assert sent["max_completion_tokens"] == 1  # a reasoning model gets the field it accepts


def test_beta_headers_reach_anthropic_upstreams_only(inproc, alice_key):
    headers = {
        "x-api-key": alice_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    body = {"model": "m", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    with inproc.upstream("anthropic") as claude, inproc.upstream("gemini") as gemini:
        add_route("claude", "anthropic", claude.url, alias="m")
        add_route("gem", "gemini", gemini.url, alias="g", model="gemini-2.5-pro")
        inproc.sync()
        assert http(inproc).post(inproc.url + "/v1/messages?beta=true", headers=headers, json=body).status_code == 200
        assert claude.requests[-1].headers["anthropic-beta"] == headers["anthropic-beta"]
        response = http(inproc).post(
            inproc.url + "/v1/messages?beta=true", headers=headers, json={**body, "model": "g"}
        )
        assert response.status_code == 200
        assert "anthropic-beta" not in gemini.requests[-1].headers
        assert "anthropic-version" not in gemini.requests[-1].headers


def test_thinking_and_context_management_never_cause_a_400(inproc, alice_key):
    with inproc.upstream("openai-chat") as fake:
        add_route("gpt", "openai-chat", fake.url + "/v1", alias="m", model="qwen3")
        inproc.sync()
        response = http(inproc).post(
            inproc.url + "/v1/messages",
            headers={"x-api-key": alice_key, "anthropic-version": "2023-06-01"},
            json={
                "model": "m",
                "max_tokens": 64000,
                "thinking": {"type": "adaptive"},
                "output_config": {"effort": "high"},
                "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert response.status_code == 200, response.text
        assert "context_management" not in fake.requests[-1].json
        # Left out, but not silently: the client can see what did not go upstream.
        assert "unmapped:context_management" in response.headers["x-llmproxy-warnings"]


PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the apply_patch tool to edit files.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch"',
    },
}


@pytest.mark.parametrize("upstream_format", ["anthropic", "openai-chat", "gemini"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_codex_apply_patch_comes_back_as_the_custom_call_it_sent(inproc, alice_key, upstream_format, stream):
    import openai

    base = {"anthropic": "", "openai-chat": "/v1", "gemini": ""}[upstream_format]
    with inproc.upstream(upstream_format) as fake:
        add_route("up", upstream_format, fake.url + base, alias="m", model="real-model")
        fake.script(Reply(tool_calls=[ToolCall("apply_patch", {"input": PATCH})]))
        inproc.sync()
        client = openai.OpenAI(
            api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client()
        )
        kwargs = {"model": "m", "input": "Add hello.txt", "tools": [APPLY_PATCH]}
        if stream:
            events = list(client.responses.create(**kwargs, stream=True))
            assert "response.custom_tool_call_input.delta" in [e.type for e in events]
            response = events[-1].response
        else:
            response = client.responses.create(**kwargs)
        call = next(item for item in response.output if item.type == "custom_tool_call")
        assert (call.name, call.input) == ("apply_patch", PATCH)
        # Upstream, it was an ordinary function tool taking one string.
        assert declared_schema(upstream_format, fake.requests[-1].json, "apply_patch") == STRING_INPUT


STRING_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


def declared_schema(upstream_format, body, name):
    """The parameter schema of function tool `name` as an upstream of `upstream_format` received it."""
    if upstream_format == "anthropic":
        return next(t["input_schema"] for t in body["tools"] if t["name"] == name)
    if upstream_format == "openai-chat":
        return next(
            t["function"]["parameters"]
            for t in body["tools"]
            if t["type"] == "function" and t["function"]["name"] == name
        )
    declarations = [d for tool in body["tools"] for d in tool.get("functionDeclarations", [])]
    return next(d.get("parametersJsonSchema", d.get("parameters")) for d in declarations if d["name"] == name)


def test_the_anthropic_version_flag_sets_both_the_header_and_the_encoding(inproc, alice_key):
    with inproc.upstream("anthropic") as claude:
        add_route("claude", "anthropic", claude.url, alias="m", translation_flags={"anthropic_version": "2026-10-21"})
        inproc.sync()
        response = http(inproc).post(
            inproc.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {alice_key}"},
            json={"model": "m", "temperature": 0.3, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text
        sent = claude.requests[-1]
        assert sent.headers["anthropic-version"] == "2026-10-21"
        assert "temperature" not in sent.json  # that API version has no sampling parameters
        assert "temperature" in response.headers["x-llmproxy-warnings"]
