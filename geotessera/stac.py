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
import math
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import pystac
import zarr
from pyproj import Transformer
from pystac.validation import JsonSchemaSTACValidator
from zarr.core.sync import sync

from .errors import CatalogValidationError, StoreError, StoreNotFoundError
from .types import Window

ZARR_TYPE = "application/vnd.zarr; version=3"
MULTISCALES_TYPE = f"{ZARR_TYPE}; profile=multiscales"
EXT = {
    "proj": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "cube": "https://stac-extensions.github.io/datacube/v2.3.0/schema.json",
    "zarr": "https://stac-extensions.github.io/zarr/v1.1.0/schema.json",
}
SCHEMA_DIR = Path(__file__).parent / "data" / "schemas"
CATALOG_ID = "geotessera"
STORE_GLOB = "utm[0-9][0-9]_[0-9][0-9][0-9][0-9].zarr"
_COLLECTION_DIR = re.compile(r"^geotessera-\d{4}$")
#: Spec-allowed licence value; the embeddings' terms are stated by their publisher.
LICENSE = "other"


Affine6 = tuple[float, float, float, float, float, float]
#: The footprint reads the finest level whose ``scales`` has at most this many pixels (16 MB);
#: when no level is that small, it lists the coarsest level's stored chunks instead.
MASK_READ_MAX_PX = 1 << 22
#: Footprint edges are densified every kilometre, with at most this many segments an edge.
DENSIFY_M, MAX_SEGMENTS = 1000.0, 256


# --- store metadata (attributes and consolidated metadata only) -------------------------------


@dataclass(frozen=True, slots=True)
class Level:
    """One ``multiscales.layout`` entry: group path, affine (rasterio order), shape (y, x)."""

    path: str
    transform: Affine6
    shape: tuple[int, int]

    @property
    def pixel_size(self) -> float:
        return abs(self.transform[0])

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        return (c, f + e * self.shape[0], c + a * self.shape[1], f)


@dataclass(frozen=True, slots=True)
class Variable:
    """A data array (≥ 2-D) of the finest level."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    description: str


@dataclass(frozen=True, slots=True)
class StoreMeta:
    """What readers and the catalog need from a store, read from its metadata alone."""

    href: str
    zone: int
    year: int
    epsg: int
    bands: int
    levels: tuple[Level, ...]  # finest first
    variables: tuple[Variable, ...]
    consolidated: bool
    passes: dict[str, bool] = field(default_factory=dict)  # "build" → build_complete, …
    provenance: dict[str, Any] = field(default_factory=dict)
    build_time: str | None = None
    tiles: tuple[str, ...] = ()
    tiles_skipped: tuple[str, ...] = ()


def open_root(href: str | Path | zarr.abc.store.Store) -> zarr.Group:
    """Open a store's root group read-only (consolidated metadata when present); ``href`` is
    a path, a URL or a zarr Store object."""
    store = str(href) if isinstance(href, str | Path) else href
    try:
        return zarr.open_group(store=store, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise StoreNotFoundError(href, "not a zarr v3 group") from e


def read_meta(root: zarr.Group, href: str) -> StoreMeta:
    """Parse a zone store's root attributes; StoreError if it is not one."""
    attrs = root.attrs.asdict()
    need = ("multiscales", "proj:code", "geotessera:zone", "geotessera:year")
    if missing := [k for k in need if k not in attrs]:
        raise StoreError(href, f"not a geotessera zone store (missing {', '.join(missing)})")
    levels = tuple(sorted(
        (Level(e["asset"], tuple(map(float, e["spatial:transform"][:6])),
               tuple(map(int, e["spatial:shape"]))) for e in attrs["multiscales"]["layout"]),
        key=lambda lv: lv.pixel_size))
    finest = root[levels[0].path]
    variables = tuple(
        Variable(name, tuple(a.metadata.dimension_names or ()), a.shape,
                 str(a.attrs.get("long_name", "")))
        for name, a in sorted(finest.arrays(), key=lambda kv: kv[0]) if a.ndim >= 2)
    geo = {k[len("geotessera:"):]: v for k, v in attrs.items() if k.startswith("geotessera:")}
    passes = {k[: -len("_complete")]: bool(v) for k, v in geo.items() if k.endswith("_complete")}
    keep = ("zone", "year", "tiles_written", "version")
    return StoreMeta(
        href=href, zone=int(geo["zone"]), year=int(geo["year"]),
        epsg=int(str(attrs["proj:code"]).split(":")[-1]),
        bands=int(attrs.get("geoemb:dimensions", 0)), levels=levels, variables=variables,
        consolidated=root.metadata.consolidated_metadata is not None, passes=passes,
        provenance={k: geo[k] for k in keep if k in geo}
        | {f"{k}_complete": v for k, v in sorted(passes.items())},
        build_time=geo.get("build_time"), tiles=tuple(geo.get("tiles", ())),
        tiles_skipped=tuple(str(t.get("name", t)) if isinstance(t, dict) else str(t)
                            for t in geo.get("tiles_skipped", ())),
    )


def store_size(root: zarr.Group) -> tuple[int, int]:
    """(bytes, objects) of every key in the store, through the store API."""

    async def total() -> tuple[int, int]:
        n = size = 0
        async for key in root.store.list():
            size += await root.store.getsize(key)
            n += 1
        return size, n

    return sync(total())


def describe_store(href: str | Path) -> dict[str, Any]:
    """What ``info`` shows about a store: metadata, footprint level, levels, passes, size."""
    root = open_root(str(href))
    meta = read_meta(root, str(href))
    fp = data_footprint(root, meta)
    size, objects = store_size(root)
    lv0 = meta.levels[0]
    bbox = footprint_geojson(meta.zone, fp.utm_bbox)[1] if fp.window else None
    return {
        "store": str(href), "zone": meta.zone, "year": meta.year, "epsg": meta.epsg,
        "bands": meta.bands, "shape": list(lv0.shape), "pixel_size": lv0.pixel_size,
        "bbox_utm": list(lv0.bbox), "tiles": len(meta.tiles),
        "tiles_skipped": len(meta.tiles_skipped),
        "coverage": {"fraction": round(fp.coverage, 6), "method": fp.method,
                     "level": fp.level.path, "bbox_wgs84": bbox},
        "levels": [{"level": lv.path, "shape": list(lv.shape), "pixel_size": lv.pixel_size}
                   for lv in meta.levels],
        "passes": meta.passes, "size_bytes": size, "objects": objects,
        "build_time": meta.build_time, "version": meta.provenance.get("version"),
    }


# --- footprint ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Footprint:
    """The pixels of ``level`` that hold every valid pixel (None: no valid pixel at all).

    ``method`` is "pixels" (from the level's ``scales``: exact at that level's resolution)
    or "chunks" (the union of its stored chunks: a cover). ``coverage`` is the share of the
    level's pixels (or chunks) that hold data.
    """

    level: Level
    window: Window | None
    method: str
    coverage: float

    @property
    def utm_bbox(self) -> tuple[float, float, float, float] | None:
        if self.window is None:
            return None
        a, _, c, _, e, f = self.level.transform
        w = self.window
        return (c + a * w.col0, f + e * w.row1, c + a * w.col1, f + e * w.row0)


def _bounding_window(mask: np.ndarray) -> Window | None:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Window(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _decode_key(enc: Any, key: str) -> tuple[int, ...]:
    """Chunk coordinates of a key (zarr 3.1's own decoder mis-strips the ``c/`` prefix)."""
    if enc.name == "default":
        key = key[2:] if key.startswith("c" + enc.separator) else key
    return tuple(int(k) for k in key.split(enc.separator))


def stored_chunks(arr: zarr.Array) -> np.ndarray:
    """Boolean grid of the array's stored objects (shards, or chunks when unsharded).

    Listed through the zarr store API, so it works on any store that can list.
    """
    unit = arr.shards or arr.chunks
    grid = np.zeros([math.ceil(n / u) for n, u in zip(arr.shape, unit)], bool)
    prefix = f"{arr.path}/"

    async def keys() -> list[str]:
        return [k async for k in arr.store.list_prefix(prefix)]

    for key in sync(keys()):
        rel = key[len(prefix):]
        if rel != "zarr.json":
            grid[_decode_key(arr.metadata.chunk_key_encoding, rel)] = True
    return grid


def data_footprint(root: zarr.Group, meta: StoreMeta, max_read_px: int = MASK_READ_MAX_PX
                   ) -> Footprint:
    """Where the store has data: the finest level whose ``scales`` has at most
    ``max_read_px`` pixels, read whole (an overview pixel is valid when any child is, so
    coarser levels give a cover); if none is that small, the stored chunks of the coarsest."""
    fits = [lv for lv in meta.levels if math.prod(lv.shape) <= max_read_px]
    if fits:
        mask = np.isfinite(root[f"{fits[0].path}/scales"][...])
        return Footprint(fits[0], _bounding_window(mask), "pixels", float(mask.mean()))
    level = meta.levels[-1]
    arr = root[f"{level.path}/scales"]
    grid = stored_chunks(arr)
    win = _bounding_window(grid)
    if win is not None:
        u0, u1 = arr.shards or arr.chunks
        h, w = arr.shape
        win = Window(win.row0 * u0, min(win.row1 * u0, h), win.col0 * u1, min(win.col1 * u1, w))
    return Footprint(level, win, "chunks", float(grid.mean()))


def _segments(length: float) -> int:
    return min(max(math.ceil(length / DENSIFY_M), 1), MAX_SEGMENTS)


def _lonlat_ring(zone: int, utm_bbox: tuple[float, float, float, float]) -> np.ndarray:
    """The rectangle's densified, closed, counter-clockwise ring in lon/lat, longitudes
    unwrapped around the zone's central meridian (so they may run past ±180°)."""
    x0, y0, x1, y1 = utm_bbox
    xs = np.linspace(x0, x1, _segments(x1 - x0) + 1)
    ys = np.linspace(y0, y1, _segments(y1 - y0) + 1)
    x = np.concatenate([xs, np.full(len(ys) - 1, x1), xs[-2::-1], np.full(len(ys) - 1, x0)])
    y = np.concatenate([np.full(len(xs), y0), ys[1:], np.full(len(xs) - 1, y1), ys[-2::-1]])
    lon, lat = Transformer.from_crs(32600 + zone, 4326, always_xy=True).transform(x, y)
    cm = 6.0 * zone - 183.0
    lon = cm + (np.asarray(lon) - cm + 180.0) % 360.0 - 180.0
    if np.abs(lon).min() > 180.0:  # wholly past ±180°: wrap it back
        lon -= np.copysign(360.0, lon[0])
    return np.round(np.column_stack([lon, lat]), 7)


def _clip(ring: np.ndarray, limit: float, keep_below: bool) -> np.ndarray:
    """Sutherland–Hodgman against one meridian: the part of a closed ring with
    lon ≤ limit (``keep_below``) or lon ≥ limit, closed again."""
    inside = ring[:, 0] <= limit if keep_below else ring[:, 0] >= limit
    out: list[list[float]] = []
    for i in range(len(ring) - 1):
        (x0, y0), (x1, y1) = ring[i], ring[i + 1]
        if inside[i]:
            out.append([x0, y0])
        if inside[i] != inside[i + 1]:
            out.append([limit, y0 + (limit - x0) / (x1 - x0) * (y1 - y0)])
    return np.round(np.array(out + out[:1]), 7)


def footprint_geojson(zone: int, utm_bbox: tuple[float, float, float, float]
                      ) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) in WGS84 of a rectangle in canonical EPSG:326ZZ metres.

    Edges are densified (≤ 1 km, ≤ 256 segments each) before reprojection; negative
    northings give southern latitudes. A ring that crosses ±180° is split into a
    MultiPolygon, and its bbox has west > east (RFC 7946 §5.2). Coordinates are rounded to
    1e-7°, so the output is stable.
    """
    ring = _lonlat_ring(zone, utm_bbox)
    (w, s), (e, n) = ring.min(axis=0), ring.max(axis=0)
    if w >= -180.0 and e <= 180.0:
        return {"type": "Polygon", "coordinates": [ring.tolist()]}, [float(v) for v in (w, s, e, n)]
    edge = 180.0 if e > 180.0 else -180.0
    inner = _clip(ring, edge, keep_below=edge > 0)
    outer = _clip(ring, edge, keep_below=edge < 0) - [2 * edge, 0.0]
    near_plus, near_minus = (inner, outer) if edge > 0 else (outer, inner)
    bbox = [near_plus[:, 0].min(), s, near_minus[:, 0].max(), n]
    return ({"type": "MultiPolygon",
             "coordinates": [[near_plus.tolist()], [near_minus.tolist()]]},
            [float(v) for v in bbox])


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


def _zarr_asset(href: str, meta: StoreMeta, roles: list[str], title: str,
                variables: Iterable[str]) -> pystac.Asset:
    level = meta.levels[0]
    fields = {
        "zarr:zarr_format": 3, "zarr:node_type": "group", "zarr:consolidated": meta.consolidated,
        "proj:code": f"EPSG:{meta.epsg}", "proj:shape": list(level.shape),
        "proj:transform": list(level.transform), "proj:bbox": list(level.bbox),
        **_cube(meta, variables),
    }
    return pystac.Asset(href, title=title, media_type=MULTISCALES_TYPE, roles=roles,
                        extra_fields=fields)


def build_item(meta: StoreMeta, fp: Footprint, store_href: str, links: dict[str, str]) -> dict:
    """The item dict of one store. ``links`` maps rel (root, parent, collection) to href."""
    geometry, bbox = footprint_geojson(meta.zone, fp.utm_bbox)
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
    item.add_asset("embeddings", _zarr_asset(
        store_href, meta, ["data"], "int8 embeddings × per-pixel scales (multiscale group)",
        data_vars))
    if meta.passes.get("rgb") and any(v.name == "rgba" for v in meta.variables):
        item.add_asset("preview", _zarr_asset(
            store_href, meta, ["overview", "visual"], "uint8 RGBA preview: array `rgba` of "
            "each level", ["rgba"]))
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


def build_collection(year: int, items: list[dict], item_hrefs: list[str]) -> dict:
    gsd = sorted({i["properties"]["gsd"] for i in items})
    coll = pystac.Collection(
        collection_id(year),
        f"GeoTessera 128-d embeddings for {year}, one Zarr v3 store per UTM zone "
        "(int8 × per-pixel float32 scale; NaN scale = no data).",
        pystac.Extent(
            pystac.SpatialExtent([_union_bbox([i["bbox"] for i in items])]),
            pystac.TemporalExtent([[pystac.utils.str_to_datetime(f"{year}-01-01T00:00:00Z"),
                                    pystac.utils.str_to_datetime(f"{year}-12-31T23:59:59Z")]]),
        ),
        title=f"GeoTessera embeddings {year}", license=LICENSE, summaries=pystac.Summaries(
            {"gsd": gsd}),
        keywords=["embeddings", "TESSERA", "Sentinel-1", "Sentinel-2", "Zarr"],
    )
    coll.add_link(pystac.Link("root", "../catalog.json", media_type="application/json"))
    coll.add_link(pystac.Link("parent", "../catalog.json", media_type="application/json"))
    for i, href in zip(items, item_hrefs):
        coll.add_link(pystac.Link("item", href, media_type="application/geo+json",
                                  title=i["properties"]["title"]))
    return coll.to_dict(include_self_link=False, transform_hrefs=False)


def build_root(collections: dict[int, str]) -> dict:
    cat = pystac.Catalog(CATALOG_ID, "GeoTessera embedding zone stores: one collection per "
                         "year, one item per UTM-zone Zarr store.", title="GeoTessera")
    for year, href in sorted(collections.items()):
        cat.add_link(pystac.Link("child", href, media_type="application/json",
                                 title=f"GeoTessera embeddings {year}"))
    return cat.to_dict(include_self_link=False, transform_hrefs=False)


# --- writing -----------------------------------------------------------------------------------


def find_stores(stores_dir: Path) -> list[Path]:
    """Zone stores directly under ``stores_dir`` (``utmZZ_YYYY.zarr``), sorted by name."""
    return sorted(p for p in Path(stores_dir).glob(STORE_GLOB) if p.is_dir())


def _store_href(store: Path, item_dir: Path, href_base: str | None) -> str:
    if href_base is None:
        return _rel(store, item_dir)
    return f"{href_base.rstrip('/')}/{store.name}"


def plan_catalog(stores_dir: Path, output: Path, href_base: str | None = None
                 ) -> tuple[dict[Path, dict], list[tuple[str, str]]]:
    """Every catalog file (absolute path → JSON dict) and the skipped stores, without writing."""
    files: dict[Path, dict] = {}
    skipped: list[tuple[str, str]] = []
    by_year: dict[int, list[tuple[dict, str]]] = {}
    for store in find_stores(stores_dir):
        root = open_root(str(store))
        meta = read_meta(root, str(store))
        if not meta.passes.get("build"):
            skipped.append((str(store), "build not complete"))
            continue
        fp = data_footprint(root, meta)
        if fp.window is None:
            skipped.append((str(store), "no valid pixels"))
            continue
        idir = output / collection_id(meta.year) / item_id(meta.zone, meta.year)
        links = {"root": "../../catalog.json", "parent": "../collection.json",
                 "collection": "../collection.json"}
        item = build_item(meta, fp, _store_href(store, idir, href_base), links)
        files[idir / f"{item['id']}.json"] = item
        by_year.setdefault(meta.year, []).append((item, f"./{idir.name}/{item['id']}.json"))
    for year, entries in by_year.items():
        entries.sort(key=lambda e: e[0]["id"])
        coll = build_collection(year, [e[0] for e in entries], [e[1] for e in entries])
        files[output / collection_id(year) / "collection.json"] = coll
    files[output / "catalog.json"] = build_root(
        {y: f"./{collection_id(y)}/collection.json" for y in by_year})
    return files, skipped


def dumps(doc: dict) -> bytes:
    """The one JSON encoding of catalog files: sorted keys, 2-space indent, final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stale(output: Path, keep: set[Path]) -> list[Path]:
    """Our catalog files under ``output`` that are not in ``keep`` (collections, items)."""
    out = []
    for cdir in sorted(p for p in output.iterdir() if p.is_dir() and _COLLECTION_DIR.match(p.name)):
        out += [p for p in sorted(cdir.glob("*/*.json")) if p not in keep]
        if (cdir / "collection.json") not in keep and (cdir / "collection.json").exists():
            out.append(cdir / "collection.json")
    return out


def write_catalog(stores_dir: Path, output: Path | None = None,
                  href_base: str | None = None) -> CatalogReport:
    """Regenerate the catalog of ``stores_dir`` into ``output`` (default ``stores_dir/stac``).

    Files whose bytes would not change are left alone (mtime too); stale items and empty
    collections are deleted. Raises StoreError when ``stores_dir`` holds no zone store.
    """
    stores_dir = Path(stores_dir).resolve()
    output = (Path(output) if output is not None else stores_dir / "stac").resolve()
    if href_base is not None and "://" not in href_base:
        raise ValueError(f"href_base must be a URL such as https://… or s3://…, got {href_base!r}")
    if not find_stores(stores_dir):
        raise StoreError(stores_dir, f"no zone stores ({STORE_GLOB}) to catalogue")
    files, skipped = plan_catalog(stores_dir, output, href_base)
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


# --- offline validation ------------------------------------------------------------------------


class _OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator that never fetches: unknown schema URIs are errors."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise CatalogValidationError(schema_uri, "schema not vendored (validation is offline)")
        return self.schema_cache[schema_uri]


@cache
def _vendored_schemas() -> dict[str, dict[str, Any]]:
    """Our extension schemas, plus the PROJJSON schema that PROJ ships inside pyproj (the
    datacube schema's ``reference_system`` is a oneOf that resolves it)."""
    files = sorted(SCHEMA_DIR.glob("*.json"))
    files += [p for p in [Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"]
              if p.exists()]
    docs = (json.loads(p.read_text()) for p in files)
    return {d["$id"].rstrip("#"): d for d in docs}  # zarr v1.1.0's $id ends in "#"


def offline_validator() -> JsonSchemaSTACValidator:
    """A validator seeded with pystac's core schemas and geotessera's vendored extensions."""
    v = _OfflineValidator()
    v.schema_cache.update(_vendored_schemas())
    return v


def _deepest(errors: list) -> Any:
    """The error deepest in the document, looking inside oneOf/anyOf branches."""
    flat, todo = [], list(errors)
    while todo:
        err = todo.pop()
        flat.append(err)
        todo += err.context or []
    return max(flat, key=lambda err: len(err.absolute_path), default=None)


def validate_dict(doc: dict, href: str = "", validator: JsonSchemaSTACValidator | None = None
                  ) -> None:
    """Validate one STAC object (core and declared extensions); raise CatalogValidationError."""
    v = validator or offline_validator()
    kind = pystac.serialization.identify_stac_object(doc).object_type
    try:
        v.validate(doc, kind, doc["stac_version"], list(doc.get("stac_extensions", [])), href)
    except pystac.STACValidationError as e:
        schema = str(e).splitlines()[0].rpartition(" against schema at ")[2]
        best = _deepest(e.source or [])
        where = "/".join(map(str, best.absolute_path)) if best else ""
        problem = f"{best.message[:200]} at {where or '/'}" if best else str(e)
        raise CatalogValidationError(href or doc.get("id"), f"{problem} ({schema})") from e


def validate_catalog(catalog: Path) -> int:
    """Validate every object reachable from ``catalog`` through child/item links, offline.

    Returns how many objects were validated; raises CatalogValidationError on the first bad one.
    """
    v, seen, todo = offline_validator(), set(), [Path(catalog).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CatalogValidationError(path, f"unreadable: {e}") from e
        validate_dict(doc, str(path), v)
        todo += [(path.parent / link["href"]).resolve() for link in doc.get("links", [])
                 if link["rel"] in ("child", "item") and "://" not in link["href"]]
    return len(seen)
