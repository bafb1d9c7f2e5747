"""``h3`` summary throughput and memory per worker on real-size (10 m, 128-band) stores.

    python benchmarks/bench_h3.py [--small 4] [--large 16] [--res 9] [--level 0] [-j 2]
                                  [--cache DIR] [--out FILE]

Two archives (``--small`` and ``--large`` tiles, cached 10 m demo archives shared with the
other benchmarks) are built once with ``zarr-build --no-rgb --no-stac`` and cached; then
``geotessera-registry h3`` runs on each with the process tree sampled for memory. Printed:
cells and pixels per second (whole command, and the summary's own time without interpreter
start-up), peak RSS per pool worker, and the working set per worker in raw shards (peak RSS
minus an idle worker's RSS, over the bytes of one shard of the level). One task holds one
shard, so memory per worker must stay flat as the stores grow: the target is a large/small
peak worker RSS ratio of at most 1.25.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

import zarr  # noqa: E402

YEAR = 2024
TARGET_FLAT = 1.25
WORKER_MODULES = ("geotessera.dggs.summary", "h3")


def built(archive: Path, cache: Path, workers: int) -> Path:
    """``cache/h3-<archive>``: the archive's stores, built once (L0 only)."""
    out = cache / f"h3-{archive.name}"
    stores = sorted(out.glob(f"utm*_{YEAR}.zarr"))
    if stores and all(zarr.open_group(str(s), mode="r").attrs.get("geotessera:build_complete")
                      for s in stores):
        return out
    print(f"building {archive} into {out} (once) ...", file=sys.stderr, flush=True)
    h.run_measured([*h.cli_prefix(), "zarr-build", str(archive), "-o", str(out), "-j",
                    str(workers), "--no-rgb", "--no-stac", "--json", "-q"])
    return out


def shard_bytes(stores: Path, level: int) -> int:
    """Raw bytes of one embeddings shard plus its scales (int8 × bands + float32)."""
    store = min(stores.glob(f"utm*_{YEAR}.zarr"))
    arr = zarr.open_group(str(store), mode="r")[f"L{level}/embeddings"]
    bands, sy, sx = arr.shards or arr.chunks
    return sy * sx * (bands + 4)


def run(stores: Path, out: Path, res: int, level: int | None, workers: int) -> dict:
    cmd = [*h.cli_prefix(), "h3", str(stores), "--year", str(YEAR), "--res", str(res), "-o",
           str(out), "-j", str(workers), "--overwrite", "--json", "-q"]
    if level is not None:
        cmd += ["--level", str(level)]
    m = h.run_measured(cmd)
    doc = json.loads(m.stdout)
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "seconds": doc["seconds"],
            "cells": doc["cells"], "pixels": doc["pixels"], "level": doc["level"],
            "shards": sum(s["shards"] for s in doc["stores"]),
            "peak_worker_rss": m.peak_worker_rss, "peak_worker_anon": m.peak_worker_anon,
            "peak_tree_rss": m.peak_tree_rss, "workers_seen": m.workers_seen}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=4, help="tiles in the small archive")
    ap.add_argument("--large", type=int, default=16, help="tiles in the large archive")
    ap.add_argument("--res", type=int, default=9, help="H3 resolution")
    ap.add_argument("--level", type=int, default=None,
                    help="store level [default: the h3 command's default for --res]")
    ap.add_argument("-j", "--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--out", type=Path, default=None, help="JSON figures [CACHE/h3.json]")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    idle = h.idle_rss(*WORKER_MODULES)[0]
    runs = {}
    for name, n in (("small", args.small), ("large", args.large)):
        archive = h.cached_archive(args.cache, n, log=lambda m: print(m, file=sys.stderr))
        stores = built(archive, args.cache, args.workers)
        h.warm_page_cache(stores)
        r = run(stores, args.cache / f"h3-{name}.zarr", args.res, args.level, args.workers)
        runs[name] = {"tiles": n, **r, "shard_bytes": shard_bytes(stores, args.level or 0)}
    figs = {"res": args.res, "workers": args.workers, "idle_worker_rss": idle,
            "load_before": load_before, "cpus": len(os.sched_getaffinity(0)), "runs": runs}
    report(figs)
    out = args.out or args.cache / "h3.json"
    out.write_text(json.dumps(figs, indent=1))
    print(f"\nfigures written to {out}")


def report(f: dict) -> None:
    mib = lambda b: f"{b / h.MIB:.0f}"  # noqa: E731
    rows = []
    for name, r in f["runs"].items():
        ws = (r["peak_worker_rss"] - f["idle_worker_rss"]) / r["shard_bytes"]
        rows.append([f"{name} ({r['tiles']} tiles)", r["level"], r["shards"], r["cells"],
                     r["pixels"], f"{r['wall_s']:.1f}", f"{r['seconds']:.1f}",
                     f"{r['cpu_s']:.1f}", f"{r['cells'] / r['wall_s']:.0f}",
                     f"{r['cells'] / r['seconds']:.0f}", f"{r['cells'] / r['cpu_s']:.0f}",
                     f"{r['pixels'] / r['cpu_s'] / 1e6:.2f}", mib(r["peak_worker_rss"]),
                     f"{ws:.2f}", r["workers_seen"]])
    print(f"h3 benchmark: resolution {f['res']}, -j {f['workers']}, 10 m 128-band stores; "
          f"idle worker RSS {mib(f['idle_worker_rss'])} MiB\n"
          "wall = whole command; summary s = the command's own timer (pool, tasks, merge, "
          "write); cpu s = user+sys of\nthe whole tree (robust to other load; includes "
          "interpreter and pool start-up); memory in MiB;\nwork set = (peak worker RSS - "
          "idle worker RSS) / raw shard (int8 bands + float32 scale per pixel)\n")
    load = f.get("load_before", 0.0)
    if load > 0.5 * f.get("cpus", 1):
        print(f"WARNING: load average {load:.1f} before the run on {f.get('cpus')} CPUs: other "
              "processes compete; wall-clock "
              "figures are pessimistic, per-cpu-second figures are not\n")
    print(h.table(["stores", "level", "shards", "cells", "pixels", "wall s", "summary s",
                   "cpu s", "cells/s wall", "cells/s", "cells/cpu-s", "Mpx/cpu-s",
                   "worker RSS", "work set/shard", "workers"], rows))
    small, large = f["runs"]["small"], f["runs"]["large"]
    ratio = large["peak_worker_rss"] / small["peak_worker_rss"]
    print("\ntargets")
    print(f"  {h.verdict(ratio <= TARGET_FLAT)}  peak worker RSS flat in store size: "
          f"{large['tiles']} vs {small['tiles']} tiles {mib(large['peak_worker_rss'])} vs "
          f"{mib(small['peak_worker_rss'])} MiB, ratio {ratio:.2f} (<= {TARGET_FLAT})")


if __name__ == "__main__":
    main()
