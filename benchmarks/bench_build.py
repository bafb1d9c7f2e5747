"""zarr-build throughput and memory on real-size 10 m tiles, against a write floor.

    python benchmarks/bench_build.py [--tiles 16] [--cache DIR] [--out FILE] [--quick]
    python benchmarks/bench_build.py --flat 4,16,64 [--cache DIR] [--out FILE]

In one run: ``zarr-build --no-rgb --no-stac`` at -j 1 and -j 2 (wall, tiles/s, MB/s of
embedding input, peak RSS of the whole process tree), the floor (``_floor.py``: same bytes,
codec and processes, no mosaicking) and build/floor, memory per worker against one raw shard,
4 vs N tiles, and a layout sweep (shard, chunk, pixel/band-major at the default codec, then
zstd:3, the previous default, and zstd:1 at the default shape) on the 4-tile archive. The
CLI is ``$GEOTESSERA_CLI``, else ``geotessera-registry`` on PATH, else ``python -c`` (see
_harness.py).

``--flat`` measures only whether peak memory stays flat in zone size: one -j 2 build of the
default layout per archive size (64 tiles are 6.7 GB of tiles, generated once, and take some
ten minutes to build; so it is not part of the default run, which compares 4 and N tiles).

Other load on the machine makes single timings noisy, so the -j 2 runs are repeated
(``--repeat``), build and floor alternating, and the fastest of each is kept; cpu seconds of
the process tree are reported too, as they hardly depend on other load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _report  # noqa: E402

import numpy as np  # noqa: E402
import zarr  # noqa: E402

from geotessera.types import N_BANDS, StoreLayout  # noqa: E402

FLOOR = Path(__file__).resolve().parent / "_floor.py"
DEFAULT = StoreLayout()
#: The embeddings pass alone: the preview pass and STAC are bench_preview.py's business.
BUILD_FLAGS = ("--json", "-q", "--no-rgb", "--no-stac")
#: What a pool worker imports before its first task (the idle-worker baseline).
WORKER_MODULES = ("multiprocessing.spawn", "geotessera.store.zone")


def layout_args(layout: StoreLayout) -> list[str]:
    """The CLI (and floor) options that select ``layout``: ``--codec`` names the embeddings'
    codec (and, for zstd:N and none, every array's), ``--zstd-level`` that of the scales."""
    zstd = [] if layout.zstd_level is None else ["--zstd-level", str(layout.zstd_level)]
    return ["--shard-px", str(layout.shard_px), "--chunk-px", str(layout.chunk_px),
            "--scales-chunk-px", str(layout.scales_chunk_px), *zstd, "--codec", layout.codec,
            "--pixel-major" if layout.pixel_major else "--band-major"]


def layout_name(layout: StoreLayout) -> str:
    """``shard/chunk major codec``; zstd layouts keep the ``zN`` of the older tables."""
    major = "pix" if layout.pixel_major else "band"
    codec = f"z{layout.zstd_level}" if layout.codec.startswith("zstd:") else layout.codec
    return f"{layout.shard_px}/{layout.chunk_px} {major} {codec}"


def command(kind: str, archive: Path, out: Path, workers: int, layout: StoreLayout) -> list[str]:
    if kind == "build":
        head = [*h.cli_prefix(), "zarr-build", str(archive), "-o", str(out), *BUILD_FLAGS]
    else:
        head = [sys.executable, str(FLOOR), str(archive), str(out)]
    return [*head, "-j", str(workers), *layout_args(layout)]


def measure(kind: str, archive: Path, workers: int, layout: StoreLayout, scratch: Path,
            idle: int) -> dict:
    """Run one build or floor into a fresh directory; return its labelled figures."""
    out = scratch / f"{kind}-run"
    shutil.rmtree(out, ignore_errors=True)
    m = h.run_measured(command(kind, archive, out, workers, layout))
    doc = json.loads(m.stdout)
    store = doc["stores"][0] if kind == "build" else doc
    files = h.embedding_files(archive)
    bytes_in = sum(f.stat().st_size for f in files)  # the same figure for build and floor
    fig = {
        "kind": kind, "tiles": len(files), "workers": workers, "layout": asdict(layout),
        "name": layout_name(layout), "wall_s": m.wall_s, "walls": [m.wall_s],
        "store_s": store["seconds"], "bytes_in": bytes_in,
        "reported_bytes_in": store["bytes_in"], "tiles_per_s": len(files) / m.wall_s,
        "mb_per_s": bytes_in / m.wall_s / h.MB,
        "shards": store["shards_written"], "store_bytes": h.du_bytes(Path(store["path"])),
        "raw_shard_bytes": layout.shard_px**2 * (N_BANDS + 4), "idle_worker_rss": idle,
        **{k: v for k, v in asdict(m).items() if k not in ("stdout", "wall_s")},
    }
    shutil.rmtree(out, ignore_errors=True)
    return fig


def best_of(runs: list[dict]) -> dict:
    """The fastest run, carrying every run's wall time."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["walls"] = [round(r["wall_s"], 2) for r in runs]
    return best


def main_plan(quick: bool, repeat: int) -> list[tuple[int, StoreLayout, int]]:
    """(workers, layout, repeats): default layout at -j 1 once, both majors at -j 2 (the
    floor runs at each, so build/floor is checked at -j 1 and -j 2)."""
    other = replace(DEFAULT, pixel_major=not DEFAULT.pixel_major)
    return [*([] if quick else [(1, DEFAULT, 1)]), (2, DEFAULT, repeat), (2, other, repeat)]


def sweep_layouts(quick: bool) -> list[StoreLayout]:
    """Shard × chunk × major at the default codec, plus zstd:3 (the previous default) and
    zstd:1 at the default shape."""
    shards, chunks = ((512, 1024), (32,)) if quick else ((512, 1024, 2048), (32, 64))
    grid = [replace(DEFAULT, shard_px=s, chunk_px=c,
                    scales_chunk_px=min(DEFAULT.scales_chunk_px, s), pixel_major=pm)
            for s in shards for c in chunks for pm in (False, True)]
    return grid + ([] if quick else [replace(DEFAULT, pixel_major=pm).with_codec(codec)
                                     for codec in ("zstd:3", "zstd:1")
                                     for pm in (False, True)])


def prepare(cache: Path, n_tiles: int) -> dict[int, Path]:
    """Cached archives (N and 4 tiles), their registries, and a warm page cache."""
    archives = {n: h.cached_archive(cache, n, log=log) for n in sorted({n_tiles, 4})}
    for base in archives.values():
        h.run_measured([*h.cli_prefix(), "scan", str(base), "--json", "-q"])
        h.warm_page_cache(base)
    return archives


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine(load_before: float) -> dict:
    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "numpy": np.__version__, "zarr": zarr.__version__,
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def run_main(big: Path, n: int, plan, scratch: Path, idle: int) -> list[dict]:
    """Build and floor for every (workers, layout) of the plan, alternating, best of repeats."""
    results = []
    for workers, layout, repeat in plan:
        tries: dict[str, list[dict]] = {"build": [], "floor": []}
        for i in range(repeat):
            for kind in ("build", "floor") if i % 2 == 0 else ("floor", "build"):
                log(f"{kind} {layout_name(layout)} -j {workers} on {n} tiles ({i + 1}/{repeat})")
                tries[kind].append(measure(kind, big, workers, layout, scratch, idle))
        results += [best_of(tries["build"]), best_of(tries["floor"])]
    return results


def run_flat(cache: Path, counts: list[int], scratch: Path, idle: int) -> list[dict]:
    """One -j 2 build of the default layout per archive size, smallest first."""
    runs = []
    for n in sorted(counts):
        base = h.cached_archive(cache, n, log=log)
        h.run_measured([*h.cli_prefix(), "scan", str(base), "--json", "-q"])
        h.warm_page_cache(base)
        log(f"build {layout_name(DEFAULT)} -j 2 on {n} tiles (memory flatness)")
        runs.append(measure("build", base, 2, DEFAULT, scratch, idle))
        r = runs[-1]
        log(f"  {n} tiles: worker peak RSS {r['peak_worker_rss'] / h.MIB:.0f} MiB, tree "
            f"{r['peak_tree_rss'] / h.MIB:.0f} MiB, {r['cpu_s']:.0f} cpu s, {r['wall_s']:.0f} s")
    return runs


def main_flat(args, load_before: float) -> None:
    counts = [int(v) for v in args.flat.split(",")]
    idle = h.idle_rss(*WORKER_MODULES)[0]
    runs = run_flat(args.cache, counts, args.cache / "runs", idle)
    checks = _report.flat_targets(runs)
    info = machine(load_before)
    _report.print_flat(info, runs, checks)
    out_path = args.out or args.cache / "build-flat.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"machine": info, "cli": h.cli_prefix(),
                                    "idle_worker_rss": idle, "flat": runs, "targets": checks},
                                   indent=1))
    print(f"\nfigures written to {out_path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=16, help="tiles in the main archive")
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--out", type=Path, default=None, help="JSON figures [CACHE/build.json]")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each -j 2 build and floor")
    ap.add_argument("--quick", action="store_true", help="-j 2 only, smaller sweep, 1 repeat")
    ap.add_argument("--flat", default=None, metavar="N,N,...",
                    help="only peak memory against zone size: a -j 2 build per tile count")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]  # before any of our own work
    if args.flat:
        main_flat(args, load_before)
        return
    repeat = 1 if args.quick else max(1, args.repeat)
    scratch = args.cache / "runs"
    archives = prepare(args.cache, args.tiles)
    idle = h.idle_rss(*WORKER_MODULES)[0]
    main_runs = run_main(archives[args.tiles], args.tiles, main_plan(args.quick, repeat),
                         scratch, idle)
    log("build on 4 tiles (memory vs tiles)")
    small = measure("build", archives[4], 2, DEFAULT, scratch, idle)
    sweep = []
    for layout in sweep_layouts(args.quick):
        log(f"sweep {layout_name(layout)} -j 2 on 4 tiles")
        sweep.append(measure("build", archives[4], 2, layout, scratch, idle))
    big = next(r for r in main_runs if r["kind"] == "build" and r["workers"] == 2
               and r["name"] == layout_name(DEFAULT))
    checks = _report.targets(main_runs, small, big)
    info = machine(load_before)
    _report.print_report(info, main_runs, small, sweep, checks)
    out_path = args.out or args.cache / "build.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({
        "machine": info, "cli": h.cli_prefix(), "default_layout": asdict(DEFAULT),
        "idle_worker_rss": idle, "main": main_runs, "small": small, "sweep": sweep,
        "targets": checks,
    }, indent=1))
    print(f"\nfigures written to {out_path}")


if __name__ == "__main__":
    main()
