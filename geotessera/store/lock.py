"""The builder's lock on one store home: ``lock.json``, the same on local disks and S3.

- Taken with a create-only write (``If-None-Match: *`` on S3, an atomic no-clobber create on
  disk): of two builders, exactly one creates it.
- Names its owner (host, PID, a random id) and an expiry; a live builder renews it from a
  background thread with a conditional update on the lock's ETag, so the renewal fails
  (and the build stops before publishing) if someone else took the lock.
- An expired lock, or one whose owner is a dead process on this host, is taken over by a
  conditional overwrite on the ETag that was read: of several takers only one wins.
- A lock whose content is not a lock (garbage, cut short) is reported as such, naming the
  object; it can be taken over once its last modification is older than the lock lifetime.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
import uuid
from dataclasses import dataclass

from geotessera.errors import LockedError
from geotessera.store.location import Location

LOCK = "lock.json"
#: Seconds a lock stays valid without renewal; a live builder renews it every third of that.
DEFAULT_TTL = 120.0


@dataclass(frozen=True, slots=True)
class Holder:
    host: str
    pid: int
    uuid: str
    since: str
    expires: float

    def to_json(self) -> bytes:
        return json.dumps({"host": self.host, "pid": self.pid, "uuid": self.uuid,
                           "since": self.since, "expires": self.expires,
                           "expires_utc": _iso(self.expires)}, indent=2).encode()

    def describe(self) -> str:
        return (f"PID {self.pid} on host {self.host} (owner {self.uuid}) since {self.since}, "
                f"expires {_iso(self.expires)}")


def parse_holder(raw: bytes) -> Holder | None:
    """The holder a lock names, or None when the bytes are not a lock."""
    try:
        doc = json.loads(raw)
        return Holder(str(doc["host"]), int(doc["pid"]), str(doc["uuid"]), str(doc["since"]),
                      float(doc["expires"]))
    except (ValueError, KeyError, TypeError):
        return None


class StoreLock:
    """The lock of one store home. ``acquire`` then ``release`` (or use it as a context
    manager); ``check`` raises LockedError if the lock was lost since."""

    def __init__(self, home: Location, ttl: float = DEFAULT_TTL) -> None:
        self.home, self.ttl = home, ttl
        self.me = Holder(socket.gethostname(), os.getpid(), uuid.uuid4().hex,
                         _iso(_now()), 0.0)
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    @property
    def url(self) -> str:
        return str(self.home.child(LOCK))

    def _mine(self) -> bytes:
        return Holder(self.me.host, self.me.pid, self.me.uuid, self.me.since,
                      _now() + self.ttl).to_json()

    def acquire(self) -> None:
        """Take the lock or raise LockedError naming the lock and its owner (at once)."""
        for _ in range(5):
            etag = self.home.put_if(LOCK, self._mine())
            if etag is not None:
                self._etag = etag
                self._start_renewing()
                return
            found = self.home.read_meta(LOCK)
            if found is None:
                continue  # released in between: try to create it again
            raw, meta = found
            self._check_stale(parse_holder(raw), meta)
            etag = self.home.put_if(LOCK, self._mine(), etag=meta["e_tag"])
            if etag is not None:
                self._etag = etag
                self._start_renewing()
                return
        raise LockedError(self.home, f"could not take the lock {self.url} (contended)")

    def _check_stale(self, holder: Holder | None, meta: dict) -> None:
        """Return if the lock may be taken over, else raise LockedError describing it."""
        now = _now()
        if holder is None:
            age = now - meta["last_modified"].timestamp()
            if age >= self.ttl:
                return
            raise LockedError(self.home, (
                f"{self.url} holds no valid lock (not the JSON this tool writes); it is taken "
                f"over once it is {self.ttl:.0f} s old (in {self.ttl - age:.0f} s), or delete "
                "it if no build is running"))
        if holder.expires <= now:
            return
        if holder.host == self.me.host and not _pid_alive(holder.pid):
            return
        raise LockedError(self.home, (
            f"locked by {self.url}: {holder.describe()}; if no build is running there, "
            f"delete {self.url} or wait until it expires"))

    def renew(self) -> None:
        """Extend the expiry (conditional on our ETag); LockedError if the lock was lost."""
        with self._mutex:
            self.check()
            etag = self.home.put_if(LOCK, self._mine(), etag=self._etag)
            if etag is None:
                self._lost = f"the lock {self.url} was taken over by another builder"
                self.check()
            self._etag = etag

    def check(self) -> None:
        if self._lost is not None:
            raise LockedError(self.home, self._lost)

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:
            found = self.home.read_meta(LOCK)
            if found is not None and self._lost is None:
                holder = parse_holder(found[0])
                if holder is not None and holder.uuid == self.me.uuid:
                    self.home.delete(LOCK)

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="geotessera-lock",
                                        daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except Exception as e:  # noqa: BLE001 - recorded; check() raises it before publish
                self._lost = self._lost or f"renewing the lock {self.url} failed: {e}"
                return

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _now() -> float:
    return dt.datetime.now(dt.timezone.utc).timestamp()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True
