"""Building and publishing a store as an immutable version behind a pointer.

One design for local disks and object stores (no rename, append or fsync needed). For the
store ``utm31_2024`` under ``OUT`` (``versions.StoreHome``):

- ``OUT/utm31_2024/building.json``   names the version being built and its plan fingerprint;
- ``OUT/utm31_2024/v….zarr/``        the version being built (nothing points at it yet);
- ``OUT/utm31_2024/v….journal/``     ``created.json`` once the store's metadata is complete,
  then one ``<row>_<col>.json`` per durably written shard: its counts and every object it
  stored with size and CRC32C (one object each: S3 has no append);
- ``OUT/utm31_2024/current.json``    the pointer; writing it (one PUT) is the publish;
- ``OUT/utm31_2024.zarr``            on local disks a relative symlink to the current version,
  swapped atomically after the pointer.

Guarantees: a reader who follows the pointer or opens a version's URL sees one complete
version, since versions are complete before the pointer names them and are not rewritten
by later builds. After a publish the previous version is kept (a reader holding its URL keeps
working) and older ones are deleted. ``--resume`` continues the version in ``building.json``
only with the same plan fingerprint, and keeps a journaled shard only if every object it
stored is still there with its journaled size and CRC32C. Everything here runs while the
caller holds the store's lock (``store.lock``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import google_crc32c

from geotessera.errors import StoreError
from geotessera.parallel import run_tasks
from geotessera.store.shardio import fsync_path
from geotessera.store.location import Location
from geotessera.store.lock import StoreLock
from geotessera.store.versions import (
    POINTER,
    VERSION_RE,
    Pointer,
    StoreHome,
    json_doc,
    new_version_name,
)

BUILDING = "building.json"
PARTS = "parts"
CREATED = "created.json"


@dataclass(frozen=True, slots=True)
class Staging:
    """The version a build writes: its name, store, journal and the shards already done."""

    name: str
    store: Location
    journal: Location
    done: dict[tuple[int, int], dict[str, Any]]
    created: bool


def start_version(home: StoreHome, plan: str, resume: bool) -> Staging:
    """The version to build. With ``resume`` and a ``building.json`` of the same plan, that
    version and its journal; otherwise a new version (an abandoned one is deleted first).

    Raises StoreError naming the object when ``building.json`` or a journal object is
    malformed, and when ``resume`` finds a build of another plan."""
    building = _read_building(home)
    published = home.pointer()
    if building is not None and published is not None and building["store"] == published.store:
        home.home.delete(BUILDING)  # published, killed before the clean-up
        building = None
    if resume and building is not None:
        if building["plan"] != plan:
            raise StoreError(home.home.child(BUILDING), (
                "cannot resume: the plan changed since the interrupted build (tiles, grid or "
                "layout); rerun without --resume"))
        name = building["store"]
        journal = home.journal(name)
        created = journal.exists(CREATED)
        done = read_journal(journal) if created else {}
        return Staging(name, home.version(name), journal, done, created)
    if building is not None:
        discard(home, building["store"])
    name = new_version_name()
    doc = {"version": name.removesuffix(".zarr"), "store": name, "plan": plan,
           "started": _now_iso()}
    home.home.write(BUILDING, json.dumps(doc, indent=2).encode())
    return Staging(name, home.version(name), home.journal(name), {}, False)


def _read_building(home: StoreHome) -> dict[str, Any] | None:
    try:
        raw = home.home.read(BUILDING)
    except FileNotFoundError:
        return None
    where = home.home.child(BUILDING)
    doc = json_doc(raw, where, "build record")
    if not isinstance(doc.get("plan"), str) or not VERSION_RE.match(str(doc.get("store"))):
        raise StoreError(where, "malformed build record: needs a plan and a v….zarr store")
    return doc


def mark_created(staging: Staging) -> None:
    """Record that the version's metadata (groups, arrays, coordinates) is complete."""
    staging.journal.write(CREATED, b"{}\n")


def read_journal(journal: Location) -> dict[tuple[int, int], dict[str, Any]]:
    """The shard records of a journal. StoreError naming the object when one is malformed."""
    done = {}
    for key in sorted(journal.keys()):
        if key in (CREATED,) or key.endswith(".guard") or key.startswith(f"{PARTS}/"):
            continue
        where = journal.child(key)
        rec = json_doc(journal.read(key), where, "journal record")
        try:
            rc = (int(rec["row"]), int(rec["col"]))
            objects = [(str(k), int(n), int(c)) for k, n, c in rec["objects"]]
            int(rec["valid"]), int(rec["bytes_in"]), list(rec["stats"])
            rec["shards"] = [(int(r), int(c), int(v)) for r, c, v in rec.get("shards", [])]
            rec["l1_valid"] = int(rec.get("l1_valid", 0))
            rec["parts"] = [(str(k), int(n), int(c)) for k, n, c in rec.get("parts", [])]
        except (KeyError, TypeError, ValueError) as e:
            raise StoreError(where, f"malformed journal record ({type(e).__name__}: {e})") from e
        if key != f"{rc[0]}_{rc[1]}.json":
            raise StoreError(where, f"malformed journal record: names shard {rc}")
        if any(k != part_key(*rc) for k, _, _ in rec["parts"]):
            raise StoreError(where, f"malformed journal record: a part not of block {rc}")
        rec["objects"] = objects
        done[rc] = rec
    return done


def part_key(row: int, col: int, level: int = 2) -> str:
    """The key below a journal of the level-``level`` part left by shard (row, col) of the
    level below (a block's L1 shard for L2; see ``build/parts.py``); parts go with the
    journal when the version is published."""
    return f"{PARTS}/L{level}/{row}_{col}.part"


def journal_shard(staging: Staging, record: dict[str, Any]) -> None:
    """Record a shard whose objects are durable (one PUT of ``<row>_<col>.json``)."""
    staging.journal.write(f"{record['row']}_{record['col']}.json",
                          json.dumps(record, sort_keys=True).encode())


# --- checking a journal against the objects --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectCheck:
    """Check that a journaled shard's objects are in ``store`` as journaled."""

    store: Location
    row: int
    col: int
    objects: tuple[tuple[str, int, int], ...]


def check_objects(task: ObjectCheck) -> str | None:
    """None when every object has its journaled size and CRC32C, else what is wrong."""
    for key, size, crc in task.objects:
        found = task.store.size(key)
        if found is None:
            return f"{key} is missing"
        if found != size:
            return f"{key} has {found} bytes, journaled {size}"
        if google_crc32c.value(task.store.read(key)) != crc:
            return f"{key} fails its journaled CRC32C"
    return None


def verify_journal(staging: Staging, executor: Executor) -> dict[tuple[int, int], str]:
    """Journaled shards whose objects are missing, torn or changed: (row, col) → problem.
    Those shards must be written again."""
    tasks = [ObjectCheck(where, r, c, tuple(objects))
             for (r, c), rec in sorted(staging.done.items())
             for where, objects in ((staging.store, rec["objects"]),
                                    (staging.journal, rec.get("parts", ()))) if objects]
    bad = {}
    for task, problem in run_tasks(check_objects, tasks, executor,
                                   label=f"checking {staging.name}"):
        if problem is not None:
            bad[(task.row, task.col)] = problem
    return bad


# --- publishing ------------------------------------------------------------------------------


def publish(home: StoreHome, staging: Staging, plan: str, lock: StoreLock) -> None:
    """Make ``staging`` the published version: renew the lock (LockedError if it was lost),
    write the pointer (the commit), swap the local symlink, then delete the journal and
    every version but this one and the one it replaces."""
    previous = home.pointer()
    lock.renew()
    ptr = Pointer(staging.name.removesuffix(".zarr"), staging.name, plan, _now_iso())
    home.home.write(POINTER, ptr.to_json())
    if home.out.is_local:
        fsync_path(home.home.path / POINTER)  # the pointer and the link are the commit
        swap_link(home, staging.name)
    home.home.delete(BUILDING)
    home.home.delete_tree(staging.journal.name)
    prune(home, {staging.name, *([previous.store] if previous else [])})


def swap_link(home: StoreHome, version: str) -> None:
    """Point ``OUT/utm31_2024.zarr`` at ``utm31_2024/<version>`` (relative), atomically: a new
    symlink renamed over the old one. A real directory there is not replaced (see
    ``adopt_legacy``)."""
    link = home.link.path
    tmp = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(f"{home.stem}/{version}", tmp)
    try:
        os.replace(tmp, link)
    except OSError as e:
        os.unlink(tmp)
        raise StoreError(link, f"cannot replace it by a symlink to the new version: {e}") from e
    fsync_path(link.parent)


def adopt_legacy(home: StoreHome) -> None:
    """A store of the old layout (a real directory ``OUT/utm31_2024.zarr``, local disks only)
    becomes the home's first version: moved into the home, named by the pointer, linked."""
    if not home.out.is_local:
        return
    link = home.link.path
    if link.is_symlink() or not (link / "zarr.json").is_file() or home.pointer() is not None:
        return
    name = new_version_name(dt.datetime.fromtimestamp(link.stat().st_mtime, dt.timezone.utc))
    home.home.path.mkdir(parents=True, exist_ok=True)
    os.rename(link, home.home.path / name)
    home.home.write(POINTER, Pointer(name.removesuffix(".zarr"), name, "legacy",
                                     _now_iso()).to_json())
    swap_link(home, name)


def discard(home: StoreHome, name: str) -> None:
    """Delete an unpublished version and its journal (never the one the pointer names)."""
    published = home.pointer()
    if published is not None and published.store == name:
        return
    home.home.delete_tree(name)
    home.home.delete_tree(home.journal(name).name)
    home.home.delete(BUILDING)


def prune(home: StoreHome, keep: set[str]) -> list[str]:
    """Delete every journal and every version not in ``keep``; returns their names. Only
    after a publish, under the lock: no other build can be in progress."""
    gone = []
    for name in home.home.dirs():
        journal = name.endswith(".journal") and VERSION_RE.match(name[:-8] + ".zarr")
        if journal or (VERSION_RE.match(name) and name not in keep):
            home.home.delete_tree(name)
            gone.append(name)
    return gone


def check_writable(out: Location) -> None:
    """Fail early, naming the location, when stores cannot be created in it."""
    probe = f".geotessera-write-test-{uuid.uuid4().hex[:8]}"
    try:
        if out.is_local:
            out.path.mkdir(parents=True, exist_ok=True)
        out.write(probe, b"")
        out.delete(probe)
    except (OSError, StoreError) as e:
        raise StoreError(out, f"output location not writable: {e}") from e
    except Exception as e:  # obstore's errors for refused or unreachable object stores
        raise StoreError(out, f"output location not writable: {type(e).__name__}: {e}") from e


def _now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
