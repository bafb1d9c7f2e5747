"""Where a year's zone stores are: a stores directory or URL, one store, or a STAC catalog.

A source is a stores location (local path, ``file://``, ``s3://`` or ``https://``), one store
(a version, an old-layout store, or a store home ``utmZZ_YYYY`` whose pointer names the
version), a STAC catalog or collection (path, URL or pystac object). Stores are found by name
(``utmZZ_YYYY.zarr``) where the location can list; at an ``https://`` stores URL they are
looked up by name on first use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from geotessera.errors import StoreError
from geotessera.read.aliases import Source
from geotessera.store.fanout import fan_out
from geotessera.store.location import Location
from geotessera.store.meta import FINEST_ARRAYS, Opened, meta_of, open_checked
from geotessera.store.naming import find_stores, store_name
from geotessera.store.versions import POINTER, VERSION_RE, StoreHome, home_version

if TYPE_CHECKING:
    from types import ModuleType

    import pystac
    from typing_extensions import TypeIs


def need_pystac() -> ModuleType:
    """The ``pystac`` module (imported on first use: only STAC sources need it); ImportError
    with the ``pip install`` line when it is missing."""
    try:
        import pystac
    except ModuleNotFoundError as e:
        raise ImportError("pystac is not installed, and reading a STAC catalog needs it: "
                          "pip install '.[read]' (in the geotessera checkout)") from e
    return pystac


def _is_pystac(obj: object) -> TypeIs[pystac.Catalog]:
    """Whether ``obj`` is a pystac object (without importing pystac: a caller who made one
    has imported it already)."""
    mod = sys.modules.get("pystac")
    return mod is not None and isinstance(obj, mod.Catalog)


@dataclass(frozen=True, slots=True)
class StoreSet:
    """The stores of one year in a source: zone → href. ``listed`` is False for the URL of a
    stores directory, whose stores are then looked up by name (``utmZZ_YYYY.zarr``)."""

    source: str
    year: int
    hrefs: dict[int, str]
    listed: bool = True
    #: zone → the store opened while finding it (as ``ZoneStore.open`` opens one)
    opened: dict[int, Opened] = field(default_factory=dict, compare=False, repr=False)

    def href(self, zone: int) -> str | None:
        """The store of ``zone``: the listed href (None when there is none), or for an
        unlisted URL the name it would have (the pointer's version if it has a pointer)."""
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
        when = item.common_metadata.start_datetime or item.datetime
        y = p.get("geotessera:year") or (when.year if when is not None else None)
        if y == year and "embeddings" in item.assets:
            zone = p.get("geotessera:zone") or int(str(p["proj:code"]).split(":")[-1]) % 100
            href = item.assets["embeddings"].get_absolute_href()
            if href is not None:
                hrefs[int(zone)] = href
    if not hrefs:
        raise StoreError(where, f"no STAC item for year {year}")
    return StoreSet(where, year, hrefs)


def _one_store(loc: Location) -> tuple[bool, Location, list[str] | None]:
    """(whether ``loc`` is one store, the store or ``loc``, the directories below ``loc``
    when it was listed): a store home resolves to the version its pointer names. What is at
    ``loc`` comes from one listing (its ``current.json``, ``zarr.json`` and directories), or
    at an http(s) URL, which cannot be listed, from two HEADs made at once."""
    if VERSION_RE.match(loc.name):
        return True, loc, None
    dirs: list[str] | None = None
    if loc.read_only:
        pointer, root = fan_out(loc.exists, (POINTER, "zarr.json"), 2)
    else:
        dirs, objects = loc.listing()
        pointer, root = POINTER in objects, "zarr.json" in objects
    if pointer:
        loc = home_version(loc)
    return pointer or root or str(loc).rstrip("/").endswith(".zarr"), loc, dirs


def stores_of(source: Source, year: int) -> StoreSet:
    """Find the stores of ``year`` in a source (what ``Reader`` and ``sample`` read).

    Parameters
    ----------
    source : Source
        A stores directory, one store (a version, an old-layout store or a store home), a
        STAC catalog or collection (its JSON's path or URL, or a ``pystac.Catalog``), or the
        URL of a stores directory.
    year : int
        The year.

    Returns
    -------
    StoreSet
        zone → store href; for an ``https://`` stores URL (which cannot be listed) an empty,
        unlisted set whose stores are looked up by name.

    Raises
    ------
    StoreError
        A listable source has no store for ``year``, a single store holds another year, or
        a JSON source is not a catalog or collection.
    ImportError
        A STAC source without pystac (the ``read`` extra).

    Examples
    --------
    >>> sorted(stores_of("demo/stores", 2024).hrefs)
    [30, 31]
    """
    if _is_pystac(source):
        return _stac_stores(source, year, source.get_self_href() or source.id)
    loc = Location.parse(source)
    text = str(loc)
    if text.endswith(".json"):
        obj = need_pystac().read_file(text)
        if not isinstance(obj, need_pystac().Catalog):
            raise StoreError(text, f"a STAC {type(obj).__name__}, not a catalog or collection")
        return _stac_stores(obj, year, text)
    is_store, loc, dirs = _one_store(loc)
    text = str(loc)
    if is_store:
        opened = open_checked(loc, FINEST_ARRAYS)
        meta = meta_of(opened, text)
        if meta.year != year:
            raise StoreError(text, f"store holds year {meta.year}, not {year}")
        return StoreSet(text, year, {meta.zone: text}, opened={meta.zone: opened})
    if loc.read_only:  # an http(s) stores URL cannot be listed
        return StoreSet(text, year, {}, listed=False)
    if loc.is_local and not loc.path.is_dir():
        raise StoreError(text, "no such store, catalog or directory")
    hrefs = {ref.zone: str(ref.location) for ref in find_stores(loc, [year], dirs)}
    if not hrefs:
        raise StoreError(text, f"no zone stores for year {year}")
    return StoreSet(text, year, hrefs)



