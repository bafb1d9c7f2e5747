"""The preview pass: one seeded stretch per year, L0 rgba, completion flag, resumability.

The session stores (``built``) are never written: every pass runs on a copy.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from geotessera.cli import cli
from geotessera.errors import NoStoresError, SelectionError, ShardWriteError, StoreError
from geotessera.preview.overviews import overview_shard
from geotessera.parallel import process_pool
from geotessera.preview.run import find_stores, run_preview_pass
from geotessera.preview.sample import SampleSpec, SampleTask, sample_shard, year_stretch
from geotessera.preview.stretch import fit_stretch
from geotessera.store.zone import update_root_attrs

_CACHE: dict[str, tuple[Path, object]] = {}


def copy_stores(src: Path, dst: Path, year: int | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for store in sorted(src.glob("utm*.zarr")):
        if year is None or store.name.endswith(f"_{year}.zarr"):
            shutil.copytree(store, dst / store.name)
    return dst


def previewed_stores(built: Path, factory) -> tuple[Path, object]:
    """A copy of ``built`` after one bands-mode pass with two worker processes (shared by
    the preview, overview and quicklook tests; computed once per session)."""
    if "bands" not in _CACHE:
        out = copy_stores(built, factory.mktemp("previewed"))
        with process_pool(2) as pool:
            report = run_preview_pass(out, pool, max_in_flight=3)
        _CACHE["bands"] = (out, report)
    return _CACHE["bands"]


@pytest.fixture(scope="module")
def previewed(built, tmp_path_factory):
    return previewed_stores(built, tmp_path_factory)


def _attrs(store: Path, consolidated: bool = False) -> dict:
    return dict(zarr.open_group(str(store), mode="r", use_consolidated=consolidated).attrs)


def _threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2)


# --- stretch -----------------------------------------------------------------------------------


def test_stretch_is_identical_for_1_and_2_workers_and_any_store_order(built, previewed):
    stores = [s for s in find_stores(built) if s.year == 2024]
    assert len(stores) == 2
    two = previewed[1].stretches[2024]  # the shared pass: two worker processes
    with process_pool(1) as pool:
        one = year_stretch(stores[::-1], pool, max_in_flight=1)
    with _threads() as pool:
        threads = year_stretch(stores[::-1], pool, max_in_flight=7)
    assert one == two == threads
    assert SampleSpec().pixels // 2 < one.sample_pixels <= SampleSpec().pixels * 1.2
    assert one.sample_shards == min(SampleSpec().shards, sum(len(s.shards) for s in stores))


def test_seed_changes_the_sample(built):
    stores = [s for s in find_stores(built) if s.year == 2025]
    with _threads() as pool:
        a = year_stretch(stores, pool, seed=0, spec=SampleSpec(shards=8))
        b = year_stretch(stores, pool, seed=1, spec=SampleSpec(shards=8))
    assert a.seed == 0 and b.seed == 1 and a.low != b.low


def test_sample_holds_dequantised_values_of_valid_pixels(built):
    info = find_stores(built, [2024])[0]
    r, c = info.shards[len(info.shards) // 2]
    task = SampleTask(info.path, info.zone, r, c, (4, 1, 6), 7, 2, 50)
    got = sample_shard(task)
    assert got.shape == (100, 3) and np.array_equal(got, sample_shard(task))
    l0 = zarr.open_group(str(info.path), mode="r")["L0"]
    s = 64  # TEST_LAYOUT.shard_px
    emb, scales = l0["embeddings"][:, r * s:(r + 1) * s, c * s:(c + 1) * s], \
        l0["scales"][r * s:(r + 1) * s, c * s:(c + 1) * s]
    deq = (emb[[4, 1, 6]].astype(np.float32) * scales).reshape(3, -1).T
    valid = deq[np.isfinite(scales).ravel()]
    assert all((valid == row).all(axis=1).any() for row in got)


def test_fit_stretch_guards_flat_and_empty_samples():
    flat = fit_stretch(np.ones((50, 3), np.float32), "bands", (0, 1, 2), seed=0, shards=1)
    assert flat.low == (1.0,) * 3 and flat.high == (2.0,) * 3
    empty = fit_stretch(np.empty((0, 3), np.float32), "bands", (0, 1, 2), seed=0, shards=0)
    assert empty.low == (0.0,) * 3 and empty.high == (1.0,) * 3
    pca = fit_stretch(np.empty((0, 8), np.float32), "pca", range(8), seed=0, shards=0)
    assert len(pca.components) == 3 and pca.high == (1.0,) * 3


def test_fit_stretch_uses_p2_p98_per_channel():
    x = np.random.default_rng(1).normal(size=(5000, 3)).astype(np.float32) * [1, 10, 100]
    s = fit_stretch(x, "bands", (5, 6, 7), seed=0, shards=3)
    np.testing.assert_allclose(s.low, np.percentile(x, 2, axis=0), rtol=1e-5)
    np.testing.assert_allclose(s.high, np.percentile(x, 98, axis=0), rtol=1e-5)
    assert s.to_attrs()["bands"] == [5, 6, 7] and s.to_attrs()["sample_shards"] == 3


def test_pca_fit_is_orthonormal_and_ordered():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(4000, 8)) * np.arange(8, 0, -1)).astype(np.float32)
    s = fit_stretch(x, "pca", range(8), seed=0, shards=1)
    comps = np.array(s.components)
    np.testing.assert_allclose(comps @ comps.T, np.eye(3), atol=1e-9)
    assert list(s.explained_variance) == sorted(s.explained_variance, reverse=True)
    assert np.abs(comps).argmax(axis=1).tolist() == [0, 1, 2]
    proj = s.channels(x.T)  # each channel spans its own p2..p98: no channel dominates
    for ch, lo, hi in zip(proj, s.low, s.high):
        assert np.mean((ch >= lo) & (ch <= hi)) == pytest.approx(0.96, abs=0.01)


def test_bad_rgb_bands_are_refused(built):
    stores = find_stores(built, [2024])
    with _threads() as pool, pytest.raises(SelectionError, match="rgb bands"):
        year_stretch(stores, pool, bands=(0, 1, 8))


# --- the pass ----------------------------------------------------------------------------------


def test_zone_pair_shares_one_stretch(previewed):
    out, report = previewed
    for year in (2024, 2025):
        recorded = [_attrs(out / f"utm{z}_{year}.zarr")["geotessera:stretch"] for z in (30, 31)]
        assert recorded[0] == recorded[1] == report.stretches[year].to_attrs()
        assert recorded[0]["mode"] == "bands" and recorded[0]["percentiles"] == [2.0, 98.0]
    assert report.stretches[2024] != report.stretches[2025]


def test_flag_true_and_metadata_consolidated(previewed):
    out, _ = previewed
    for store in sorted(out.glob("*.zarr")):
        for consolidated in (False, True):
            attrs = _attrs(store, consolidated)
            assert attrs["geotessera:rgb_complete"] is True
            assert [e["asset"] for e in attrs["multiscales"]["layout"]] == ["L0", "L1", "L2", "L3"]
        meta = json.loads((store / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
        assert {"L0/rgba", "L3/rgba", "L3/embeddings", "L1/channel"} <= meta.keys()


def test_alpha_is_exactly_isfinite_scales(previewed):
    out, _ = previewed
    for store in sorted(out.glob("*.zarr")):
        l0 = zarr.open_group(str(store), mode="r")["L0"]
        rgba, valid = l0["rgba"][:], np.isfinite(l0["scales"][:])
        assert rgba.dtype == np.uint8 and rgba.shape == (4, *valid.shape)
        assert np.array_equal(rgba[3], np.where(valid, 255, 0))
        assert not rgba[:3, ~valid].any()


def test_rgba_colour_follows_the_recorded_stretch(previewed):
    out, _ = previewed
    root = zarr.open_group(str(out / "utm31_2025.zarr"), mode="r")
    st = root.attrs["geotessera:stretch"]
    l0 = root["L0"]
    scales = l0["scales"][:]
    valid = np.isfinite(scales)
    deq = l0["embeddings"][st["bands"]].astype(np.float32) * np.where(valid, scales, 0)
    lo, hi = (np.array(st[k], np.float32)[:, None, None] for k in ("min", "max"))
    want = np.rint(np.clip((deq - lo) / (hi - lo), 0, 1) * 255)
    got = l0["rgba"][:3].astype(float)
    assert np.abs(got - want)[:, valid].max() <= 1  # float32 vs float64 ties only
    assert np.mean(got[:, valid] == want[:, valid]) > 0.999
    assert (got[:, valid] == 0).any() and (got[:, valid] == 255).any()  # clipped tails


def test_rgba_layout_for_gdal_before_3_13(previewed):
    out, _ = previewed
    meta = json.loads((out / "utm30_2024.zarr" / "L0" / "rgba" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["channel", "y", "x"]
    assert meta["codecs"][0]["name"] == "bytes"  # not sharded
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [4, 32, 32]
    assert meta["fill_value"] == 0 and meta["attributes"]["grid_mapping"] == "spatial_ref"


def test_rerun_skips_up_to_date_stores_and_force_redoes(built, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2025)
    small = SampleSpec(shards=16, pixels=4096)
    with _threads() as pool:
        first = run_preview_pass(out, pool, zones=[31], sample=small)
        again = run_preview_pass(out, pool, sample=small)
        forced = run_preview_pass(out, pool, zones=[31], force=True, sample=small)
    assert [r.up_to_date for r in first.stores] == [False]
    assert [(r.zone, r.up_to_date) for r in again.stores] == [(30, False), (31, True)]
    assert [r.up_to_date for r in forced.stores] == [False]
    assert first.stretches == again.stretches == forced.stretches  # zones only select writes


class _KillOverviews(Executor):
    """Runs tasks on ``inner`` but makes the ``n``-th overview task fail."""

    def __init__(self, inner: Executor, n: int) -> None:
        self.inner, self.n = inner, n

    def submit(self, fn, /, *args, **kwargs):
        if fn is overview_shard:
            self.n -= 1
            if self.n == 0:
                return self.inner.submit(_killed, *args)
        return self.inner.submit(fn, *args, **kwargs)


def _killed(task):
    raise RuntimeError(f"killed at {task}")


def test_interrupted_pass_leaves_flag_false_and_rerun_finishes(built, previewed, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2024)
    with _threads() as pool:
        with pytest.raises(ShardWriteError, match="L1: shard"):
            run_preview_pass(out, _KillOverviews(pool, 3), retries=0)  # a kill, not a flake
        store = out / "utm30_2024.zarr"
        for consolidated in (False, True):
            assert _attrs(store, consolidated)["geotessera:rgb_complete"] is False
        report = run_preview_pass(out, pool)
    assert [r.up_to_date for r in report.stores] == [False, False]
    ref = previewed[0] / "utm30_2024.zarr"
    for path in ("L0/rgba", "L1/rgba", "L2/embeddings", "L3/scales"):
        a = zarr.open_array(str(store / path), mode="r")[:]
        np.testing.assert_array_equal(a, zarr.open_array(str(ref / path), mode="r")[:])
    assert _attrs(store, True)["geotessera:rgb_complete"] is True


def test_a_preview_shard_that_fails_once_is_run_again_and_the_pass_succeeds(
        built, previewed, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2024)
    with _threads() as pool:
        report = run_preview_pass(out, _KillOverviews(pool, 3))  # default: 2 retries
    assert [r.up_to_date for r in report.stores] == [False, False]
    store, ref = out / "utm30_2024.zarr", previewed[0] / "utm30_2024.zarr"
    for path in ("L1/rgba", "L2/embeddings"):
        np.testing.assert_array_equal(zarr.open_array(str(store / path), mode="r")[:],
                                      zarr.open_array(str(ref / path), mode="r")[:])
    assert _attrs(store, True)["geotessera:rgb_complete"] is True


def test_pca_mode_records_its_basis(built, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2025)
    with _threads() as pool:
        report = run_preview_pass(out, pool, mode="pca", zones=[30],
                                  sample=SampleSpec(shards=16, pixels=4096))
    st = _attrs(out / "utm30_2025.zarr")["geotessera:stretch"]
    assert st["mode"] == "pca" and st["bands"] == list(range(8))
    assert np.array(st["components"]).shape == (3, 8) and len(st["mean"]) == 8
    assert st["explained_variance"] == sorted(st["explained_variance"], reverse=True)
    assert 0 < sum(st["explained_variance_ratio"]) <= 1 + 1e-9
    assert st == report.stretches[2025].to_attrs()
    l0 = zarr.open_group(str(out / "utm30_2025.zarr"), mode="r")["L0"]
    assert np.array_equal(l0["rgba"][3], np.where(np.isfinite(l0["scales"][:]), 255, 0))


def test_incomplete_build_and_empty_selection_are_refused(built, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2024)
    with _threads() as pool:
        with pytest.raises(NoStoresError):
            run_preview_pass(out, pool, zones=[29])
        update_root_attrs(out / "utm31_2024.zarr", build_complete=False)
        with pytest.raises(StoreError, match="utm31_2024.zarr: build incomplete"):
            run_preview_pass(out, pool, zones=[30])


def test_cli_rgb_json_and_bad_bands(built, tmp_path):
    out = copy_stores(built, tmp_path / "s", year=2024)
    runner = CliRunner()
    res = runner.invoke(cli, ["rgb", str(out), "--zones", "31", "-j", "1", "--json", "-q",
                              "--rgb-bands", "2,1,0"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["stretches"]["2024"]["bands"] == [2, 1, 0]
    assert [s["zone"] for s in doc["stores"]] == [31]
    assert [lv["level"] for lv in doc["stores"][0]["levels"]] == [0, 1, 2, 3]
    bad = runner.invoke(cli, ["rgb", str(out), "--rgb-bands", "0,1"])
    assert bad.exit_code == 2 and "three band numbers" in bad.output
    empty = runner.invoke(cli, ["rgb", str(out), "--zones", "40"])
    assert empty.exit_code == 1 and "no complete zone stores" in empty.output
