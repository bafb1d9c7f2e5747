"""zarr-build: registry → per-(zone, year) plans → one store per plan, shard by shard.

The library reports progress through an optional callback and never draws anything.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from .assemble import PieceSource, ShardSpec
from .errors import GridError, NoTilesError, ShardWriteError, TileProblemsError
from .parallel import TaskFailed, imap_unordered
from .publish import (
    StorePaths,
    acquire_lock,
    check_writable,
    journal_shard,
    publish,
    recover,
    release_lock,
    start_journal,
)
from .registry import TileRecord
from .store import (
    ShardResult,
    ShardTask,
    consolidate,
    create_zone_store,
    store_name,
    update_root_attrs,
    write_shard,
)
from .types import StoreLayout
from .zonegrid import ShardIndexEntry, ZoneGrid, shard_index, zone_grid


@dataclass(frozen=True, slots=True)
class Progress:
    """A progress event: ``done`` of ``total`` items of ``label`` (a scan or a store)."""

    label: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class ZonePlan:
    """Everything needed to build one store, computed without touching pixels."""

    zone: int
    year: int
    grid: ZoneGrid
    bands: int
    tiles: tuple[TileRecord, ...]
    shards: tuple[ShardIndexEntry, ...]

    @property
    def store_name(self) -> str:
        return store_name(self.zone, self.year)

    def summary(self) -> dict[str, Any]:
        g, s = self.grid, self.grid.shard_px
        raw = len(self.shards) * s * s * (self.bands + 4)
        return {
            "store": self.store_name, "zone": self.zone, "year": self.year, "epsg": g.epsg,
            "tiles": len(self.tiles), "height_px": g.height, "width_px": g.width,
            "height_km": g.height * g.pixel_size / 1000, "width_km": g.width * g.pixel_size / 1000,
            "pixel_size": g.pixel_size, "shards_total": g.shards_shape[0] * g.shards_shape[1],
            "shards_nonempty": len(self.shards), "bytes_to_write": raw,
        }


def parse_zones(text: str | None) -> frozenset[int] | None:
    """``30``, ``30,31`` or ``29-34`` (and mixtures) → zone numbers; None → all zones."""
    from .errors import SelectionError

    if text is None or not text.strip():
        return None
    zones: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError as e:
            raise SelectionError(f"bad zone selection {text!r}: {part!r} is not N or N-M") from e
        if not (1 <= a <= b <= 60):
            raise SelectionError(f"bad zone selection {text!r}: zones run 1..60, low to high")
        zones.update(range(a, b + 1))
    return frozenset(zones)


def select(
    records: Iterable[TileRecord], years: Iterable[int] | None, zones: frozenset[int] | None,
    skip_bad: bool = False, base: Path | None = None,
) -> tuple[list[TileRecord], list[TileRecord]]:
    """(usable, skipped) records of the selection. Raises TileProblemsError listing every
    problem in the selection (paths joined to ``base``) unless ``skip_bad``, and
    NoTilesError when nothing is left."""
    years = set(years) if years else None
    chosen = [r for r in records
              if (years is None or r.year in years) and (zones is None or r.zone in zones)]
    bad = [r for r in chosen if not r.usable]
    if bad and not skip_bad:
        root = Path(base) if base is not None else Path()
        raise TileProblemsError([(str(root / path), problem) for path, problem in
                                 (r.issue for r in bad)])
    good = [r for r in chosen if r.usable]
    if not good:
        raise NoTilesError(f"no usable tiles for years {sorted(years) if years else 'all'} "
                           f"and zones {sorted(zones) if zones else 'all'}")
    return good, bad


def plan_zones(records: Iterable[TileRecord], layout: StoreLayout) -> list[ZonePlan]:
    """One plan per (zone, year) present, in (year, zone) order. Pure arithmetic."""
    groups: dict[tuple[int, int], list[TileRecord]] = {}
    for r in records:
        groups.setdefault((r.year, r.zone), []).append(r)
    plans = []
    for (year, zone), recs in sorted(groups.items()):
        sizes = {r.pixel_size: r for r in recs}
        if len(sizes) > 1:
            examples = "; ".join(f"{r.embeddings_path} is {p:g} m" for p, r in sorted(sizes.items()))
            raise GridError(f"zone {zone} year {year}: tiles with different pixel sizes cannot "
                            f"share one grid ({examples})")
        bands = {r.bands for r in recs}
        if len(bands) != 1:
            raise GridError(f"zone {zone} year {year}: tiles disagree on band count "
                            f"{sorted(bands)}; scan with --bands to flag the odd ones")
        grids = {r.key: r.grid for r in recs}
        grid = zone_grid(zone, grids.values(), layout.shard_px)
        shards = tuple(shard_index(grid, grids))
        plans.append(ZonePlan(zone, year, grid, bands.pop(), tuple(recs), shards))
    return plans


def shard_tasks(plan: ZonePlan, base: Path, store: Path, layout: StoreLayout) -> list[ShardTask]:
    by_key = {r.key: r for r in plan.tiles}
    tasks = []
    for entry in plan.shards:
        pieces = tuple(
            PieceSource(
                key=p.key, tile_window=p.tile_window, shard_window=p.shard_window,
                embeddings=str(base / by_key[p.key].embeddings_path),
                scales=str(base / by_key[p.key].scales_path),
                landmask=str(base / by_key[p.key].landmask_path),
                shape=(by_key[p.key].height, by_key[p.key].width, plan.bands),
            )
            for p in entry.pieces
        )
        spec = ShardSpec(plan.grid, entry.row, entry.col, pieces)
        tasks.append(ShardTask(str(store), spec, layout.pixel_major))
    return tasks


@dataclass
class ZoneResult:
    store: str
    zone: int
    year: int
    tiles: int
    shards: int
    resumed_shards: int = 0
    shards_with_data: int = 0
    valid_pixels: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    skipped: list[dict[str, str]] = field(default_factory=list)
    tiles_without_data: list[str] = field(default_factory=list)


def plan_id(plan: ZonePlan, layout: StoreLayout) -> str:
    """A fingerprint of everything that determines a store's bytes: a journal written for
    one plan is only resumed by a build with the same fingerprint."""
    doc = {
        "grid": [plan.grid.zone, plan.grid.pixel_size, plan.grid.left, plan.grid.top,
                 plan.grid.height, plan.grid.width, plan.grid.shard_px],
        "bands": plan.bands, "layout": list(dataclasses.astuple(layout)),
        "tiles": sorted([r.name, *r.stat_key()] for r in plan.tiles),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def build_zone(
    plan: ZonePlan, base: Path, output_dir: Path, executor: Executor, layout: StoreLayout,
    *, skipped: Iterable[TileRecord] = (), resume: bool = False, max_in_flight: int = 4,
    on_progress: ProgressFn | None = None,
) -> ZoneResult:
    """Build the store of ``plan`` in its staging directory and publish it when every shard
    and all metadata are written. The caller holds the store's lock.

    On a failed shard raises ShardWriteError; the previous store stays untouched and the
    journal lets ``resume=True`` continue without rewriting finished shards.
    """
    t0 = time.perf_counter()
    paths = StorePaths(Path(output_dir) / plan.store_name)
    skipped_list = [{"name": r.name, "year": r.year, "path": r.issue[0], "problem": r.issue[1]}
                    for r in skipped if r.issue]
    done = start_journal(paths, plan_id(plan, layout), resume)
    if not paths.partial.exists():
        create_zone_store(paths.partial, plan.grid, plan.bands, layout,
                          _provenance(plan, skipped_list))
    result = ZoneResult(str(paths.final), plan.zone, plan.year, len(plan.tiles),
                        len(plan.shards), resumed_shards=len(done), skipped=skipped_list)
    owned: dict[str, list[int]] = {}
    for rec in done.values():  # totals include the shards a resumed build keeps
        _add(result, owned, rec)
    tasks = [t for t in shard_tasks(plan, Path(base), paths.partial, layout)
             if (t.spec.row, t.spec.col) not in done]
    _run_shards(tasks, executor, paths, result, owned, max_in_flight, on_progress, plan)
    result.tiles_without_data = sorted(n for n, (o, f) in owned.items() if o > 0 and f == 0)
    update_root_attrs(paths.partial, build_complete=True, shards_written=len(plan.shards),
                      shards_with_data=result.shards_with_data,
                      tiles_without_data=result.tiles_without_data)
    consolidate(paths.partial)
    publish(paths)
    result.seconds = time.perf_counter() - t0
    return result


def _journal_record(res: ShardResult) -> dict[str, Any]:
    return {"row": res.row, "col": res.col, "valid": res.valid_pixels, "bytes_in": res.bytes_in,
            "stats": [[s.name, s.owned, s.finite] for s in res.stats]}


def _add(result: ZoneResult, owned: dict[str, list[int]], rec: dict[str, Any]) -> None:
    result.valid_pixels += rec["valid"]
    result.shards_with_data += rec["valid"] > 0
    result.bytes_in += rec["bytes_in"]
    for name, o, f in rec["stats"]:
        tot = owned.setdefault(name, [0, 0])
        tot[0] += o
        tot[1] += f


def _run_shards(tasks, executor, paths, result, owned, max_in_flight, on_progress, plan):
    total, count = len(plan.shards), result.resumed_shards
    if on_progress:
        on_progress(Progress(plan.store_name, count, total))
    try:
        for _, res in imap_unordered(write_shard, tasks, executor, max_in_flight=max_in_flight):
            rec = _journal_record(res)
            journal_shard(paths, rec)
            _add(result, owned, rec)
            count += 1
            if on_progress:
                on_progress(Progress(plan.store_name, count, total))
    except TaskFailed as e:
        spec = e.task.spec
        raise ShardWriteError(paths.final, (spec.row, spec.col), e.__cause__) from e.__cause__


def _provenance(plan: ZonePlan, skipped: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "zone": plan.zone,
        "year": plan.year,
        "tiles_written": len(plan.tiles),
        "tiles": sorted(r.name for r in plan.tiles),
        "tiles_skipped": skipped,
        "version": __version__,
        "build_time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "build_complete": False,
        "shards_written": 0,
        "rgb_complete": False,
    }


@dataclass
class BuildReport:
    plans: list[ZonePlan]
    results: list[ZoneResult] = field(default_factory=list)
    skipped: list[TileRecord] = field(default_factory=list)


def build_stores(
    base: Path, output_dir: Path, records: Iterable[TileRecord], executor: Executor, *,
    years: Iterable[int] | None = None, zones: frozenset[int] | None = None,
    layout: StoreLayout = StoreLayout(), dry_run: bool = False, skip_bad: bool = False,
    resume: bool = False, max_in_flight: int = 4, on_progress: ProgressFn | None = None,
) -> BuildReport:
    """Select, plan and (unless ``dry_run``) build every (zone, year) store of the selection.

    Raises TileProblemsError before writing anything if the selection has problem tiles
    (unless ``skip_bad``), LockedError if another build holds one of the stores, and
    ShardWriteError if any shard fails (earlier stores of the run are already published).
    """
    good, bad = select(records, years, zones, skip_bad, base)
    report = BuildReport(plan_zones(good, layout), skipped=bad)
    if dry_run:
        return report
    check_writable(Path(output_dir))
    locked: list[StorePaths] = []
    try:
        for plan in report.plans:
            paths = StorePaths(Path(output_dir) / plan.store_name)
            acquire_lock(paths)
            locked.append(paths)
            recover(paths)
        for plan in report.plans:
            mine = [r for r in bad if r.zone == plan.zone and r.year == plan.year]
            report.results.append(build_zone(
                plan, base, output_dir, executor, layout, skipped=mine, resume=resume,
                max_in_flight=max_in_flight, on_progress=on_progress,
            ))
    finally:
        for paths in locked:
            release_lock(paths)
    return report
