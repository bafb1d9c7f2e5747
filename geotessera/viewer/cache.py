"""A bounded LRU cache of rendered tiles in front of a thread pool.

``TileService.get(key)`` returns the encoded tile for a key: from the cache, or by
rendering it on the pool. Concurrent requests for the same key share one render (the
in-flight future), so a burst of identical requests costs one render. The cache holds at
most ``max_bytes`` of encoded tiles; the least recently used are dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


class LRUBytes(Generic[V]):
    """Values with a byte size, at most ``max_bytes`` in total (a value larger than that is
    not kept); thread-safe."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes, self.size_of = max_bytes, size_of
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: V) -> None:
        size = self.size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes


class TileService(Generic[V]):
    """Cached, pooled, de-duplicated calls of ``render(key)``."""

    def __init__(self, render: Callable[[Hashable], V], size_of: Callable[[V], int], *,
                 workers: int = 2, max_bytes: int = 64 * 2**20) -> None:
        self.render = render
        self.cache: LRUBytes[V] = LRUBytes(max_bytes, size_of)
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="tile")
        self._inflight: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, timeout: float | None = None) -> V:
        """The value for ``key``; re-raises the render's exception."""
        with self._lock:
            if (hit := self.cache.get(key)) is not None:
                self.hits += 1
                return hit
            fut = self._inflight.get(key)
            if fut is None:
                self.misses += 1
                fut = self.pool.submit(self._run, key)
                self._inflight[key] = fut
        return fut.result(timeout)

    def _run(self, key: Hashable) -> V:
        try:
            value = self.render(key)
            self.cache.put(key, value)
            return value
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, len(self.cache), self.cache.nbytes)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
