"""zarr-build on a dask.distributed LocalCluster against the local spawn pool, and the memory
one shard task needs.

    python benchmarks/bench_cluster.py [--cache DIR] [--repeat 2] [--out FILE]

In one run, on the 40 m demo archive (``demo-data`` defaults: two zones, two years, 1024 px
shards of 128 bands): ``zarr-build --no-rgb --no-stac`` with ``-j 2`` on the local pool and
with ``--scheduler`` on a LocalCluster of 2 worker processes × 1 thread (the same cores),
alternating, fastest of ``--repeat`` each; cluster/local as a ratio of wall time; whether the
two builds are byte-identical; and the peak RSS of one shard task run alone in a fresh
process, against the raw shard (``shard_px² × (bands + 4)`` bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

from geotessera.archive.demo import DemoSpec, write_demo_archive  # noqa: E402

BUILD_FLAGS = ("--json", "-q", "--no-rgb", "--no-stac")
WORKERS = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo_archive(cache: Path) -> Path:
    """The ``demo-data`` archive with its default spec (40 m), generated once into ``cache``."""
    spec = DemoSpec()
    base = cache / "demo40"
    marker = base / h.CACHE_MARKER
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    if not (marker.exists() and json.loads(marker.read_text()) == want):
        shutil.rmtree(base, ignore_errors=True)
        log(f"generating the 40 m demo archive in {base} (once) ...")
        write_demo_archive(base, spec)
        marker.write_text(json.dumps(want, indent=1))
    return base


def stores_digest(out: Path) -> dict[str, str]:
    """sha256 of every store object; zarr.json without the build time and version."""
    digest = {}
    for p in sorted(out.glob("*.zarr/**/*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "zarr.json":
                data = json.dumps(_strip(json.loads(data)), sort_keys=True).encode()
            digest[str(p.relative_to(out))] = hashlib.sha256(data).hexdigest()
    return digest


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items()
                if k not in ("geotessera:build_time", "geotessera:version")}
    return [_strip(v) for v in doc] if isinstance(doc, list) else doc


def build(archive: Path, out: Path, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    m = h.run_measured([*h.cli_prefix(), "zarr-build", str(archive), "-o", str(out),
                        *BUILD_FLAGS, *extra])
    doc = json.loads(m.stdout)
    return {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "shards": sum(
        s["shards_written"] for s in doc["stores"]), "digest": stores_digest(out)}


def compare(archive: Path, scratch: Path, repeat: int) -> dict:
    """Local pool and LocalCluster builds, alternating; fastest of each."""
    from distributed import LocalCluster

    t0 = time.perf_counter()
    with LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None,
                      worker_dashboard_address=None) as cluster:
        startup = time.perf_counter() - t0
        runs: dict[str, list[dict]] = {"local": [], "cluster": []}
        args = {"local": ["-j", str(WORKERS)],
                "cluster": ["--scheduler", cluster.scheduler_address]}
        for i in range(repeat):
            for kind in ("local", "cluster") if i % 2 == 0 else ("cluster", "local"):
                log(f"{kind} build ({i + 1}/{repeat})")
                runs[kind].append(build(archive, scratch / kind, args[kind]))
    best = {k: min(v, key=lambda r: r["wall_s"]) for k, v in runs.items()}
    return {"cluster_startup_s": startup, "runs": {k: [r["wall_s"] for r in v]
                                                   for k, v in runs.items()},
            "local": best["local"], "cluster": best["cluster"],
            "identical": all(r["digest"] == best["local"]["digest"]
                             for v in runs.values() for r in v)}


TASK_RUNNER = """
import pickle, resource, sys, psutil
from geotessera.build.tasks import write_shard
task = pickle.load(open(sys.argv[1], "rb"))
idle = psutil.Process().memory_info().rss
write_shard(task)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(idle, peak)
"""


def shard_task_memory(archive: Path, scratch: Path) -> dict:
    """Peak RSS of one full shard task (the non-empty shard with the most tile pieces) run
    alone in a fresh interpreter, and the RSS of that interpreter before the task."""
    from concurrent.futures import ThreadPoolExecutor

    from geotessera.archive.scan import scan_archive
    from geotessera.build.plan import plan_zones, shard_tasks
    from geotessera.store.location import Location
    from geotessera.store.zone import create_zone_store
    from geotessera.types import StoreLayout

    layout = StoreLayout()
    with ThreadPoolExecutor(4) as pool:
        records = scan_archive(archive, pool).records
    plan = plan_zones([r for r in records if r.year == 2024 and r.zone == 31], layout)[0]
    store = scratch / "memory.zarr"
    shutil.rmtree(store, ignore_errors=True)
    create_zone_store(store, plan.grid.pixels, plan.bands, layout, {})
    task = max(shard_tasks(plan, archive, Location.parse(store), layout),
               key=lambda t: len(t.spec.pieces))
    path = scratch / "task.pickle"
    path.write_bytes(pickle.dumps(task))
    out = subprocess.run([sys.executable, "-c", TASK_RUNNER, str(path)], capture_output=True,
                         text=True, check=True, env=h.child_env()).stdout.split()
    idle, peak = int(out[0]), int(out[1])
    raw = layout.shard_px**2 * (plan.bands + 4)
    return {"shard_px": layout.shard_px, "bands": plan.bands, "pieces": len(task.spec.pieces),
            "idle_rss": idle, "peak_rss": peak, "raw_shard_bytes": raw,
            "task_shards": (peak - idle) / raw}


def report(cmp: dict, mem: dict) -> str:
    loc, clu = cmp["local"], cmp["cluster"]
    ratio = clu["wall_s"] / loc["wall_s"]
    lines = [
        h.table(["executor", "shards", "wall s (best)", "all walls s", "cpu s (driver tree)"], [
            ["local spawn pool -j 2", loc["shards"], f"{loc['wall_s']:.1f}",
             " ".join(f"{w:.1f}" for w in cmp["runs"]["local"]), f"{loc['cpu_s']:.1f}"],
            ["LocalCluster 2x1 --scheduler", clu["shards"], f"{clu['wall_s']:.1f}",
             " ".join(f"{w:.1f}" for w in cmp["runs"]["cluster"]), f"{clu['cpu_s']:.1f}"],
        ]),
        "",
        f"cluster / local wall time: {ratio:.2f}  (cluster startup {cmp['cluster_startup_s']:.1f} s, "
        f"not included)",
        f"byte-identical stores (every run): {h.verdict(cmp['identical'])}",
        "",
        f"one shard task ({mem['shard_px']} px, {mem['bands']} bands, {mem['pieces']} tile "
        f"pieces): idle RSS {mem['idle_rss'] / h.MIB:.0f} MiB, peak RSS "
        f"{mem['peak_rss'] / h.MIB:.0f} MiB; raw shard {mem['raw_shard_bytes'] / h.MIB:.0f} MiB; "
        f"(peak - idle) / raw shard = {mem['task_shards']:.2f}",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Also write the figures as JSON.")
    args = ap.parse_args()
    archive = demo_archive(args.cache)
    h.run_measured([*h.cli_prefix(), "scan", str(archive), "--json", "-q"])
    h.warm_page_cache(archive)
    scratch = args.cache / "cluster-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    cmp = compare(archive, scratch, args.repeat)
    mem = shard_task_memory(archive, scratch)
    print(f"bench_cluster: 40 m demo archive, {os.cpu_count()} CPUs, load average "
          f"{load:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(report(cmp, mem))
    if args.out:
        for k in ("local", "cluster"):
            cmp[k].pop("digest")
        args.out.write_text(json.dumps({"compare": cmp, "memory": mem}, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
