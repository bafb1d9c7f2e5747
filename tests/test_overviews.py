"""Overview levels: 2×2 reductions against numpy, level geometry and metadata, readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.preview import overviews
from geotessera.preview.overviews import pyramid, reduce_embeddings, reduce_rgba, reduce_window
from geotessera.types import Level, PixelGrid
from test_preview import previewed_stores

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = resources.files("geotessera").joinpath("data/schemas")
LEVELS = ["L0", "L1", "L2", "L3"]


#: GDAL runs in a child process of this same environment (rasterio >= 1.5, GDAL >= 3.12),
#: so its Zarr driver and zarr-python never share a process.
GDAL_PYTHON = sys.executable


@pytest.fixture(scope="module")
def store(built, tmp_path_factory) -> Path:
    out, _ = previewed_stores(built, tmp_path_factory)
    return out / "utm30_2024.zarr"


def _node(store: Path, path: str = "") -> dict:
    return json.loads((store / path / "zarr.json").read_text())


def _schema(name: str) -> dict:
    return json.loads(SCHEMAS.joinpath(name).read_text())


# --- reductions against numpy ------------------------------------------------------------------


def _children(a: np.ndarray, i: int, j: int) -> np.ndarray:
    return a[..., 2 * i:2 * i + 2, 2 * j:2 * j + 2]


def _random_level(rng, bands: int, h: int, w: int):
    emb = rng.integers(-128, 128, (bands, h, w)).astype(np.int8)
    scales = rng.uniform(0, 0.1, (h, w)).astype(np.float32)
    scales[rng.random((h, w)) < 0.4] = np.nan
    scales[rng.random((h, w)) < 0.05] = 0.0  # a zero scale is valid data
    return emb, scales


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_reduce_embeddings_is_the_requantised_mean_of_valid_children(h, w, bands, seed):
    emb, scales = _random_level(np.random.default_rng(seed), bands, h, w)
    q, s = reduce_embeddings(emb, scales)
    assert q.shape == (bands, -(-h // 2), -(-w // 2)) and q.dtype == np.int8
    deq = emb.astype(np.float64) * scales
    for i in range(q.shape[1]):
        for j in range(q.shape[2]):
            kids, ks = _children(deq, i, j), _children(scales, i, j)
            valid = np.isfinite(ks)
            if not valid.any():
                assert np.isnan(s[i, j]) and not q[:, i, j].any()
                continue
            mean = kids[:, valid].mean(axis=1)
            # float32 sums lose up to a few ulps of the children's magnitude (cancellation)
            slack = 8 * np.finfo(np.float32).eps * np.abs(kids[:, valid]).max()
            assert s[i, j] == pytest.approx(np.abs(mean).max() / 127, rel=1e-5,
                                            abs=slack / 127 + 1e-12)
            err = np.abs(q[:, i, j] * np.float64(s[i, j]) - mean)
            assert (err <= s[i, j] / 2 * (1 + 1e-5) + slack + 1e-9).all()  # documented bound
            assert np.abs(q[:, i, j]).max() in (0, 127)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_reduce_rgba_is_the_alpha_weighted_mean_rounded_half_up(h, w, seed):
    rng = np.random.default_rng(seed)
    rgba = rng.integers(0, 256, (4, h, w)).astype(np.uint8)
    rgba[3] = np.where(rng.random((h, w)) < 0.5, 0, rng.choice([255, 100, 1], (h, w)))
    out = reduce_rgba(rgba)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            kids = _children(rgba.astype(np.int64), i, j).reshape(4, -1)
            a = kids[3]
            if not a.any():
                assert not out[:, i, j].any()
                continue
            mean = (kids[:3] * a).sum(axis=1) / a.sum()
            assert out[:3, i, j].tolist() == np.floor(mean + 0.5).astype(int).tolist()
            assert out[3, i, j] == 255


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 13), st.integers(1, 9), st.integers(1, 7), st.integers(1, 4000),
       st.integers(0, 2**32 - 1))
def test_reduce_window_does_not_depend_on_its_strips(h, w, strip, budget, seed):
    rng = np.random.default_rng(seed)
    emb, scales = _random_level(rng, 3, h, w)
    valid = np.isfinite(scales)  # as stored: alpha 255 exactly where scales are finite
    rgba = np.where(valid, rng.integers(0, 256, (4, h, w)), 0).astype(np.uint8)
    rgba[3] = np.where(valid, 255, 0)
    shape = (-(-h // 2), -(-w // 2))
    whole = reduce_window(lambda a, b: emb[:, a:b], scales, rgba, 3, shape, shape[0])
    old, overviews.REDUCE_STRIP_BYTES = overviews.REDUCE_STRIP_BYTES, budget  # sub-strips
    try:
        cut = reduce_window(lambda a, b: emb[:, a:b], scales, rgba, 3, shape, strip)
    finally:
        overviews.REDUCE_STRIP_BYTES = old
    for name in ("embeddings", "scales", "rgba"):
        np.testing.assert_array_equal(getattr(cut, name), getattr(whole, name))
    # pixel-major children (a build's shard) in strips: the same values, pixel-major out
    pm = np.ascontiguousarray(emb.transpose(1, 2, 0)).transpose(2, 0, 1)
    fast = reduce_window(lambda a, b: pm[:, a:b], scales, rgba, 3, shape, strip,
                         pixel_major=True)
    assert fast.embeddings.strides[0] == 1
    for name in ("embeddings", "scales", "rgba"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(whole, name))


@pytest.mark.parametrize(("shape", "shard", "levels"), [
    ((320, 256), 64, [(320, 256), (160, 128), (80, 64), (40, 32)]),
    ((64, 64), 64, [(64, 64)]),
    ((1024, 3072), 1024, [(1024, 3072), (512, 1536), (256, 768)]),
    ((4096, 64), 64, [(4096 >> k, max(1, 64 >> k)) for k in range(7)]),
    ((1000, 7), 128, [(1000, 7), (500, 4), (250, 2), (125, 1)]),
])
def test_pyramid_stops_at_the_first_level_that_fits_one_shard(shape, shard, levels):
    geoms = pyramid(Level("L0", PixelGrid.of(32631, 10.0, 500.0, 9000.0, shape)), shard)
    assert [g.shape for g in geoms] == levels
    assert [g.pixel_size for g in geoms] == [10.0 * 2**k for k in range(len(levels))]
    assert {(g.grid.left, g.grid.top) for g in geoms} == {(500.0, 9000.0)}


# --- the levels of a previewed store -----------------------------------------------------------


def test_overview_pixels_are_means_of_their_valid_children(store):
    root = zarr.open_group(str(store), mode="r")
    for k in (1, 2, 3):
        lo, hi = root[f"L{k - 1}"], root[f"L{k}"]
        emb, scales, rgba = lo["embeddings"][:], lo["scales"][:], lo["rgba"][:]
        h, w = hi["scales"].shape
        assert (h, w) == (-(-scales.shape[0] // 2), -(-scales.shape[1] // 2))
        # numpy reference: 2x2 blocks, valid children only
        valid = np.isfinite(scales).reshape(h, 2, w, 2)
        deq = np.where(valid, (emb.astype(np.float64) * scales).reshape(-1, h, 2, w, 2), 0)
        count = valid.sum(axis=(1, 3))
        mean = deq.sum(axis=(2, 4)) / np.maximum(count, 1)
        got_s = hi["scales"][:]
        assert np.array_equal(np.isfinite(got_s), count > 0)
        err = np.abs(hi["embeddings"][:] * got_s.astype(np.float64) - mean)[:, count > 0]
        assert (err <= got_s[count > 0] / 2 * (1 + 1e-5) + 1e-9).all()
        alpha = rgba[3].astype(np.int64).reshape(h, 2, w, 2)
        num = (rgba[:3].astype(np.int64).reshape(3, h, 2, w, 2) * alpha).sum(axis=(2, 4))
        den = alpha.sum(axis=(1, 3))
        want = np.where(den > 0, np.floor(num / np.maximum(den, 1) + 0.5), 0)
        got = hi["rgba"][:]
        assert np.array_equal(got[:3], want)
        assert np.array_equal(got[3], np.where(count > 0, 255, 0))  # alpha == isfinite(scales)


def test_multiscales_and_spatial_metadata_validate(store):
    root = _node(store)
    for name in ("multiscales-v0.1.json", "proj-v0.1.json", "spatial-v0.1.json"):
        jsonschema.validate(root, _schema(name))
    layout = root["attributes"]["multiscales"]["layout"]
    assert [e["asset"] for e in layout] == LEVELS
    assert "spatial:registration" not in root["attributes"]  # conventions.md §2.2
    for k, entry in enumerate(layout):
        level = _node(store, entry["asset"])["attributes"]
        assert entry["spatial:transform"] == level["spatial:transform"]
        assert entry["spatial:shape"] == level["spatial:shape"]
        assert level["spatial:transform"][0] == 160.0 * 2**k
        if k:
            assert entry["derived_from"] == f"L{k - 1}"
            assert entry["transform"] == {"scale": [2.0, 2.0], "translation": [0.0, 0.0]}
        for path in (entry["asset"], *(f"{entry['asset']}/{a}" for a in
                                       ("embeddings", "scales", "rgba"))):
            node = _node(store, path)
            for name in ("proj-v0.1.json", "spatial-v0.1.json"):
                jsonschema.validate(node, _schema(name))
            assert node["attributes"]["spatial:transform"] == level["spatial:transform"]


def test_each_level_has_cf_fallback_and_pixel_centre_coords(store):
    for name in LEVELS:
        level = _node(store, name)["attributes"]
        a, b, c, d, e, f = level["spatial:transform"]
        ref = _node(store, f"{name}/spatial_ref")["attributes"]
        assert [float(v) for v in ref["GeoTransform"].split()] == [c, a, b, f, d, e]
        h, w = level["spatial:shape"]
        g = zarr.open_group(str(store / name), mode="r")
        np.testing.assert_array_equal(g["x"][:], c + (np.arange(w) + 0.5) * a)
        np.testing.assert_array_equal(g["y"][:], f + (np.arange(h) + 0.5) * e)
        assert g["channel"][:].tolist() == [0, 1, 2, 3]
        for arr in ("embeddings", "scales", "rgba"):
            assert _node(store, f"{name}/{arr}")["attributes"]["grid_mapping"] == "spatial_ref"


def test_overview_arrays_keep_the_l0_chunk_and_shard_shapes(store):
    g = zarr.open_group(str(store), mode="r")
    for name in LEVELS:
        emb = g[name]["embeddings"]
        assert emb.shards == (8, 64, 64) and emb.chunks == (8, 16, 16)
        assert g[name]["scales"].chunks == (32, 32) and g[name]["rgba"].chunks == (4, 32, 32)


def test_xarray_opens_every_level(store):
    tree = xr.open_datatree(store, engine="zarr")
    assert sorted(tree.children) == LEVELS
    for k, name in enumerate(LEVELS):
        ds = tree[name].to_dataset()
        assert ds["rgba"].dims == ("channel", "y", "x")
        assert ds["embeddings"].dims == ("band", "y", "x") and ds["scales"].dims == ("y", "x")
        assert ds["scales"].rio.crs.to_epsg() == 32630
        assert ds["rgba"].rio.transform().a == 160.0 * 2**k
        assert tuple(ds["rgba"].rio.transform())[:6] == tuple(ds.attrs["spatial:transform"])


# --- GDAL --------------------------------------------------------------------------------------

GDAL_SCRIPT = textwrap.dedent("""
    import json, sys, rasterio
    with rasterio.open('ZARR:"' + sys.argv[1] + '":/L0/rgba') as src:
        print(json.dumps({"gdal": rasterio.__gdal_version__, "epsg": src.crs.to_epsg(),
                          "transform": list(src.transform)[:6], "shape": src.shape,
                          "count": src.count, "overviews": src.overviews(1),
                          "data": src.read().tolist()}))
""")


@pytest.fixture(scope="module")
def gdal_view(store):
    out = subprocess.run([GDAL_PYTHON, "-c", GDAL_SCRIPT, str(store)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_gdal_reads_l0_rgba_with_its_georeferencing(store, gdal_view):
    l0 = zarr.open_group(str(store), mode="r")["L0"]
    assert gdal_view["epsg"] == 32630 and gdal_view["count"] == 4
    assert gdal_view["transform"] == l0.attrs["spatial:transform"]
    assert list(gdal_view["shape"]) == l0.attrs["spatial:shape"]
    assert np.array_equal(np.array(gdal_view["data"], np.uint8), l0["rgba"][:])


def test_gdal_overviews_are_what_docs_format_says(gdal_view):
    """GDAL 3.13 reads multiscales levels as overviews; 3.12 (what rasterio 1.5 ships) reads
    the level group alone. docs/format.md states both; this checks the one installed."""
    major, minor = map(int, gdal_view["gdal"].split(".")[:2])
    want = [2, 4, 8] if (major, minor) >= (3, 13) else []
    assert gdal_view["overviews"] == want
