"""The layering of docs/architecture.md holds: no import cycles, zarr only in the store layer,
no private zarr API, the library never imports click or rich, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import geotessera

PKG = Path(geotessera.__file__).parent
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PKG.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Modules imported at run time (``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}


def test_no_import_cycles():
    graph, state, cycles = _graph(), {}, []

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    # a package __init__ re-exporting its own modules is not a cycle of the layering
    real = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert real == []


def test_only_the_store_layer_imports_zarr():
    users = {m for m, p in _modules().items()
             if any(i == "zarr" or i.startswith("zarr.") for i in _imports(p))}
    assert users and all(m.startswith("geotessera.store") for m in users), sorted(users)


def test_no_private_zarr_api():
    bad = {m: sorted(i for i in _imports(p) if i.startswith(("zarr.core", "zarr.abc"))
                     or "._" in i and i.startswith("zarr"))
           for m, p in _modules().items()}
    assert {m: v for m, v in bad.items() if v} == {}


def test_library_never_imports_the_terminal_libraries():
    offenders = {m for m, p in _modules().items() if not m.startswith("geotessera.cli")
                 and any(i.split(".")[0] in ("click", "rich") for i in _imports(p))}
    assert offenders == set()


def test_modules_stay_under_the_size_budget():
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


@pytest.mark.parametrize("worker", ["geotessera.build.tasks", "geotessera.build.tilesample",
                                    "geotessera.build.parts", "geotessera.preview.overviews"])
def test_the_build_workers_do_not_import_the_registry(worker):
    # every pool worker imports what its tasks need; pyarrow would add ~75 MiB to each
    graph, mods = _graph(), _modules()
    seen, todo = set(), [worker]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    assert "geotessera.archive.registry" not in seen
    assert not {m for m in seen if any(i.split(".")[0] == "pyarrow" for i in _imports(mods[m]))}
