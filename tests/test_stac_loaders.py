"""Generic STAC loaders open our items with the real libraries and get ``open_store``'s values:
xpystac (``xr.open_dataset(asset)``), the EOPF tutorial pattern
(``xr.open_dataset(asset.href, **asset.extra_fields["xarray:open_kwargs"])``) and odc-stac
(through GDAL: ``scales`` and ``rgba``; the sharded embeddings are beyond GDAL 3.12, shown
here with the real error)."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import odc.stac
import pystac
import pytest
import rasterio
import xarray as xr
import zarr

from geotessera.catalog import assets, stac, validate
from geotessera.preview.run import run_preview_pass
from geotessera.read import open_store
from geotessera.store import naming

STORE = "utm31_2024.zarr"
ITEM = "geotessera-2024/geotessera-2024-utm31/geotessera-2024-utm31.json"


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory) -> Path:
    """The session stores with the preview pass run (so items have rgba assets)."""
    dst = tmp_path_factory.mktemp("loaders") / "stores"
    for ref in naming.find_stores(built):
        shutil.copytree(ref.location.path, dst / ref.name)
    with ThreadPoolExecutor(2) as pool:
        run_preview_pass(dst, pool)
    return dst


@pytest.fixture(scope="module")
def relative_item(stores) -> pystac.Item:
    """An item of the default catalog (relative hrefs), as pystac reads it from disk."""
    cat = stac.write_catalog(stores).catalog
    return pystac.Item.from_file(str(cat.parent / ITEM))


@pytest.fixture(scope="module")
def absolute_item(stores, tmp_path_factory) -> pystac.Item:
    """An item of a catalog written with ``href_base`` (absolute ``file://`` hrefs)."""
    out = tmp_path_factory.mktemp("stac_abs")
    cat = stac.write_catalog(stores, out, href_base=stores.as_uri()).catalog
    assert validate.validate_catalog(cat) == 7
    return pystac.Item.from_file(str(cat.parent / ITEM))


@pytest.fixture(scope="module")
def expected(stores) -> xr.Dataset:
    return open_store(stores / STORE).load()


def _same(got: xr.Dataset, want: xr.Dataset, names=("embeddings", "scales")) -> None:
    for name in names:
        assert got[name].dims == want[name].dims
        np.testing.assert_array_equal(got[name].values, want[name].values)
    np.testing.assert_array_equal(got.x.values, want.x.values)
    np.testing.assert_array_equal(got.y.values, want.y.values)


def test_xpystac_opens_the_store_asset(absolute_item, relative_item, expected):
    asset = absolute_item.assets["embeddings"]
    assert asset.href.startswith("file://") and asset.media_type == "application/vnd+zarr"
    _same(xr.open_dataset(asset), expected)  # the xpystac backend: a pystac.Asset in
    relative_item.make_asset_hrefs_absolute()  # a relative catalog, read from disk
    _same(xr.open_dataset(relative_item.assets["embeddings"]), expected)


def test_eopf_pattern_opens_the_store_asset(absolute_item, expected):
    asset = absolute_item.assets["embeddings"]
    kwargs = asset.extra_fields["xarray:open_kwargs"]
    assert kwargs["engine"] == "zarr" and kwargs["group"] == "L0"
    ds = xr.open_dataset(asset.href, **kwargs)
    assert ds.embeddings.chunks is not None  # lazy, with the advertised chunks
    assert {d: c[0] for d, c in ds.embeddings.chunksizes.items() if d in "xy"} == \
        kwargs["chunks"]
    _same(ds, expected)


@pytest.mark.parametrize("item_fixture", ["absolute_item", "relative_item"])
def test_odc_stac_loads_scales_and_rgba(request, item_fixture, stores, expected):
    item = request.getfixturevalue(item_fixture)
    bands = ["scales", "rgba.1", "rgba.2", "rgba.3", "rgba.4"]
    ds = odc.stac.load([item], bands=bands, chunks={})
    assert ds.odc.geobox.crs.epsg == 32631
    _same(ds.isel(time=0), expected, names=("scales",))
    rgba = zarr.open_group(str(stores / STORE), mode="r")["L0/rgba"][...]
    got = np.stack([ds[b].isel(time=0).values for b in bands[1:]])
    np.testing.assert_array_equal(got, rgba)
    assert rgba[3].any()  # the preview has data, so the comparison means something


def test_odc_stac_cannot_read_sharded_embeddings_through_gdal_312(absolute_item, stores):
    """Why the item has no odc-stac asset for the embeddings: GDAL, which odc-stac reads
    with, does not decode the sharding codec (GDAL 3.13 adds it)."""
    path = assets.gdal_store_path(stores / STORE, None)
    href = assets.gdal_href(path, "L0", "embeddings")
    with pytest.raises(rasterio.errors.RasterioIOError, match="sharding_indexed"):
        rasterio.open(href)
    item = absolute_item.clone()
    item.add_asset("emb", pystac.Asset(href, media_type=assets.GDAL_ZARR_TYPE, roles=["data"],
                                       extra_fields=item.assets["scales"].extra_fields))
    with pytest.raises(rasterio.errors.RasterioIOError, match="sharding_indexed"):
        odc.stac.load([item], bands=["emb"])


def test_gdal_store_paths():
    store = Path("/data/stores/utm31_2024.zarr")
    assert assets.gdal_store_path(store, None) == "/data/stores/utm31_2024.zarr"
    assert assets.gdal_store_path(store, "https://h.org/s/") == \
        "/vsicurl/https://h.org/s/utm31_2024.zarr"
    assert assets.gdal_store_path(store, "s3://bucket/k") == "/vsis3/bucket/k/utm31_2024.zarr"
    assert assets.gdal_store_path(store, "file:///srv/st") == "/srv/st/utm31_2024.zarr"
    assert assets.gdal_store_path(store, "ftp://h/x") is None


def test_collection_metadata_and_root_link(stores, tmp_path):
    cat = stac.write_catalog(stores, tmp_path / "stac", license="other").catalog
    assert validate.validate_catalog(cat) == 7
    root = pystac.Catalog.from_file(str(cat))
    assert root.get_root_link().href.endswith("catalog.json")
    coll = root.get_child("geotessera-2024")
    assert coll.license == "other" and coll.get_single_link("license") is None
    assert [p.roles for p in coll.providers] == [["producer"], ["processor"]]
    assert coll.summaries.get_list("geotessera:zone") == [30, 31]
    assert coll.summaries.get_list("gsd") == [160.0]
    item_assets = coll.to_dict()["item_assets"]
    for item in coll.get_items():
        assert set(item.assets) <= set(item_assets)  # every asset key is declared
        for key, asset in item.assets.items():
            assert asset.media_type == item_assets[key]["type"]
            assert asset.roles == item_assets[key]["roles"]
    default = pystac.Catalog.from_file(str(stac.write_catalog(stores).catalog))
    coll = default.get_child("geotessera-2024")
    assert coll.license == "CC-BY-4.0" and "arXiv:2506.20380" in coll.description
    assert coll.get_single_link("license").href == "https://creativecommons.org/licenses/by/4.0/"
