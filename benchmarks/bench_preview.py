"""Preview pass (``rgb``) on real-size 10 m stores: time, bytes read, peak memory, per level.

    python benchmarks/bench_preview.py [--tiles 16] [--cache DIR] [--out FILE] [-j 2]

Stores are built once per archive with ``zarr-build`` (cached under CACHE/preview). Then:

1. bytes: the pass runs in this process on a thread pool with zarr's LocalStore reads
   counted per array and per phase (sampling, L0 colour, each overview level), next to
   the bytes the chosen bands alone would take. Embedding chunks hold every band, so
   reading three bands decodes whole chunks; the figures say so rather than hide it.
2. time and memory: ``geotessera-registry rgb --rgb-force`` as a subprocess, its whole
   process tree sampled (``_harness.run_measured``); per-level seconds from its JSON.
3. scaling: peak RSS of the pass on the N-tile archive against the 4-tile one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

import zarr  # noqa: E402
from zarr.storage import LocalStore  # noqa: E402

from geotessera.preview.overviews import build_overviews  # noqa: E402
from geotessera.preview.run import colour_level0, find_stores, year_stretch  # noqa: E402

TARGET_GROWTH = 1.25  # peak RSS, N tiles / 4 tiles ("does not grow", with noise)


# --- counting reads ----------------------------------------------------------------------------


class ReadCounter:
    """Counts bytes returned by every LocalStore read, keyed by array path (``L0/scales``)."""

    def __init__(self) -> None:
        self.bytes: Counter[str] = Counter()
        self._get, self._partial = LocalStore.get, LocalStore.get_partial_values

    def __enter__(self) -> ReadCounter:
        counter, get, partial = self, self._get, self._partial

        async def counted_get(store, key, prototype=None, byte_range=None):
            buf = await get(store, key, prototype, byte_range)
            counter.add(key, buf)
            return buf

        async def counted_partial(store, prototype, key_ranges):
            key_ranges = list(key_ranges)
            bufs = await partial(store, prototype, key_ranges)
            for (key, _), buf in zip(key_ranges, bufs):
                counter.add(key, buf)
            return bufs

        LocalStore.get, LocalStore.get_partial_values = counted_get, counted_partial
        return self

    def __exit__(self, *exc) -> None:
        LocalStore.get, LocalStore.get_partial_values = self._get, self._partial

    def add(self, key: str, buf) -> None:
        if buf is not None and "/c/" in key:  # chunk and shard data, not metadata
            self.bytes[key.split("/c/")[0]] += len(buf)

    def snapshot(self) -> Counter[str]:
        return Counter(self.bytes)


def measure_bytes(stores_dir: Path, workers: int) -> dict:
    """Run the pass's phases in-process with reads counted; return bytes per phase/array."""
    infos = find_stores(stores_dir)
    infos = [i for i in infos if i.year == infos[0].year]  # one stretch per year
    phases: dict[str, dict[str, int]] = {}
    with ThreadPoolExecutor(workers) as pool, ReadCounter() as rc:
        def phase(name: str, fn) -> None:
            before = rc.snapshot()
            t0 = time.perf_counter()
            fn()
            diff = rc.snapshot() - before
            phases[name] = {**dict(diff), "_seconds": round(time.perf_counter() - t0, 3)}

        result = {}
        phase("sample", lambda: result.update(stretch=year_stretch(infos, pool)))
        for info in infos:
            phase(f"{info.name} L0 colour",
                  lambda i=info: colour_level0(i, result["stretch"], pool,
                                               max_in_flight=workers + 1))
            phase(f"{info.name} overviews",
                  lambda i=info: build_overviews(i.path, pool, i.shards,
                                                 max_in_flight=workers + 1))
    return {"phases": phases, "stretch": result["stretch"].to_attrs(),
            "l0": [l0_sizes(Path(i.path)) for i in infos]}


def l0_sizes(store: Path) -> dict:
    """Stored and raw sizes of L0 (raw = decoded int8 of the valid-shard footprint)."""
    emb = zarr.open_array(str(store / "L0" / "embeddings"), mode="r")
    return {"store": store.name, "bands": emb.shape[0], "shard_px": emb.shards[1],
            "chunk_px": emb.chunks[1], "embeddings_stored": h.du_bytes(store / "L0" / "embeddings"),
            "scales_stored": h.du_bytes(store / "L0" / "scales")}


# --- stores ------------------------------------------------------------------------------------


def build_stores(archive: Path, out: Path, workers: int, log) -> Path:
    """``zarr-build`` the archive into ``out`` unless complete stores are already there."""
    done = out.exists() and all(
        zarr.open_group(str(s), mode="r").attrs.get("geotessera:build_complete") is True
        for s in out.glob("*.zarr")) and any(out.glob("*.zarr"))
    if done:
        return out
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*h.cli_prefix(), "zarr-build", str(archive), "-o", str(out), "-j", str(workers),
           "--json", "-q"]
    if "--no-rgb" in subprocess.run([*h.cli_prefix(), "zarr-build", "--help"], env=h.child_env(),
                                    capture_output=True, text=True).stdout:
        cmd.append("--no-rgb")
    log(f"building stores of {archive.name} into {out} ...")
    h.run_measured(cmd)
    return out


def measure_pass(stores_dir: Path, workers: int) -> dict:
    """The CLI pass as a subprocess: wall, memory of the tree, its JSON report."""
    m = h.run_measured([*h.cli_prefix(), "rgb", str(stores_dir), "-j", str(workers),
                        "--rgb-force", "--json", "-q"])
    doc = json.loads(m.stdout)
    return {"wall_s": m.wall_s, "peak_tree_rss": m.peak_tree_rss,
            "peak_tree_anon": m.peak_tree_anon, "peak_worker_rss": m.peak_worker_rss,
            "peak_worker_anon": m.peak_worker_anon, "workers_seen": m.workers_seen,
            "sample_seconds": doc["sample_seconds"], "stores": doc["stores"]}


# --- report ------------------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / h.MIB:.1f}"


def bytes_rows(b: dict) -> list[list[object]]:
    """Per phase: bytes read from L0 embeddings/scales/rgba and from overview levels."""
    rows = []
    for name, got in b["phases"].items():
        l0 = {k: v for k, v in got.items() if k.startswith("L0/")}
        other = sum(v for k, v in got.items() if not k.startswith(("L0/", "_")))
        rows.append([name, mib(l0.get("L0/embeddings", 0)), mib(l0.get("L0/scales", 0)),
                     mib(l0.get("L0/rgba", 0)), mib(other), f"{got['_seconds']:.2f}"])
    return rows


def level_rows(run: dict) -> list[list[object]]:
    rows = []
    for s in run["stores"]:
        for lv in s["levels"]:
            rows.append([f"{Path(s['store']).name} L{lv['level']}",
                         f"{lv['shape'][0]}x{lv['shape'][1]}", lv["shards"],
                         f"{lv['seconds']:.2f}"])
    return rows


def report(runs: dict[int, dict], n_tiles: int, checks: list[dict]) -> None:
    big = runs[n_tiles]
    print(f"preview pass benchmark (rgb, bands mode)  cpus={len(os.sched_getaffinity(0))}")
    print("\nbytes read (MiB; counted at zarr's LocalStore; in-process, thread pool)")
    print(h.table(["phase", "L0/embeddings", "L0/scales", "L0/rgba", "L1+ levels", "s"],
                  bytes_rows(big["bytes"])))
    for s in big["bytes"]["l0"]:
        print(f"  {s['store']}: L0 embeddings stored {mib(s['embeddings_stored'])} MiB, "
              f"scales {mib(s['scales_stored'])} MiB; {s['bands']} bands per inner chunk "
              f"({s['chunk_px']}px), so 3 bands cost whole chunks")
    print("\ntime and memory (subprocess `rgb -j N --rgb-force`; MiB)")
    rows = [[f"{n} tiles", f"{r['pass']['wall_s']:.1f}", mib(r["pass"]["peak_tree_rss"]),
             mib(r["pass"]["peak_tree_anon"]), mib(r["pass"]["peak_worker_rss"]),
             mib(r["pass"]["peak_worker_anon"]),
             ", ".join(f"{y}: {t:.1f}" for y, t in r["pass"]["sample_seconds"].items())]
            for n, r in sorted(runs.items())]
    print(h.table(["archive", "wall s", "tree RSS", "tree anon", "worker RSS", "worker anon",
                   "sample s"], rows))
    print(f"\nseconds per level ({n_tiles} tiles)")
    print(h.table(["store level", "shape", "shards", "s"], level_rows(big["pass"])))
    print("\ntargets")
    for c in checks:
        print(f"  {h.verdict(c['ok'])}  {c['target']}: {c['value']}")


def targets(runs: dict[int, dict], n_tiles: int) -> list[dict]:
    small, big = runs[4]["pass"], runs[n_tiles]["pass"]
    out = []
    for key in ("peak_tree_rss", "peak_worker_rss"):
        g = big[key] / small[key]
        out.append({"target": f"{key} {n_tiles} vs 4 tiles <= {TARGET_GROWTH}x "
                              f"({mib(big[key])} vs {mib(small[key])} MiB)",
                    "value": round(g, 2), "ok": g <= TARGET_GROWTH})
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=16, help="tiles in the main archive")
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--out", type=Path, default=None, help="JSON figures [CACHE/preview.json]")
    ap.add_argument("-j", "--workers", type=int, default=2)
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    runs: dict[int, dict] = {}
    for n in sorted({4, args.tiles}):
        archive = h.cached_archive(args.cache, n, log=log)
        h.run_measured([*h.cli_prefix(), "scan", str(archive), "--json", "-q"])
        stores = build_stores(archive, args.cache / "preview" / f"a{n}", args.workers, log)
        log(f"{n} tiles: counting bytes read (in-process)")
        counted = measure_bytes(stores, args.workers)
        log(f"{n} tiles: timing `rgb` (subprocess)")
        runs[n] = {"tiles": n, "bytes": counted, "pass": measure_pass(stores, args.workers)}
    checks = targets(runs, args.tiles)
    report(runs, args.tiles, checks)
    out = args.out or args.cache / "preview.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "targets": checks}, indent=1, default=str))
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
