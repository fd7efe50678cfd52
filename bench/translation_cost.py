"""CPU cost of translation itself, without any I/O: per request and per streamed event.

    python -m bench.translation_cost

Requests: a Claude Code-sized Anthropic request (24 tools, long system prompt, a few turns) decoded and
encoded for each other upstream format. Streams: an OpenAI Chat upstream stream of 200 text deltas and a
tool call, decoded and re-encoded for an Anthropic client, per event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from translation.anthropic import request as anthropic_request
from translation.anthropic import stream as anthropic_stream
from translation.codec import ClientContext, TargetOptions
from translation.gemini import request as gemini_request
from translation.openai_chat import request as chat_request
from translation.openai_chat import stream as chat_stream
from translation.openai_responses import request as responses_request
from translation.sse import SSEParser

SCHEMA = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "description": "The command to run " * 5},
        "timeout": {"type": "number"},
        "description": {"type": "string"},
    },
    "required": ["command"],
    "additionalProperties": False,
    "$schema": "http://json-schema.org/draft-07/schema#",
}
CLAUDE_CODE_LIKE = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
        {"type": "text", "text": "You are Claude Code. " * 300, "cache_control": {"type": "ephemeral"}},
    ],
    "tools": [{"name": f"Tool{i}", "description": "Does a thing. " * 40, "input_schema": SCHEMA} for i in range(24)],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Fix the failing test in tests/test_x.py"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "Tool1", "input": {"command": "pytest -x"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "1 failed\n" * 50}],
        },
    ],
    "thinking": {"type": "adaptive"},
    "metadata": {"user_id": json.dumps({"session_id": "abc"})},
}


def per_call(fn: Callable[[], object], seconds: float = 1.0) -> float:
    """Microseconds per call, from as many calls as fit in `seconds`."""
    calls = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) / calls * 1e6


def chat_upstream_stream(deltas: int) -> bytes:
    frames = [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        }
    ]
    frames += [
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": f"word{i} "}}],
        }
        for i in range(deltas)
    ]
    frames.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "Tool1", "arguments": '{"command":"ls"}'},
                            }
                        ]
                    },
                }
            ],
        }
    )
    frames.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
        }
    )
    frames.append(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": 200, "total_tokens": 210},
        }
    )
    return b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames) + b"data: [DONE]\n\n"


def main() -> None:
    decoded = anthropic_request.decode_request(CLAUDE_CODE_LIKE).value
    target = TargetOptions(model="upstream-model", default_max_output_tokens=8192)
    size = len(json.dumps(CLAUDE_CODE_LIKE))
    print(f"Request: Claude Code-like Anthropic body, {size / 1024:.0f} KB, 24 tools")
    print(f"  decode (Anthropic → IR): {per_call(lambda: anthropic_request.decode_request(CLAUDE_CODE_LIKE)):.0f} µs")
    encoders: dict[str, Callable[[], object]] = {
        "OpenAI Chat": lambda: chat_request.encode_request(decoded, target),
        "OpenAI Responses": lambda: responses_request.encode_request(decoded, target),
        "Gemini": lambda: gemini_request.encode_request(decoded, target),
    }
    for name, encode in encoders.items():
        cost = per_call(encode)
        print(f"  encode (IR → {name}): {cost:.0f} µs")
    raw = json.dumps(CLAUDE_CODE_LIKE)
    print(f"  for scale, json.loads + json.dumps of the body: {per_call(lambda: json.dumps(json.loads(raw))):.0f} µs")

    stream = chat_upstream_stream(200)
    client = ClientContext(request=decoded, created=0)

    def translate_stream() -> int:
        parser = SSEParser()
        decoder = chat_stream.StreamDecoder(decoded)
        encoder = anthropic_stream.StreamEncoder(client)
        out = 0
        for event in parser.feed(stream):
            for ir_event in decoder.feed(event):
                out += sum(len(w.sse()) for w in encoder.feed(ir_event))
        for ir_event in decoder.finish():
            encoder.feed(ir_event)
        encoder.finish()
        return out

    events = len(SSEParser().feed(stream))
    total = per_call(translate_stream)
    print(f"Stream: Chat upstream → Anthropic client, {events} upstream events")
    print(f"  per upstream event (parse, decode, encode, serialise): {total / events:.1f} µs")


if __name__ == "__main__":
    main()
