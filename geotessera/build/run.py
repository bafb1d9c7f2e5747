"""zarr-build: registry → per-(zone, year) plans → one store per plan, shard by shard.

The library reports progress through an optional callback and never draws anything.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geotessera import __version__
from geotessera.build.plan import (
    ZonePlan,
    block_tasks,
    check_sources,
    plan_id,
    plan_zones,
    select,
)
from geotessera.build.parts import join_levels
from geotessera.build.tasks import (
    BlockResult,
    FusedPreview,
    quarters_encodable,
    write_shard,
)
from geotessera.errors import ShardWriteError, TaskFailed
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn, run_tasks
from geotessera.preview.overviews import LevelReport, pyramid
from geotessera.preview.run import begin_fused, finish_fused
from geotessera.preview.stretch import Stretch
from geotessera.store.lock import StoreLock
from geotessera.store.publish import (
    Staging,
    adopt_legacy,
    check_writable,
    journal_shard,
    mark_created,
    publish,
    start_version,
    verify_journal,
)
from geotessera.store.versions import StoreHome
from geotessera.archive.registry import TileRecord
from geotessera.store.location import Location
from geotessera.store.zone import consolidate, create_zone_store, update_root_attrs
from geotessera.types import Level, StoreLayout

log = logging.getLogger(__name__)


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
    retries: int = 0
    name: str = ""
    version: str = ""
    #: Journaled blocks that ``--resume`` found damaged and wrote again: "row_col" → problem.
    rewritten: dict[str, str] = field(default_factory=dict)
    #: With a preview: the stretch, and a report per level (L0 and L1 made by the shard
    #: tasks, their seconds included in the build's; L2… after them).
    stretch: Stretch | None = None
    preview_levels: list[LevelReport] = field(default_factory=list)


def build_zone(
    plan: ZonePlan, base: Path | str | Location, output_dir: Location, executor: Executor,
    layout: StoreLayout, lock: StoreLock, *, skipped: Iterable[TileRecord] = (),
    resume: bool = False, max_in_flight: int = 4, retries: int = DEFAULT_RETRIES,
    on_progress: ProgressFn | None = None, preview: Stretch | None = None,
) -> ZoneResult:
    """Build the store of ``plan`` as a new version (or continue the interrupted one with
    ``resume``) and publish it when every shard and all metadata are written. The caller
    holds ``lock``, the lock of the store's home. With ``preview`` (the year's stretch) the
    shard tasks also write ``rgba`` and L1, and the coarser levels follow before publishing,
    so the published version is complete with its preview.

    On a failed shard raises ShardWriteError; the published version stays untouched and the
    journal lets ``resume=True`` continue without rewriting shards that are durably done.
    """
    t0 = time.perf_counter()
    home = StoreHome.of(output_dir, plan.store_name)
    skipped_list = [{"name": r.name, "year": r.year, "path": r.issue[0], "problem": r.issue[1]}
                    for r in skipped if r.issue]
    pid = plan_id(plan, layout, preview)
    levels = pyramid(Level("L0", plan.grid.pixels), layout.shard_px)
    staging = start_version(home, pid, resume)
    bad = verify_journal(staging, executor) if staging.done else {}
    done = {rc: rec for rc, rec in staging.done.items() if rc not in bad}
    if not staging.created:
        create_zone_store(staging.store, plan.grid.pixels, plan.bands, layout,
                          _provenance(plan, skipped_list))
        if preview is not None:
            begin_fused(staging.store, preview, 2 if _with_parts(levels, layout) else 1)
        mark_created(staging)
    public = home.link if output_dir.is_local else staging.store
    result = ZoneResult(str(public), plan.zone, plan.year, len(plan.tiles), len(plan.shards),
                        skipped=skipped_list, name=plan.store_name,
                        version=staging.name,
                        rewritten={f"{r}_{c}": p for (r, c), p in sorted(bad.items())},
                        stretch=preview)
    owned: dict[str, list[int]] = {}
    records = list(done.values())
    for rec in records:  # totals include the shards a resumed build keeps
        _add(result, owned, rec)
        result.resumed_shards += len(_shards_of(rec))
    fused = None if preview is None else FusedPreview(
        preview, levels[1].shape if len(levels) > 1 else None,
        staging.journal if _with_parts(levels, layout) else None)
    tasks = block_tasks(plan, base, staging.store, layout, fused)
    records += _run_shards([t for t in tasks if (t.row, t.col) not in done], len(tasks),
                           executor, staging, home, result, owned, plan,
                           dict(max_in_flight=max_in_flight, retries=retries,
                                on_progress=on_progress))
    if preview is not None:
        _finish_preview(result, staging, plan, levels, fused, records, executor,
                        dict(max_in_flight=max_in_flight, retries=retries,
                             on_progress=on_progress))
    result.tiles_without_data = sorted(n for n, (o, f) in owned.items() if o > 0 and f == 0)
    update_root_attrs(staging.store, build_complete=True, shards_written=len(plan.shards),
                      shards_with_data=result.shards_with_data,
                      tiles_without_data=result.tiles_without_data)
    consolidate(staging.store)
    publish(home, staging, pid, lock)
    result.seconds = time.perf_counter() - t0
    return result


def _with_parts(levels: list[Level], layout: StoreLayout) -> bool:
    """Whether the blocks leave L2 parts: the store has an L2 and quarters encode apart."""
    return len(levels) > 2 and quarters_encodable(layout.shard_px, layout.chunk_px)


def _finish_preview(result: ZoneResult, staging: Staging, plan: ZonePlan,
                    levels: list[Level], fused: FusedPreview, records: list[dict[str, Any]],
                    executor: Executor, run_opts) -> None:
    """L2 and coarser from the blocks' parts (or from L1 and up), the flag; reports."""
    count = lambda key: sum(r.get(key, 0) for r in records)  # noqa: E731
    result.preview_levels = [LevelReport(0, levels[0].shape, len(plan.shards),
                                         result.valid_pixels, 0.0, in_build=True)]
    children = {(r["row"], r["col"]) for r in records if r.get("l1_valid", 0) > 0}
    if len(levels) > 1:
        result.preview_levels.append(LevelReport(1, levels[1].shape, len(records),
                                                 count("l1_valid"), 0.0, in_build=True))
    start = 2
    if fused.parts is not None:  # every coarser level from parts: nothing is read back
        result.preview_levels += join_levels(staging.store, fused.parts, levels[2:], records,
                                             executor, label=plan.store_name, **run_opts)
        start, children = len(levels), set()
    result.preview_levels += finish_fused(staging.store, executor, children, start=start,
                                          label=plan.store_name, **run_opts)


def _journal_record(res: BlockResult) -> dict[str, Any]:
    stats: dict[str, list[int]] = {}
    for shard in res.shards:
        for s in shard.stats:
            tot = stats.setdefault(s.name, [0, 0])
            tot[0] += s.owned
            tot[1] += s.finite
    return {"row": res.row, "col": res.col,
            "valid": sum(s.valid_pixels for s in res.shards),
            "bytes_in": sum(s.bytes_in for s in res.shards),
            "stats": [[name, o, f] for name, (o, f) in sorted(stats.items())],
            "objects": [list(o) for o in res.objects],
            "shards": [[s.row, s.col, s.valid_pixels] for s in res.shards],
            "l1_valid": res.l1_valid, "parts": [list(p) for p in res.parts]}


def _shards_of(rec: dict[str, Any]) -> list[tuple[int, int, int]]:
    """The L0 shards of a journal record: (row, col, valid pixels)."""
    return rec.get("shards") or [(rec["row"], rec["col"], rec["valid"])]


def _add(result: ZoneResult, owned: dict[str, list[int]], rec: dict[str, Any]) -> None:
    result.valid_pixels += rec["valid"]
    result.shards_with_data += sum(v > 0 for _, _, v in _shards_of(rec))
    result.bytes_in += rec["bytes_in"]
    for name, o, f in rec["stats"]:
        tot = owned.setdefault(name, [0, 0])
        tot[0] += o
        tot[1] += f


def _run_shards(tasks, total: int, executor, staging: Staging, home: StoreHome, result, owned,
                plan, run_opts) -> list[dict[str, Any]]:
    def on_retry(task, attempt, error):
        result.retries += 1
        log.warning("%s: shard %s failed (attempt %d of %d), running it again: %s",
                    home.home, (task.spec.row, task.spec.col), attempt,
                    run_opts["retries"] + 1, error)

    records = []
    try:
        for _, res in run_tasks(write_shard, tasks, executor, label=plan.store_name,
                                total=total, done=total - len(tasks),
                                on_retry=on_retry, **run_opts):
            rec = _journal_record(res)
            journal_shard(staging, rec)
            _add(result, owned, rec)
            records.append(rec)
    except TaskFailed as e:
        spec = e.task.spec
        raise ShardWriteError(home.home, (spec.row, spec.col), e.cause,
                              e.attempts) from e.cause
    return records


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
    """``plans`` are kept only by ``build_stores`` (records in memory); ``summaries`` (one
    ``ZonePlan.summary()`` per store, in build order) by every build."""

    plans: list[ZonePlan]
    results: list[ZoneResult] = field(default_factory=list)
    skipped: list[TileRecord] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)


def build_stores(
    base: Path | str | Location, output_dir: Location | str | Path,
    records: Iterable[TileRecord], executor: Executor, *, years: Iterable[int] | None = None,
    zones: frozenset[int] | None = None, layout: StoreLayout = StoreLayout(),
    dry_run: bool = False, skip_bad: bool = False, resume: bool = False, max_in_flight: int = 4,
    retries: int = DEFAULT_RETRIES, on_progress: ProgressFn | None = None,
    lock_ttl: float | None = None, stretches: dict[int, Stretch] | None = None,
) -> BuildReport:
    """Select, plan and (unless ``dry_run``) build every (zone, year) store of the selection
    into ``output_dir`` (a path or a ``file://`` or ``s3://`` location).

    Raises TileProblemsError before writing anything if the selection has problem tiles
    (unless ``skip_bad``), ArchiveError before writing anything if a registry row names files
    other than the archive's own for its tile (or one resolves outside ``base``), LockedError
    if another build holds one of the stores, and ShardWriteError if a shard fails on each of
    its ``1 + retries`` attempts (earlier stores of the run are already published).
    A store whose year has a stretch in ``stretches`` is built with its preview.

    Parameters
    ----------
    base : Path, str or Location
        The archive root the registry rows belong to.
    output_dir : Location, str or Path
        Where the store homes go (``utmZZ_YYYY/`` with versions and ``current.json``).
    records : iterable of TileRecord
        Registry rows (``scan_archive``).
    executor : concurrent.futures.Executor
        Runs the shard tasks (a spawn process pool, or a dask.distributed executor).
    years, zones : optional
        Only these years and zones.
    layout : StoreLayout
        Shard and chunk sizes and codec.
    dry_run : bool
        Plan only; write nothing.
    skip_bad, resume, max_in_flight, retries, on_progress, lock_ttl
        Build without problem tiles; continue from the journal; tasks in flight; attempts
        per shard after the first; ``Progress`` events; the store lock's expiry (seconds).
    stretches : dict of year to Stretch, optional
        The year's colour stretch (``build.stretch.tile_stretch``): the store is built with
        its preview (``rgba`` and every overview level) before it is published.

    Returns
    -------
    BuildReport
        The plans and their summaries, one result per store built, the tiles skipped.
    """
    good, bad = select(records, years, zones, skip_bad, base)
    report = BuildReport(plan_zones(good, layout), skipped=bad)
    check_sources(report.plans, base)
    report.summaries = [p.summary() for p in report.plans]
    if dry_run:
        return report
    out = Location.parse(output_dir)
    check_writable(out)
    locks: list[StoreLock] = []
    try:
        for plan in report.plans:
            home = StoreHome.of(out, plan.store_name)
            lock = StoreLock(home.home) if lock_ttl is None else StoreLock(home.home, lock_ttl)
            lock.acquire()
            locks.append(lock)
            adopt_legacy(home)
        for plan, lock in zip(report.plans, locks, strict=True):
            mine = [r for r in bad if r.zone == plan.zone and r.year == plan.year]
            report.results.append(build_zone(
                plan, base, out, executor, layout, lock, skipped=mine, resume=resume,
                max_in_flight=max_in_flight, retries=retries, on_progress=on_progress,
                preview=(stretches or {}).get(plan.year),
            ))
    finally:
        for lock in locks:
            lock.release()
    return report
