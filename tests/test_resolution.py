"""How a requested model name finds its upstream, and where the upstream request goes."""

from __future__ import annotations

import pytest

from routing.config.registry import load_snapshot
from routing.models import ModelAlias, Upstream
from routing.upstream.client import endpoint_url
from translation.operation import Operation


@pytest.fixture
def snapshot(db):
    openai = Upstream.objects.create(name="openai", format="openai-chat", base_url="https://api.openai.com/v1")
    local = Upstream.objects.create(name="local", format="anthropic", base_url="http://127.0.0.1:1")
    hidden = Upstream.objects.create(
        name="hidden", format="gemini", base_url="http://127.0.0.1:2", allow_direct_models=False
    )
    ModelAlias.objects.create(name="claude-*haiku*", upstream=openai, upstream_model="gpt-4.1-mini", priority=10)
    ModelAlias.objects.create(name="claude-*", upstream=local, upstream_model="", priority=50)
    ModelAlias.objects.create(name="claude-sonnet-4-5", upstream=openai, upstream_model="gpt-4.1", priority=99)
    ModelAlias.objects.create(name="off", upstream=openai, upstream_model="x", enabled=False)
    ModelAlias.objects.create(name="gem", upstream=hidden, upstream_model="gemini-2.5-pro")
    return load_snapshot()


def resolved(snapshot, name):
    route = snapshot.resolve(name)
    return None if route is None else (route.upstream.name, route.upstream_model)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("claude-sonnet-4-5", ("openai", "gpt-4.1")),  # exact names win over patterns
        ("claude-3-5-haiku-20241022", ("openai", "gpt-4.1-mini")),  # lower priority number first
        ("claude-opus-4-1", ("local", "claude-opus-4-1")),  # empty upstream model: the name as sent
        ("claude-sonnet-4-5[1m]", ("openai", "gpt-4.1")),  # Claude Code's 1M-context suffix
        ("claude-sonnet-4-5-20250929", ("openai", "gpt-4.1")),  # dated id
        ("CLAUDE-3-HAIKU", ("openai", "gpt-4.1-mini")),  # patterns ignore case
        ("openai/o3", ("openai", "o3")),  # direct UPSTREAM/MODEL
        ("openai:gpt-5", ("openai", "gpt-5")),  # direct UPSTREAM:MODEL
        ("models/gem", ("hidden", "gemini-2.5-pro")),  # Gemini resource names
        ("hidden/gemini-2.5-flash", None),  # upstream does not allow direct models
        ("off", None),  # disabled alias
        ("nowhere/model", None),
    ],
)
def test_resolution(snapshot, requested, expected):
    assert resolved(snapshot, requested) == expected


def test_disabled_upstream_takes_its_aliases_with_it(db, snapshot):
    Upstream.objects.filter(name="openai").update(enabled=False)
    fresh = load_snapshot()
    assert resolved(fresh, "claude-sonnet-4-5") == ("local", "claude-sonnet-4-5")
    assert resolved(fresh, "openai/o3") is None


@pytest.mark.parametrize(
    ("fmt", "base", "operation", "stream", "url"),
    [
        (
            "openai-chat",
            "https://api.openai.com/v1",
            Operation.GENERATE,
            True,
            "https://api.openai.com/v1/chat/completions",
        ),
        (
            "openai-chat",
            "http://127.0.0.1:11434",
            Operation.GENERATE,
            False,
            "http://127.0.0.1:11434/v1/chat/completions",
        ),
        (
            "openai-chat",
            "https://x.azure.com/openai/deployments/{model}",
            Operation.GENERATE,
            False,
            "https://x.azure.com/openai/deployments/gpt-4o/chat/completions",
        ),
        (
            "openai-responses",
            "https://api.openai.com/v1",
            Operation.COUNT_TOKENS,
            False,
            "https://api.openai.com/v1/responses/input_tokens",
        ),
        ("anthropic", "https://api.anthropic.com", Operation.GENERATE, True, "https://api.anthropic.com/v1/messages"),
        (
            "anthropic",
            "https://api.anthropic.com/v1",
            Operation.COUNT_TOKENS,
            False,
            "https://api.anthropic.com/v1/messages/count_tokens",
        ),
        (
            "gemini",
            "https://generativelanguage.googleapis.com",
            Operation.GENERATE,
            True,
            "https://generativelanguage.googleapis.com/v1beta/models/gpt-4o:streamGenerateContent?alt=sse",
        ),
        (
            "gemini",
            "https://g.example/v1",
            Operation.GENERATE,
            False,
            "https://g.example/v1/models/gpt-4o:generateContent",
        ),
    ],
)
def test_endpoint_urls(db, fmt, base, operation, stream, url):
    Upstream.objects.create(name="u", format=fmt, base_url=base)
    upstream = load_snapshot().upstreams_by_name["u"]
    assert endpoint_url(upstream, operation, "gpt-4o", stream) == url
