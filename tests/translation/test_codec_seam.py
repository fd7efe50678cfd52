"""The seam routing uses: every dialect package exports one `CODEC` with the same helper names, and the
translation package stays pure (standard library and translation.* only, no I/O, no clock)."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

import pytest

from translation.codec import ClientContext, Codec, RequestCodec, ResponseCodec, TargetOptions
from translation.dialect import Dialect
from translation.errors import ErrorKind
from translation.ir import (
    BlockStop,
    Message,
    Request,
    ResponseStart,
    ResponseStop,
    Role,
    StopReason,
    StreamError,
    TextDelta,
    TextPart,
    TextStart,
    Usage,
)

FOLDERS = {
    Dialect.ANTHROPIC: "anthropic",
    Dialect.OPENAI_CHAT: "openai_chat",
    Dialect.OPENAI_RESPONSES: "openai_responses",
    Dialect.GEMINI: "gemini",
    Dialect.BEDROCK: "bedrock",
}
TRANSLATION = Path(__file__).resolve().parents[2] / "translation"

# The public names routing calls, per module: pinned so a rename in one dialect breaks here, not in routing.
HELPERS = {
    "request": ("decode_request", "encode_request"),
    "response": ("decode_response", "encode_response"),
    "stream": ("StreamDecoder", "StreamEncoder"),
}


def codec(dialect: Dialect) -> Codec:
    package = importlib.import_module(f"translation.{FOLDERS[dialect]}")
    found = package.CODEC
    assert isinstance(found, Codec)
    return found


def test_every_dialect_has_a_folder() -> None:
    assert set(FOLDERS) == set(Dialect)
    assert all((TRANSLATION / folder / "__init__.py").is_file() for folder in FOLDERS.values())


@pytest.mark.parametrize("dialect", list(Dialect))
def test_codec_is_built_from_its_own_modules(dialect: Dialect) -> None:
    found = codec(dialect)
    assert found.dialect is dialect
    for field, names in HELPERS.items():
        module = getattr(found, field)
        assert module is importlib.import_module(f"translation.{FOLDERS[dialect]}.{field}")
        for name in names:
            assert callable(getattr(module, name)), f"{dialect}: {field}.{name}"


def _signature(protocol: type, name: str) -> list[tuple[str, inspect._ParameterKind, bool]]:
    params = list(inspect.signature(getattr(protocol, name)).parameters.values())[1:]  # without self
    return [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in params]


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize(
    ("field", "protocol", "name"),
    [
        ("request", RequestCodec, "decode_request"),
        ("request", RequestCodec, "encode_request"),
        ("response", ResponseCodec, "decode_response"),
        ("response", ResponseCodec, "encode_response"),
    ],
)
def test_helper_signatures_match_the_contract(dialect: Dialect, field: str, protocol: type, name: str) -> None:
    """Same parameter names, kinds and required-ness as the Protocol: routing calls them by keyword."""
    function = getattr(getattr(codec(dialect), field), name)
    params = [
        (p.name, p.kind, p.default is inspect.Parameter.empty) for p in inspect.signature(function).parameters.values()
    ]
    assert params == _signature(protocol, name)


def _request() -> Request:
    return Request(model="alias-model", messages=(Message(Role.USER, (TextPart("hi"),)),), max_output_tokens=64)


@pytest.mark.parametrize("client", list(Dialect))
@pytest.mark.parametrize("upstream", list(Dialect))
def test_codecs_compose_through_the_seam(client: Dialect, upstream: Dialect) -> None:
    """What routing does, through CODEC only: client body -> IR -> upstream body -> IR -> client body."""
    request = _request()
    client_body = codec(client).request.encode_request(request, TargetOptions(model="alias-model")).value
    decoded = codec(client).request.decode_request(client_body, model="alias-model").value
    assert [p for m in decoded.messages for p in m.parts if isinstance(p, TextPart)] == [TextPart("hi")]
    upstream_body = codec(upstream).request.encode_request(decoded, TargetOptions(model="up-model")).value
    assert isinstance(upstream_body, dict)

    context = ClientContext(request=decoded, created=1_700_000_000)
    stream_encoder = codec(client).stream.StreamEncoder(context)
    events = [
        ResponseStart("r1", "up-model", Usage.from_openai(5, 0)),
        TextStart(0),
        TextDelta(0, "hello"),
        BlockStop(0),
        ResponseStop(StopReason.END_TURN, Usage.from_openai(5, 1)),
    ]
    wire = [w for event in events for w in stream_encoder.feed(event)] + stream_encoder.finish()
    assert "hello" in "".join(str(w.data) for w in wire)
    assert stream_encoder.warnings == []

    # An upstream body that simply ends is a StreamError from every decoder, never a fake success.
    stream_decoder = codec(upstream).stream.StreamDecoder(decoded)
    (last,) = stream_decoder.finish()[-1:]
    assert isinstance(last, StreamError)
    assert last.error.kind is ErrorKind.UPSTREAM_ERROR


# -- purity: an import and call scan of translation/** -----------------------------------------------------------

# Standard-library modules that read files, the network, the environment, the clock or randomness.
IMPURE_STDLIB = {
    "asyncio", "datetime", "glob", "http", "importlib", "io", "logging", "mimetypes", "os", "pathlib", "random",
    "secrets", "select", "shutil", "signal", "socket", "sqlite3", "ssl", "subprocess", "sys", "tempfile",
    "threading", "time", "urllib", "uuid", "zoneinfo",
}  # fmt: skip
IMPURE_BUILTINS = {"open", "input", "print", "exec", "eval", "compile", "__import__", "breakpoint"}


def _sources() -> list[Path]:
    files = sorted(TRANSLATION.rglob("*.py"))
    assert len(files) > 40
    return files


def _imports(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "use absolute imports (translation.…)"
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(TRANSLATION)))
def test_translation_imports_only_stdlib_and_itself(path: Path) -> None:
    for name in _imports(ast.parse(path.read_text(), str(path))):
        top = name.split(".")[0]
        if top == "translation":
            continue
        assert top in sys.stdlib_module_names, f"{path.name} imports {name} (not standard library)"
        assert top not in IMPURE_STDLIB, f"{path.name} imports {name} (I/O, clock, environment or randomness)"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(TRANSLATION)))
def test_translation_calls_no_io_builtins(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not called & IMPURE_BUILTINS, f"{path.name} calls {sorted(called & IMPURE_BUILTINS)}"


def test_the_scan_would_see_a_forbidden_import() -> None:
    """The scan itself works: it finds imports in nested scopes and from-imports."""
    tree = ast.parse("def f():\n    import django.conf\n    from httpx import Client\n    import time\n")
    assert _imports(tree) == ["django.conf", "httpx", "time"]
    assert "django" not in sys.stdlib_module_names and "httpx" not in sys.stdlib_module_names
