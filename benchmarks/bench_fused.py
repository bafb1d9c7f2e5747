"""The whole build (L0 + preview + overviews) against the L0-only build, on real-size tiles.

    python benchmarks/bench_fused.py [--tiles 16] [--cache DIR] [--repeat 2] [-j 2]

Issue 12's target 2: the whole build ≤ 1.3× the L0-only build, and the preview reading at
most 0.1× the L0 data back. In one run, interleaved:

1. ``zarr-build --no-rgb --no-stac`` (L0 only) and ``zarr-build --no-stac`` (the preview
   made in the shard tasks) as subprocesses at ``-j``: wall, CPU seconds of the process
   tree, peak worker RSS; then, for the record, the old order: L0 only followed by the
   separate ``rgb`` pass.
2. bytes read back: the whole build in this process on a thread pool, with every zarr
   LocalStore read of chunk data counted (``bench_preview.ReadCounter``) and every read of
   the build's own objects through ``Location`` (the level parts below the journal, any
   chunk), against the bytes of L0's stored embeddings and scales.
3. the fused worker's peak in raw shards above a fresh worker and above one with the
   compiled reduction loaded, as RSS and as private memory (``worker_memory``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
from bench_preview import ReadCounter  # noqa: E402

from geotessera.pipeline import zarr_build  # noqa: E402
from geotessera.store.location import Location  # noqa: E402
from geotessera.types import N_BANDS, shard_bytes  # noqa: E402


def build_cmd(archive: Path, out: Path, workers: int, preview: bool) -> list[str]:
    flags = ["--no-stac", "-q", "--json", "-j", str(workers)]
    return [*h.cli_prefix(), "zarr-build", str(archive), "-o", str(out), *flags,
            *([] if preview else ["--no-rgb"])]


def timed(cmds: list[list[str]]) -> dict:
    """Run ``cmds`` one after the other; their summed wall and CPU, the largest worker."""
    runs = [h.run_measured(c) for c in cmds]
    return {"wall_s": sum(r.wall_s for r in runs), "cpu_s": sum(r.cpu_s for r in runs),
            "peak_worker_mib": max(r.peak_worker_rss for r in runs) / 2**20,
            "peak_worker_anon_mib": max(r.peak_worker_anon for r in runs) / 2**20}


def interleaved(archive: Path, scratch: Path, workers: int, repeat: int) -> dict[str, dict]:
    """Best (lowest CPU) of ``repeat`` runs of each variant, the order rotating per round."""
    out = scratch / "out"

    def variants():
        yield "l0", [build_cmd(archive, out, workers, False)]
        yield "fused", [build_cmd(archive, out, workers, True)]
        yield "separate", [build_cmd(archive, out, workers, False),
                           [*h.cli_prefix(), "rgb", str(out), "-q", "--json", "-j",
                            str(workers), "--rgb-force"]]

    best: dict[str, dict] = {}
    for i in range(repeat):
        order = list(variants())
        for name, cmds in order[i % 3:] + order[:i % 3]:
            shutil.rmtree(out, ignore_errors=True)
            print(f"{name} ({i + 1}/{repeat})", file=sys.stderr, flush=True)
            fig = timed(cmds)
            if name not in best or fig["cpu_s"] < best[name]["cpu_s"]:
                best[name] = fig
    shutil.rmtree(out, ignore_errors=True)
    return best


def bytes_read_back(archive: Path, scratch: Path, workers: int) -> dict:
    """Chunk bytes read from the stores during a whole in-process build, per array, and the
    bytes of L0's stored data."""
    out = scratch / "counted"
    shutil.rmtree(out, ignore_errors=True)
    with ThreadPoolExecutor(workers) as pool, ReadCounter() as rc, _count_location(rc):
        zarr_build(archive, out, pool, catalog=False, max_in_flight=workers + 1)
    l0 = sum(p.stat().st_size for s in out.glob("utm*.zarr")
             for a in ("embeddings", "scales") for p in (s.resolve() / "L0" / a).rglob("*")
             if p.is_file() and p.name != "zarr.json")
    read = {k: v for k, v in sorted(rc.bytes.items())}
    shutil.rmtree(out, ignore_errors=True)
    return {"read_by_array": read, "read": sum(read.values()), "l0_stored": l0}


@contextmanager
def _count_location(rc: ReadCounter):
    """Count ``Location.read`` of level parts and chunk objects into ``rc`` (as
    ``parts/L2`` … and the array path), so part reads are read-back too."""
    real = Location.read

    def read(self, key):
        data = real(self, key)
        if key.startswith("parts/"):
            rc.bytes[key.rsplit("/", 1)[0]] += len(data)
        else:
            rc.add(key, data)
        return data

    Location.read = read
    try:
        yield
    finally:
        Location.read = real


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=16)
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("-j", "--workers", type=int, default=2)
    args = ap.parse_args(argv)
    archive = h.cached_archive(args.cache, args.tiles)
    h.run_measured([*h.cli_prefix(), "scan", str(archive), "--json", "-q"])
    h.warm_page_cache(archive)
    scratch = args.cache / "fused-runs"
    best = interleaved(archive, scratch, args.workers, args.repeat)
    reads = bytes_read_back(archive, scratch, args.workers)
    rows = [[name, f"{f['wall_s']:.1f}", f"{f['cpu_s']:.1f}",
             f"{f['cpu_s'] / best['l0']['cpu_s']:.2f}", f"{f['peak_worker_mib']:.0f}"]
            for name, f in best.items()]
    print(f"{args.tiles} tiles, -j {args.workers}, best of {args.repeat} by CPU")
    print(h.table(["variant", "wall s", "CPU s", "CPU / L0-only", "peak worker MiB"], rows))
    print(f"read back during the whole build: {reads['read'] / 2**20:.1f} MiB = "
          f"{reads['read'] / reads['l0_stored']:.3f} x L0's stored "
          f"{reads['l0_stored'] / 2**20:.1f} MiB")
    for key, n in reads["read_by_array"].items():
        print(f"  {key}: {n / 2**20:.1f} MiB")
    memory = worker_memory(best)
    print(memory["text"])
    (args.cache / "fused.json").write_text(json.dumps({"runs": best, "reads": reads,
                                                       "memory": memory}, indent=1))


#: What a pool worker imports before its first task, and the first call that loads the
#: compiled reduction (numba and its LLVM library) as the first fused task does.
WORKER_MODULES = ("multiprocessing.spawn", "geotessera.build.tasks")
LOAD_KERNEL = ("import numpy as np; from geotessera.preview.mean2x2 import mean2x2; "
               "mean2x2(np.zeros((2, 2, 2), np.int8), np.ones((2, 2), np.float32))")


def worker_memory(best: dict) -> dict:
    """The fused worker's peak in raw shards (1024² × 132 bytes) above a fresh worker, and
    above one that has also loaded the compiled reduction, as RSS and as private (anonymous:
    RSS − shared) memory. RSS also counts file pages: the memory-mapped tiles' resident
    pages (page cache, which the kernel may drop) and shared libraries."""
    raw = shard_bytes(1024, N_BANDS) / 2**20
    idle = [v / 2**20 for v in h.idle_rss(*WORKER_MODULES)]
    loaded = [v / 2**20 for v in h.idle_rss(*WORKER_MODULES, warm=LOAD_KERNEL)]
    peak = [best["fused"]["peak_worker_mib"], best["fused"]["peak_worker_anon_mib"]]
    lines = [f"fused worker peak {p:.0f} MiB {kind}; fresh worker {i:.0f}, with the compiled "
             f"reduction loaded {lo:.0f}; above them {(p - i) / raw:.2f} and "
             f"{(p - lo) / raw:.2f} raw shards ({raw:.0f} MiB each)"
             for kind, p, i, lo in zip(("RSS", "private"), peak, idle, loaded, strict=True)]
    return {"idle_mib": idle, "loaded_mib": loaded, "peak_mib": peak, "raw_shard_mib": raw,
            "text": "\n".join(lines)}


if __name__ == "__main__":
    main()
