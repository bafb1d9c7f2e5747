"""Viewer figures on a real-size (10 m, 128-band) store: tile latency and throughput of
``geotessera-registry serve`` over loopback HTTP.

    python benchmarks/bench_viewer.py [--tiles 16] [--cache DIR] [--clients 8] [--out FILE]

Two servers run as child processes (the CLI, as a user runs it): one with ``--cache-mb 0``,
so every request renders (cold: not in the tile cache; the OS page cache is warm), one with
the default cache, primed first (warm: served from the cache). Latency is measured one
request at a time at a coarse and a fine zoom (median and p95); throughput by a bounded
loop of concurrent clients (each request count and the wall time are capped). The stores
are the ones bench_read.py builds (shared cache).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

from geotessera.viewer import grid  # noqa: E402

YEAR = 2024
COARSE, FINE = 10, 14
MAX_SECONDS = 30.0  # per throughput run


class Server:
    """``geotessera-registry serve`` in a child process on a free loopback port."""

    def __init__(self, stores: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [*h.cli_prefix(), "serve", str(stores), "--port", "0", "--no-browser", "-q", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=h.child_env())
        url = self.proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"serve did not print its URL (got {url!r})")
        self.port = int(url.rsplit(":", 1)[1].rstrip("/"))

    def get(self, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
        c = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("GET", path)
        res = c.getresponse()
        body = res.read()
        if conn is None:
            c.close()
        return res.status, body

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def tiles_over(n_tiles: int, zoom: int, limit: int) -> list[str]:
    """Tile paths at ``zoom`` inside the archive's area (its tiles' cells shrunk by 0.01°,
    so every tile touches data; at most ``limit``, spread over the area)."""
    spec = h.block_spec(n_tiles)
    bbox = (spec.lon_min + 0.01, spec.lat_min + 0.01, spec.lon_max - 0.01, spec.lat_max - 0.01)
    found = sorted(grid.tiles_covering(bbox, zoom))
    step = max(1, len(found) // limit)
    return [f"/tiles/{YEAR}/{z}/{x}/{y}.png" for z, x, y in found[::step][:limit]]


def latencies(server: Server, paths: list[str], repeats: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    out = []
    for _ in range(repeats):
        for p in paths:
            t0 = time.perf_counter()
            status, _ = server.get(p, conn)
            out.append(time.perf_counter() - t0)
            assert status == 200, (p, status)
    conn.close()
    return out


def summary(times: list[float]) -> dict:
    s = sorted(times)
    return {"n": len(s), "median_ms": 1e3 * statistics.median(s),
            "p95_ms": 1e3 * s[min(len(s) - 1, math.ceil(0.95 * len(s)) - 1)]}


def throughput(server: Server, paths: list[str], clients: int, per_client: int) -> dict:
    """``clients`` threads, each with its own keep-alive connection, request ``per_client``
    tiles (cycling through ``paths`` from its own offset) or stop at MAX_SECONDS."""
    done, errors = [0] * clients, []
    deadline = time.monotonic() + MAX_SECONDS

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        for i in range(per_client):
            if time.monotonic() > deadline:
                break
            status, _ = server.get(paths[(k * 7 + i) % len(paths)], conn)
            if status != 200:
                errors.append(status)
            done[k] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": sum(done), "seconds": wall,
            "tiles_per_s": sum(done) / wall, "errors": len(errors)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=16, help="tiles in the archive")
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--per-client", type=int, default=40, help="requests per client")
    ap.add_argument("--out", type=Path, default=None, help="JSON figures [CACHE/viewer.json]")
    args = ap.parse_args(argv)
    archive = h.cached_archive(args.cache, args.tiles, log=lambda m: print(m, file=sys.stderr))
    stores = h.built_stores(archive, args.cache)
    h.warm_page_cache(stores)
    figs: dict = {"machine": {"cpus": len(os.sched_getaffinity(0))}, "tiles": args.tiles,
                  "stores": str(stores)}
    paths = {COARSE: tiles_over(args.tiles, COARSE, 16), FINE: tiles_over(args.tiles, FINE, 48)}
    cold, warm = Server(stores, "--cache-mb", "0"), Server(stores)
    try:
        for z, ps in paths.items():
            latencies(cold, ps[:2], 1)  # open files, import, JIT-free warm-up of the process
            figs[f"z{z}_cold"] = summary(latencies(cold, ps, 3 if z == COARSE else 1))
            latencies(warm, ps, 1)  # prime the cache
            figs[f"z{z}_warm"] = summary(latencies(warm, ps, 5))
            _, body = cold.get(ps[0])
            figs[f"z{z}_png_bytes"] = len(body)
        figs["throughput_cold"] = throughput(cold, paths[FINE], args.clients, args.per_client)
        figs["throughput_warm"] = throughput(warm, paths[FINE], args.clients, args.per_client)
    finally:
        cold.stop()
        warm.stop()
    figs["levels"] = {z: level_of(stores, ps[0]) for z, ps in paths.items()}
    report(figs)
    out = args.out or args.cache / "viewer.json"
    out.write_text(json.dumps(figs, indent=1))
    print(f"\nfigures written to {out}")


def level_of(stores: Path, path: str) -> str:
    from geotessera.viewer.sources import Stretches, YearStores
    from geotessera.viewer.tiles import TileRenderer, TileRequest

    _, _, year, z, x, y = path[: -len(".png")].split("/")
    renderer = TileRenderer({YEAR: YearStores(str(stores), YEAR)}, Stretches())
    return renderer.render(TileRequest(int(year), int(z), int(x), int(y))).level


def report(f: dict) -> None:
    print(f"viewer benchmark  {f['machine']}  ({f['tiles']} tiles at 10 m, {f['stores']})\n")
    rows = []
    for z in (COARSE, FINE):
        for kind in ("cold", "warm"):
            s = f[f"z{z}_{kind}"]
            rows.append([f"z{z} ({f['levels'][z]}) {kind}", s["n"], f"{s['median_ms']:.1f}",
                         f"{s['p95_ms']:.1f}"])
    print(h.table(["tile latency, one request at a time", "n", "median ms", "p95 ms"], rows))
    print()
    rows = [[f"z{FINE} {kind}, {t['clients']} clients", t["requests"], f"{t['seconds']:.1f}",
             f"{t['tiles_per_s']:.1f}", t["errors"]]
            for kind, t in (("cold", f["throughput_cold"]), ("warm", f["throughput_warm"]))]
    print(h.table(["concurrent requests", "requests", "seconds", "tiles/s", "errors"], rows))


if __name__ == "__main__":
    main()
