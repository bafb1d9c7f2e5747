"""A bounded LRU cache of rendered tiles in front of a thread pool.

``TileService.get(key)`` returns the encoded tile for a key: from the cache, or by
rendering it on the pool. Concurrent requests for the same key share one render (the
in-flight future), so a burst of identical requests costs one render. The cache holds at
most ``max_bytes`` of encoded tiles; the least recently used are dropped first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from geotessera.lru import LRUBytes

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


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
