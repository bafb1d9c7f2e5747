"""A static STAC catalog regenerated from the zone stores' metadata alone, validated offline.

Layout under the output directory (relative links throughout)::

    catalog.json                                       root catalog
    geotessera-2024/collection.json                    one collection per year
    geotessera-2024/geotessera-2024-utm30/….json       one item per store
    geotessera-2024/geotessera-2024-utm30/thumbnail.png  its thumbnail (preview complete)

Guarantees: the files depend only on the stores (no clock), so a rerun over unchanged stores
rewrites nothing; every file is written atomically; items of stores that are gone are removed,
and so are collections left without items. Only ``build_complete`` stores are catalogued.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

import pystac

from geotessera.atomic import atomic_path
from geotessera.catalog import assets
from geotessera.errors import StoreError
from geotessera.catalog.footprint import Footprint, data_footprint, footprint_geometry
from geotessera.store.meta import StoreMeta, open_root, read_meta
from geotessera.store.location import Location
from geotessera.store.naming import find_stores

ZARR_TYPE = "application/vnd.zarr; version=3"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "cube": "https://stac-extensions.github.io/datacube/v2.3.0/schema.json",
    "zarr": "https://stac-extensions.github.io/zarr/v1.1.0/schema.json",
}
CATALOG_ID = "geotessera"
_COLLECTION_DIR = re.compile(r"^geotessera-\d{4}$")
#: The licence of the TESSERA embeddings: CC BY 4.0, as the TESSERA terms of use state
#: ("TESSERA data and embeddings are made available under the Creative Commons Attribution
#: 4.0 International License"), with attribution by citing the TESSERA paper. Another SPDX
#: id (or "other") can be set with ``write_catalog(license=...)`` / ``stac --license``.
LICENSE = "CC-BY-4.0"
#: The licence text linked from a collection (``rel: license``), for the ids we know.
LICENSE_URLS = {"CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/"}
#: How the producer asks to be credited.
CITATION = ("TESSERA: Temporal Embeddings of Surface Spectra for Earth Representation and "
            "Analysis, arXiv:2506.20380 (https://arxiv.org/abs/2506.20380)")
PROVIDERS = [
    pystac.Provider("University of Cambridge (TESSERA model and embeddings)",
                    roles=[pystac.ProviderRole.PRODUCER], url="https://github.com/ucam-eo/tessera"),
    pystac.Provider("geotessera zone store builder", roles=[pystac.ProviderRole.PROCESSOR]),
]
#: What every item of a collection may carry (STAC 1.1 core ``item_assets``).
ITEM_ASSETS = {
    "embeddings": {"title": "int8 embeddings × per-pixel scales (multiscale group)",
                   "type": "application/vnd+zarr", "roles": ["data"]},
    "preview": {"title": "uint8 RGBA preview: array `rgba` of each level",
                "type": "application/vnd+zarr", "roles": ["overview", "visual"]},
    "scales": {"title": "float32 per-pixel scales of L0 (GDAL, odc-stac)",
               "type": "application/zarr", "roles": ["data"]},
    "rgba": {"title": "uint8 RGBA preview of L0 (GDAL, odc-stac)",
             "type": "application/zarr", "roles": ["visual"]},
    "thumbnail": {"title": assets.THUMBNAIL_TITLE, "type": "image/png", "roles": ["thumbnail"]},
}


def collection_id(year: int) -> str:
    return f"{CATALOG_ID}-{year}"


def item_id(zone: int, year: int) -> str:
    return f"{CATALOG_ID}-{year}-utm{zone:02d}"


@dataclass(frozen=True, slots=True)
class CatalogReport:
    """What ``write_catalog`` did. Paths are absolute; ``skipped`` is (store, reason)."""

    catalog: Path
    items: tuple[str, ...]
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    removed: tuple[Path, ...]
    skipped: tuple[tuple[str, str], ...]


# --- items ---------------------------------------------------------------------------------


def _rel(target: Path, start: Path) -> str:
    rel = Path(os.path.relpath(target, start)).as_posix()
    return rel if rel.startswith("../") else f"./{rel}"


def has_preview(meta: StoreMeta) -> bool:
    """The preview pass is complete and L0 holds ``rgba``."""
    return bool(meta.passes.get("rgb")) and any(v.name == "rgba" for v in meta.variables)


def build_item(meta: StoreMeta, fp: Footprint, store_href: str, links: dict[str, str],
               chunks: dict[str, int] | None = None, gdal_store: str | None = None,
               thumbnail: str | None = None) -> dict:
    """The item dict of one store. ``links`` maps rel (root, parent, collection) to href;
    ``chunks`` are the dask chunks of ``xarray:open_kwargs`` (whole L0 shards);
    ``gdal_store`` is the store's absolute GDAL path (None: no GDAL/odc-stac assets);
    ``thumbnail`` the href of its thumbnail PNG (None: no thumbnail asset)."""
    geometry, bbox = footprint_geometry(meta.zone, fp)
    props: dict[str, Any] = {
        "title": f"GeoTessera embeddings {meta.year}, UTM zone {meta.zone}",
        "gsd": meta.levels[0].pixel_size,
        "proj:code": f"EPSG:{meta.epsg}",
        **{f"geotessera:{k}": v for k, v in meta.provenance.items()},
    }
    if meta.build_time:
        props["created"] = meta.build_time
    item = pystac.Item(
        item_id(meta.zone, meta.year), geometry, bbox, None, props,
        start_datetime=pystac.utils.str_to_datetime(f"{meta.year}-01-01T00:00:00Z"),
        end_datetime=pystac.utils.str_to_datetime(f"{meta.year}-12-31T23:59:59Z"),
        stac_extensions=sorted(EXT.values()), collection=collection_id(meta.year),
    )
    data_vars = [v.name for v in meta.variables if v.name != "rgba"]
    chunks = chunks or {}
    has_rgba = has_preview(meta)
    item.add_asset("embeddings", assets.zarr_asset(
        store_href, meta, ["data"], "int8 embeddings × per-pixel scales (multiscale group)",
        data_vars, chunks))
    if has_rgba:
        item.add_asset("preview", assets.zarr_asset(
            store_href, meta, ["overview", "visual"], "uint8 RGBA preview: array `rgba` of "
            "each level", ["rgba"], chunks))
    if thumbnail is not None:
        item.add_asset("thumbnail", assets.thumbnail_asset(thumbnail))
    if gdal_store is not None:
        for key, asset in assets.gdal_assets(gdal_store, meta.levels[0].path,
                                             assets.grid_fields(meta), has_rgba).items():
            item.add_asset(key, asset)
    for rel, href in links.items():
        item.add_link(pystac.Link(rel, href, media_type="application/json"))
    item.add_link(pystac.Link("store", store_href, media_type=ZARR_TYPE))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


# --- collections and the root catalog ----------------------------------------------------------


def _union_bbox(bboxes: list[list[float]]) -> list[float]:
    """Union of item bboxes; an antimeridian-crossing box (west > east) widens it to ±180."""
    crosses = any(b[0] > b[2] for b in bboxes)
    return [-180.0 if crosses else min(b[0] for b in bboxes), min(b[1] for b in bboxes),
            180.0 if crosses else max(b[2] for b in bboxes), max(b[3] for b in bboxes)]


def build_collection(year: int, items: list[dict], item_hrefs: list[str],
                     license: str = LICENSE) -> dict:
    gsd = sorted({i["properties"]["gsd"] for i in items})
    zones = sorted({i["properties"]["geotessera:zone"] for i in items})
    coll = pystac.Collection(
        collection_id(year),
        f"GeoTessera 128-d embeddings for {year}, one Zarr v3 store per UTM zone "
        f"(int8 × per-pixel float32 scale; NaN scale = no data). Please cite: {CITATION}.",
        pystac.Extent(
            pystac.SpatialExtent([_union_bbox([i["bbox"] for i in items])]),
            pystac.TemporalExtent([[pystac.utils.str_to_datetime(f"{year}-01-01T00:00:00Z"),
                                    pystac.utils.str_to_datetime(f"{year}-12-31T23:59:59Z")]]),
        ),
        title=f"GeoTessera embeddings {year}", license=license, providers=PROVIDERS,
        summaries=pystac.Summaries({"gsd": gsd, "geotessera:zone": zones}),
        keywords=["embeddings", "TESSERA", "Sentinel-1", "Sentinel-2", "Zarr"],
    )
    coll.add_link(pystac.Link("root", "../catalog.json", media_type="application/json"))
    if license in LICENSE_URLS:
        coll.add_link(pystac.Link("license", LICENSE_URLS[license], media_type="text/html",
                                  title=license))
    coll.add_link(pystac.Link("parent", "../catalog.json", media_type="application/json"))
    for i, href in zip(items, item_hrefs):
        coll.add_link(pystac.Link("item", href, media_type="application/geo+json",
                                  title=i["properties"]["title"]))
    doc = coll.to_dict(include_self_link=False, transform_hrefs=False)
    doc["item_assets"] = ITEM_ASSETS
    return doc


def build_root(collections: dict[int, str]) -> dict:
    cat = pystac.Catalog(CATALOG_ID, "GeoTessera embedding zone stores: one collection per "
                         "year, one item per UTM-zone Zarr store.", title="GeoTessera")
    for year, href in sorted(collections.items()):
        cat.add_link(pystac.Link("child", href, media_type="application/json",
                                 title=f"GeoTessera embeddings {year}"))
    cat.add_link(pystac.Link("root", "./catalog.json", media_type="application/json"))
    return cat.to_dict(include_self_link=False, transform_hrefs=False)


# --- writing -----------------------------------------------------------------------------------


def _store_href(store: Location, stores: Location, item_dir: PurePath,
                href_base: str | None) -> str:
    """The asset href of a published store (the version, not a name that a later build
    repoints): under ``href_base``; else relative for a local store catalogued on disk; else
    the store's absolute URL (``s3://…``)."""
    if href_base is not None:
        return f"{href_base.rstrip('/')}/{store.url[len(stores.url):].lstrip('/')}"
    if store.is_local and isinstance(item_dir, Path):
        return _rel(store.path, item_dir)
    return store.url


def _shard_chunks(root: Any, meta: StoreMeta) -> dict[str, int]:
    """One dask chunk per L0 shard of ``embeddings`` (the unit a reader fetches whole)."""
    arr = root[f"{meta.levels[0].path}/embeddings"]
    unit = arr.shards or arr.chunks
    return {"y": int(unit[-2]), "x": int(unit[-1])}


def _gdal_store(store: Location, stores: Location, href_base: str | None) -> str | None:
    """The published store as GDAL names it (its path, or a /vsi… path of its URL)."""
    rel = store.url[len(stores.url):].lstrip("/")
    if href_base is None and store.is_local:
        return str(store.path)
    return assets.gdal_store_path(None, href_base or stores.url, rel)


def _thumbnail_href(idir: PurePath, output: PurePath, href_base: str | None,
                    catalog_at: str | None) -> str:
    """Relative to the item; under ``href_base`` when the catalog lies at ``catalog_at``
    inside the stores location (``href_base`` names where that is published)."""
    if href_base is None or catalog_at is None:
        return f"./{assets.THUMBNAIL}"
    rel = PurePosixPath(catalog_at, *idir.relative_to(output).parts, assets.THUMBNAIL)
    return f"{href_base.rstrip('/')}/{rel}"


def _inside(stores: Location, catalog: Location) -> str | None:
    """The catalog's path inside the stores location (``stac``), or None if it is not in it."""
    base, url = stores.url.rstrip("/"), catalog.url.rstrip("/")
    return url[len(base) + 1:] if url.startswith(f"{base}/") else None


def plan_catalog(stores_dir: Path | Location, output: PurePath, href_base: str | None = None,
                 license: str = LICENSE, catalog_at: str | None = None
                 ) -> tuple[dict[PurePath, dict | bytes], list[tuple[str, str]]]:
    """Every catalog file (path under ``output`` → JSON dict, or PNG bytes) and the skipped
    stores, without writing. ``output`` is a local Path, or a PurePosixPath root for a
    remote catalog; ``catalog_at`` is its path inside ``stores_dir`` (None: elsewhere)."""
    files: dict[PurePath, dict | bytes] = {}
    skipped: list[tuple[str, str]] = []
    by_year: dict[int, list[tuple[dict, str]]] = {}
    stores = Location.parse(stores_dir)
    for ref in find_stores(stores):
        store = str(ref.location)
        root = open_root(ref.location)
        meta = read_meta(root, str(store))
        if not meta.passes.get("build"):
            skipped.append((str(store), "build not complete"))
            continue
        fp = data_footprint(ref.location, root, meta)
        if fp.window is None:
            skipped.append((str(store), "no valid pixels"))
            continue
        idir = output / collection_id(meta.year) / item_id(meta.zone, meta.year)
        links = {"root": "../../catalog.json", "parent": "../collection.json",
                 "collection": "../collection.json"}
        thumb = None
        if has_preview(meta):
            files[idir / assets.THUMBNAIL] = assets.thumbnail_png(ref.location)
            thumb = _thumbnail_href(idir, output, href_base, catalog_at)
        item = build_item(meta, fp, _store_href(ref.location, stores, idir, href_base), links,
                          _shard_chunks(root, meta), _gdal_store(ref.location, stores, href_base),
                          thumb)
        files[idir / f"{item['id']}.json"] = item
        by_year.setdefault(meta.year, []).append((item, f"./{idir.name}/{item['id']}.json"))
    for year, entries in by_year.items():
        entries.sort(key=lambda e: e[0]["id"])
        coll = build_collection(year, [e[0] for e in entries], [e[1] for e in entries],
                                license)
        files[output / collection_id(year) / "collection.json"] = coll
    files[output / "catalog.json"] = build_root(
        {y: f"./{collection_id(y)}/collection.json" for y in by_year})
    return files, skipped


def dumps(doc: dict | bytes) -> bytes:
    """The one JSON encoding of catalog files: sorted keys, 2-space indent, final newline
    (a thumbnail's PNG bytes as they are)."""
    if isinstance(doc, bytes):
        return doc
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_order(kv: tuple[PurePath, dict | bytes]) -> tuple:
    """Deepest first, and a thumbnail before its item: a link never points at a missing file."""
    return (-len(kv[0].parts), not isinstance(kv[1], bytes), kv[0])


def _item_ids(files: dict[PurePath, dict | bytes]) -> tuple[str, ...]:
    return tuple(sorted(d["id"] for d in files.values()
                        if isinstance(d, dict) and d.get("type") == "Feature"))


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _stale(output: Path, keep: set[Path]) -> list[Path]:
    """Our catalog files under ``output`` that are not in ``keep`` (collections, items)."""
    out = []
    for cdir in sorted(p for p in output.iterdir() if p.is_dir() and _COLLECTION_DIR.match(p.name)):
        ours = [*cdir.glob("*/*.json"), *cdir.glob(f"*/{assets.THUMBNAIL}")]
        out += [p for p in sorted(ours) if p not in keep]
        if (cdir / "collection.json") not in keep and (cdir / "collection.json").exists():
            out.append(cdir / "collection.json")
    return out


def write_catalog(stores_dir: Path | Location, output: Path | Location | None = None,
                  href_base: str | None = None, license: str = LICENSE) -> CatalogReport:
    """Regenerate the catalog of ``stores_dir`` into ``output`` (default ``stores_dir/stac``).

    Files whose bytes would not change are left alone (mtime too); stale items and empty
    collections are deleted. Raises StoreError when ``stores_dir`` holds no zone store.
    Stores and catalog may be on object storage (``s3://``): asset hrefs are then the
    stores' absolute URLs unless ``href_base`` is given.
    """
    if href_base is not None and "://" not in href_base:
        raise ValueError(f"href_base must be a URL such as https://… or s3://…, got {href_base!r}")
    stores_loc = Location.parse(stores_dir)
    out_loc = Location.parse(output) if output is not None else stores_loc.child("stac")
    if not out_loc.is_local:
        return _write_remote(stores_loc, out_loc, href_base)
    if not stores_loc.is_local:
        stores_dir, output = stores_loc, out_loc.path
    else:
        stores_dir = stores_loc.path.resolve()
        output = out_loc.path
    output = output.resolve()
    if not find_stores(stores_dir):
        raise StoreError(stores_dir, "no zone stores (utmZZ_YYYY.zarr) to catalogue")
    files, skipped = plan_catalog(stores_dir, output, href_base, license,
                                  _inside(Location.parse(stores_dir), Location.parse(output)))
    written, unchanged = [], []
    # items first, then collections, then the root
    for path, doc in sorted(files.items(), key=_write_order):
        data = dumps(doc)
        if path.exists() and path.read_bytes() == data:
            unchanged.append(path)
        else:
            _write_atomic(path, data)
            written.append(path)
    removed = _stale(output, set(files))
    for path in removed:
        path.unlink()
    for d in sorted({p.parent for p in removed} | {p.parent.parent for p in removed},
                    key=lambda p: -len(p.parts)):
        if d != output and d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return CatalogReport(output / "catalog.json", _item_ids(files), tuple(written), tuple(unchanged),
                         tuple(removed), tuple(skipped))


def _write_remote(stores: Location, out: Location, href_base: str | None) -> CatalogReport:
    """``write_catalog`` onto an object store: each file one PUT (items, then collections,
    then the root); stale catalog objects deleted."""
    if stores.is_local and href_base is None:
        raise ValueError(f"{out}: a catalog on object storage cannot hold relative hrefs to "
                         "local stores; give href_base")
    if not find_stores(stores):
        raise StoreError(stores, "no zone stores (utmZZ_YYYY.zarr) to catalogue")
    files, skipped = plan_catalog(stores, PurePosixPath("/"), href_base,
                                  catalog_at=_inside(stores, out))
    written, unchanged = [], []
    for path, doc in sorted(files.items(), key=_write_order):
        key, data = str(path).lstrip("/"), dumps(doc)
        if out.size(key) == len(data) and out.read(key) == data:
            unchanged.append(out.child(key))
        else:
            out.write(key, data)
            written.append(out.child(key))
    keep = {str(p).lstrip("/") for p in files}
    removed = [out.child(k) for k in sorted(out.keys())
               if k not in keep and _COLLECTION_DIR.match(k.split("/")[0])
               and k.endswith((".json", f"/{assets.THUMBNAIL}"))]
    for loc in removed:
        out.delete(loc.url[len(out.url) + 1:])
    return CatalogReport(out.child("catalog.json"), _item_ids(files), tuple(written), tuple(unchanged),
                         tuple(removed), tuple(skipped))
