"""A zone store's metadata, read from its attributes and consolidated metadata alone.

Guarantees: nothing here reads a data chunk; stores are opened read-only; a group that is not
a geotessera zone store raises StoreError (StoreNotFoundError when there is no zarr v3 group
at all, naming the location); a node document taken from the consolidated metadata is
trusted only after its own ``zarr.json`` was read and found equal to it (``open_checked``:
every node's, or those a caller names; ``check_nodes`` for more later).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
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
    return open_checked(href).group()


@dataclass(frozen=True, slots=True)
class Opened:
    """A store checked by ``open_checked``: its ``location``, the root document ``doc`` and
    the bytes ``raw`` it was read from, and ``checked``, the node paths whose own
    ``zarr.json`` was read and found equal to its consolidated entry."""

    location: Location
    raw: bytes
    doc: dict[str, Any]
    checked: frozenset[str]

    def group(self) -> zarr.Group:
        """zarr's root group, opened from ``raw`` (``KnownDocuments``: the root is not read
        again; parsing its consolidated metadata costs milliseconds); StoreError naming the
        root document when zarr refuses it."""
        with decoding(self.location, ROOT_DOC):
            store = KnownDocuments(self.location.zarr_store(read_only=True),
                                   {ROOT_DOC: self.raw})
            return zarr.open_group(store=store, mode="r", zarr_format=3)


#: The finest level's data arrays (docs/format.md §1: level 0 is ``L0``, a value is
#: ``embeddings × scales``): what a point or region reader checks when it opens a store.
FINEST_ARRAYS = ("L0/embeddings", "L0/scales")


def open_checked(href: Location | str | Path, nodes: Sequence[str] | None = None) -> Opened:
    """``open_root``, keeping what it read; with ``nodes``, only those node documents are
    checked (the ones the caller will decode with), read at the same time as the root.

    The root ``zarr.json`` must decode and its consolidated block, when present, be well
    formed. Then every node it lists (``nodes`` None), or each of ``nodes`` it lists, must
    have a ``zarr.json`` equal to its consolidated entry: else StoreError naming the store
    and the file. ``checked`` holds the paths so checked (none without consolidated
    metadata, where zarr reads each node's own file). No document is read twice: zarr's
    group is opened from the bytes already read (``Opened.group``)."""
    loc = Location.parse(href)
    read: dict[str, Any] = {}
    if nodes is None:
        raw, root = _document(loc, ROOT_DOC)
    else:
        (raw, root), read = _root_and_nodes(loc, nodes)
    entries = consolidated_entries(loc, root)
    paths = sorted(entries) if nodes is None else [p for p in nodes if p in entries]
    if problems := _node_problems(loc, entries, paths, read):
        raise StoreError(*problems[0])
    return Opened(loc, raw, root, frozenset(paths))


def check_nodes(loc: Location, entries: dict[str, Any], paths: Sequence[str]) -> None:
    """Read the documents of ``paths`` (each listed in ``entries``, a store's consolidated
    entries) and compare each with its entry: StoreError naming the store and the file for
    the first, in path order, that is damaged, missing or disagrees."""
    if problems := _node_problems(loc, entries, sorted(paths), {}):
        raise StoreError(*problems[0])


def node_documents(root: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """path → document of the nodes in a root document's consolidated metadata ({} without
    it), as ``open_checked`` compares them with the nodes' own documents."""
    cons = root.get("consolidated_metadata")
    entries = cons.get("metadata") if isinstance(cons, dict) else None
    return {k: v for k, v in entries.items() if isinstance(v, dict)} if isinstance(
        entries, dict) else {}


def consolidated_entries(loc: Location, root: dict[str, Any]) -> dict[str, Any]:
    """path → entry of a root document's consolidated metadata ({} without it); StoreError
    naming the root document when the block has no ``metadata`` mapping."""
    cons = root.get("consolidated_metadata")
    if cons is None:
        return {}
    entries = cons.get("metadata") if isinstance(cons, dict) else None
    if not isinstance(entries, dict):
        raise StoreError(f"{loc}/{ROOT_DOC}", "damaged metadata: consolidated_metadata has no "
                                              "'metadata' mapping")
    return entries


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
    try:
        entries = consolidated_entries(loc, root)
    except StoreError as e:
        return [(e.path, e.problem)]
    return _node_problems(loc, entries, sorted(entries), {})


#: Node documents read at once when checking consolidated metadata.
DOCUMENT_READS = 8


def _node_problems(loc: Location, entries: dict[str, Any], paths: Sequence[str],
                   read: dict[str, Any]) -> list[tuple[str, str]]:
    """(file, problem) of each of ``paths`` whose own document (from ``read`` when there:
    the document, or the error reading it raised) is damaged, missing or disagrees with its
    entry. Small reads, mostly latency on a remote store: a few at a time, in path order."""
    todo = [p for p in paths if p not in read]
    read = read | dict(zip(todo, fan_out(lambda p: _attempt(loc, p), todo,
                                         io_threads(loc, DOCUMENT_READS)), strict=True))
    found = (_entry_problem(loc, p, entries[p], read[p]) for p in paths)
    return [p for p in found if p is not None]


def _root_and_nodes(loc: Location, nodes: Sequence[str]
                    ) -> tuple[tuple[bytes, dict[str, Any]], dict[str, Any]]:
    """The root document (bytes and dict; its error raised) and, read at the same time,
    path → the document of each of ``nodes`` or the error reading it raised."""
    root, *docs = fan_out(lambda path: _attempt(loc, path), [None, *nodes],
                          io_threads(loc, DOCUMENT_READS))
    if isinstance(root, Exception):
        raise root
    return root, dict(zip(nodes, docs, strict=True))


def _attempt(loc: Location, path: str | None) -> Any:
    """The document of node ``path`` (the root's bytes and dict for None), or the
    StoreError or LocationError reading it raised. The store is data: a path may not leave
    it (``check_relative``)."""
    try:
        if path is None:
            return _document(loc, ROOT_DOC)
        return read_document(loc, f"{check_relative(str(path), loc.url)}/{ROOT_DOC}")
    except (StoreError, LocationError) as e:
        return e


def _entry_problem(loc: Location, path: str, entry: Any, doc: Any) -> tuple[str, str] | None:
    """The problem of one consolidated entry given its node's document (or the error reading
    it raised), or None."""
    if isinstance(doc, (StoreError, LocationError)):
        return (doc.path, doc.problem)
    if (diff := _first_difference(doc, entry)) is not None:
        return (f"{loc}/{path}/{ROOT_DOC}", f"disagrees with the consolidated metadata in "
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
        attrs = root.attrs.asdict()
        levels = _levels(attrs, href)
        arrays = ((name, a.metadata.dimension_names, a.shape, a.attrs.get("long_name", ""))
                  for name, a in root[levels[0].path].arrays())
        return _store_meta(href, attrs, levels, arrays,
                           root.metadata.consolidated_metadata is not None)


def meta_of(opened: Opened, href: str) -> StoreMeta:
    """``read_meta`` of the opened store, from its root document and consolidated metadata
    alone, without opening zarr's group (zarr's group when it has no consolidated
    metadata); equal to ``read_meta(opened.group(), href)`` (tested)."""
    if not (entries := node_documents(opened.doc)):
        return read_meta(opened.group(), href)
    with decoding(opened.location, ROOT_DOC):
        attrs = opened.doc.get("attributes") or {}
        levels = _levels(attrs, href)
        if entries[finest := levels[0].path]["node_type"] != "group":
            raise KeyError(finest)
        arrays = ((k.split("/")[-1], e.get("dimension_names"), tuple(e["shape"]),
                   (e.get("attributes") or {}).get("long_name", ""))
                  for k, e in entries.items() if k.rsplit("/", 1)[0] == finest and "/" in k
                  and e.get("node_type") == "array")
        return _store_meta(href, attrs, levels, arrays, True)


def _levels(attrs: dict[str, Any], href: str) -> tuple[Level, ...]:
    need = ("multiscales", "proj:code", "geotessera:zone", "geotessera:year")
    if missing := [k for k in need if k not in attrs]:
        raise StoreError(href, f"not a geotessera zone store (missing {', '.join(missing)})")
    crs = str(attrs["proj:code"])
    return tuple(sorted(
        (Level(e["asset"], PixelGrid(crs, tuple(map(float, e["spatial:transform"][:6])),
                                     tuple(map(int, e["spatial:shape"]))))
         for e in attrs["multiscales"]["layout"]),
        key=lambda lv: lv.pixel_size))


def _store_meta(href: str, attrs: dict[str, Any], levels: tuple[Level, ...],
                arrays: Iterable[tuple[str, Any, tuple[int, ...], Any]],
                consolidated: bool) -> StoreMeta:
    """The StoreMeta of root attributes, levels and the finest level's arrays (name,
    dimension names, shape, long name)."""
    variables = tuple(Variable(name, tuple(dims or ()), tuple(shape), str(long_name))
                      for name, dims, shape, long_name in sorted(arrays, key=lambda v: v[0])
                      if len(shape) >= 2)
    geo = {k[len("geotessera:"):]: v for k, v in attrs.items() if k.startswith("geotessera:")}
    passes = {k[: -len("_complete")]: bool(v) for k, v in geo.items() if k.endswith("_complete")}
    keep = ("zone", "year", "tiles_written", "version")
    return StoreMeta(
        href=href, zone=int(geo["zone"]), year=int(geo["year"]),
        epsg=int(str(attrs["proj:code"]).split(":")[-1]),
        bands=int(attrs.get("geoemb:dimensions", 0)), levels=levels, variables=variables,
        consolidated=consolidated, passes=passes,
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
