"""Regions from stores on S3 (moto's server on loopback): the same values as the local stores,
bit for bit; a window's chunk ranges in flight at once; each shard's chunks one request."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from geotessera import read

from s3 import bucket, remote, s3_server  # noqa: F401  (fixtures)

#: Across the zone 30|31 meridian: the window path (``PointReader.chunks``) in both stores.
BBOX = (-0.1, 0.02, 0.1, 0.18)


@pytest.mark.parametrize("year,crs", [(2024, None), (2025, None), (2025, "EPSG:4326")])
def test_remote_regions_equal_the_local_stores(built, remote, year, crs):  # noqa: F811
    res = 0.002 if crs else None  # 2025 has tiles missing: chunks not stored
    want = read.read_region(BBOX, year, built, crs=crs, resolution=res)
    got = read.read_region(BBOX, year, remote, crs=crs, resolution=res)
    np.testing.assert_array_equal(got.values, want.values)
    assert got.attrs == want.attrs
    have = np.isfinite(want.values[0])
    assert 0.2 < have.mean() < 1.0  # data and no data both


def _held_chunk_gets(monkeypatch) -> dict:
    """The most embeddings chunk range GETs (not index suffixes) the server answers at once,
    from now on; each is held 50 ms so that requests sent together overlap."""
    from moto.s3.responses import S3Response

    seen, lock = {"now": 0, "most": 0}, threading.Lock()
    answer = S3Response.key_response

    def held(self, request, full_url, headers):
        rng = request.headers.get("range", "")
        if request.method != "GET" or "/embeddings/c/" not in full_url or not rng \
                or rng.startswith("bytes=-"):
            return answer(self, request, full_url, headers)
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        try:
            time.sleep(0.05)
            return answer(self, request, full_url, headers)
        finally:
            with lock:
                seen["now"] -= 1

    monkeypatch.setattr(S3Response, "key_response", held)
    return seen


def test_a_window_s_chunks_are_fetched_concurrently_one_request_a_shard(
        built, remote, s3_server, monkeypatch):  # noqa: F811
    """Chunk ranges of several shards in flight at once; each shard object asked twice at
    most (its index, then its chunks, all within ``MERGE_GAP`` of each other here)."""
    seen = _held_chunk_gets(monkeypatch)
    got = read.read_region(BBOX, 2024, remote)
    shards = Counter(p for m, p, _ in s3_server.requests.seen
                     if m == "GET" and "/embeddings/c/" in p)
    assert len(shards) >= 4 and max(shards.values()) <= 2, shards
    assert seen["most"] >= 2
    np.testing.assert_array_equal(got.values, read.read_region(BBOX, 2024, built).values)
