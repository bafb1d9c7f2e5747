"""``read_region`` from stores on ``s3://`` (moto on loopback): the multi-zone windows of
``bench_read.py --only-regions``, wall seconds, requests and bytes.

    python benchmarks/bench_remote_regions.py [--cache DIR] [--repeat 2] [--latency 0 20]

In one process: moto's S3 server on loopback (``_s3``: every request and the body bytes it
sent counted; range GETs served from the range alone), the stores of ``_regions`` (2 × 4
real-size 10 m tiles across the zone 30|31 meridian, built once and cached) uploaded to it,
then each of ``_regions.CASES`` (the window read into zone 31's lattice, zone 30's and WGS84)
read from ``s3://bench/stores`` with a fresh ``Reader`` (the stores' metadata read in every
run), ``--repeat`` times interleaved, at each ``--latency`` (ms the server holds every
answer, ``_s3.Moto.latency``: a stand-in for a network round trip), and once from the local
stores: every remote output must be the local one bit for bit (the same hash of its bytes)
or the run fails. Per read: wall seconds, of them those in ``ZoneStore.tiles`` (the
embeddings' fetch and decode), CPU seconds (of this process, the server's Python included),
requests by kind and the bytes the server sent, and the peak RSS above the RSS before
(``VmHWM``; the server's buffers included) over the output's bytes. The server shares this
process's GIL and costs 4–8 ms of Python per request, so concurrent requests overlap little
here beyond the added latency.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _regions  # noqa: E402
import _s3  # noqa: E402

import numpy as np  # noqa: E402

from geotessera import read  # noqa: E402
from geotessera.read.reader import ZoneStore  # noqa: E402

BUCKET = "bench"
STORES = f"s3://{BUCKET}/stores"


def kind(r: _s3.Request) -> str:
    """What a request fetched, from its path and range (a listing is store metadata)."""
    if "/embeddings/c/" in r.path:
        return "shard index" if r.range.startswith("bytes=-") else "embeddings chunks"
    return "scales chunk" if "/scales/c/" in r.path else "metadata"


@contextlib.contextmanager
def timing_tiles():
    """Wall seconds spent in ``ZoneStore.tiles`` meanwhile: {"s": total}."""
    spent, real = {"s": 0.0}, ZoneStore.tiles

    def timed(*args, **kw):
        t0 = time.perf_counter()
        try:
            return real(*args, **kw)
        finally:
            spent["s"] += time.perf_counter() - t0

    ZoneStore.tiles = timed
    try:
        yield spent
    finally:
        ZoneStore.tiles = real


def measured(moto: _s3.Moto, case: int) -> tuple[dict, np.ndarray]:
    """One remote read of ``case`` with a fresh reader: its figures and values."""
    _, crs, res = _regions.CASES[case]
    moto.requests.clear()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _regions._vm("VmRSS:")
    with timing_tiles() as tiles:
        t0, c0 = time.perf_counter(), time.process_time()
        da = read.read_region(_regions.BBOX, _regions.YEAR, STORES, crs=crs, resolution=res)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    seen = moto.requests.take()
    return {"wall_s": wall, "tiles_s": tiles["s"], "cpu_s": cpu, "requests": len(seen),
            "bytes": sum(r.sent for r in seen), "kinds": Counter(kind(r) for r in seen),
            "rss_peak_over_out": (_regions._vm("VmHWM:") - before) / da.nbytes,
            "shape": da.shape}, da.values


def digest(values: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(values).data).hexdigest()


def run(moto: _s3.Moto, stores: Path, repeat: int, latencies: list[float]) -> dict:
    """{(case, latency ms): [figures of each remote read]}, each read checked against the
    local one."""
    runs: dict[tuple[str, float], list[dict]] = {}
    want = {}
    for _ in range(repeat):
        for ms in latencies:
            moto.latency = ms / 1e3
            for k, (name, _, _) in enumerate(_regions.CASES):
                if k not in want:
                    want[k] = digest(_regions.read_case(stores, k).values)
                fig, values = measured(moto, k)
                if digest(values) != want[k]:
                    sys.exit(f"FAIL: {name}: the remote region differs from the local one")
                del values
                runs.setdefault((name, ms), []).append(fig)
    return runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--repeat", type=int, default=2, help="remote reads per case")
    ap.add_argument("--latency", type=float, nargs="+", default=[0.0, 20.0],
                    help="ms the server holds each answer")
    args = ap.parse_args(argv)
    stores = _regions.build(args.cache, h.built_stores)
    moto = _s3.start_moto(BUCKET)
    try:
        t0 = time.perf_counter()
        n, nbytes = _s3.upload_tree(moto.client(), stores, BUCKET, "stores")
        up = time.perf_counter() - t0
        moto.requests.clear()
        runs = run(moto, stores, args.repeat, args.latency)
    finally:
        moto.stop()
    report(runs, n, nbytes, up)


def report(runs: dict, n: int, nbytes: int, up: float) -> None:
    print(f"remote read_region: bbox {_regions.BBOX} across the zone 30|31 meridian, "
          f"{n} store objects ({nbytes / h.MB:.0f} MB) uploaded to moto in {up:.0f} s; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows = []
    for (name, ms), figs in runs.items():
        for i, f in enumerate(figs):
            rows.append([name, "x".join(map(str, f["shape"][1:])), f"{ms:g}", i + 1,
                         f"{f['wall_s']:.2f}", f"{f['tiles_s']:.2f}", f"{f['cpu_s']:.2f}",
                         f["requests"],
                         f"{f['bytes'] / h.MB:.1f}", f"{f['rss_peak_over_out']:.2f}"])
    print(h.table(["output", "px", "latency ms", "run", "wall s", "tiles s", "cpu s",
                   "requests", "MB sent", "peak RSS/out"], rows))
    print("tiles s: wall seconds in ZoneStore.tiles (the embeddings' fetch and decode)")
    print("requests by kind (first run):")
    for (name, ms), figs in runs.items():
        kinds = figs[0]["kinds"].most_common()
        print(f"  {name}, {ms:g} ms: " + ", ".join(f"{k} {v}" for k, v in kinds))
    print("  PASS  every remote output is the local stores' bit for bit")


if __name__ == "__main__":
    main()
