"""Point reads from remote (``s3://``) tiles against the same points from the zone store built
from them, on one loopback S3 server (issue 12, target 3).

    python benchmarks/bench_remote_points.py [--tiles 16] [--cache DIR] [--points 1000]
                                             [--repeat 3] [--warm 20] [--no-whole]
                                             [--cold-points N]

In one run and one process: moto's S3 server on loopback (``_s3``: every request and the body
bytes it sent counted; range GETs served from the range alone), the cached archive of
real-size 10 m tiles (``.npy`` + landmasks) and the store built from it (``_harness``) uploaded
to it. Then 1, 100 and ``--points`` seeded random points (``_harness.random_points``) through
``geotessera.read.Reader`` on ``s3://bench/stores`` and through ``_tilepoints.TileReader`` on
``s3://bench/archive``: range GETs of each point's 4-byte scale and 128-byte embedding after
each tile's headers and landmask, one after another (``serial``) or each tile's at once
(``concurrent``, obstore ``get_ranges``, as the store reader fetches a shard's chunks); and, unless
``--no-whole``, whole tiles fetched and indexed. Tile grids and the tile list come from the
archive's local registry (untimed); the store's metadata is read from S3 in every cold run.

*cold* is a fresh reader (nothing cached: the store's listing, metadata, shard indexes and
chunks; the tiles' headers and landmasks), best of ``--repeat`` interleaved runs; *warm* is a
second pass over the same points with that reader. The 1-point *warm* figure is the median
over ``--warm`` new land points, one at a time, with readers that have read the
``--points`` points already. ``--cold-points N`` also reads one land point with a fresh reader
of each approach ``N`` times, interleaved, and reports the median and minimum (a best of 3 of a
~50 ms read is noisy on a loaded machine). Every approach's values must equal the store's (dequantised
int8 × scale, NaN without data) at every point, or the run fails. The server runs in this
process and shares its GIL: each request costs moto's Python (4–8 ms here), a stand-in for
S3's per-request latency, not a real network's bandwidth.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _s3  # noqa: E402
import _tilepoints as tp  # noqa: E402

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from geotessera import read  # noqa: E402
from geotessera.archive import registry  # noqa: E402

YEAR = 2024
BUCKET = "bench"
STORES, ARCHIVE = f"s3://{BUCKET}/stores", f"s3://{BUCKET}/archive"
TILE_FILES = (".npy", ".tiff")


def upload(moto: _s3.Moto, archive: Path, stores: Path) -> dict:
    client, t0 = moto.client(), time.perf_counter()
    a = _s3.upload_tree(client, archive, BUCKET, "archive", TILE_FILES)
    s = _s3.upload_tree(client, stores, BUCKET, "stores")
    moto.requests.clear()
    return {"archive": a, "stores": s, "seconds": time.perf_counter() - t0,
            "rss_after": psutil.Process().memory_info().rss}


def factories(records) -> dict:
    """How each approach makes a fresh reader, in the order they run."""
    out = {"store": lambda: read.Reader(STORES, YEAR)}
    for fetch in ("serial", "concurrent"):
        out[f"tiles {fetch}"] = lambda fetch=fetch: tp.TileReader(ARCHIVE, records, fetch)
    return out


def measured(moto: _s3.Moto, fn, points: np.ndarray) -> tuple[dict, np.ndarray]:
    moto.requests.clear()
    t0 = time.perf_counter()
    values = fn(points)
    wall = time.perf_counter() - t0
    seen = moto.requests.take()
    return {"wall_s": wall, "requests": len(seen), "bytes": sum(r.sent for r in seen),
            "kinds": Counter(kind(r) for r in seen)}, values


def kind(r: _s3.Request) -> str:
    """What a request fetched, from its path and range (a listing is store metadata)."""
    if not r.path.startswith(f"/{BUCKET}/archive/"):
        if "/embeddings/c/" in r.path:
            return "shard index" if r.range.startswith("bytes=-") else "embeddings chunk"
        return "scales chunk" if "/scales/c/" in r.path else "metadata"
    if r.path.endswith(".tiff"):
        return "landmask"
    if not r.range:
        return "whole .npy"
    if r.range.startswith("bytes=0-"):
        return ".npy header"
    return "scale" if r.path.endswith("_scales.npy") else "embedding"


def same_or_fail(name: str, want: np.ndarray, got: np.ndarray, points: np.ndarray) -> None:
    """Exit non-zero naming the first points where ``got`` differs from the store's values."""
    eq = np.array([np.array_equal(a, b, equal_nan=True) for a, b in zip(want, got)])
    if not eq.all():
        bad = np.flatnonzero(~eq)
        sys.exit(f"FAIL: {name} differs from the store at {len(bad)} of {len(points)} points, "
                 f"first {points[bad[:5]].tolist()}")


def run_size(moto, records, points, repeat: int, whole: bool) -> tuple[dict, dict]:
    """Cold runs (a fresh reader made inside the timing: the store's listing and metadata
    count) and warm passes with the same reader, ``repeat`` times interleaved, best of each;
    returns (figures, the last warm readers)."""
    runs: dict[tuple[str, str], list[dict]] = {}
    want, warm = None, {}
    for _ in range(repeat):
        for name, make in factories(records).items():
            def cold(pts, name=name, make=make):
                warm[name] = make()
                return warm[name].sample(pts)

            for state, fn in (("cold", cold), ("warm", lambda pts, n=name: warm[n].sample(pts))):
                fig, values = measured(moto, fn, points)
                want = values if want is None else want
                same_or_fail(f"{name} ({state})", want, values, points)
                runs.setdefault((name, state), []).append(fig)
    figs = {k: min(v, key=lambda f: f["wall_s"]) for k, v in runs.items()}
    if whole:  # one run: it moves every tile it touches
        fig, values = measured(moto, tp.TileReader(ARCHIVE, records, "whole").sample, points)
        same_or_fail("tiles whole (cold)", want, values, points)
        figs[("tiles whole", "cold")] = fig
    return figs, {name: r.sample for name, r in warm.items()}


def warm_latency(moto, fns: dict, points: np.ndarray, want: np.ndarray) -> dict:
    """Median wall, requests and bytes of one new point at a time per warm reader (``want``:
    the values, read beforehand without these readers, whose caches they would warm)."""
    out = {}
    for name, fn in fns.items():
        figs = []
        for i in range(len(points)):
            fig, values = measured(moto, fn, points[i:i + 1])
            same_or_fail(f"{name} (1 point, warm)", want[i:i + 1], values, points[i:i + 1])
            figs.append(fig)
        out[(name, "warm, new point")] = {
            k: statistics.median(f[k] for f in figs) for k in ("wall_s", "requests", "bytes")}
    return out


def cold_points(moto, records, point: np.ndarray, want: np.ndarray, n: int) -> dict:
    """Median and minimum wall, and requests, of ``n`` fresh readers of each approach reading
    ``point``, the approaches interleaved."""
    walls: dict[str, list[float]] = {}
    requests = {}
    for _ in range(n):
        for name, make in factories(records).items():
            fig, values = measured(moto, lambda pts, make=make: make().sample(pts), point)
            same_or_fail(f"{name} (1 point, cold)", want, values, point)
            walls.setdefault(name, []).append(fig["wall_s"])
            requests[name] = fig["requests"]
    return {name: (statistics.median(w), min(w), requests[name]) for name, w in walls.items()}


def land_points(store: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points with data and their values, from the local copy of the store (untimed)."""
    pts = h.random_points(store, 20 * n, seed)
    values = read.Reader(store.parent, YEAR).sample(pts)
    have = np.flatnonzero(np.isfinite(values[:, 0]))[:n]
    return pts[have], values[have]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=16, help="tiles in the archive")
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3, help="cold runs per approach (best)")
    ap.add_argument("--warm", type=int, default=20, help="new points for the 1-point warm")
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-tiles baseline")
    ap.add_argument("--cold-points", type=int, default=0,
                    help="also: one cold point, this many fresh readers per approach (median)")
    args = ap.parse_args(argv)
    archive = h.cached_archive(args.cache, args.tiles, log=lambda m: print(m, file=sys.stderr))
    stores = h.built_stores(archive, args.cache)
    store = sorted(stores.glob(f"utm*_{YEAR}.zarr"))[0]
    records = registry.load(archive / registry.REGISTRY_FILENAME, [YEAR])
    moto = _s3.start_moto(BUCKET)
    try:
        up = upload(moto, archive, stores)
        pts = h.random_points(store, args.points, seed=0)
        land, land_values = land_points(store, args.warm + 1, seed=1)
        figs: dict = {}
        for n, points in {1: land[:1], 100: pts[:100], args.points: pts}.items():
            part, fns = run_size(moto, records, points, args.repeat, not args.no_whole)
            figs |= {(n, *k): v for k, v in part.items()}
        lat = warm_latency(moto, fns, land[1:], land_values[1:])
        figs |= {(1, *k): v for k, v in lat.items()}
        cold = (cold_points(moto, records, land[:1], land_values[:1], args.cold_points)
                if args.cold_points else {})
        rss = psutil.Process().memory_info().rss
    finally:
        moto.stop()
    report(args, up, figs, rss)
    if cold:
        report_cold(cold, args.cold_points)


def report_cold(cold: dict, n: int) -> None:
    store = cold["store"][0]
    print(f"\none land point, cold, {n} fresh readers per approach, interleaved:")
    print(h.table(["approach", "median ms", "min ms", "requests", "store/this median"],
                  [[name, f"{med * 1e3:.1f}", f"{low * 1e3:.1f}", f"{req}",
                    "" if name == "store" else f"{store / med:.2f}"]
                   for name, (med, low, req) in cold.items()]))
    best = min(med for name, (med, _, _) in cold.items() if name != "store")
    print(f"  {h.verdict(store < best)}  one cold point: the store's median is under every tile "
          f"approach's ({store * 1e3:.1f} ms against {best * 1e3:.1f} ms)")


def report(args, up: dict, figs: dict, rss: int) -> None:
    (na, ab), (ns, sb) = up["archive"], up["stores"]
    print(f"remote point reads: {args.tiles} tiles of 10 m, 128 bands; uploaded {na} tile "
          f"objects ({ab / h.MB:.0f} MB) and {ns} store objects ({sb / h.MB:.0f} MB) in "
          f"{up['seconds']:.0f} s; process RSS {up['rss_after'] / h.MB:.0f} MB after the "
          f"upload, {rss / h.MB:.0f} MB at the end; load {_load()}")
    rows = []
    for (n, name, state), f in figs.items():
        store = figs.get((n, "store", state))
        ratio = f"{store['wall_s'] / f['wall_s']:.2f}" if store and name != "store" else ""
        rows.append([f"{n}", name, state, f"{f['wall_s'] * 1e3:.1f}", f"{f['requests']:g}",
                     f"{f['requests'] / n:.2f}", f"{f['bytes'] / 1e3:.1f}", ratio])
    print(h.table(["points", "approach", "pass", "wall ms", "requests", "req/point",
                   "KB sent", "store/this wall"], rows))
    print(f"(1 point: a land point; cold: fresh readers, best of {args.repeat}; warm: the same "
          f"readers again; 'warm, new point': median of {args.warm} land points not read "
          "before)")
    n = args.points
    print(f"\nrequests by kind, {n} points, cold:")
    for (m, name, state), f in figs.items():
        if m == n and state == "cold":
            print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in f["kinds"].most_common()))
    print()
    for state in ("cold", "warm"):
        s = figs[(n, "store", state)]["wall_s"]
        serial = figs[(n, "tiles serial", state)]["wall_s"]
        name, best = min(((name, f["wall_s"]) for (m, name, st), f in figs.items()
                          if m == n and st == state and name != "store"), key=lambda t: t[1])
        print(f"  {h.verdict(s < best)}  {n} points, {state}: the store is faster than every "
              f"tile approach ({s:.2f} s against {best:.2f} s, {name}; "
              f"{s / serial:.2f}x the serial tile reads)")
    print("  PASS  the values equal the tiles' at every point, every approach")


def _load() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
