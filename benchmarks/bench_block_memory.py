"""Peak memory of ONE fused block task (``build.tasks.write_shard``) on real-size tiles, by phase.

    python benchmarks/bench_block_memory.py [--cache DIR] [--block R,C] [--repeat N]
                                            [--scratch DIR] [--env KEY=VALUE ...]

Issue 12's memory target is "≤ 2 raw shards of working set per worker" (a raw 1024² × 128
shard with its scales is 132 MiB). The store of the cached 16-tile archive (``a16``) is
created once under ``--scratch`` (metadata only, as the build creates it, with L1 and L2);
then the block's task runs in a fresh interpreter, twice:

1. untraced: the RSS high-water mark (``VmHWM``, reset per phase through
   ``/proc/self/clear_refs``) and ``ru_maxrss`` of the whole task, against the RSS of the
   interpreter after its imports (the idle worker);
2. under ``tracemalloc`` (numpy reports its buffers to it): the traced peak per phase, and the
   largest live allocations (by line) at the task's traced peak, snapshotted from a thread.

Phases are the task's calls, wrapped in the module's namespace: assemble, colour, write L0,
reduce L1 / L2 (``reduce_window``), encode L1 quarter, write L1, write part. Time between
wrapped calls is reported as "between". ``--repeat`` runs the block that many times in the
same interpreter (a worker runs several blocks: fragmentation shows up there).

A pixel-major L0 shard lives in an anonymous mapping (``assemble._pages``), which tracemalloc
does not see: its 128 MiB are in the RSS columns, not in the traced ones.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

MIB = 2**20
PHASES = {  # name in build.tasks → label (reduce_window is split by the input's size)
    "assemble": "assemble", "_colour": "colour", "reduce_window": "reduce",
    "encode_embeddings_part": "encode L1 quarter", "pack_part": "pack part",
}


def prepare(archive: Path, scratch: Path, block: tuple[int, int]) -> Path:
    """Create the store (once) and pickle the block's task; returns the pickle's path."""
    from geotessera.archive import registry
    from geotessera.build.plan import block_tasks, plan_zones
    from geotessera.build.run import _with_parts
    from geotessera.build.tasks import FusedPreview
    from geotessera.preview.overviews import pyramid
    from geotessera.preview.run import begin_fused
    from geotessera.preview.stretch import Stretch
    from geotessera.store.location import Location
    from geotessera.store.zone import create_zone_store
    from geotessera.types import Level, StoreLayout

    layout = StoreLayout()
    (plan,) = plan_zones(registry.load(archive / "registry.parquet"), layout)
    levels = pyramid(Level("L0", plan.grid.pixels), layout.shard_px)
    store, parts = Location.parse(scratch / "store.zarr"), Location.parse(scratch / "parts")
    stretch = Stretch("bands", (0, 1, 2), (-0.1,) * 3, (0.1,) * 3, 0, 0, 0)
    if not (scratch / "store.zarr" / "L2").exists():
        create_zone_store(store, plan.grid.pixels, plan.bands, layout, {})
        begin_fused(store, stretch, 2 if _with_parts(levels, layout) else 1)
    (scratch / "parts").mkdir(parents=True, exist_ok=True)
    fused = FusedPreview(stretch, levels[1].shape, parts)
    (task,) = [t for t in block_tasks(plan, archive, store, layout, fused)
               if (t.row, t.col) == block]
    path = scratch / f"block_{block[0]}_{block[1]}.pkl"
    path.write_bytes(pickle.dumps(task))
    return path


# --- the child -----------------------------------------------------------------------------------


def _hwm_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


class Phases:
    """Per-phase RSS high-water marks (untraced) or tracemalloc peaks (traced)."""

    def __init__(self, traced: bool) -> None:
        self.traced, self.rows, self.depth = traced, [], 0
        self.top: list = []
        self.peak = 0

    def mark(self, label: str) -> None:
        """Close the interval since the last mark under ``label``, start a new one."""
        if self.traced:
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            self.rows.append((label, peak, cur))
        else:
            self.rows.append((label, _status("VmHWM"), _status("VmRSS")))
            _hwm_reset()

    def wrap(self, fn, label):
        def wrapped(*args, **kwargs):
            if self.depth:  # nested in another wrapped call: counted there
                return fn(*args, **kwargs)
            self.mark("between")
            self.depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                name = label(args, kwargs) if callable(label) else label
                self.mark(name)
        return wrapped


def _write_label(args, kwargs) -> str:
    return f"write {kwargs.get('level', 'L0')}"


def _reduce_label(args, kwargs) -> str:
    return "reduce L1" if args[1].shape[1] > 600 else "reduce L2"  # from L0's width or L1's


def _watch(phases: Phases, stop: threading.Event) -> None:
    """Snapshot the live allocations whenever the traced total reaches a new high."""
    best = 0
    while not stop.wait(0.002):
        cur, _ = tracemalloc.get_traced_memory()
        if cur > best + 4 * MIB:
            best = cur
            snap = tracemalloc.take_snapshot()
            phases.top = [(" < ".join(f"{Path(f.filename).name}:{f.lineno}"
                                      for f in s.traceback), s.size, s.count)
                          for s in snap.statistics("traceback")[:12]]
            phases.peak = cur


def child(task_path: Path, traced: bool, repeat: int) -> None:
    import geotessera.build.tasks as tasks

    task = pickle.loads(task_path.read_bytes())
    idle = _status("VmRSS")
    phases = Phases(traced)
    for name, label in PHASES.items():
        setattr(tasks, name, phases.wrap(getattr(tasks, name),
                                         _reduce_label if name == "reduce_window" else label))
    tasks.write_shard_arrays = phases.wrap(tasks.write_shard_arrays, _write_label)
    stop = threading.Event()
    if traced:
        tracemalloc.start(4)
        threading.Thread(target=_watch, args=(phases, stop), daemon=True).start()
    _hwm_reset()
    t0 = time.perf_counter()
    for _ in range(repeat):
        tasks.write_shard(task)
        phases.mark("between")
    stop.set()
    print(json.dumps({"idle": idle, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                      * 1024, "rows": phases.rows, "top": phases.top, "peak": phases.peak,
                      "seconds": time.perf_counter() - t0, "shards": len(task.specs)}))


# --- the parent ----------------------------------------------------------------------------------


def run_child(task: Path, traced: bool, repeat: int, env: dict[str, str]) -> dict:
    cmd = [sys.executable, __file__, "--child", str(task), "--repeat", str(repeat)]
    out = subprocess.run([*cmd, *(["--traced"] if traced else [])], capture_output=True,
                         text=True, env={**h.child_env(), **env}, cwd=h.REPO)
    if out.returncode:
        raise RuntimeError(out.stderr[-4000:])
    return json.loads(out.stdout.splitlines()[-1])


def report(untraced: dict, traced: dict) -> None:
    idle = untraced["idle"]
    hwm = max(r[1] for r in untraced["rows"])
    print(f"{untraced['shards']} L0 shards, {untraced['seconds']:.1f} s untraced; idle RSS "
          f"{idle / MIB:.0f} MiB; peak RSS {hwm / MIB:.0f} MiB (ru_maxrss "
          f"{untraced['maxrss'] / MIB:.0f}) = {(hwm - idle) / MIB:.0f} MiB above idle = "
          f"{(hwm - idle) / (132 * MIB):.2f} raw shards")
    rows: dict[tuple[int, str], list] = {}  # per (shard, phase): the largest peaks
    shard = 0
    for u, t in zip(untraced["rows"], traced["rows"], strict=True):
        shard += u[0] == "assemble"
        row = rows.setdefault((shard, u[0]), [0, 0, 0, 0])
        row[:] = max(row[0], u[1]), u[2], max(row[2], t[1]), t[2]
    rows = [[f"{k[0]} {k[1]}", f"{r[0] / MIB:.0f}", f"{(r[0] - idle) / MIB:.0f}",
             f"{r[1] / MIB:.0f}", f"{r[2] / MIB:.0f}", f"{r[3] / MIB:.0f}"]
            for k, r in rows.items()]
    print(h.table(["shard phase", "RSS peak", "above idle", "RSS after", "traced peak",
                   "traced after"], rows))
    print(f"largest live allocations at the traced peak ({traced['peak'] / MIB:.0f} MiB):")
    for where, size, count in traced["top"]:
        print(f"  {size / MIB:7.1f} MiB in {count:5d}  {where}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench",
                    help="holds a16 (the 16-tile archive with its registry)")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/bench-block-memory"))
    ap.add_argument("--block", default="0,0")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the child")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.traced, args.repeat)
    block = tuple(int(v) for v in args.block.split(","))
    task = prepare(args.cache / "a16", args.scratch, block)
    env = dict(kv.split("=", 1) for kv in args.env)
    report(run_child(task, False, args.repeat, env), run_child(task, True, args.repeat, env))


if __name__ == "__main__":
    main()
