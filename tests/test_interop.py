"""Real readers open the stores with the right georeferencing: xarray, rioxarray, GDAL."""

from __future__ import annotations

import json
import sys
import subprocess
import textwrap

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
import zarr

#: GDAL (rasterio >= 1.5, GDAL >= 3.12) runs in a child process of this same environment.
GDAL_PYTHON = sys.executable


def _store(built, name="utm30_2024.zarr"):
    return built / name


def test_xarray_opens_level0_with_pixel_centre_coords(built):
    store = _store(built)
    ds = xr.open_zarr(store, group="L0")
    assert ds["embeddings"].dims == ("band", "y", "x")
    assert ds["scales"].dims == ("y", "x")
    a, _, c, _, e, f = ds.attrs["spatial:transform"]
    np.testing.assert_allclose(ds.x.values[:3], c + (np.arange(3) + 0.5) * a)
    np.testing.assert_allclose(ds.y.values[:3], f + (np.arange(3) + 0.5) * e)
    assert ds.band.values.tolist() == list(range(ds.sizes["band"]))
    assert "spatial_ref" in ds.coords
    # lazy: opening reads no data chunks
    assert ds["embeddings"].chunks is not None


def test_dequantised_values_from_xarray_match_zarr(built):
    ds = xr.open_zarr(_store(built), group="L0")
    vals = (ds.embeddings.isel(y=slice(0, 40), x=slice(0, 40)) * ds.scales.isel(
        y=slice(0, 40), x=slice(0, 40))).values
    l0 = zarr.open_group(str(_store(built)), mode="r")["L0"]
    direct = l0["embeddings"][:, :40, :40] * l0["scales"][:40, :40]
    np.testing.assert_array_equal(vals, direct)  # NaN where no data, in both


@pytest.mark.parametrize("name", ["utm30_2024.zarr", "utm31_2025.zarr"])
def test_rioxarray_reports_crs_and_transform(built, name):
    ds = xr.open_zarr(_store(built, name), group="L0")
    zone = int(name[3:5])
    for var in ("scales", "embeddings"):
        assert ds[var].rio.crs.to_epsg() == 32600 + zone
        assert tuple(ds[var].rio.transform())[:6] == tuple(ds.attrs["spatial:transform"])


GDAL_SCRIPT = textwrap.dedent("""
    import json, sys, rasterio
    with rasterio.open('ZARR:"' + sys.argv[1] + '":/L0/scales') as src:
        print(json.dumps({"gdal": rasterio.__gdal_version__, "epsg": src.crs.to_epsg(),
                          "transform": list(src.transform)[:6], "shape": src.shape,
                          "pixel": float(src.read(1)[int(sys.argv[2]), int(sys.argv[3])])}))
""")


@pytest.mark.parametrize("name", ["utm30_2024.zarr", "utm31_2024.zarr"])
def test_gdal_opens_scales_with_the_same_georeferencing(built, name):
    store = _store(built, name)
    l0 = zarr.open_group(str(store), mode="r")["L0"]
    scales = l0["scales"][:]
    row, col = map(int, np.argwhere(np.isfinite(scales))[len(scales) // 3])
    out = subprocess.run([GDAL_PYTHON, "-c", GDAL_SCRIPT, str(store), str(row), str(col)],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["epsg"] == int(l0.attrs["proj:code"].split(":")[1])
    assert got["transform"] == l0.attrs["spatial:transform"]
    assert list(got["shape"]) == list(scales.shape)
    assert got["pixel"] == float(scales[row, col])


GDAL_BLOSC_SCRIPT = textwrap.dedent("""
    import json, sys, rasterio
    out = {}
    with rasterio.open('ZARR:"' + sys.argv[1] + '":/L0/scales') as src:
        out["scales_epsg"] = src.crs.to_epsg()
    try:
        rasterio.open('ZARR:"' + sys.argv[1] + '":/L0/embeddings')
    except rasterio.errors.RasterioIOError as e:
        out["embeddings_error"] = str(e)
    with rasterio.open('ZARR:"' + sys.argv[2] + '"') as src:
        out["unsharded_blosc"] = src.read(1).tolist()
    print(json.dumps(out))
""")


def test_gdal_with_blosc_embeddings_reads_scales_and_only_lacks_sharding(built, tmp_path):
    """The default codecs (blosc-zstd:2:bitshuffle embeddings): GDAL still reads ``scales``
    (zstd), and the embeddings fail on ``sharding_indexed`` as with zstd; GDAL decodes the
    blosc codec itself (an unsharded array with the embeddings' blosc configuration), so
    sharding is the only thing missing."""
    from conftest import zarr_compressor

    l0 = zarr.open_group(str(built / "utm30_2024.zarr"), mode="r")["L0"]
    assert l0["embeddings"].compressors == (zarr_compressor("blosc-zstd:2:bitshuffle",
                                                            l0["embeddings"].chunks),)
    assert [c.to_dict()["name"] for c in l0["scales"].compressors] == ["zstd"]
    values = (np.arange(32 * 32) % 251 - 125).astype(np.int8).reshape(32, 32)
    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(32, 32), dtype="int8",
                              chunks=(16, 16), dimension_names=("y", "x"),
                              compressors=zarr_compressor("blosc-zstd:2:bitshuffle", (16, 16)))
    plain[:] = values
    out = subprocess.run([GDAL_PYTHON, "-c", GDAL_BLOSC_SCRIPT,
                          str(built / "utm30_2024.zarr"), str(tmp_path / "plain.zarr")],
                         capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["scales_epsg"] == 32630
    assert "Unsupported codec: sharding_indexed" in got["embeddings_error"]
    np.testing.assert_array_equal(np.array(got["unsharded_blosc"], np.int8), values)
