"""What GDAL (3.12, through rasterio) sees of the preview on a real store: band 4 of
``L0/rgba`` is alpha, the CRS comes through the ``ZARR:`` prefix, and the limitation that
remains (the Zarr v3 fill value is every band's nodata) is pinned, with the alpha band as
the exact validity mask."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from geotessera.preview.run import run_preview_pass
from geotessera.store import naming

RGBA = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha)


@pytest.fixture(scope="module")
def store(built, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("gdal") / "stores"
    for ref in naming.find_stores(built):
        if ref.name.endswith("_2024.zarr"):
            shutil.copytree(ref.location.path, dst / ref.name)
    with ThreadPoolExecutor(2) as pool:
        run_preview_pass(dst, pool)
    return dst / "utm31_2024.zarr"


@pytest.mark.parametrize("level", ["L0", "L1"])
def test_gdal_reads_rgba_with_alpha_and_crs(store, level):
    with rasterio.open(f'ZARR:"{store}":/{level}/rgba') as ds:
        assert ds.count == 4 and ds.colorinterp == RGBA
        assert ds.crs.to_epsg() == 32631
        rgba = ds.read()
    with rasterio.open(f'ZARR:"{store}":/{level}/scales') as sc:
        valid = np.isfinite(sc.read(1))
    assert np.array_equal(rgba[3] == 255, valid) and not rgba[3][~valid].any()


def test_without_the_zarr_prefix_gdal_loses_the_crs(store):
    with rasterio.open(f"{store}/L0/rgba") as ds:
        assert ds.colorinterp == RGBA and ds.crs is None


def test_gdal_312_still_reports_the_fill_value_as_nodata(store):
    """GDAL 3.12 takes a Zarr v3 array's mandatory fill_value (0) as every band's nodata and
    ignores _FillValue/missing_value attributes, so its default per-band masks hide valid
    pixels with a 0 channel; the alpha band is the exact mask (docs/format.md)."""
    with rasterio.open(f'ZARR:"{store}":/L0/rgba') as ds:
        assert ds.nodatavals == (0.0, 0.0, 0.0, 0.0)
        rgba, masks = ds.read(), ds.read_masks()
    valid = rgba[3] == 255
    zero_channel = valid & (rgba[:3] == 0).any(axis=0)
    assert zero_channel.any()  # the case the per-band nodata mask gets wrong
    every_band_visible = (masks[:3] == 255).all(axis=0)
    assert not every_band_visible[zero_channel].any()  # GDAL's mask hides them
    assert np.array_equal(rgba[3] > 0, valid)
