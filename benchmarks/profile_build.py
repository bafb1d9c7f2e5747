"""Where a build's CPU goes: the L0-only and the whole build, serial, under cProfile.

    python benchmarks/profile_build.py [--tiles 16] [--cache DIR] [--top 0]

A diagnostic, not a target (not in ``make bench``): both builds of the cached real-size
archive run in this process on one thread (every shard task and every chunk encoder inline,
so each figure is one thread's time and nothing overlaps), and the cumulative seconds of the
stages named in ``STAGES`` are printed side by side, with the whole build's excess over
L0-only. Figures are cProfile's, wall clock of one thread: about 10 % above the CPU the
same build takes unprofiled, and ``fsync`` is waiting, not CPU. ``--top N`` also prints the
N largest own-time functions of the whole build.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from concurrent.futures import Executor, Future
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

from geotessera.pipeline import PreviewOptions, zarr_build  # noqa: E402
from geotessera.store import shardio  # noqa: E402

#: label → (file name, function name): the cumulative time of every such function summed
#: (a stage's own callees are inside it; the stages below overlap where they nest).
STAGES = {
    "assemble the shard from the tiles": ("assemble.py", "assemble"),
    "encode inner chunks (every level)": ("shardio.py", "encode"),
    "fsync (waiting)": ("~", "<built-in method posix.fsync>"),
    "colour L0": ("tasks.py", "_colour"),
    "reduce L0 to L1 and L1 to L2": ("overviews.py", "reduce_window"),
    "  of which the 2x2 mean (compiled)": ("mean2x2.py", "mean2x2"),
    "  of which the rgba mean": ("overviews.py", "reduce_rgba"),
    "keep L1 rows (L2 reduce, pack, L1 encode)": ("tasks.py", "_keep"),
    "write L1 (scales, rgba, shard)": ("tasks.py", "write"),
    "write the L2 part": ("tasks.py", "write_part"),
    "join L2, make L3+ from parts": ("parts.py", "join_levels"),
    "fit the stretch on tiles": ("tilesample.py", "sample_tile"),
}


class Inline(Executor):
    """Runs each task as it is submitted, on this thread."""

    def submit(self, fn, /, *args, **kwargs):
        f: Future = Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            f.set_exception(e)
        return f


def profiled(archive: Path, out: Path, preview: bool) -> tuple[float, pstats.Stats]:
    shutil.rmtree(out, ignore_errors=True)
    prof = cProfile.Profile()
    t0 = time.process_time()
    prof.enable()
    zarr_build(archive, out, Inline(), catalog=False,
               preview=PreviewOptions() if preview else None)
    prof.disable()
    return time.process_time() - t0, pstats.Stats(prof)


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for (file, _, fn), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, (f, name) in STAGES.items():
            if fn == name and (f == "~" or file.endswith(f)):
                out[label] += cum
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--top", type=int, default=0)
    args = ap.parse_args(argv)
    archive = h.cached_archive(args.cache, args.tiles)
    serial = shardio._ordered_map
    shardio._ordered_map = lambda fn, items, threads: serial(fn, items, 1)  # one thread
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        h.warm_page_cache(archive)
        profiled(archive, Path(tmp) / "warm", True)  # imports and the compiled loop loaded
        l0_cpu, l0 = profiled(archive, Path(tmp) / "l0", False)
        all_cpu, whole = profiled(archive, Path(tmp) / "whole", True)
    a, b = stage_seconds(l0), stage_seconds(whole)
    rows = [[k, f"{a[k]:.2f}", f"{b[k]:.2f}", f"{b[k] - a[k]:+.2f}"] for k in STAGES]
    rows.append(["process CPU (profiled)", f"{l0_cpu:.2f}", f"{all_cpu:.2f}",
                 f"{all_cpu - l0_cpu:+.2f}"])
    print(f"{args.tiles} tiles, one thread, cProfile cumulative seconds")
    print(h.table(["stage", "L0 only", "whole build", "excess"], rows))
    print(f"whole / L0 only: {all_cpu / l0_cpu:.2f} x (profiled CPU)")
    if args.top:
        whole.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
