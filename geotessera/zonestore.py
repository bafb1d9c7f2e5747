"""A zone store's metadata, read from its attributes and consolidated metadata alone.

Guarantees: nothing here reads a data chunk except ``describe_store`` (through the footprint);
stores are opened read-only; a group that is not a geotessera zone store raises StoreError
(StoreNotFoundError when there is no zarr v3 group at all). The one rule for finding stores
in a directory by name (``utmZZ_YYYY.zarr``) is ``store_paths``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from zarr.core.sync import sync

from .errors import StoreError, StoreNotFoundError
from .footprint import data_footprint, footprint_geojson

STORE_GLOB = "utm[0-9][0-9]_[0-9][0-9][0-9][0-9].zarr"
STORE_RE = re.compile(r"^utm(\d{2})_(\d{4})\.zarr$")

Affine6 = tuple[float, float, float, float, float, float]


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


# --- finding stores by name --------------------------------------------------------------------


def store_paths(stores_dir: Path, years: Iterable[int] | None = None
                ) -> list[tuple[Path, int, int]]:
    """(path, zone, year) of every entry named ``utmZZ_YYYY.zarr`` directly under
    ``stores_dir`` whose year is in ``years`` (every year when None or empty), sorted by
    name. Names alone: an entry is not checked to be a directory or a store."""
    years = set(years) if years else None
    found = []
    for p in sorted(Path(stores_dir).glob(STORE_GLOB)):
        m = STORE_RE.match(p.name)
        if m and (years is None or int(m.group(2)) in years):
            found.append((p, int(m.group(1)), int(m.group(2))))
    return found


def find_stores(stores_dir: Path) -> list[Path]:
    """Zone stores directly under ``stores_dir`` (``utmZZ_YYYY.zarr``), sorted by name."""
    return [p for p, _, _ in store_paths(stores_dir) if p.is_dir()]


# --- reading metadata --------------------------------------------------------------------------


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
