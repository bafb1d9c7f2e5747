"""A static STAC catalog regenerated from the zone stores' metadata alone, validated offline.

Layout under the output directory (relative links throughout)::

    catalog.json                                       root catalog
    geotessera-2024/collection.json                    one collection per year
    geotessera-2024/geotessera-2024-utm30/….json       one item per store

Guarantees: the JSON depends only on the stores (no clock), so a rerun over unchanged stores
rewrites nothing; every file is written atomically; items of stores that are gone are removed,
and so are collections left without items. Only ``build_complete`` stores are catalogued.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
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
#: The default licence: "other" (a value the spec allows), because the terms of the TESSERA
#: embeddings were not found stated in the archive or its repositories. Set the real SPDX id
#: with ``write_catalog(license=...)`` / ``stac --license``.
LICENSE = "other"
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


def _dimensions(meta: StoreMeta, names: Iterable[str], sizes: dict[str, int]) -> dict:
    level = meta.levels[0]
    a, _, c, _, e, f = level.transform
    h, w = level.shape
    ref = meta.epsg
    dims: dict[str, Any] = {
        "x": {"type": "spatial", "axis": "x", "extent": [c + a / 2, c + a * (w - 0.5)],
              "step": a, "reference_system": ref},
        "y": {"type": "spatial", "axis": "y", "extent": [f + e * (h - 0.5), f + e / 2],
              "step": e, "reference_system": ref},
    }
    for name in names:
        if name not in dims:
            dims[name] = {"type": name, "extent": [0, sizes[name] - 1], "step": 1}
    return dims


def _cube(meta: StoreMeta, variables: Iterable[str]) -> dict[str, Any]:
    """``cube:dimensions``/``cube:variables`` for some arrays of the finest level."""
    chosen = [v for v in meta.variables if v.name in set(variables)]
    sizes = {d: n for v in chosen for d, n in zip(v.dims, v.shape)}
    dims = _dimensions(meta, [d for v in chosen for d in v.dims], sizes)
    cube_vars = {
        v.name: {"dimensions": list(v.dims), "type": "auxiliary" if v.name == "scales" else "data",
                 "description": v.description} | ({"nodata": "nan"} if v.name == "scales" else {})
        for v in chosen
    }
    return {"cube:dimensions": dims, "cube:variables": cube_vars}


def _grid_fields(meta: StoreMeta) -> dict[str, Any]:
    level = meta.levels[0]
    return {"proj:code": f"EPSG:{meta.epsg}", "proj:shape": list(level.shape),
            "proj:transform": list(level.transform), "proj:bbox": list(level.bbox)}


def _zarr_asset(href: str, meta: StoreMeta, roles: list[str], title: str,
                variables: Iterable[str], chunks: dict[str, int]) -> pystac.Asset:
    fields = {
        "zarr:zarr_format": 3, "zarr:node_type": "group", "zarr:consolidated": meta.consolidated,
        **_grid_fields(meta), **_cube(meta, variables),
        "xarray:open_kwargs": assets.open_kwargs(meta.levels[0].path, chunks),
    }
    return pystac.Asset(href, title=title, media_type=assets.ZARR_STORE_TYPE, roles=roles,
                        extra_fields=fields)


def build_item(meta: StoreMeta, fp: Footprint, store_href: str, links: dict[str, str],
               chunks: dict[str, int] | None = None, gdal_store: str | None = None) -> dict:
    """The item dict of one store. ``links`` maps rel (root, parent, collection) to href;
    ``chunks`` are the dask chunks of ``xarray:open_kwargs`` (whole L0 shards);
    ``gdal_store`` is the store's absolute GDAL path (None: no GDAL/odc-stac assets)."""
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
    has_rgba = bool(meta.passes.get("rgb")) and any(v.name == "rgba" for v in meta.variables)
    item.add_asset("embeddings", _zarr_asset(
        store_href, meta, ["data"], "int8 embeddings × per-pixel scales (multiscale group)",
        data_vars, chunks))
    if has_rgba:
        item.add_asset("preview", _zarr_asset(
            store_href, meta, ["overview", "visual"], "uint8 RGBA preview: array `rgba` of "
            "each level", ["rgba"], chunks))
    if gdal_store is not None:
        for key, asset in assets.gdal_assets(gdal_store, meta.levels[0].path,
                                             _grid_fields(meta), has_rgba).items():
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
        "(int8 × per-pixel float32 scale; NaN scale = no data).",
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


def plan_catalog(stores_dir: Path | Location, output: PurePath, href_base: str | None = None,
                 license: str = LICENSE) -> tuple[dict[PurePath, dict], list[tuple[str, str]]]:
    """Every catalog file (path under ``output`` → JSON dict) and the skipped stores, without
    writing. ``output`` is a local Path, or a PurePosixPath root for a remote catalog."""
    files: dict[PurePath, dict] = {}
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
        item = build_item(meta, fp, _store_href(ref.location, stores, idir, href_base), links,
                          _shard_chunks(root, meta), _gdal_store(ref.location, stores, href_base))
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


def dumps(doc: dict) -> bytes:
    """The one JSON encoding of catalog files: sorted keys, 2-space indent, final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _stale(output: Path, keep: set[Path]) -> list[Path]:
    """Our catalog files under ``output`` that are not in ``keep`` (collections, items)."""
    out = []
    for cdir in sorted(p for p in output.iterdir() if p.is_dir() and _COLLECTION_DIR.match(p.name)):
        out += [p for p in sorted(cdir.glob("*/*.json")) if p not in keep]
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
    files, skipped = plan_catalog(stores_dir, output, href_base, license)
    written, unchanged = [], []
    # items first, then collections, then the root: a link never points at a missing file
    for path, doc in sorted(files.items(), key=lambda kv: (-len(kv[0].parts), kv[0])):
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
    items = tuple(sorted(d["id"] for d in files.values() if d.get("type") == "Feature"))
    return CatalogReport(output / "catalog.json", items, tuple(written), tuple(unchanged),
                         tuple(removed), tuple(skipped))


def _write_remote(stores: Location, out: Location, href_base: str | None) -> CatalogReport:
    """``write_catalog`` onto an object store: each file one PUT (items, then collections,
    then the root); stale catalog objects deleted."""
    if stores.is_local and href_base is None:
        raise ValueError(f"{out}: a catalog on object storage cannot hold relative hrefs to "
                         "local stores; give href_base")
    if not find_stores(stores):
        raise StoreError(stores, "no zone stores (utmZZ_YYYY.zarr) to catalogue")
    files, skipped = plan_catalog(stores, PurePosixPath("/"), href_base)
    written, unchanged = [], []
    for path, doc in sorted(files.items(), key=lambda kv: (-len(kv[0].parts), kv[0])):
        key, data = str(path).lstrip("/"), dumps(doc)
        if out.size(key) == len(data) and out.read(key) == data:
            unchanged.append(out.child(key))
        else:
            out.write(key, data)
            written.append(out.child(key))
    keep = {str(p).lstrip("/") for p in files}
    removed = [out.child(k) for k in sorted(out.keys())
               if k not in keep and _COLLECTION_DIR.match(k.split("/")[0]) and k.endswith(".json")]
    for loc in removed:
        out.delete(loc.url[len(out.url) + 1:])
    items = tuple(sorted(d["id"] for d in files.values() if d.get("type") == "Feature"))
    return CatalogReport(out.child("catalog.json"), items, tuple(written), tuple(unchanged),
                         tuple(removed), tuple(skipped))
