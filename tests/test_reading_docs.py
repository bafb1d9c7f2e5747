"""docs/reading.md's Python examples, and the read API's docstring examples, run as written.

The examples name ``demo/stores/…`` (what ``make demo`` builds); the test builds a demo of
the same extent, zones, years and layout (coarser pixels and fewer bands, so it is quick)
under ``demo/stores`` in a temporary directory, and runs the blocks there, in order, in one
namespace. A block fenced ```` ```python no-run ```` is not run (it needs the network); every
other ``python`` block must run, and at least one must.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.pipeline import zarr_build

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reading.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
#: Modules whose docstring "Examples" run (those of read/ on the demo build).
DOCTESTED = ("geotessera.read.api", "geotessera.read.reader", "geotessera.read.region",
             "geotessera.read.project", "geotessera.read.sources", "geotessera.build.plan",
             "geotessera.archive.demo")


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """(line, info string, code) of every ```python… fenced block, in order."""
    return [(text[:m.start()].count("\n") + 1, m.group(1).strip(), m.group(2))
            for m in FENCE.finditer(text) if m.group(1).split()[:1] == ["python"]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """A directory holding ``demo/stores``: the demo's zones and years, with previews and
    the STAC catalog, as ``make demo`` builds them."""
    root = tmp_path_factory.mktemp("docs")
    spec = DemoSpec(pixel_size=160.0, bands=8)
    write_demo_archive(root / "demo" / "archive", spec)
    with ThreadPoolExecutor(2) as pool:
        zarr_build(root / "demo" / "archive", root / "demo" / "stores", pool,
                   expected_bands=spec.bands)
    return root


def test_the_fences_are_python_or_python_no_run():
    blocks = python_blocks(DOC.read_text())
    assert blocks and {info for _, info, _ in blocks} <= {"python", "python no-run"}


def test_every_example_of_reading_md_runs(demo, monkeypatch):
    monkeypatch.chdir(demo)
    namespace: dict[str, object] = {"__name__": "reading_md"}
    ran, printed = 0, io.StringIO()
    blocks = python_blocks(DOC.read_text())
    for line, info, code in blocks:
        if info == "python no-run":
            continue
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(code, f"{DOC.name}:{line}", "exec"), namespace)
            except Exception as e:
                raise AssertionError(f"docs/reading.md block at line {line} failed: {e!r}") from e
        ran += 1
    assert ran > 0 and ran == sum(info == "python" for _, info, _ in blocks)
    out = printed.getvalue()
    assert "EPSG:32631" in out and "('point', 'band')" in out  # the blocks printed
    assert (demo / "band0.png").stat().st_size > 0  # the plotting example saved its figure


@pytest.mark.parametrize("module", DOCTESTED)
def test_the_read_api_docstring_examples_hold(demo, monkeypatch, module):
    monkeypatch.chdir(demo)
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE, report=False)
    assert result.attempted > 0 and result.failed == 0, result
