"""The STAC catalog: footprints checked against the stores' own pixels with pyproj, offline
validation, idempotent regeneration, and the lifecycle of items as stores change."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr
import zarr
import shapely
import shapely.geometry
from pyproj import Geod, Transformer

from conftest import build, scan
from test_preview import copy_stores, previewed_stores
from geotessera.catalog import footprint, stac, validate
from geotessera.store import meta, naming
from geotessera.store.location import Location
from geotessera.store.versions import StoreHome
from geotessera.errors import CatalogValidationError, StoreError
from geotessera.preview.quicklook import read_png

PX_DEG = 160.0 / 111_320.0  # one test pixel in degrees (near the equator)
#: The footprint's area over the valid pixels' area, at most (measured 1.02-1.04 on the test stores).
AREA_FACTOR = 1.1


@pytest.fixture(scope="module")
def catalog(built, tmp_path_factory) -> Path:
    """A catalog of the session stores, written outside them (the stores stay untouched)."""
    out = tmp_path_factory.mktemp("stac")
    return stac.write_catalog(built, out).catalog


@pytest.fixture
def stores(built, tmp_path) -> Path:
    """A private copy of the session stores that a test may rebuild or delete."""
    dst = tmp_path / "stores"
    for ref in naming.find_stores(built):
        shutil.copytree(ref.location.path, dst / ref.name)
    return dst


def _items(catalog: Path) -> dict[str, pystac.Item]:
    return {i.id: i for i in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)}


def _valid_centres(store: Path):
    """lon/lat of every valid pixel centre, computed from the store's arrays with pyproj."""
    root = zarr.open_group(str(store), mode="r")
    l0 = root["L0"]
    rows, cols = np.nonzero(np.isfinite(l0["scales"][:]))
    x, y = l0["x"][:][cols], l0["y"][:][rows]
    zone = root.attrs["geotessera:zone"]
    return Transformer.from_crs(32600 + zone, 4326, always_xy=True).transform(x, y)


def _inside(ring: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over points."""
    inside = np.zeros(lon.shape, bool)
    for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]):
        crosses = (y0 > lat) != (y1 > lat)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x0 + (lat - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (lon < x_at)
    return inside


def test_one_collection_per_year_one_item_per_store(catalog, built):
    root = pystac.Catalog.from_file(str(catalog))
    assert sorted(c.id for c in root.get_children()) == ["geotessera-2024", "geotessera-2025"]
    items = _items(catalog)
    assert sorted(items) == ["geotessera-2024-utm30", "geotessera-2024-utm31",
                             "geotessera-2025-utm30", "geotessera-2025-utm31"]
    item = items["geotessera-2024-utm30"]
    assert item.properties["start_datetime"] == "2024-01-01T00:00:00Z"
    assert item.properties["end_datetime"] == "2024-12-31T23:59:59Z"
    assert item.datetime is None and item.collection_id == "geotessera-2024"


def test_every_object_validates_offline(catalog, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("validation tried to fetch a schema")

    monkeypatch.setattr(pystac.StacIO, "read_text", no_network)
    monkeypatch.setattr(pystac.stac_io.DefaultStacIO, "read_text_from_href", no_network)
    assert validate.validate_catalog(catalog) == 7  # catalog, 2 collections, 4 items


def test_validation_rejects_a_broken_item(catalog):
    path = next(catalog.parent.glob("*/*/*.json"))
    doc = json.loads(path.read_text())
    validate.validate_dict(doc)
    doc["assets"]["embeddings"]["proj:shape"] = [4096]
    with pytest.raises(CatalogValidationError, match="proj:shape|4096|too short"):
        validate.validate_dict(doc, str(path))
    del doc["assets"]["embeddings"]["proj:shape"]
    doc["assets"]["embeddings"]["cube:dimensions"]["x"]["type"] = "spatial-ish"
    with pytest.raises(CatalogValidationError):
        validate.validate_dict(doc)


def test_asset_matches_the_store_and_opens_with_plain_xarray(catalog, built):
    for item in _items(catalog).values():
        asset = item.assets["embeddings"]
        href = asset.get_absolute_href()
        name = f"utm{item.properties['geotessera:zone']}_{item.properties['geotessera:year']}"
        current = StoreHome.of(Location.parse(built), name).current()  # the version itself
        assert Path(href) == current.path and (built / f"{name}.zarr").resolve() == current.path
        assert asset.media_type == "application/vnd+zarr"
        assert asset.roles == ["data"] and asset.extra_fields["zarr:consolidated"] is True
        store = [ln for ln in item.links if ln.rel == "store"]
        assert len(store) == 1 and store[0].get_absolute_href() == href
        assert not href.startswith("http") and not item.assets["embeddings"].href.startswith("/")
        root = zarr.open_group(href, mode="r")
        lay = root.attrs["multiscales"]["layout"][0]
        assert asset.extra_fields["proj:transform"] == lay["spatial:transform"]
        assert asset.extra_fields["proj:shape"] == lay["spatial:shape"]
        assert asset.extra_fields["proj:bbox"] == root.attrs["spatial:bbox"]
        assert asset.extra_fields["proj:code"] == root.attrs["proj:code"]
        dims = asset.extra_fields["cube:dimensions"]
        ds = xr.open_zarr(href, group=lay["asset"])
        assert [ds.x.values[0], ds.x.values[-1]] == dims["x"]["extent"]
        assert ds.y.values[0] == dims["y"]["extent"][1] and dims["y"]["step"] < 0
        assert set(asset.extra_fields["cube:variables"]) <= set(ds.data_vars)
        assert "preview" not in item.assets  # no preview pass has run on these stores


@pytest.mark.parametrize("name", ["utm30_2024.zarr", "utm31_2024.zarr", "utm31_2025.zarr"])
def test_footprint_holds_every_valid_pixel_and_little_else(catalog, built, name):
    zone, year = int(name[3:5]), int(name[6:10])
    item = _items(catalog)[f"geotessera-{year}-utm{zone}"]
    lon, lat = _valid_centres(built / name)
    w, s, e, n = item.bbox
    assert w <= lon.min() and e >= lon.max() and s <= lat.min() and n >= lat.max()
    # the geometry is the valid pixels grown by one pixel and simplified by one pixel, so
    # its bbox reaches at most 2.5 pixels beyond the outermost valid pixel centres
    for got, want in ((w, lon.min()), (s, lat.min()), (e, lon.max()), (n, lat.max())):
        assert abs(got - want) <= 2.55 * PX_DEG
    assert s < -0.19 and n > 0.19  # both hemispheres: the southern northings are right
    geom = shapely.geometry.shape(item.geometry)
    assert geom.is_valid and item.geometry["type"] in ("Polygon", "MultiPolygon")
    polys = getattr(geom, "geoms", [geom])
    assert max(len(p.exterior.coords) for p in polys) > 4 * 10  # densified
    assert shapely.contains_xy(geom, lon, lat).all()  # every valid pixel centre is inside
    # and the geometry follows the data: its area is within a factor of the valid area
    area = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    valid = lon.size * 160.0**2
    print(f"{name}: footprint area / valid area = {area / valid:.3f}, {len(polys)} polygon(s)")
    assert valid <= area <= AREA_FACTOR * valid, area / valid


def test_chunk_listing_footprint_covers_the_pixel_footprint(built):
    root = zarr.open_group(str(built / "utm31_2025.zarr"), mode="r")
    info = meta.read_meta(root, "x")
    where = built / "utm31_2025.zarr"
    exact = footprint.data_footprint(where, root, info)
    listed = footprint.data_footprint(where, root, info, max_read_px=0)
    assert exact.method == "pixels" and listed.method == "chunks"
    e, c = exact.window, listed.window
    assert c.row0 <= e.row0 and c.col0 <= e.col0 and c.row1 >= e.row1 and c.col1 >= e.col1
    unit = root["L0/scales"].chunks[0]
    assert c.row0 % unit == 0 and c.col0 % unit == 0 and c.row1 - e.row1 < unit
    assert 0 < listed.coverage <= 1 and exact.coverage < listed.coverage


def test_southern_rectangle_maps_to_southern_latitudes():
    geom, bbox = footprint.footprint_geojson(31, (400_000.0, -2_000_000.0, 600_000.0, -1_000_000.0))
    assert geom["type"] == "Polygon"
    assert -18.2 < bbox[1] < -17.9 and -9.1 < bbox[3] < -8.9 and 0.9 < bbox[0] < bbox[2] < 5.0


@pytest.mark.parametrize(("zone", "x0", "x1"), [(60, 600_000.0, 700_000.0),
                                                (1, 300_000.0, 400_000.0)])
def test_a_footprint_across_the_antimeridian_is_split(zone, x0, x1):
    geom, bbox = footprint.footprint_geojson(zone, (x0, 6_000_000.0, x1, 7_000_000.0))
    assert geom["type"] == "MultiPolygon" and len(geom["coordinates"]) == 2
    assert bbox[0] > bbox[2] and bbox[0] > 170 and bbox[2] < -170  # west > east (RFC 7946)
    for poly in geom["coordinates"]:
        ring = np.array(poly[0])
        assert np.array_equal(ring[0], ring[-1]) and np.abs(ring[:, 0]).max() <= 180
    item = pystac.Item("x", geom, bbox, None, {}, start_datetime=pystac.utils.str_to_datetime(
        "2024-01-01T00:00:00Z"), end_datetime=pystac.utils.str_to_datetime("2024-12-31T00:00:00Z"))
    validate.validate_dict(item.to_dict(include_self_link=False))


def test_rerun_is_byte_identical_and_rewrites_nothing(stores):
    first = stac.write_catalog(stores)
    assert len(first.written) == 7 and not first.unchanged
    files = sorted((stores / "stac").rglob("*.json"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    second = stac.write_catalog(stores)
    assert not second.written and not second.removed and len(second.unchanged) == 7
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert not any("build_time\": \"20" in p.read_text() and "now" in p.read_text()
                   for p in files)


def test_rebuilding_one_zone_updates_only_its_item_and_collection(stores, archive):
    stac.write_catalog(stores)
    out = stores / "stac"
    coll = out / "geotessera-2024" / "collection.json"
    old_extent = json.loads(coll.read_text())["extent"]["spatial"]["bbox"][0]
    records = [r for r in scan(archive).records if not r.name.startswith("grid_-0.25")]
    build(archive, stores, records=records, zones=frozenset({30}), years=[2024])
    report = stac.write_catalog(stores)
    assert set(report.written) == {coll, out / "geotessera-2024" / "geotessera-2024-utm30" /
                                   "geotessera-2024-utm30.json"}
    assert len(report.unchanged) == 5 and not report.removed
    new_extent = json.loads(coll.read_text())["extent"]["spatial"]["bbox"][0]
    assert new_extent[0] > old_extent[0] + 0.09  # the westmost column of tiles is gone
    assert new_extent[1:] == old_extent[1:]
    assert validate.validate_catalog(report.catalog) == 7


def test_removed_stores_disappear_with_their_empty_collections(stores):
    stac.write_catalog(stores)
    out = stores / "stac"
    shutil.rmtree(stores / "utm31_2025.zarr")
    report = stac.write_catalog(stores)
    assert report.removed == (out / "geotessera-2025" / "geotessera-2025-utm31" /
                              "geotessera-2025-utm31.json",)
    assert not (out / "geotessera-2025" / "geotessera-2025-utm31").exists()
    shutil.rmtree(stores / "utm30_2025.zarr")
    report = stac.write_catalog(stores)
    assert not (out / "geotessera-2025").exists()
    assert [c.id for c in pystac.Catalog.from_file(str(report.catalog)).get_children()] == [
        "geotessera-2024"]
    assert validate.validate_catalog(report.catalog) == 4


def test_incomplete_stores_are_skipped_and_said_so(stores):
    root = zarr.open_group(str(stores / "utm30_2025.zarr"), mode="r+")
    root.attrs["geotessera:build_complete"] = False
    zarr.consolidate_metadata(str(stores / "utm30_2025.zarr"))
    report = stac.write_catalog(stores, stores / "out")
    assert report.skipped == ((str(stores / "utm30_2025.zarr"), "build not complete"),)
    assert "geotessera-2025-utm30" not in report.items and len(report.items) == 3


def test_href_base_makes_asset_hrefs_absolute(built, tmp_path):
    report = stac.write_catalog(built, tmp_path / "pub", href_base="s3://bucket/tessera/")
    item = json.loads(next((tmp_path / "pub").glob("*/*utm31/*.json")).read_text())
    assert re.fullmatch(r"s3://bucket/tessera/utm31_\d{4}/v\d{8}T\d{6}Z-[0-9a-f]{6}\.zarr",
                        item["assets"]["embeddings"]["href"])
    assert [ln["href"] for ln in item["links"] if ln["rel"] == "store"] == [
        item["assets"]["embeddings"]["href"]]
    assert item["links"][0] == {"href": "../../catalog.json", "rel": "root",
                                "type": "application/json"}
    assert validate.validate_catalog(report.catalog) == 7
    with pytest.raises(ValueError, match="URL"):
        stac.write_catalog(built, tmp_path / "bad", href_base="bucket/tessera")


def test_a_directory_without_stores_is_an_error(tmp_path):
    with pytest.raises(StoreError, match="no zone stores"):
        stac.write_catalog(tmp_path)
    assert not (tmp_path / "stac").exists()


def test_after_the_preview_pass_items_gain_a_preview_asset_and_keep_their_footprint(stores):
    preview = pytest.importorskip("geotessera.preview.run")
    from concurrent.futures import ThreadPoolExecutor

    before = stac.write_catalog(stores)
    old = {p: json.loads(p.read_text()) for p in before.written if "utm" in p.name}
    with ThreadPoolExecutor(2) as pool:
        preview.run_preview_pass(stores, pool, years=[2024])
    report = stac.write_catalog(stores)
    assert validate.validate_catalog(report.catalog) == 7
    for path, was in old.items():
        item = json.loads(path.read_text())
        if item["properties"]["geotessera:year"] != 2024:
            assert item == was
            continue
        assert item["bbox"] == was["bbox"]  # read from L0 still: the same exact footprint
        assert item["properties"]["geotessera:rgb_complete"] is True
        asset = item["assets"]["preview"]
        assert asset["roles"] == ["overview", "visual"] and asset["href"] == item["assets"][
            "embeddings"]["href"]
        assert asset["cube:variables"]["rgba"]["dimensions"][1:] == ["y", "x"]
        assert "rgba" not in item["assets"]["embeddings"]["cube:variables"]
        levels = zarr.open_group(str(stores / Path(asset["href"]).name)).attrs["multiscales"]
        assert len(levels["layout"]) > 1


# --- thumbnails --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def previewed_catalog(built, tmp_path_factory) -> Path:
    """A private copy of the previewed 2024 session stores with its catalog in ``stac/``."""
    src, _ = previewed_stores(built, tmp_path_factory)
    stores = copy_stores(src, tmp_path_factory.mktemp("previewed_stac"), 2024)
    stac.write_catalog(stores)
    return stores


def _expected_thumbnail(store: Path, limit: int = 256) -> np.ndarray:
    """The finest level at most ``limit`` px on its longer side (else the coarsest), cropped
    to the pixels with alpha > 0, every n-th pixel kept so it fits; read with zarr alone."""
    root = zarr.open_group(str(store), mode="r")
    layout = root.attrs["multiscales"]["layout"]
    entry = next((e for e in layout if max(e["spatial:shape"]) <= limit), layout[-1])
    rgba = root[f"{entry['asset']}/rgba"][:]
    rows, cols = np.nonzero(rgba[3])
    crop = rgba[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    step = math.ceil(max(crop.shape[1:]) / limit)
    return crop[:, ::step, ::step]


def test_previewed_items_have_a_png_thumbnail(previewed_catalog):
    items = _items(previewed_catalog / "stac" / "catalog.json")
    assert sorted(items) == ["geotessera-2024-utm30", "geotessera-2024-utm31"]
    for item in items.values():
        (asset,) = item.get_assets(role="thumbnail").values()  # pystac finds it by role
        assert asset.media_type == pystac.MediaType.PNG == "image/png"
        assert asset.roles == ["thumbnail"] and asset.href == "./thumbnail.png"
        png = Path(asset.get_absolute_href())
        assert png.parent == Path(item.get_self_href()).parent
        store = previewed_catalog / f"utm{item.properties['geotessera:zone']}_2024.zarr"
        got = read_png(png)
        assert max(got.shape[1:]) <= 256 and np.array_equal(got, _expected_thumbnail(store))


def test_a_thumbnail_keeps_every_nth_pixel_when_no_level_is_small_enough(previewed_catalog,
                                                                        monkeypatch, tmp_path):
    from geotessera.catalog import assets

    store = previewed_catalog / "utm30_2024.zarr"
    coarsest = zarr.open_group(str(store), mode="r").attrs["multiscales"]["layout"][-1]
    monkeypatch.setattr(assets, "THUMBNAIL_PX", 16)
    (tmp_path / "t.png").write_bytes(assets.thumbnail_png(store))
    got = read_png(tmp_path / "t.png")
    assert max(got.shape[1:]) <= 16 and np.array_equal(got, _expected_thumbnail(store, 16))
    rgba = zarr.open_group(str(store), mode="r")[f"{coarsest['asset']}/rgba"][:]
    rows, cols = np.nonzero(rgba[3])
    assert max(np.ptp(rows), np.ptp(cols)) + 1 > 16  # the crop itself was thinned


def test_thumbnails_validate_offline_and_with_pystac(previewed_catalog):
    catalog = previewed_catalog / "stac" / "catalog.json"
    assert validate.validate_catalog(catalog) == 4  # catalog, collection, 2 items
    before = pystac.validation.RegisteredValidator.get_validator()
    pystac.validation.set_validator(validate.offline_validator())
    try:
        root = pystac.Catalog.from_file(str(catalog))
        root.validate_all()
        for item in root.get_items(recursive=True):
            assert "thumbnail" in item.assets and item.validate()
    finally:
        pystac.validation.set_validator(before)
    coll = json.loads((previewed_catalog / "stac" / "geotessera-2024" /
                       "collection.json").read_text())
    assert coll["item_assets"]["thumbnail"] == {
        "title": coll["item_assets"]["thumbnail"]["title"], "type": "image/png",
        "roles": ["thumbnail"]}


def test_thumbnails_are_rewritten_only_when_they_change_and_removed_with_their_store(
        previewed_catalog, tmp_path):
    stores = copy_stores(previewed_catalog, tmp_path / "stores")
    first = stac.write_catalog(stores)
    pngs = sorted((stores / "stac").rglob("thumbnail.png"))
    assert len(pngs) == 2 and set(pngs) <= set(first.written)
    again = stac.write_catalog(stores)
    assert not again.written and set(pngs) <= set(again.unchanged)
    shutil.rmtree(stores / "utm31_2024.zarr")
    report = stac.write_catalog(stores)
    gone = stores / "stac" / "geotessera-2024" / "geotessera-2024-utm31"
    assert gone / "thumbnail.png" in report.removed and not gone.exists()


def test_thumbnail_href_is_absolute_under_href_base_when_the_catalog_is_published_too(
        previewed_catalog, tmp_path):
    stores = copy_stores(previewed_catalog, tmp_path / "stores")
    stac.write_catalog(stores, href_base="https://example.org/stores/")
    item = json.loads(next((stores / "stac").glob("*/*utm31/*.json")).read_text())
    assert item["assets"]["thumbnail"]["href"] == (
        "https://example.org/stores/stac/geotessera-2024/geotessera-2024-utm31/thumbnail.png")
    assert validate.validate_catalog(stores / "stac" / "catalog.json") == 4
    # a catalog outside STORES_DIR is not under --href-base: its thumbnails stay relative
    stac.write_catalog(stores, tmp_path / "elsewhere", href_base="https://example.org/stores")
    item = json.loads(next((tmp_path / "elsewhere").glob("*/*utm31/*.json")).read_text())
    assert item["assets"]["thumbnail"]["href"] == "./thumbnail.png"
    assert (tmp_path / "elsewhere" / "geotessera-2024" / "geotessera-2024-utm31" /
            "thumbnail.png").exists()


def test_items_without_a_preview_have_no_thumbnail(catalog):
    for item in _items(catalog).values():
        assert "thumbnail" not in item.assets
    assert not list(catalog.parent.rglob("*.png"))
