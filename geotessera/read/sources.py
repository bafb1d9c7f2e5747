"""Where a year's zone stores are: a stores directory or URL, one store, or a STAC catalog.

A source is a stores location (local path, ``file://``, ``s3://`` or ``https://``), one store
(a version, an old-layout store, or a store home ``utmZZ_YYYY`` whose pointer names the
version), a STAC catalog or collection (path, URL or pystac object). Stores are found by name
(``utmZZ_YYYY.zarr``) where the location can list; at an ``https://`` stores URL they are
looked up by name on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pystac

from geotessera.errors import StoreError
from geotessera.store.location import Location
from geotessera.store.meta import open_root, read_meta
from geotessera.store.naming import find_stores, store_name
from geotessera.store.versions import POINTER, StoreHome

Source = str | Path | Location | pystac.Catalog


@dataclass(frozen=True, slots=True)
class StoreSet:
    """The stores of one year in a source: zone → href. ``listed`` is False for the URL of a
    stores directory, whose stores are then looked up by name (``utmZZ_YYYY.zarr``)."""

    source: str
    year: int
    hrefs: dict[int, str]
    listed: bool = True

    def href(self, zone: int) -> str | None:
        if self.listed:
            return self.hrefs.get(zone)
        home = StoreHome(Location.parse(self.source), store_name(zone, self.year)[:-5])
        if home.home.exists(POINTER):  # the version its pointer names
            return str(home.current())
        return f"{self.source.rstrip('/')}/{store_name(zone, self.year)}"


def _stac_stores(obj: pystac.Catalog, year: int, where: str) -> StoreSet:
    hrefs = {}
    for item in obj.get_items(recursive=True):
        p = item.properties
        y = p.get("geotessera:year") or (item.common_metadata.start_datetime or item.datetime).year
        if y == year and "embeddings" in item.assets:
            zone = p.get("geotessera:zone") or int(str(p["proj:code"]).split(":")[-1]) % 100
            hrefs[int(zone)] = item.assets["embeddings"].get_absolute_href()
    if not hrefs:
        raise StoreError(where, f"no STAC item for year {year}")
    return StoreSet(where, year, hrefs)


def stores_of(source: Source, year: int) -> StoreSet:
    """Find the stores of ``year`` in a stores directory, a single store, a STAC catalog or
    collection (path, URL or pystac object), or a URL of a stores directory.

    Raises StoreError naming the source and year when a listable source has none.
    """
    if isinstance(source, pystac.Catalog):
        return _stac_stores(source, year, source.get_self_href() or source.id)
    loc = Location.parse(source)
    text = str(loc)
    if text.endswith(".json"):
        return _stac_stores(pystac.read_file(text), year, text)
    if loc.exists(POINTER):  # a store home: its published version
        loc = StoreHome(loc.parent, loc.name).current()
        text = str(loc)
    if text.rstrip("/").endswith(".zarr") or loc.exists("zarr.json"):  # one store
        meta = read_meta(open_root(loc), text)
        if meta.year != year:
            raise StoreError(text, f"store holds year {meta.year}, not {year}")
        return StoreSet(text, year, {meta.zone: text})
    if loc.read_only:  # an http(s) stores URL cannot be listed
        return StoreSet(text, year, {}, listed=False)
    if loc.is_local and not loc.path.is_dir():
        raise StoreError(text, "no such store, catalog or directory")
    hrefs = {ref.zone: str(ref.location) for ref in find_stores(loc, [year])}
    if not hrefs:
        raise StoreError(text, f"no zone stores for year {year}")
    return StoreSet(text, year, hrefs)



