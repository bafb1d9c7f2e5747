"""Safe building next to a live store: staging directory, shard journal, lock, publish.

For a store ``OUT/utm30_2024.zarr`` a build works in siblings whose names never match a
store name, so nothing mistakes them for a store:

- ``OUT/.utm30_2024.zarr.partial``  the store being built;
- ``OUT/.utm30_2024.zarr.journal``  a header line naming the plan, then one JSON line per
  completed shard (its position and counts), so ``--resume`` skips exactly those shards
  and still reports whole-store totals;
- ``OUT/.utm30_2024.zarr.lock``     who is building (PID, host, start time);
- ``OUT/.utm30_2024.zarr.old``      the previous store, only during the swap.

``publish`` swaps the finished staging store in with two renames; a crash between them
leaves ``.old`` behind, which ``recover`` puts back before the next build starts.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from geotessera.errors import LockedError, StoreError


@dataclass(frozen=True, slots=True)
class StorePaths:
    final: Path

    def _sibling(self, suffix: str) -> Path:
        return self.final.with_name(f".{self.final.name}.{suffix}")

    @property
    def partial(self) -> Path:
        return self._sibling("partial")

    @property
    def journal(self) -> Path:
        return self._sibling("journal")

    @property
    def lock(self) -> Path:
        return self._sibling("lock")

    @property
    def old(self) -> Path:
        return self._sibling("old")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def acquire_lock(paths: StorePaths) -> None:
    """Create the lock file or fail at once naming the holder. A lock left by a dead
    process on this host is taken over; a lock from another host is respected."""
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(3):
        try:
            fd = os.open(paths.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(paths.lock)
            if holder.get("host") == me["host"] and not _pid_alive(int(holder.get("pid", -1))):
                paths.lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise LockedError(paths.final, (
                f"locked by PID {holder.get('pid')} on host {holder.get('host')} since "
                f"{holder.get('since')}; if no build is running there, delete {paths.lock}"))
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise LockedError(paths.final, f"could not take the lock {paths.lock}")


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def release_lock(paths: StorePaths) -> None:
    holder = _read_lock(paths.lock)
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        paths.lock.unlink(missing_ok=True)


def recover(paths: StorePaths) -> None:
    """Undo a swap interrupted between its two renames (call while holding the lock)."""
    if paths.old.exists():
        if paths.final.exists():
            shutil.rmtree(paths.old)
        else:
            os.replace(paths.old, paths.final)


def start_journal(paths: StorePaths, plan_id: str, resume: bool) -> dict[tuple[int, int], dict]:
    """Shards already done, each with the record ``journal_shard`` wrote. With ``resume`` and
    a journal of the same plan, those shards (and the staging store) are kept; otherwise
    staging and journal start afresh."""
    if resume and paths.partial.exists() and paths.journal.exists():
        lines = paths.journal.read_text().splitlines()
        if lines and lines[0] == f"plan {plan_id}":
            return dict(_parse(line) for line in lines[1:] if line.strip().endswith("}"))
        raise StoreError(paths.final, "cannot resume: the plan changed since the interrupted "
                                      "build (tiles, grid or layout); rerun without --resume")
    if resume and paths.partial.exists():
        raise StoreError(paths.final, f"cannot resume: no journal at {paths.journal}")
    shutil.rmtree(paths.partial, ignore_errors=True)
    paths.journal.write_text(f"plan {plan_id}\n")
    return {}


def _parse(line: str) -> tuple[tuple[int, int], dict]:
    rec = json.loads(line)
    return (rec["row"], rec["col"]), rec


def journal_shard(paths: StorePaths, record: dict) -> None:
    """Record a completed shard (a JSON object with ``row`` and ``col``) durably, flushed
    and fsynced, before counting it done. A torn last line from a crash is ignored."""
    with open(paths.journal, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def publish(paths: StorePaths) -> None:
    """Replace the final store by the finished staging store, then drop the journal."""
    if paths.final.exists():
        os.replace(paths.final, paths.old)
    os.replace(paths.partial, paths.final)
    shutil.rmtree(paths.old, ignore_errors=True)
    paths.journal.unlink(missing_ok=True)


def check_writable(directory: Path) -> None:
    """Fail early, naming the directory, when stores cannot be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".geotessera-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        reason = "not a directory" if e.errno in (errno.ENOTDIR, errno.EEXIST) else e.strerror
        raise StoreError(directory, f"output directory not writable: {reason}") from e
