"""The layout keeps its promises: the data plane and upstream I/O never touch the ORM, and no import cycle
appears between the project's modules. Read from the source (imports at module level, outside
`if TYPE_CHECKING:`), so a violation fails here before it shows up as a slow request or an import error."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("llmproxy_site", "routing", "translation", "usage")
# Packages whose modules run on the request path and must reach the database only through the database thread.
NO_ORM = ("routing.dataplane", "routing.upstream")
ORM_MODULES = ("django.db", "django.contrib.auth.models", "routing.models", "usage.models")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_imports(path: Path) -> Iterator[str]:
    """Modules imported when `path` is imported (module level; `if TYPE_CHECKING:` blocks left out)."""

    def walk(body: list[ast.stmt]) -> Iterator[str]:
        for node in body:
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    raise AssertionError(f"{path}: use absolute imports (the layout checks read them)")
                yield base
                yield from (f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If) and not _is_type_checking(node):
                yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, ast.Try):
                yield from walk(node.body)

    yield from walk(ast.parse(path.read_text()).body)


MODULES = project_modules()


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith(NO_ORM)))
def test_the_data_plane_and_upstream_io_do_not_import_the_orm(name):
    imported = set(module_imports(MODULES[name]))
    offending = sorted(m for m in imported if m.startswith(ORM_MODULES))
    assert not offending, f"{name} imports {offending}: use routing.runtime.database.run_db or the snapshot instead"


# `translation/` is pure and deterministic: no framework, no network, files, clock, randomness or host tables.
TRANSLATION_FORBIDDEN = (
    "django",
    "channels",
    "daphne",
    "httpx",
    "aiohttp",
    "asyncio",
    "socket",
    "ssl",
    "os",
    "pathlib",
    "io",
    "mimetypes",
    "time",
    "datetime",
    "random",
    "uuid",
    "urllib.request",
    "routing",
    "usage",
    "llmproxy_site",
)


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("translation")))
def test_translation_imports_no_framework_and_does_no_io(name):
    imported = set(module_imports(MODULES[name]))
    offending = sorted(m for m in imported if m.split(".")[0] in TRANSLATION_FORBIDDEN or m in TRANSLATION_FORBIDDEN)
    assert not offending, f"{name} imports {offending}: translation/ stays pure (no Django, no I/O)"


def test_no_import_cycles():
    graph = {
        name: {target for target in module_imports(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }
    cycles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has a few hundred nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_the_checks_see_a_violation(tmp_path):
    """The scanner itself: an ORM import and a cycle written into files are found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\nfrom django.db import models\nif TYPE_CHECKING:\n    import x\n")
    assert "django.db" in set(module_imports(bad)) and "x" not in set(module_imports(bad))
    assert sorted(_strongly_connected({"a": {"b"}, "b": {"a"}, "c": {"a"}})) == [["a", "b"], ["c"]]
