"""The local input-token estimate: text by script, images from their real header bytes, documents by size,
tools and system included, and plausible totals on the requests real clients sent."""

from __future__ import annotations

import base64
import json
import random
import struct
import typing
import zlib
from typing import Any

import pytest

from tests.fixtures import all_capture_records
from translation.anthropic.request import decode_request as decode_anthropic
from translation.dialect import Dialect
from translation.estimate import estimate_input_tokens
from translation.gemini.request import decode_request as decode_gemini
from translation.ir import (
    DocumentPart,
    FileSource,
    FunctionTool,
    Grammar,
    HostedTool,
    ImagePart,
    InlineSource,
    Message,
    NativePart,
    OpaqueSignature,
    OutputFormat,
    OutputKind,
    Part,
    ReasoningPart,
    RefusalPart,
    Request,
    Role,
    SignatureKind,
    TextPart,
    TextSource,
    Tool,
    ToolCallPart,
    ToolKind,
    ToolResultPart,
    UrlSource,
)
from translation.openai_responses.request import decode_request as decode_responses

PROSE = (
    "The proxy answers token-count requests locally when the upstream cannot count them, so clients that "
    "budget their context window still get a sensible number instead of an error. "
)


def request(*parts: Part, **fields: Any) -> Request:
    return Request(model="m", messages=(Message(Role.USER, parts),), **fields)


def cost(part: Part) -> int:
    """What adding `part` to a one-message request adds to the estimate."""
    return estimate_input_tokens(request(TextPart("x"), part)) - estimate_input_tokens(request(TextPart("x")))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- image headers, built byte by byte from the format specs -------------------------------------------------


def png(width: int, height: int, *, text_chunk: bytes = b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = (b"\x00" + bytes(width)) * height  # filter byte + one grey byte per pixel
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    extra = chunk(b"tEXt", b"note\x00" + text_chunk) if text_chunk else b""
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def jpeg(width: int, height: int) -> bytes:
    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    return (
        b"\xff\xd8"
        + segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
        + segment(0xE1, b"Exif\x00\x00" + bytes(30_000))  # a big EXIF block before the frame header
        + segment(0xDB, bytes(65))
        + b"\xff"  # a fill byte
        + segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")  # progressive SOF
        + b"\xff\xd9"
    )


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def webp(chunk: bytes, body: bytes) -> bytes:
    payload = b"WEBP" + chunk + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def webp_lossy(width: int, height: int) -> bytes:
    return webp(b"VP8 ", b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + bytes(10))


def webp_lossless(width: int, height: int) -> bytes:
    return webp(b"VP8L", b"\x2f" + struct.pack("<I", (width - 1) | (height - 1) << 14) + bytes(10))


def webp_extended(width: int, height: int) -> bytes:
    return webp(b"VP8X", bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little"))


def image(data: bytes, media_type: str = "image/png") -> ImagePart:
    return ImagePart(InlineSource(media_type, b64(data)))


# -- text ----------------------------------------------------------------------------------------------------


def test_plain_text_scales_with_length_at_about_four_characters_a_token() -> None:
    one, ten = cost(TextPart(PROSE)), cost(TextPart(PROSE * 10))
    assert 9.5 * one <= ten <= 10.5 * one
    assert 3.0 <= len(PROSE * 10) / ten <= 5.0


def test_cjk_costs_more_per_character_than_english_and_cyrillic_sits_between() -> None:
    english = "the quick brown fox jumps over the lazy dog " * 25
    chinese = ("人工智能是计算机科学的一个分支它企图了解智能的实质" * 50)[: len(english)]
    russian = ("быстрая коричневая лиса прыгает через ленивую собаку " * 25)[: len(english)]
    assert cost(TextPart(chinese)) > 3 * cost(TextPart(english))
    assert cost(TextPart(english)) < cost(TextPart(russian)) < cost(TextPart(chinese))
    assert cost(TextPart(chinese)) >= len(chinese)  # about a token a character, never fewer


def test_json_and_code_count_denser_than_prose_of_the_same_length() -> None:
    schema = json.dumps({"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}) * 20
    prose = (PROSE * 10)[: len(schema)]
    assert cost(TextPart(schema)) > 1.2 * cost(TextPart(prose))


def test_every_message_adds_framing_even_when_the_text_is_the_same() -> None:
    one = Request(model="m", messages=(Message(Role.USER, (TextPart("hi there"),)),))
    split = Request(
        model="m", messages=(Message(Role.USER, (TextPart("hi"),)), Message(Role.USER, (TextPart(" there"),)))
    )
    assert estimate_input_tokens(split) > estimate_input_tokens(one) > 0


# -- system, tools, output format ----------------------------------------------------------------------------


def test_system_prompt_and_system_or_developer_messages_count() -> None:
    base = estimate_input_tokens(request(TextPart("hi")))
    assert estimate_input_tokens(request(TextPart("hi"), system=(TextPart(PROSE * 10),))) > base + 300
    for role in (Role.SYSTEM, Role.DEVELOPER):
        instructions = Message(role, (TextPart(PROSE * 10),))
        with_role = Request(model="m", messages=(instructions, Message(Role.USER, (TextPart("hi"),))))
        assert estimate_input_tokens(with_role) > base + 300


def claude_code_sized_tools() -> tuple[Tool, ...]:
    # Claude Code sends ~24 tools, ~63 KB of JSON, most of it long descriptions.
    schema = {
        "type": "object",
        "properties": {
            f"arg{i}": {"type": "string", "description": f"What argument {i} means. " * 4} for i in range(6)
        },
        "required": ["arg0"],
        "additionalProperties": False,
    }
    return tuple(FunctionTool(f"Tool{n}", PROSE * 12, schema) for n in range(24))


def test_claude_code_sized_tools_count_far_more_than_the_conversation() -> None:
    plain = estimate_input_tokens(request(TextPart(PROSE)))
    with_tools = estimate_input_tokens(request(TextPart(PROSE), tools=claude_code_sized_tools()))
    assert with_tools - plain > 10_000


def test_tool_definitions_count_name_description_schema_and_grammar() -> None:
    def tools_cost(*tools: Tool) -> int:
        return estimate_input_tokens(request(TextPart("hi"), tools=tools))

    bare = tools_cost(FunctionTool("read"))
    assert tools_cost(FunctionTool("read", PROSE * 5)) > bare + 100
    big_schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(50)}}
    assert tools_cost(FunctionTool("read", parameters=big_schema)) > bare + 300
    grammar = Grammar("lark", 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n' * 10)
    assert tools_cost(FunctionTool("apply_patch", kind=ToolKind.CUSTOM, grammar=grammar)) > bare + 100
    assert tools_cost(FunctionTool("a"), FunctionTool("b")) > bare
    hosted = HostedTool("web_search", Dialect.ANTHROPIC, {"type": "web_search_20250305", "name": "web_search"})
    assert tools_cost(hosted) > estimate_input_tokens(request(TextPart("hi")))


def test_output_schema_counts() -> None:
    base = estimate_input_tokens(request(TextPart("hi")))
    schema = {"type": "object", "properties": {f"field{i}": {"type": "string"} for i in range(40)}}
    assert estimate_input_tokens(request(TextPart("hi"), output_format=OutputFormat(OutputKind.TEXT))) == base
    assert estimate_input_tokens(request(TextPart("hi"), output_format=OutputFormat(OutputKind.JSON_OBJECT))) > base
    with_schema = OutputFormat(OutputKind.JSON_SCHEMA, schema, name="answer")
    assert estimate_input_tokens(request(TextPart("hi"), output_format=with_schema)) > base + 200


# -- images --------------------------------------------------------------------------------------------------


def test_a_large_png_is_capped_at_about_1600_and_a_small_one_costs_its_pixels() -> None:
    assert cost(image(png(2000, 1000))) == 1600  # 2,666 by area, scaled down by the provider
    assert 13 <= cost(image(png(100, 100))) <= 14  # 10,000 / 750 = 13.3


@pytest.mark.parametrize(
    ("build", "media_type"),
    [
        (png, "image/png"),
        (jpeg, "image/jpeg"),
        (gif, "image/gif"),
        (webp_lossy, "image/webp"),
        (webp_lossless, "image/webp"),
        (webp_extended, "image/webp"),
    ],
)
def test_dimensions_are_read_from_each_format_header(build: Any, media_type: str) -> None:
    assert cost(image(build(640, 480), media_type)) == 410  # ceil(307,200 / 750)
    assert cost(image(build(30, 25), media_type)) == 1


def test_base64_size_does_not_leak_into_an_image_count() -> None:
    noise = random.Random(0).randbytes(1_000_000)  # incompressible: ~1.3 MB of base64
    assert 13 <= cost(image(png(100, 100, text_chunk=noise))) <= 14
    assert cost(image(noise, "image/heic")) == 1600  # unreadable header: the flat price, not its size
    assert cost(image(b"GIF89a")) == 1600  # truncated header
    assert cost(ImagePart(InlineSource("image/png", "not base64 at all!"))) == 1600


def test_url_and_file_images_are_flat_and_low_detail_is_openais_flat_price() -> None:
    assert cost(ImagePart(UrlSource("https://example.com/cat.png"))) == 1600
    assert cost(ImagePart(FileSource("file-123"))) == 1600
    assert cost(ImagePart(InlineSource("image/png", b64(png(2000, 1000))), detail="low")) == 85


def test_url_safe_unpadded_base64_still_yields_the_dimensions() -> None:
    data = base64.urlsafe_b64encode(png(640, 480) + b"\xfb\xff").decode().rstrip("=")
    assert "-" in data or "_" in data
    assert cost(ImagePart(InlineSource("image/png", data))) == 410


# -- documents -----------------------------------------------------------------------------------------------


def test_a_pdf_costs_by_decoded_size_never_by_base64_characters() -> None:
    pdf = b"%PDF-1.7\n" + random.Random(1).randbytes(120_000)
    tokens = cost(DocumentPart(InlineSource("application/pdf", b64(pdf))))
    assert tokens == pytest.approx(len(pdf) / 4, rel=0.01)
    assert tokens < cost(TextPart(b64(pdf))) * 0.8  # the same characters read as text would cost more


def test_text_documents_count_their_text() -> None:
    text = PROSE * 20
    as_text = cost(DocumentPart(TextSource(text)))
    assert as_text == pytest.approx(cost(TextPart(text)), abs=1)
    inline = DocumentPart(InlineSource("text/markdown", b64(text.encode())))
    assert cost(inline) == pytest.approx(as_text, abs=1)
    assert cost(DocumentPart(InlineSource("application/json", b64(b'{"a": 1}' * 100)))) < 400


def test_audio_is_far_cheaper_per_byte_than_a_pdf_and_remote_documents_are_flat() -> None:
    blob = b64(bytes(160_000))  # ~10 s of 128 kbit/s audio
    assert cost(DocumentPart(InlineSource("audio/mpeg", blob))) == 320
    assert cost(DocumentPart(InlineSource("application/pdf", blob))) == 40_000
    assert cost(DocumentPart(InlineSource("image/png", b64(png(100, 100))))) == 14
    assert cost(DocumentPart(UrlSource("https://example.com/a.pdf"))) == 3000
    assert cost(DocumentPart(FileSource("file-abc", "application/pdf"))) == 3000


# -- tool traffic and reasoning ------------------------------------------------------------------------------


def test_tool_calls_and_results_count_their_content() -> None:
    args = {"command": "ls -la /work/main", "description": "List files in the repository root"}
    call = ToolCallPart.from_object("toolu_1", "Bash", args)
    assert cost(call) > 8 + len(call.raw_arguments) / 5
    assert cost(ToolCallPart.from_raw("c1", "apply_patch", PROSE * 10, kind=ToolKind.CUSTOM)) > 300
    text_result = ToolResultPart("toolu_1", (TextPart(PROSE * 10),))
    assert cost(text_result) > cost(TextPart(PROSE * 10))
    image_result = ToolResultPart("toolu_1", (image(png(2000, 1000)),))
    assert cost(image_result) > 1600
    pdf_result = ToolResultPart("toolu_1", (DocumentPart(InlineSource("application/pdf", b64(bytes(40_000)))),))
    assert cost(pdf_result) > 10_000


def test_reasoning_counts_its_text_but_not_its_signature() -> None:
    signature = OpaqueSignature(Dialect.ANTHROPIC, SignatureKind.ANTHROPIC_SIGNATURE, "Eq" * 20_000)
    unsigned = ReasoningPart(PROSE * 10)
    assert cost(unsigned) > 300
    assert cost(ReasoningPart(PROSE * 10, signature=signature)) == cost(unsigned)
    assert cost(ReasoningPart("", signature=signature)) == 0


def every_part() -> list[Part]:
    sources = (
        InlineSource("image/png", b64(png(64, 64))),
        UrlSource("https://example.com/x"),
        FileSource("file-1"),
        TextSource("some text " * 10),
    )
    return [
        TextPart("hello"),
        *(ImagePart(s) for s in sources),
        *(DocumentPart(s) for s in sources),
        DocumentPart(InlineSource("application/pdf", b64(b"%PDF-1.4 " * 100))),
        DocumentPart(InlineSource("audio/wav", b64(bytes(50_000)))),
        DocumentPart(InlineSource("text/plain", b64("héllo wörld 你好 🎉".encode()))),
        ToolCallPart.from_raw("c1", "f", '{"a": 1}'),
        ToolCallPart.from_raw("c2", "f", "not json"),
        ToolResultPart("c1", (TextPart("ok"), ImagePart(UrlSource("https://example.com/y.png")))),
        ToolResultPart("c2", (), is_error=True),
        ReasoningPart("thinking about it", summary=True),
        RefusalPart("I can't help with that."),
        NativePart(Dialect.ANTHROPIC, {"type": "web_search_tool_result", "content": [{"title": "result"}]}),
    ]


def test_every_part_type_is_handled_and_costs_something() -> None:
    parts = every_part()
    assert {type(p) for p in parts} == set(typing.get_args(Part)), "a new part type needs a case here"
    for part in parts:
        assert cost(part) > 0, part
    everything = Request(
        model="m",
        system=(TextPart("be brief"),),
        messages=(Message(Role.USER, tuple(parts)), Message(Role.ASSISTANT, tuple(parts))),
        tools=(FunctionTool("f"), HostedTool("code_execution", Dialect.OPENAI_RESPONSES, {"type": "code_interpreter"})),
        output_format=OutputFormat(OutputKind.JSON_SCHEMA, {"type": "object"}),
    )
    assert estimate_input_tokens(everything) > 2 * sum(cost(p) for p in parts)


def test_an_empty_request_still_costs_its_framing() -> None:
    assert 0 < estimate_input_tokens(Request(model="m", messages=())) < 10


# -- real client requests ------------------------------------------------------------------------------------


def captured_requests() -> list[Any]:
    params = []
    for name, record in all_capture_records():
        route, body = str(record.get("path") or ""), record.get("body")
        if not isinstance(body, dict):
            continue
        if route.startswith("/v1/messages"):
            decoded = decode_anthropic(body).value
        elif route == "/v1/responses" and "input" in body:
            decoded = decode_responses(body).value
        elif "/models/" in route and "contents" in body:
            decoded = decode_gemini(body, model=route.split("/models/")[1].split(":")[0]).value
        else:
            continue
        params.append(pytest.param(route, body, decoded, id=name))
    return params


@pytest.mark.parametrize(("route", "body", "decoded"), captured_requests())
def test_captured_requests_land_in_a_plausible_range(route: str, body: dict[str, Any], decoded: Request) -> None:
    size = len(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
    estimate = estimate_input_tokens(decoded)
    if size > 5_000:  # the agents' requests: mostly English instructions and JSON schemas, 3-5 characters a token
        assert 2.5 <= size / estimate <= 6.0, (size, estimate)
    if route.startswith("/v1/messages") and size > 50_000:  # Claude Code: ~77 KB, ~18k cl100k tokens
        assert 12_000 <= estimate <= 30_000
        without_tools = estimate_input_tokens(Request(model=decoded.model, messages=decoded.messages))
        assert without_tools < estimate / 4, "Claude Code's tool definitions dominate its first requests"
