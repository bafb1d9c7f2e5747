"""A zone store's metadata, read from its attributes and consolidated metadata alone.

Guarantees: nothing here reads a data chunk; stores are opened read-only; a group that is not
a geotessera zone store raises StoreError (StoreNotFoundError when there is no zarr v3 group
at all, naming the location).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import WrapperStore

from geotessera.errors import (
    LocationError,
    LocationNotFoundError,
    StoreError,
    StoreNotFoundError,
)
from geotessera.store.fanout import fan_out, io_threads
from geotessera.store.location import Location, check_relative
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
    a path, a URL or a Location.

    Before trusting consolidated metadata, every node document it lists is read and compared
    with it (one small read per node, ``DOCUMENT_READS`` at once), so a damaged or
    disagreeing ``zarr.json`` anywhere is a StoreError naming the store and the file, never
    hidden and never an internal error.
    """
    return open_checked(href)[0]


def open_checked(href: Location | str | Path) -> tuple[zarr.Group, dict[str, Any]]:
    """``open_root``, and the root document it read: its consolidated entries (when it has
    them) are the node documents, checked equal to every node's own ``zarr.json``, so a
    reader may take an array's document from there instead of reading it again. The group
    is opened from the bytes already read (``KnownDocuments``): no document is read twice."""
    loc = Location.parse(href)
    raw, root = _document(loc, ROOT_DOC)
    if problems := _consolidated_problems(loc, root):
        raise StoreError(*problems[0])
    with decoding(loc, ROOT_DOC):
        store = KnownDocuments(loc.zarr_store(read_only=True), {ROOT_DOC: raw})
        return zarr.open_group(store=store, mode="r", zarr_format=3), root


def node_documents(root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """path → document of the nodes in a root document's consolidated metadata ({} without
    it): as checked by ``open_checked``."""
    cons = root.get("consolidated_metadata")
    entries = cons.get("metadata") if isinstance(cons, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(
        entries, dict) else {}


class KnownDocuments(WrapperStore):
    """A zarr store that answers whole reads of ``known`` keys (documents already read and
    checked) from memory and passes everything else to the store it wraps."""

    def __init__(self, store: Any, known: dict[str, bytes]) -> None:
        super().__init__(store)
        self._known = known

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is None and key in self._known:
            return prototype.buffer.from_bytes(self._known[key])
        return await self._store.get(key, prototype, byte_range)


ROOT_DOC = "zarr.json"
#: What zarr and the JSON decoder raise for a damaged document (UnicodeDecodeError and
#: JSONDecodeError are ValueErrors).
DECODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, zarr.errors.BaseZarrError)


@contextmanager
def decoding(loc: Location, key: str):
    """The one place that turns zarr's and JSON's decode errors into
    ``StoreError("<store>/<key>", problem)``; a missing root is StoreNotFoundError."""
    try:
        yield
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, LocationNotFoundError) as e:
        if key == ROOT_DOC:
            raise StoreNotFoundError(loc, "not a zarr v3 group") from e
        raise StoreError(f"{loc}/{key}", f"missing ({e})") from e
    except DECODE_ERRORS as e:
        raise StoreError(f"{loc}/{key}", f"damaged metadata: {type(e).__name__}: {e}") from e


def is_damage(problem: str) -> bool:
    """True for a problem of ``decoding`` (a document that is missing or does not decode),
    as opposed to one that decodes but disagrees with the consolidated metadata."""
    return problem.startswith(("damaged metadata", "missing"))


def read_document(loc: Location, key: str) -> dict[str, Any]:
    """A node's ``zarr.json`` as a dict: a Zarr v3 group or array document, else StoreError."""
    return _document(loc, key)[1]


def _document(loc: Location, key: str) -> tuple[bytes, dict[str, Any]]:
    """``read_document``, and the bytes it was read from."""
    with decoding(loc, key):
        raw = loc.read(key)
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or \
                doc.get("node_type") not in ("group", "array"):
            raise ValueError("not a Zarr v3 group or array document")
        return raw, doc


def metadata_problems(loc: Location, *, listing: bool = False) -> list[tuple[str, str]]:
    """(file, problem) for the root document and, when it has consolidated metadata, every
    node it lists: unreadable, missing, or disagreeing with the consolidated entry.

    With ``listing`` (for verify: it lists every object) also every ``zarr.json`` found in
    the store: each must decode and open with zarr, and be in the consolidated metadata.
    Raises StoreNotFoundError when there is no root document at all."""
    root = read_document(loc, ROOT_DOC)
    problems = _consolidated_problems(loc, root)
    if listing:
        problems += _listed_problems(loc, root)
    return problems


def _listed_problems(loc: Location, root: dict[str, Any]) -> list[tuple[str, str]]:
    cons = (root.get("consolidated_metadata") or {}).get("metadata") or {}
    problems = []
    store = loc.zarr_store(read_only=True)
    for key in sorted(k for k in loc.keys() if k.endswith(f"/{ROOT_DOC}") and "/c/" not in k):
        path = key[: -len(ROOT_DOC) - 1]
        try:
            doc = read_document(loc, key)
            with decoding(loc, key):
                opener = zarr.open_array if doc["node_type"] == "array" else zarr.open_group
                opener(store=store, path=path, mode="r", zarr_format=3,
                       **({} if doc["node_type"] == "array" else {"use_consolidated": False}))
        except StoreError as e:
            problems.append((e.path, e.problem))
            continue
        if cons and path not in cons:
            problems.append((f"{loc}/{key}", f"not in the consolidated metadata of "
                                             f"{loc}/{ROOT_DOC}"))
    return problems


def _consolidated_problems(loc: Location, root: dict[str, Any]) -> list[tuple[str, str]]:
    cons = root.get("consolidated_metadata")
    if cons is None:
        return []
    entries = cons.get("metadata") if isinstance(cons, dict) else None
    if not isinstance(entries, dict):
        return [(f"{loc}/{ROOT_DOC}", "damaged metadata: consolidated_metadata has no "
                                      "'metadata' mapping")]
    # Small reads, mostly latency on a remote store: a few at a time, results in path order.
    found = fan_out(lambda kv: _check_entry(loc, *kv), sorted(entries.items()),
                    io_threads(loc, DOCUMENT_READS))
    return [p for p in found if p is not None]


#: Node documents read at once when checking consolidated metadata.
DOCUMENT_READS = 8


def _check_entry(loc: Location, path: str, entry: Any) -> tuple[str, str] | None:
    """The problem of one consolidated entry's own document, or None."""
    try:  # the store is data: a listed path may not leave it (check_relative)
        key = f"{check_relative(str(path), loc.url)}/{ROOT_DOC}"
        doc = read_document(loc, key)
    except (StoreError, LocationError) as e:
        return (e.path, e.problem)
    if (diff := _first_difference(doc, entry)) is not None:
        return (f"{loc}/{key}", f"disagrees with the consolidated metadata in "
                                f"{loc}/{ROOT_DOC} ({diff})")
    return None


def _first_difference(doc: dict[str, Any], entry: Any) -> str | None:
    """The first top-level key whose value differs (a group's own consolidated block
    aside), or None."""
    if not isinstance(entry, dict):
        return "the consolidated entry is not a document"
    keys = (set(doc) | set(entry)) - {"consolidated_metadata"}
    for k in sorted(keys):
        if doc.get(k) != entry.get(k):
            return f"{k!r}: {doc.get(k)!r} in the file, {entry.get(k)!r} consolidated"
    return None


def read_meta(root: zarr.Group, href: str) -> StoreMeta:
    """Parse a zone store's root attributes; StoreError if it is not one (attributes of the
    wrong type included: the message names the root document)."""
    with decoding(Location.parse(href), ROOT_DOC):
        return _read_meta(root, href)


def _read_meta(root: zarr.Group, href: str) -> StoreMeta:
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
