"""Packaging conventions: py.typed ships, the public names (lazy ones too) are listed by
__all__ and dir(), and no doc sends users to PyPI's unrelated ``geotessera``."""

from __future__ import annotations

import re
from pathlib import Path

import geotessera

REPO = Path(__file__).resolve().parents[1]


def test_py_typed_ships_in_the_package():
    assert (Path(geotessera.__file__).parent / "py.typed").is_file()


def test_all_and_dir_show_the_lazy_public_names():
    for name in ("Reader", "dequantise_dataset", "open_store", "sample", "sample_file",
                 "catalog_items", "__version__"):
        assert name in geotessera.__all__ and name in dir(geotessera), name
        assert getattr(geotessera, name) is not None
    assert geotessera.Reader.__module__ == "geotessera.read.reader"


def test_docs_never_install_geotessera_from_the_package_index():
    pattern = re.compile(r"pip install\s+['\"]?geotessera(\[|\b)")
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{doc.name}:{n}: {line}"
