"""Store names: ``utmZZ_YYYY.zarr``, and the one rule for finding stores under a location:
a store home ``utmZZ_YYYY/`` with a pointer (``store.versions``), or a store of the old
layout, a ``utmZZ_YYYY.zarr`` holding a ``zarr.json``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geotessera.store.fanout import fan_out, io_threads
from geotessera.store.location import Location
from geotessera.store.versions import HOME_RE, StoreHome

STORE_RE = re.compile(r"^utm(\d{2})_(\d{4})\.zarr$")
#: Store pointers read at once when finding stores.
POINTER_READS = 8


def store_name(zone: int, year: int) -> str:
    """``utm31_2024.zarr``."""
    return f"utm{zone:02d}_{year}.zarr"


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A store found under a stores location: ``location`` is the published store (the
    current version, or an old-layout store), ``home`` its home (None for the old layout)."""

    location: Location
    zone: int
    year: int
    home: Location | None = None

    @property
    def name(self) -> str:
        return store_name(self.zone, self.year)


def find_stores(stores: Location | str | Path, years: Iterable[int] | None = None,
                dirs: list[str] | None = None) -> list[StoreRef]:
    """Every published store directly under ``stores`` with its year in ``years`` (all years
    when None or empty), sorted by name: each home ``utmZZ_YYYY`` with a ``current.json``
    (resolved to the version it names), and each old-layout ``utmZZ_YYYY.zarr`` with a
    ``zarr.json`` that has no such home. ``dirs``: the directory names below ``stores``
    when already listed. Raises StoreError naming a malformed pointer."""
    loc = Location.parse(stores)
    years = set(years) if years else None
    found: dict[tuple[int, int], StoreRef] = {}
    names = loc.dirs() if dirs is None else dirs
    homes = [(StoreHome(loc, name), m) for name in names if (m := HOME_RE.match(name))
             and (years is None or int(m.group(2)) in years)]
    pointers = fan_out(lambda hm: hm[0].pointer(), homes, io_threads(loc, POINTER_READS))
    for (home, m), ptr in zip(homes, pointers, strict=True):
        if ptr is not None:
            zone, year = int(m.group(1)), int(m.group(2))
            found[(zone, year)] = StoreRef(home.version(ptr.store), zone, year, home.home)
    for name in names:
        m = STORE_RE.match(name)
        if m and (years is None or int(m.group(2)) in years):
            zone, year = int(m.group(1)), int(m.group(2))
            if (zone, year) not in found and loc.exists(f"{name}/zarr.json"):
                found[(zone, year)] = StoreRef(loc.child(name), zone, year)
    return [found[k] for k in sorted(found, key=lambda k: store_name(*k))]
