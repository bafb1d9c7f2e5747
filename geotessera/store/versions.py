"""The published layout of a zone store: a home holding immutable versions and a pointer.

For the store ``utm31_2024`` under a stores location ``OUT`` (docs/format.md §"Layout on
disk and on object storage"):

- ``OUT/utm31_2024/``               the store's home (not itself a zarr store);
- ``OUT/utm31_2024/v<time>-<rand>.zarr/``  complete versions, plain Zarr v3;
- ``OUT/utm31_2024/current.json``   the pointer naming the published version;
- ``OUT/utm31_2024.zarr``           on local disks a relative symlink to the current version;
  or, in the old layout, a real store directory (still found and read).

Guarantee: a pointer is data, never an instruction. Its ``store`` must be a version name
(``v…zarr``) directly in the home, so no pointer can lead a reader outside it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from geotessera.errors import StoreError
from geotessera.store.location import Location

POINTER = "current.json"
VERSION_RE = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{6}\.zarr$")
HOME_RE = re.compile(r"^utm(\d{2})_(\d{4})$")


@dataclass(frozen=True, slots=True)
class Pointer:
    """What ``current.json`` says: the published ``store`` (a version name) and its plan."""

    version: str
    store: str
    plan: str
    published: str

    def to_json(self) -> bytes:
        return json.dumps({"version": self.version, "store": self.store, "plan": self.plan,
                           "published": self.published}, indent=2).encode()


@dataclass(frozen=True, slots=True)
class StoreHome:
    """The home of one store under a stores location: ``out/stem`` (``stem`` = utm31_2024)."""

    out: Location
    stem: str

    @classmethod
    def of(cls, out: Location, store_name: str) -> StoreHome:
        """The home of ``utm31_2024.zarr`` (or ``utm31_2024``) under ``out``."""
        return cls(out, store_name.removesuffix(".zarr"))

    @property
    def home(self) -> Location:
        return self.out.child(self.stem)

    @property
    def link(self) -> Location:
        """``OUT/utm31_2024.zarr``: the local symlink to the current version, or a store of
        the old layout."""
        return self.out.child(f"{self.stem}.zarr")

    def version(self, name: str) -> Location:
        """The version ``name`` (``v…zarr``) of this home; StoreError for any other name."""
        return self.home.child(check_version(name, self.home))

    def journal(self, name: str) -> Location:
        """The shard journal of version ``name``: ``v….journal``."""
        return self.home.child(check_version(name, self.home).removesuffix(".zarr") + ".journal")

    def pointer(self) -> Pointer | None:
        """The pointer, or None when this home has none. StoreError naming ``current.json``
        when it is not a pointer this tool writes."""
        return read_pointer(self.home)

    def current(self) -> Location | None:
        """The published store: the pointer's version, else a store of the old layout at
        ``link`` (a real directory with a ``zarr.json``), else None."""
        ptr = self.pointer()
        if ptr is not None:
            return self.version(ptr.store)
        if self.link.exists("zarr.json"):
            return self.link
        return None


def published(store: Location) -> Location:
    """The store a reader should open at ``store``: for a store home (it holds a
    ``current.json``), the version its pointer names; anything else as it is. A version
    (``v…zarr``) is never a home: it is returned without a request."""
    if VERSION_RE.match(store.name) or not store.exists(POINTER):
        return store
    return home_version(store)


def home_version(home: Location) -> Location:
    """The version the pointer of the store home ``home`` names (``home`` itself when it
    names none and no old-layout store is beside it)."""
    found = StoreHome(home.parent, home.name).current()
    return found if found is not None else home


def check_version(name: str, where: object) -> str:
    if not isinstance(name, str) or not VERSION_RE.match(name):
        raise StoreError(where, f"{name!r} is not a store version name (v<UTC time>-<hex>.zarr)")
    return name


def read_pointer(home: Location) -> Pointer | None:
    """The pointer of ``home``, or None. StoreError naming the object when it is malformed."""
    try:
        raw = home.read(POINTER)
    except FileNotFoundError:
        return None
    where = home.child(POINTER)
    try:
        doc = json.loads(raw)
        ptr = Pointer(*(str(doc[k]) for k in ("version", "store", "plan", "published")))
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(where, f"not a store pointer ({type(e).__name__}: {e})") from e
    check_version(ptr.store, where)
    return ptr


def new_version_name(now: dt.datetime | None = None) -> str:
    """``v20261201T231000Z-1a2b3c.zarr``: names sort by time; the random part keeps two
    builds started in the same second apart."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"v{now.astimezone(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}.zarr"


def json_doc(raw: bytes, where: object, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object; StoreError naming ``where`` when it is not one."""
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise StoreError(where, f"malformed {what}: {e}") from e
    if not isinstance(doc, dict):
        raise StoreError(where, f"malformed {what}: not a JSON object")
    return doc
