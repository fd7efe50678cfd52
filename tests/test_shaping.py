"""Per-alias shaping on the decoded request, and through the proxy for every client API.

The end-to-end test runs the proxy in-process (tests/inprocess.py): shaping is the pipeline's work, not the server's."""

from __future__ import annotations

import anthropic
import openai
import pytest

from routing.config.shaping import Shaping, merge_extra_body, shape, tool_history_summary
from routing.models import ModelAlias
from tests.conftest import add_route
from tests.inprocess import InProcessProxy
from translation.anthropic.request import decode_request
from translation.dialect import Dialect
from translation.ir import TranslationError


def claude_code_request(**fields):
    body = {
        "model": "m",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197; cc_entrypoint=cli"},
            {"type": "text", "text": "You are Claude Code. Use the Bash tool."},
        ],
        "messages": [
            {"role": "user", "content": "List files"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"cmd": "ls"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "a.txt\nb.txt"}]},
        ],
        **fields,
    }
    return decode_request(body).value


def system_text(request):
    return [part.text for part in request.system]


def test_billing_header_is_dropped_only_for_other_providers():
    request = claude_code_request()
    assert len(system_text(shape(request, Shaping(), Dialect.OPENAI_CHAT).request)) == 1
    assert len(system_text(shape(request, Shaping(), Dialect.ANTHROPIC).request)) == 2


def test_replacements_and_appended_text():
    shaping = Shaping(system_replacements=(("Claude Code", "Coder"), ("Bash", "Shell")), system_append="Be terse.")
    shaped = shape(claude_code_request(), shaping, Dialect.GEMINI).request
    assert system_text(shaped) == ["You are Coder. Use the Shell tool.", "Be terse."]


def test_tool_history_summary_lists_calls_with_their_results():
    summary = tool_history_summary(claude_code_request().messages)
    assert summary.splitlines()[1] == '- Bash({"cmd":"ls"}) → a.txt b.txt'
    shaped = shape(claude_code_request(), Shaping(summarize_tool_history=True), Dialect.ANTHROPIC).request
    assert "Tool calls so far" in system_text(shaped)[-1]


def test_defaults_fill_gaps_and_overrides_win():
    request = claude_code_request(temperature=0.2)
    shaping = Shaping(default_params={"temperature": 0.9, "top_p": 0.5}, override_params={"reasoning_effort": "low"})
    shaped = shape(request, shaping, Dialect.OPENAI_CHAT).request
    assert (shaped.sampling.temperature, shaped.sampling.top_p) == (0.2, 0.5)
    assert shaped.reasoning.effort == "low"
    forced = shape(request, Shaping(override_params={"temperature": 0.0}), Dialect.OPENAI_CHAT).request
    assert forced.sampling.temperature == 0.0


def test_context_window_leaves_room_for_the_prompt():
    shaped = shape(claude_code_request(), Shaping(max_output_tokens=4096, context_window=1000), Dialect.OPENAI_CHAT)
    assert shaped.output_cap is not None and 0 < shaped.output_cap < 1000
    # A prompt the window cannot hold is refused before it is sent (a 400 in the client's dialect).
    with pytest.raises(TranslationError, match="context window is 10 tokens"):
        shape(claude_code_request(), Shaping(context_window=10), Dialect.OPENAI_CHAT)


def test_extra_body_merges_nested_objects():
    body = {"model": "x", "options": {"temperature": 1}}
    assert merge_extra_body(body, {"options": {"num_ctx": 32768}, "keep_alive": "5m"}) == {
        "model": "x",
        "options": {"temperature": 1, "num_ctx": 32768},
        "keep_alive": "5m",
    }


def test_shaping_reaches_the_upstream_for_translated_and_same_api_clients(inproc: InProcessProxy, alice_key):
    with inproc.upstream("openai-chat", strict=False) as fake:
        add_route("ollama", "openai-chat", fake.url + "/v1", alias="m", model="qwen3")
        alias = ModelAlias.objects.get(name="m")
        alias.system_append = "Answer in French."
        alias.max_output_tokens = 500
        alias.extra_body = {"options": {"num_ctx": 32768}}
        alias.save()
        inproc.sync()

        anthropic.Anthropic(
            api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client()
        ).messages.create(model="m", max_tokens=4000, system="Be brief.", messages=[{"role": "user", "content": "Hi"}])
        sent = fake.requests[-1].json
        system = " ".join(str(m["content"]) for m in sent["messages"] if m["role"] == "system")
        assert "Be brief." in system and "Answer in French." in system
        assert sent["max_tokens"] == 500
        assert sent["options"] == {"num_ctx": 32768}

        # Same API on both sides: the alias still shapes the request.
        client = openai.OpenAI(
            api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client()
        )
        raw = client.chat.completions.with_raw_response.create(
            model="m", max_tokens=4000, messages=[{"role": "user", "content": "Hi"}]
        )
        sent = fake.requests[-1].json
        assert any("Answer in French." in str(m["content"]) for m in sent["messages"] if m["role"] == "system")
        assert sent["max_tokens"] == 500
        assert sent["options"] == {"num_ctx": 32768}
        assert "max_output_tokens" in raw.headers["x-llmproxy-warnings"]
