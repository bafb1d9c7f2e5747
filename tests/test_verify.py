"""verify finds what is wrong with a store, and stays quiet about a good one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from geotessera.build.verify import verify_store

CLI = str(Path(sys.executable).parent / "geotessera-registry")


@pytest.fixture
def store(built, tmp_path) -> Path:
    """A private copy of a built store that a test may damage."""
    dst = tmp_path / "utm30_2024.zarr"
    shutil.copytree(built / "utm30_2024.zarr", dst)
    return dst


def _verify(store, archive, **kw):
    with ThreadPoolExecutor(2) as pool:
        return verify_store(store, archive, pool, **kw)


def test_a_good_store_passes_full_and_sampled(store, archive):
    full = _verify(store, archive, full=True)
    assert full.ok, full.problems
    assert full.shards_compared > 8 and full.pixels_mismatched == 0
    sampled = _verify(store, archive, sample=3)
    assert sampled.ok and sampled.shards_compared == 3


def _first_data_shard(store: Path) -> tuple[int, int]:
    f = next(p for p in sorted((store / "L0/embeddings/c/0").rglob("*")) if p.is_file())
    return int(f.parent.name), int(f.name)


def test_a_changed_pixel_is_found_and_located(store, archive):
    row, col = _first_data_shard(store)
    level = zarr.open_group(str(store), mode="r+", use_consolidated=False)["L0"]
    s = level["embeddings"].shards[1]
    block = level["embeddings"][:, row * s:(row + 1) * s, col * s:(col + 1) * s]
    valid = np.argwhere(np.isfinite(level["scales"][row * s:(row + 1) * s, col * s:(col + 1) * s]))
    r, c = valid[0]
    block[0, r, c] = np.int8(block[0, r, c] ^ 0x55)
    level["embeddings"][:, row * s:(row + 1) * s, col * s:(col + 1) * s] = block
    report = _verify(store, archive, full=True)
    assert report.pixels_mismatched == 1
    assert f"first at zone pixel (row, col) = ({row * s + r}, {col * s + c})" in report.problems[0]


def test_missing_and_corrupt_shard_objects_are_reported(store, archive):
    row, col = _first_data_shard(store)
    (store / f"L0/embeddings/c/0/{row}/{col}").unlink()
    files = [p for p in sorted((store / "L0/embeddings/c/0").rglob("*")) if p.is_file()]
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated shard
    report = _verify(store, archive, full=True)
    text = "\n".join(report.problems)
    assert f"shard ({row}, {col}) has scales data but no embeddings shard object" in text
    assert "cannot decode" in text
    assert not report.ok


def test_metadata_inconsistency_is_reported(store, archive):
    meta = store / "L0/scales/zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["spatial:transform"][2] += 10.0
    meta.write_text(json.dumps(doc))
    report = _verify(store, archive, sample=1)
    assert any("L0/scales" in p and "disagrees with the level" in p for p in report.problems)


def test_cli_exit_codes_and_single_json_document(store, archive):
    ok = subprocess.run([CLI, "verify", str(store), "--base-dir", str(archive), "--json",
                         "-j", "1"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "ok"
    row, col = _first_data_shard(store)
    (store / f"L0/embeddings/c/0/{row}/{col}").unlink()
    bad = subprocess.run([CLI, "verify", str(store), "--base-dir", str(archive), "--json",
                          "--full", "-j", "1"], capture_output=True, text=True)
    assert bad.returncode == 1
    doc = json.loads(bad.stdout)  # exactly one document, with the report in it
    assert doc["status"] == "error" and doc["problems"]
    assert str(store) in bad.stderr
