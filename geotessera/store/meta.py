"""A zone store's metadata, read from its attributes and consolidated metadata alone.

Guarantees: nothing here reads a data chunk; stores are opened read-only; a group that is not
a geotessera zone store raises StoreError (StoreNotFoundError when there is no zarr v3 group
at all, naming the location).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from geotessera.errors import StoreError, StoreNotFoundError
from geotessera.store.location import Location
from geotessera.types import Level, PixelGrid


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


# --- reading metadata --------------------------------------------------------------------------


def open_root(href: Location | str | Path) -> zarr.Group:
    """Open a store's root group read-only (consolidated metadata when present); ``href`` is
    a path, a URL or a Location."""
    loc = Location.parse(href)
    try:
        return zarr.open_group(store=loc.zarr_store(read_only=True), mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise StoreNotFoundError(loc, "not a zarr v3 group") from e


def read_meta(root: zarr.Group, href: str) -> StoreMeta:
    """Parse a zone store's root attributes; StoreError if it is not one."""
    attrs = root.attrs.asdict()
    need = ("multiscales", "proj:code", "geotessera:zone", "geotessera:year")
    if missing := [k for k in need if k not in attrs]:
        raise StoreError(href, f"not a geotessera zone store (missing {', '.join(missing)})")
    crs = str(attrs["proj:code"])
    levels = tuple(sorted(
        (Level(e["asset"], PixelGrid(crs, tuple(map(float, e["spatial:transform"][:6])),
                                     tuple(map(int, e["spatial:shape"]))))
         for e in attrs["multiscales"]["layout"]),
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


def store_size(href: Location | str | Path) -> tuple[int, int]:
    """(bytes, objects) of every object in the store, listed through its location."""
    loc = Location.parse(href)
    n = size = 0
    for key in loc.keys():
        size += loc.size(key) or 0
        n += 1
    return size, n
