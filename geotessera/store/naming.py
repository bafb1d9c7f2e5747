"""Store names: ``utmZZ_YYYY.zarr``, and the one rule for finding stores under a location."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from geotessera.store.location import Location

STORE_RE = re.compile(r"^utm(\d{2})_(\d{4})\.zarr$")


def store_name(zone: int, year: int) -> str:
    """``utm31_2024.zarr``."""
    return f"utm{zone:02d}_{year}.zarr"


@dataclass(frozen=True, slots=True)
class StoreRef:
    """A store found by name under a stores location."""

    location: Location
    zone: int
    year: int

    @property
    def name(self) -> str:
        return store_name(self.zone, self.year)


def find_stores(stores: Location | str | Path, years: Iterable[int] | None = None
                ) -> list[StoreRef]:
    """Every entry named ``utmZZ_YYYY.zarr`` directly under ``stores``, with its year in
    ``years`` (all years when None or empty), sorted by name. Names alone decide what is a
    store candidate; opening it checks what it is (so one whose ``zarr.json`` is lost is a
    StoreNotFoundError naming it, not silently left out)."""
    loc = Location.parse(stores)
    years = set(years) if years else None
    found = []
    for name in loc.dirs():
        m = STORE_RE.match(name)
        if m and (years is None or int(m.group(2)) in years):
            found.append(StoreRef(loc.child(name), int(m.group(1)), int(m.group(2))))
    return found
