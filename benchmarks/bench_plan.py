"""Planning at archive scale: scan, rescan and plan time and memory per tile.

    python benchmarks/bench_plan.py [--plan-tiles 10000 100000] [--scan-tiles 10000]
                                    [--tiles-per-zone 10000] [--cache DIR]

Two parts, each step in its own child process so its peak RSS is its own:

* **scan / rescan** of a header-only archive: real files in the real layout, at a coarse pixel
  size (2 km, 4 bands: a few hundred bytes a tile), so what is timed is the per-tile overhead
  (listing, three header reads, the grid check), not bytes. A fresh scan, then a rescan that
  reuses every row. Generated once into ``--cache``.
* **plan** from a partitioned registry of synthesised rows (real tile grids of 10 m tiles,
  ``--tiles-per-zone`` tiles in each of N/that zones, no files): ``zarr-build --dry-run``'s
  planner, one (zone, year) partition at a time (``build_from_registry``), against the old way
  (load the whole registry, then plan: ``build_stores``). Bounded planning shows as a peak
  that stays flat from 10,000 to 100,000 tiles while the whole-registry peak grows.

Memory is the child's peak RSS (``VmHWM``) minus its peak after imports, per tile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

CHILD = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from geotessera.archive import registry
from geotessera.archive.scan import update_registry
from geotessera.build.run import build_stores
from geotessera.build.zones import build_from_registry
from geotessera.types import StoreLayout
mode, base, reg = sys.argv[1], sys.argv[2], Path(sys.argv[3])
def hwm():  # this process's own peak RSS (ru_maxrss would include the parent's at fork)
    line = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
rss0 = hwm()
t0, c0 = time.perf_counter(), time.process_time()
if mode == "scan":
    with ThreadPoolExecutor(32) as pool:
        r = update_registry(base, reg, pool, expected_bands=4)
    extra = {"reread": r.reread, "reused": r.reused, "rows": len(r.records)}
elif mode == "plan-zones":
    rep = build_from_registry(base, Path("/nonexistent"), reg, None, dry_run=True)
    extra = {"stores": len(rep.summaries), "tiles": sum(s["tiles"] for s in rep.summaries)}
else:
    rep = build_stores(base, Path("/nonexistent"), registry.load(reg), None, dry_run=True)
    extra = {"stores": len(rep.summaries), "tiles": sum(s["tiles"] for s in rep.summaries)}
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = hwm()
print(json.dumps({"wall": wall, "cpu": cpu, "rss0": rss0, "peak": peak, **extra}))
"""


def child(mode: str, base: str, reg: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, base, str(reg)], check=True,
                         capture_output=True, text=True, env=h.child_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def header_archive(cache: Path, n: int) -> Path:
    """``n`` coarse tiles (2 km pixels, 4 bands) in the real layout, generated once."""
    from geotessera.archive.demo import DemoSpec, write_demo_archive

    rows = max(d for d in range(1, int(n**0.5) + 1) if n % d == 0)
    cols = n // rows
    spec = DemoSpec(lon_min=0.0, lon_max=round(cols / 10, 2), lat_min=40.0,
                    lat_max=round(40 + rows / 10, 2), years=(2024,), pixel_size=2000.0,
                    bands=4, missing_fraction=0.0)
    base = cache / f"headers{n}"
    marker = base / "bench-plan.json"
    if marker.exists() and json.loads(marker.read_text()) == {"n": n, "cols": cols}:
        return base
    t0 = time.perf_counter()
    write_demo_archive(base, spec)
    marker.write_text(json.dumps({"n": n, "cols": cols}))
    print(f"  generated {n} header-only tiles in {time.perf_counter() - t0:.0f} s", flush=True)
    return base


def synthetic_registry(path: Path, n: int, per_zone: int) -> None:
    """A partitioned registry of ``n`` clean 10 m, 128-band rows: ``per_zone`` tiles (a block
    60 tiles wide) in each of ``n // per_zone`` consecutive zones from zone 31."""
    from geotessera.archive import registry
    from geotessera.archive.registry import TileRecord
    from geotessera.tiles import tile_epsg, tile_grid, tile_keys, utm_zone
    from geotessera.types import TileKey

    rows = []
    for z in range(n // per_zone):
        for i in range(per_zone):
            lon_i = z * 600 + (i % 60) * 10 + 5
            lat_i = 4005 + (i // 60) * 10
            key = TileKey(lat_i=lat_i, lon_i=lon_i)
            g = tile_grid(key, 10.0)
            emb, sc, lm = tile_keys(2024, key.name)
            rows.append(TileRecord(
                year=2024, name=key.name, lon=key.lon, lat=key.lat, lon_i=lon_i, lat_i=lat_i,
                zone=utm_zone(key.lon), epsg=tile_epsg(key), pixel_size=10.0,
                transform=g.transform, height=g.height, width=g.width, bands=128,
                scales_ndim=2, embeddings_path=emb, scales_path=sc, landmask_path=lm,
                embeddings_size=g.height * g.width * 128 + 128, scales_size=g.height * g.width * 4
                + 128, landmask_size=10_000, embeddings_mtime=1, scales_mtime=1,
                landmask_mtime=1))
    registry.save(rows, path)


def per_tile(r: dict, n: int) -> tuple[str, str, str]:
    return (f"{r['wall'] / n * 1e3:.3f}", f"{r['cpu'] / n * 1e3:.3f}",
            f"{max(0, r['peak'] - r['rss0']) / n / 1e3:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan-tiles", type=int, nargs="*", default=[10_000])
    ap.add_argument("--plan-tiles", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--tiles-per-zone", type=int, default=10_000)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gt-bench-plan")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    head = ["step", "tiles", "wall ms/tile", "cpu ms/tile", "peak KB/tile", "peak MB", "note"]
    out = []
    for n in args.scan_tiles:
        base = header_archive(args.cache, n)
        with tempfile.TemporaryDirectory() as tmp:
            reg = Path(tmp) / "registry.parquet"
            for step in ("scan", "rescan"):
                r = child("scan", str(base), reg)
                out.append([step, n, *per_tile(r, n), f"{(r['peak'] - r['rss0']) / 1e6:.0f}",
                            f"read {r['reread']}, reused {r['reused']}"])
                print(h.table(head, out[-1:]), flush=True)
    for n in args.plan_tiles:
        with tempfile.TemporaryDirectory() as tmp:
            reg = Path(tmp) / "registry.parquet"
            synthetic_registry(reg, n, args.tiles_per_zone)
            for mode, label in (("plan-zones", "plan, one zone at a time"),
                                ("plan-whole", "plan, whole registry")):
                r = child(mode, "/nonexistent", reg)
                out.append([label, n, *per_tile(r, n), f"{(r['peak'] - r['rss0']) / 1e6:.0f}",
                            f"{r['stores']} stores, {r['tiles']} tiles"])
                print(h.table(head, out[-1:]), flush=True)
    print()
    print(h.table(head, out))


if __name__ == "__main__":
    main()
