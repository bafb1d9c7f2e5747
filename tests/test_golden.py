"""Same archive, same options, same bytes: a build equals the committed manifest, which was
made with the code before the restructure into sub-packages (see tests/golden.py)."""

from __future__ import annotations

import json
from pathlib import Path

from golden import build_fixed, manifest

MANIFEST = Path(__file__).parent / "data" / "golden_manifest.json"


def test_build_and_preview_are_byte_identical_to_the_manifest(tmp_path):
    build_fixed(tmp_path / "archive", tmp_path / "stores")
    want = json.loads(MANIFEST.read_text())
    got = manifest(tmp_path / "stores")
    assert sorted(got) == sorted(want)
    assert [k for k in sorted(want) if got[k] != want[k]] == []
