"""The bad-input cases that only a build (not the header scan) can see or act on."""

from __future__ import annotations

import json

import numpy as np
import zarr
from click.testing import CliRunner
from conftest import archive_fixtures

from geotessera.cli import cli
from geotessera.archive.demo import DemoSpec

SPEC = DemoSpec(lon_min=-0.1, lon_max=0.1, lat_min=50.0, lat_max=50.2, pixel_size=200.0,
                bands=4, years=(2024,))
ARGS = ["--bands", "4", "--shard-px", "32", "--chunk-px", "16", "--scales-chunk-px", "32",
        "-j", "1", "--json", "-q"]
TILE = "grid_0.05_50.05"


pristine, base = archive_fixtures(SPEC, "bad", "base")


def _scales_path(base, name=TILE):
    return base / "global_0.1_degree_representation/2024" / name / f"{name}_scales.npy"


def _build(base, out, *extra):
    res = CliRunner().invoke(cli, ["zarr-build", str(base), "-o", str(out), *ARGS, *extra])
    return res, (json.loads(res.stdout) if res.stdout.strip() else None)


def test_all_nan_tile_is_named_in_the_summary_and_the_store(base, tmp_path):
    s = np.load(_scales_path(base))
    np.save(_scales_path(base), np.full_like(s, np.nan))
    res, doc = _build(base, tmp_path / "out")
    assert res.exit_code == 0, res.output
    store = next(d for d in doc["stores"] if d["zone"] == 31)
    assert store["tiles_without_data"] == [TILE]
    assert f"warning: {TILE}: scales are NaN or inf" in res.stderr
    attrs = zarr.open_group(store["path"], mode="r").attrs
    assert attrs["geotessera:tiles_without_data"] == [TILE]


def test_three_dimensional_scales_reduce_to_the_nan_max_over_bands(base, tmp_path):
    ref, _ = _build(base, tmp_path / "ref")
    assert ref.exit_code == 0, ref.output
    s2 = np.load(_scales_path(base))
    s3 = np.repeat(s2[..., None], SPEC.bands, axis=2)
    s3[..., 1] = np.where(np.isfinite(s2), s2 / 2, np.nan)  # smaller than the max: ignored
    s3[::3, ::3, 0] = np.nan  # a NaN in one band does not hide the others
    np.save(_scales_path(base), s3.astype(np.float32))
    res, _ = _build(base, tmp_path / "out")
    assert res.exit_code == 0, res.output
    for name in ("utm30_2024.zarr", "utm31_2024.zarr"):
        a = zarr.open_group(str(tmp_path / "ref" / name), mode="r")["L0"]["scales"][:]
        b = zarr.open_group(str(tmp_path / "out" / name), mode="r")["L0"]["scales"][:]
        np.testing.assert_array_equal(a, b)


def test_skip_bad_records_skipped_tiles_in_the_store(base, tmp_path):
    emb = base / "global_0.1_degree_representation/2024" / TILE / f"{TILE}.npy"
    emb.write_bytes(emb.read_bytes()[:-100])
    refused, doc = _build(base, tmp_path / "no")
    assert refused.exit_code == 1 and doc["status"] == "error"
    assert str(emb) in refused.stderr and "truncated" in refused.stderr
    assert not (tmp_path / "no").exists() or not any((tmp_path / "no").iterdir())
    res, doc = _build(base, tmp_path / "out", "--skip-bad")
    assert res.exit_code == 0, res.output
    store = next(d for d in doc["stores"] if d["zone"] == 31)
    skipped = zarr.open_group(store["path"], mode="r").attrs["geotessera:tiles_skipped"]
    assert [s["name"] for s in skipped] == [TILE] and "truncated" in skipped[0]["problem"]
    assert store["tiles"] == 1  # grid_0.15_50.05 only


def test_unparsable_names_are_counted_and_listed_with_verbose(base, tmp_path):
    (base / "global_0.1_degree_representation/2024/notatile").mkdir()
    (base / "global_0.1_degree_representation/misc").mkdir()
    quiet = CliRunner().invoke(cli, ["scan", str(base), "--bands", "4"])
    assert quiet.exit_code == 0
    assert "ignored 2 unparsable name(s)" in quiet.stderr and "notatile" not in quiet.stderr
    loud = CliRunner().invoke(cli, ["scan", str(base), "--bands", "4", "-v"])
    assert "ignored: global_0.1_degree_representation/2024/notatile" in loud.stderr
    assert "ignored: global_0.1_degree_representation/misc" in loud.stderr
