"""Shared benchmark plumbing: the CLI command, cached demo archives, timed subprocesses whose
whole process tree is sampled for memory, and small formatting helpers.

Memory is sampled with psutil every ``SAMPLE_S`` seconds over the child and all of its
descendants. ``rss`` counts file-backed pages too (memory-mapped tiles that are resident in the
page cache); ``anon`` is ``rss - shared``, roughly the private heap. Both are reported because
a build that reads tiles through ``mmap`` shows page-cache pages as its own RSS.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # an installed geotessera still wins; else use this checkout
    sys.path.append(str(REPO))

from geotessera.archive.demo import DemoSpec, write_demo_archive  # noqa: E402
from geotessera.tiles import EMBEDDINGS_DIR  # noqa: E402

SAMPLE_S = 0.02
#: Re-list the process tree every this many samples (listing costs ~1.5 ms; reading one
#: process's memory ~0.05 ms), so the sampler itself takes well under 1% of a core.
REFRESH_EVERY = 10
MB = 1e6
MIB = 2**20
CACHE_MARKER = "bench-archive.json"


# --- commands ----------------------------------------------------------------------------------


def cli_prefix() -> list[str]:
    """The ``geotessera-registry`` command: ``$GEOTESSERA_CLI`` if set, else the console script
    on PATH, else this interpreter running ``geotessera.cli.main``."""
    if os.environ.get("GEOTESSERA_CLI"):
        return shlex.split(os.environ["GEOTESSERA_CLI"])
    if found := shutil.which("geotessera-registry"):
        return [found]
    return [sys.executable, "-c", "from geotessera.cli import main; main()"]


def child_env() -> dict[str, str]:
    """Environment for children: this checkout importable (after any installed package)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO)]))
    return env


# --- cached archives ---------------------------------------------------------------------------


def block_spec(n_tiles: int, lon0: float = 0.2, lat0: float = 52.0) -> DemoSpec:
    """One-year, 10 m, 128-band spec of ``n_tiles`` tiles in a near-square block (rows × cols,
    rows the largest divisor of n not above √n), in one UTM zone (31 for the default corner)."""
    rows = max(d for d in range(1, int(n_tiles**0.5) + 1) if n_tiles % d == 0)
    cols = n_tiles // rows
    return DemoSpec(lon_min=lon0, lon_max=round(lon0 + cols / 10, 2), lat_min=lat0,
                    lat_max=round(lat0 + rows / 10, 2), years=(2024,), pixel_size=10.0,
                    bands=128, seed=0, missing_fraction=0.0)


def cached_archive(cache: Path, n_tiles: int, log=print) -> Path:
    """``cache/a{n}``, generated unless a marker with the same spec says it is complete."""
    return cached_spec_archive(cache, f"a{n_tiles}", block_spec(n_tiles), log)


def cached_spec_archive(cache: Path, name: str, spec: DemoSpec, log=print) -> Path:
    """``cache/name``: the archive of ``spec``, generated unless a marker with the same spec
    says it is complete."""
    base = Path(cache) / name
    marker = base / CACHE_MARKER
    want = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}
    if marker.exists() and json.loads(marker.read_text()) == want:
        return base
    shutil.rmtree(base, ignore_errors=True)
    log(f"generating the tiles of {name} in {base} (once; ~3 s per tile) ...")
    t0 = time.perf_counter()
    write_demo_archive(base, spec)
    marker.write_text(json.dumps(want, indent=1))
    log(f"  done in {time.perf_counter() - t0:.0f} s")
    return base


def embedding_files(base: Path) -> list[Path]:
    """Every tile-year's embeddings ``.npy`` (not the scales) under an archive base."""
    root = Path(base) / EMBEDDINGS_DIR
    return sorted(p for p in root.glob("*/grid_*/grid_*.npy") if not p.stem.endswith("_scales"))


def warm_page_cache(base: Path) -> int:
    """Read every file under ``base`` once so all runs see the same (warm) page cache."""
    total = 0
    for p in Path(base).rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while chunk := f.read(1 << 24):
                    total += len(chunk)
    return total


def built_stores(archive: Path, cache: Path) -> Path:
    """``cache/read-<archive>``: the archive built once with the CLI's default layout."""
    import zarr

    out = cache / f"read-{archive.name}"
    stores = sorted(out.glob("utm*_*.zarr"))
    if stores and all(zarr.open_group(str(s), mode="r").attrs.get("geotessera:build_complete")
                      for s in stores):
        return out
    print(f"building {archive} into {out} (once) ...", file=sys.stderr, flush=True)
    run_measured([*cli_prefix(), "zarr-build", str(archive), "-o", str(out), "-j", "2",
                  "--json", "-q", "--no-rgb", "--no-stac"])  # reads need L0 only
    return out


def random_points(store: Path, n: int, seed: int):
    """``n`` lon/lat points, an (n, 2) array, uniform inside the store's valid-data
    bounding box."""
    import numpy as np

    from geotessera.catalog.footprint import data_footprint, footprint_geojson
    from geotessera.store.location import Location
    from geotessera.store.meta import open_root, read_meta

    root = open_root(store)
    meta = read_meta(root, str(store))
    fp = data_footprint(Location.parse(store), root, meta)
    w, s, e, nn = footprint_geojson(meta.zone, fp.utm_bbox)[1]
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(w, e, n), rng.uniform(s, nn, n)])


def du_bytes(path: Path) -> int:
    """Allocated bytes on disk under ``path`` (like ``du -s``)."""
    return sum(p.lstat().st_blocks * 512 for p in Path(path).rglob("*") if p.is_file())


# --- timed, memory-sampled subprocesses --------------------------------------------------------


@dataclass
class Measured:
    """Wall time and memory peaks (bytes) of one subprocess tree, and its stdout."""

    wall_s: float
    cpu_s: float  # user + system seconds of the whole tree (robust to other load)
    peak_tree_rss: int
    peak_tree_anon: int
    peak_proc_rss: int  # the largest single process
    peak_worker_rss: int  # the largest pool worker (spawned child); 0 if none
    peak_worker_anon: int
    workers_seen: int
    samples: int
    stdout: str = field(repr=False, default="")


def _is_worker(proc: psutil.Process) -> bool:
    """A process-pool worker (spawn child), not the resource tracker."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "spawn_main" in cmd and "resource_tracker" not in cmd


class TreeSampler(threading.Thread):
    """Polls a process and its descendants; keeps peak sums and per-process peaks."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.stop = threading.Event()
        self.peak_rss = self.peak_anon = self.samples = 0
        self.proc_rss: dict[int, int] = {}
        self.proc_anon: dict[int, int] = {}
        self.worker: dict[int, bool] = {}
        self.procs: list[psutil.Process] = []

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(SAMPLE_S)

    def sample(self) -> None:
        if self.samples % REFRESH_EVERY == 0:
            try:
                self.procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
        rss = anon = 0
        for p in self.procs:
            try:
                m = p.memory_info()
            except psutil.Error:
                continue
            if p.pid not in self.worker:
                self.worker[p.pid] = p.pid != self.root.pid and _is_worker(p)
            rss, anon = rss + m.rss, anon + (m.rss - m.shared)
            self.proc_rss[p.pid] = max(self.proc_rss.get(p.pid, 0), m.rss)
            self.proc_anon[p.pid] = max(self.proc_anon.get(p.pid, 0), m.rss - m.shared)
        self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)
        self.samples += 1

    def result(self, wall: float, cpu: float, stdout: str) -> Measured:
        workers = [pid for pid, w in self.worker.items() if w]
        return Measured(
            wall_s=wall, cpu_s=cpu, peak_tree_rss=self.peak_rss, peak_tree_anon=self.peak_anon,
            peak_proc_rss=max(self.proc_rss.values(), default=0),
            peak_worker_rss=max((self.proc_rss[p] for p in workers), default=0),
            peak_worker_anon=max((self.proc_anon[p] for p in workers), default=0),
            workers_seen=len(workers), samples=self.samples, stdout=stdout,
        )


def run_measured(cmd: list[str], cwd: Path = REPO) -> Measured:
    """Run ``cmd`` to completion, timing it and sampling its process tree; raise on failure
    with the child's stderr. CPU time comes from RUSAGE_CHILDREN, which includes every
    descendant that was waited for (pool workers are, by the child)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as errf:
        cpu0 = _children_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=errf, cwd=cwd, env=child_env())
        sampler = TreeSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        wall = time.perf_counter() - t0
        cpu = _children_cpu() - cpu0
        sampler.stop.set()
        sampler.join()
        out.seek(0)
        errf.seek(0)
        if code != 0:
            raise RuntimeError(f"exit {code}: {shlex.join(cmd)}\n{errf.read()[-4000:]}")
        return sampler.result(wall, cpu, out.read())


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --- formatting --------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain fixed-width table (first column left-aligned, the rest right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(r, widths)))

    rule = ["-" * w for w in widths]
    return "\n".join(line(r) for r in [cells[0], rule, *cells[1:]])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def idle_rss(*modules: str, warm: str = "") -> tuple[int, int]:
    """(rss, anon) of a fresh interpreter that has imported ``modules`` and then run the
    statements ``warm`` (e.g. a first call that loads a compiled kernel): the fixed cost of
    a pool worker before it holds any shard."""
    code = ("import importlib, sys, psutil\n"
            "for m in sys.argv[1:]: importlib.import_module(m)\n"
            f"{warm}\n"
            "m = psutil.Process().memory_info(); print(m.rss, m.rss - m.shared)")
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True,
                         check=True, env=child_env(), cwd=REPO).stdout.split()
    return int(out[0]), int(out[1])
