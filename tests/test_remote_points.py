"""Point reads from stores on S3 (moto's server on loopback): the same values as the local
stores, bit for bit, whether fetched concurrently or one object at a time; a store opened
with no object read twice; a warm pass that makes no request; missing chunks asked for once."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from geotessera import read

from s3 import bucket, remote, s3_server  # noqa: F401  (fixtures)


def _points(n: int, seed: int) -> np.ndarray:
    """Points over both zones' tiles, some beyond every tile, one non-finite."""
    rng = np.random.default_rng(seed)
    pts = np.column_stack([rng.uniform(-0.4, 0.4, n), rng.uniform(-0.3, 0.3, n)])
    pts[:3] = [(100.0, 10.0), (np.nan, 0.0), (0.05, 0.05)]
    return pts


@pytest.mark.parametrize("year", [2024, 2025])  # 2025 has tiles missing: chunks not stored
@pytest.mark.parametrize("threads", [1, 8])
def test_remote_points_equal_the_local_stores(built, remote, monkeypatch, year, threads):
    import geotessera.store.pointread as pr

    monkeypatch.setattr(pr, "FETCH_THREADS", threads)
    pts = _points(400, year)
    want = read.Reader(built, year).sample(pts)
    got = read.Reader(remote, year).sample(pts)
    np.testing.assert_array_equal(got, want)
    have = np.isfinite(want[:, 0])
    assert 50 < have.sum() < len(pts) - 50  # data and no data both


@pytest.mark.parametrize("source", ["", "/utm31_2025"])  # the stores, or one store's home
def test_a_remote_store_is_opened_reading_nothing_twice_and_warm_reads_ask_nothing(
        remote, s3_server, source):  # noqa: F811
    reader = read.Reader(remote + source, 2025)
    pts = _points(300, 7)
    first = reader.sample(pts)
    seen = list(s3_server.requests.seen)
    docs = Counter(p for m, p, _ in seen if m == "GET" and p.endswith((".json")))
    assert docs and max(docs.values()) == 1, docs  # every document read once
    assert not [p for m, p, _ in seen if m == "HEAD"]  # what is where: from one listing
    missing = Counter(p for m, p, status in seen if status == 404 and "/scales/c/" in p)
    assert missing and max(missing.values()) == 1  # 2025 lacks tiles: chunks never written
    s3_server.requests.clear()
    np.testing.assert_array_equal(reader.sample(pts), first)
    assert s3_server.requests.seen == []  # the same points again: all from the caches


def test_a_shard_s_chunks_are_fetched_together(remote, s3_server):  # noqa: F811
    """One shard index and far fewer range GETs than chunks for points in a few shards."""
    reader = read.Reader(remote, 2024)
    zs = reader.zone(31)
    level = zs.meta.levels[0]
    s3_server.requests.clear()
    rows, cols = np.indices((48, 48)).reshape(2, -1)  # 9 inner chunks of one shard
    vectors = zs._point_reader(level).vectors(rows, cols)
    seen = [p for m, p, _ in s3_server.requests.seen if "/embeddings/c/" in p]
    assert len(set(seen)) == 1 and len(seen) < 1 + 9, seen  # index + merged ranges
    emb = zs.arrays(level)[0]
    np.testing.assert_array_equal(vectors.T.reshape(-1, 48, 48), emb[:, :48, :48])


def test_a_cold_point_reads_only_the_documents_it_decodes_with(built, remote,
                                                              s3_server):  # noqa: F811
    """A fresh reader, one land point: of the store's node documents only the root and L0's
    embeddings and scales are read (the other nodes' are not checked: nothing is decoded
    with them), each once; values as the local store's."""
    pts = _points(400, 3)
    local = read.Reader(built, 2024).sample(pts)
    pts = pts[(pts[:, 0] > 0.05) & np.isfinite(local[:, 0])][:1]  # zone 31, off its edge
    s3_server.requests.clear()
    got = read.Reader(remote, 2024).sample(pts)
    docs = [p.split(".zarr/", 1)[1] for m, p, _ in s3_server.requests.seen
            if m == "GET" and p.endswith("zarr.json")]
    assert sorted(docs) == ["L0/embeddings/zarr.json", "L0/scales/zarr.json", "zarr.json"]
    np.testing.assert_array_equal(got, read.Reader(built, 2024).sample(pts))
    assert np.isfinite(got).all()
