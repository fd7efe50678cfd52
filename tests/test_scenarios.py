"""Scenario routing (issue 13): an alias sends background, thinking, long-context, image and web-search requests to
their own targets, whichever client API asked, and the ledger row names the scenario.

Detection is unit-tested on the decoded request (translation IR) and on each client API's wire form; the routing
itself through the official SDKs and the Responses WebSocket against in-process fake upstreams, asserting which
upstream and model each request reached."""

from __future__ import annotations

import base64
import re

import anthropic
import openai
import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client
from google import genai
from google.genai import types as genai_types

from routing.config.scenarios import (
    ORDER,
    Scenario,
    ScenarioTarget,
    Target,
    detect,
    parse_scenarios,
)
from routing.dataplane.codecs import codec_for
from routing.models import ModelAlias, Upstream
from tests.fakes.providers import fake_upstream
from tests.inprocess import InProcessProxy, passwordless_alice  # noqa: F401  (no password hashing here)
from tests.test_responses_ws import create, final, key, live, opened, reload, turn  # noqa: F401  (fixtures)
from translation.dialect import Dialect
from translation.ir import (
    Effort,
    FunctionTool,
    HostedTool,
    ImagePart,
    InlineSource,
    Message,
    ReasoningConfig,
    Request,
    Role,
    TextPart,
    ThinkingMode,
    ToolResultPart,
)
from usage.models import LedgerEntry

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100ffff03000006000557bfab"
        "d40000000049454e44ae426082"
    )
).decode()
LONG_TEXT = "Please read this carefully. " * 400  # about 2,400 estimated tokens

EVERY = tuple(
    ScenarioTarget(scenario, Target("up", f"{scenario.value}-m"), 1000 if scenario is Scenario.LONG_CONTEXT else None)
    for scenario in ORDER
)


def ir(*parts, model: str = "claude-main", **fields) -> Request:
    return Request(model=model, messages=(Message(Role.USER, parts or (TextPart("Hi"),)),), **fields)


def chosen(request: Request, requested: str = "claude-main", targets=EVERY) -> str | None:
    found = detect(request, requested, targets)
    return found.scenario.value if found else None


# --- detection on the IR ---------------------------------------------------------------------------------------


def test_a_plain_request_matches_no_scenario():
    assert chosen(ir()) is None
    assert chosen(ir(tools=(FunctionTool("exec"),))) is None  # a function tool is not web search


def test_each_scenario_is_detected():
    assert chosen(ir(TextPart(LONG_TEXT))) == "long_context"
    assert chosen(ir(ImagePart(InlineSource("image/png", PNG)))) == "image"
    # An image returned by a tool counts too (a screenshot tool, Claude Code's Read of a picture).
    result = ToolResultPart("call_1", (ImagePart(InlineSource("image/png", PNG)),))
    assert chosen(ir(result)) == "image"
    assert chosen(ir(tools=(HostedTool("web_search", Dialect.ANTHROPIC, {}),))) == "web_search"
    assert chosen(ir(), requested="claude-haiku-4-5-20251001") == "background"
    assert chosen(ir(reasoning=ReasoningConfig(mode=ThinkingMode.ENABLED, budget_tokens=2048))) == "think"
    assert chosen(ir(reasoning=ReasoningConfig(effort=Effort.HIGH))) == "think"
    assert chosen(ir(reasoning=ReasoningConfig(budget_tokens=1024))) == "think"


def test_thinking_switched_off_or_minimal_is_not_think():
    assert chosen(ir(reasoning=ReasoningConfig(mode=ThinkingMode.DISABLED))) is None
    assert chosen(ir(reasoning=ReasoningConfig(effort=Effort.NONE))) is None
    assert chosen(ir(reasoning=ReasoningConfig(effort=Effort.MINIMAL))) is None
    assert chosen(ir(reasoning=ReasoningConfig(budget_tokens=0))) is None


def test_the_first_matching_scenario_in_the_documented_order_wins():
    thinking = ReasoningConfig(effort=Effort.HIGH)
    web = (HostedTool("web_search", Dialect.OPENAI_RESPONSES, {}),)
    image = ImagePart(InlineSource("image/png", PNG))
    assert chosen(ir(TextPart(LONG_TEXT), image, tools=web, reasoning=thinking)) == "long_context"
    assert chosen(ir(image, tools=web, reasoning=thinking)) == "image"
    assert chosen(ir(tools=web, reasoning=thinking), requested="claude-haiku-4-5") == "web_search"
    assert chosen(ir(reasoning=thinking), requested="claude-haiku-4-5") == "background"
    # Only scenarios that have a target count: the next one that does is taken.
    only_think = tuple(t for t in EVERY if t.scenario is Scenario.THINK)
    assert chosen(ir(image, reasoning=thinking), targets=only_think) == "think"
    assert chosen(ir(image), targets=only_think) is None


def test_long_context_uses_its_threshold():
    low = (ScenarioTarget(Scenario.LONG_CONTEXT, Target("up", "long"), above_tokens=10),)
    high = (ScenarioTarget(Scenario.LONG_CONTEXT, Target("up", "long"), above_tokens=100_000),)
    assert chosen(ir(TextPart("a few words more than ten tokens, surely, in all")), targets=low) == "long_context"
    assert chosen(ir(TextPart(LONG_TEXT)), targets=high) is None


# --- detection on each client API's wire form ----------------------------------------------------------------


def decoded(dialect: Dialect, body: dict, model: str | None = None) -> Request:
    return codec_for(dialect).request.decode_request(body, model=model).value


def test_every_client_api_is_detected_alike():
    anthropic_body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    chat_body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
    responses_body = {"model": "m", "input": "Hi"}
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    cases = [
        (Dialect.ANTHROPIC, {**anthropic_body, "thinking": {"type": "enabled", "budget_tokens": 2048}}, "think"),
        (
            Dialect.ANTHROPIC,
            {**anthropic_body, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "web_search",
        ),
        (
            Dialect.ANTHROPIC,
            {
                **anthropic_body,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
                        ],
                    }
                ],
            },
            "image",
        ),
        (Dialect.OPENAI_CHAT, {**chat_body, "reasoning_effort": "high"}, "think"),
        (Dialect.OPENAI_CHAT, {**chat_body, "web_search_options": {}}, "web_search"),
        (
            Dialect.OPENAI_CHAT,
            {
                **chat_body,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
                    }
                ],
            },
            "image",
        ),
        (Dialect.OPENAI_RESPONSES, {**responses_body, "reasoning": {"effort": "medium"}}, "think"),
        (Dialect.OPENAI_RESPONSES, {**responses_body, "tools": [{"type": "web_search"}]}, "web_search"),
        (Dialect.OPENAI_RESPONSES, {**responses_body, "input": LONG_TEXT}, "long_context"),
        (Dialect.GEMINI, {**gemini_body, "generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}}, "think"),
        (Dialect.GEMINI, {**gemini_body, "tools": [{"googleSearch": {}}]}, "web_search"),
        (
            Dialect.GEMINI,
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": PNG}}]}]},
            "image",
        ),
    ]
    for dialect, body, expected in cases:
        model = "m" if dialect is Dialect.GEMINI else None
        assert chosen(decoded(dialect, body, model)) == expected, (dialect, body)
    off = {**gemini_body, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    assert chosen(decoded(Dialect.GEMINI, off, "m")) is None
    assert chosen(decoded(Dialect.OPENAI_RESPONSES, {**responses_body, "reasoning": {"effort": "none"}})) is None


# --- configuration ---------------------------------------------------------------------------------------------


def test_scenario_configuration_is_validated():
    assert parse_scenarios({"think": {"upstream": "b", "model": "r"}}) == {"think": {"upstream": "b", "model": "r"}}
    for bad, message in [
        ({"thinking": {"upstream": "b", "model": "r"}}, "unknown scenario"),
        ({"think": {"upstream": "b"}}, "model is required"),
        ({"think": {"model": "r"}}, "upstream"),
        ({"long_context": {"upstream": "b", "model": "r"}}, "above_tokens"),
        ({"long_context": {"upstream": "b", "model": "r", "above_tokens": -5}}, "above_tokens"),
        ({"think": {"upstream": "b", "model": "r", "above_tokens": 5}}, "unknown field"),
        (["think"], "mapping"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_scenarios(bad)


@pytest.mark.django_db
def test_the_admin_refuses_a_scenario_naming_no_upstream():
    upstream = Upstream.objects.create(name="up", format="anthropic", base_url="http://127.0.0.1:1")
    alias = ModelAlias(name="smart", upstream=upstream, scenarios={"think": {"upstream": "nowhere", "model": "r"}})
    with pytest.raises(ValidationError, match="no upstream named nowhere"):
        alias.full_clean()
    alias.scenarios = {"think": {"upstream": "up", "model": "r"}}
    alias.full_clean()


# --- through the SDKs --------------------------------------------------------------------------------------------

SCENARIOS = {
    "background": {"upstream": "claude", "model": "bg-m"},
    "think": {"upstream": "chat", "model": "think-m"},  # another API: the request is translated for it
    "long_context": {"upstream": "claude", "model": "long-m", "above_tokens": 1000},
    "image": {"upstream": "claude", "model": "vision-m"},
    "web_search": {"upstream": "claude", "model": "search-m"},
}


def configure(claude_url: str, chat_url: str) -> None:
    claude = Upstream.objects.create(name="claude", format="anthropic", base_url=claude_url)
    Upstream.objects.create(name="chat", format="openai-chat", base_url=chat_url + "/v1")
    ModelAlias.objects.create(name="claude-*", upstream=claude, upstream_model="default-m", scenarios=SCENARIOS)


def test_each_scenario_reaches_its_target_from_every_sdk_and_the_ledger_names_it(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as claude, inproc.upstream("openai-chat", strict=False) as chat:
        configure(claude.url, chat.url)
        inproc.sync()
        messages = anthropic.Anthropic(
            api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client()
        )
        oai = openai.OpenAI(api_key=alice_key, base_url=inproc.url + "/v1", max_retries=0, http_client=inproc.client())
        options = genai_types.HttpOptions(base_url=inproc.url, httpx_client=inproc.client())
        gemini = genai.Client(api_key=alice_key, http_options=options)
        hi = [{"role": "user", "content": "Hi"}]

        messages.messages.create(model="claude-main", max_tokens=100, messages=hi)
        assert claude.requests[-1].json["model"] == "default-m"
        messages.messages.create(model="claude-haiku-4-5-20251001", max_tokens=100, messages=hi)
        assert claude.requests[-1].json["model"] == "bg-m"
        messages.messages.create(
            model="claude-main", max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2048}, messages=hi
        )
        assert chat.requests[-1].json["model"] == "think-m" and len(chat.requests) == 1
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
        messages.messages.create(model="claude-main", max_tokens=100, messages=[{"role": "user", "content": [image]}])
        assert claude.requests[-1].json["model"] == "vision-m"
        messages.messages.create(
            model="claude-main",
            max_tokens=100,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=hi,
        )
        assert claude.requests[-1].json["model"] == "search-m"
        messages.messages.create(model="claude-main", max_tokens=100, messages=[{"role": "user", "content": LONG_TEXT}])
        assert claude.requests[-1].json["model"] == "long-m"

        # OpenAI Chat and Responses, and Gemini: the same rules.
        oai.chat.completions.create(model="claude-main", reasoning_effort="high", messages=hi)
        assert chat.requests[-1].json["model"] == "think-m" and len(chat.requests) == 2
        oai.responses.create(model="claude-main", input="Hi", tools=[{"type": "web_search"}])
        assert claude.requests[-1].json["model"] == "search-m"
        oai.responses.create(model="claude-main", input="Hi")
        assert claude.requests[-1].json["model"] == "default-m"
        config = genai_types.GenerateContentConfig(thinking_config=genai_types.ThinkingConfig(thinking_budget=1024))
        gemini.models.generate_content(model="claude-main", contents="Hi", config=config)
        assert chat.requests[-1].json["model"] == "think-m" and len(chat.requests) == 3
        picture = genai_types.Part.from_bytes(data=base64.b64decode(PNG), mime_type="image/png")
        gemini.models.generate_content(model="claude-main", contents=[picture])
        assert claude.requests[-1].json["model"] == "vision-m"

        inproc.drain()
        rows = list(
            # This test's upstreams only: a row of an earlier test's exchange may still be written late.
            LedgerEntry.objects.filter(upstream__in=("claude", "chat"))
            .order_by("started_at", "id")
            .values_list("scenario", "upstream", "upstream_model")
        )
        assert rows == [
            ("", "claude", "default-m"),
            ("background", "claude", "bg-m"),
            ("think", "chat", "think-m"),
            ("image", "claude", "vision-m"),
            ("web_search", "claude", "search-m"),
            ("long_context", "claude", "long-m"),
            ("think", "chat", "think-m"),
            ("web_search", "claude", "search-m"),
            ("", "claude", "default-m"),
            ("think", "chat", "think-m"),
            ("image", "claude", "vision-m"),
        ]
        own = LedgerEntry.objects.filter(upstream__in=("claude", "chat"))
        assert set(own.values_list("alias", flat=True)) == {"claude-*"}

        # The admin's ledger shows it, in the list and on a row's page.
        staff = Client()
        staff.force_login(User.objects.create_superuser("operator", password=None))
        listing = staff.get("/admin/usage/ledgerentry/").content.decode()
        assert "column-scenario" in listing and "long_context" in listing
        row = own.get(scenario="background")
        page = staff.get(f"/admin/usage/ledgerentry/{row.pk}/change/").content.decode()
        assert re.search(r'field-scenario[\s\S]{0,400}(>background<|value="background")', page)


def test_an_alias_without_scenarios_is_untouched_by_them(inproc, alice_key):
    with inproc.upstream("anthropic", strict=False) as claude:
        upstream = Upstream.objects.create(name="claude", format="anthropic", base_url=claude.url)
        ModelAlias.objects.create(name="smart", upstream=upstream, upstream_model="default-m")
        inproc.sync()
        messages = anthropic.Anthropic(
            api_key=alice_key, base_url=inproc.url, max_retries=0, http_client=inproc.client()
        )
        messages.messages.create(
            model="smart",
            max_tokens=4000,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "Hi"}],
        )
        assert claude.requests[-1].json["model"] == "default-m"


@pytest.fixture
def routed_upstreams(transactional_db):
    with fake_upstream("anthropic", strict=False) as claude, fake_upstream("openai-chat", strict=False) as chat:
        configure(claude.url, chat.url)
        yield claude, chat


async def test_codex_over_the_responses_websocket_is_routed_by_scenario(live, key, routed_upstreams):  # noqa: F811
    claude, chat = routed_upstreams
    await reload()
    ws = await opened(key)
    plain = create(model="claude-main", input="Hi", tools=[], reasoning=None, include=[])
    final(await turn(ws, plain))
    assert claude.requests[-1].json["model"] == "default-m"
    final(await turn(ws, {**plain, "reasoning": {"effort": "high"}}))
    assert chat.requests[-1].json["model"] == "think-m"
    # A turn continuing one of the connection's responses is judged with the whole conversation: each input
    # alone is under long_context's 1,000 tokens, both together are over.
    half = "Please read this carefully. " * 120
    first = final(await turn(ws, {**plain, "input": half}))
    assert claude.requests[-1].json["model"] == "default-m"
    final(await turn(ws, {**plain, "input": half, "previous_response_id": first["id"]}))
    assert claude.requests[-1].json["model"] == "long-m"
    await ws.disconnect()
