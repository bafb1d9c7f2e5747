"""Build from a partitioned registry one (zone, year) at a time, so that planning memory is
bounded by the largest zone, not the archive: the registry is read with predicate pushdown
(``archive.registry.load(path, [year], [zone])``) and each plan is dropped once its store is
built. Selection, problem checks, locking and publishing follow ``run.build_stores``.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import Executor
from pathlib import Path

from geotessera.archive import registry
from geotessera.archive.registry import TileRecord
from geotessera.build.plan import ZonePlan, plan_zones, select
from geotessera.build.run import BuildReport, build_zone
from geotessera.errors import NoTilesError
from geotessera.parallel import ProgressFn
from geotessera.store.location import Location
from geotessera.store.naming import store_name
from geotessera.store.publish import (
    StorePaths,
    acquire_lock,
    check_writable,
    recover,
    release_lock,
)
from geotessera.types import StoreLayout


def selected_partitions(registry_path: Path, years: Iterable[int] | None,
                        zones: Iterable[int] | None) -> list[tuple[int, int]]:
    """(year, zone) partitions of the selection, from the registry's directory names."""
    ys = set(years) if years else None
    zs = set(zones) if zones is not None else None
    return [(y, z) for y, z in registry.partitions(registry_path)
            if (ys is None or y in ys) and (zs is None or z in zs)]


def plan_partition(registry_path: Path, year: int, zone: int, layout: StoreLayout
                   ) -> tuple[ZonePlan | None, list[TileRecord]]:
    """The plan of one (zone, year), reading only that partition, and its unusable rows."""
    rows = registry.load(registry_path, [year], [zone])
    good = [r for r in rows if r.usable]
    bad = [r for r in rows if not r.usable]
    return (plan_zones(good, layout)[0] if good else None), bad


def build_from_registry(
    base: Path | str | Location, output_dir: Path, registry_path: Path, executor: Executor, *,
    years: Iterable[int] | None = None, zones: frozenset[int] | None = None,
    layout: StoreLayout = StoreLayout(), dry_run: bool = False, skip_bad: bool = False,
    resume: bool = False, max_in_flight: int = 4, on_progress: ProgressFn | None = None,
) -> BuildReport:
    """Plan and (unless ``dry_run``) build every selected (zone, year) store, one partition
    in memory at a time. Raises what ``build_stores`` raises, before writing anything for
    problem tiles (TileProblemsError, unless ``skip_bad``) or an empty selection."""
    parts = selected_partitions(registry_path, years, zones)
    bad: list[TileRecord] = []
    usable: list[tuple[int, int]] = []
    for year, zone in parts:  # first pass: problems anywhere stop the build before it starts
        rows = registry.load(registry_path, [year], [zone])
        bad += [r for r in rows if not r.usable]
        if any(r.usable for r in rows):
            usable.append((year, zone))
    if bad and not skip_bad:
        select(bad, None, None, False, base)  # raises TileProblemsError naming every problem
    if not usable:
        raise NoTilesError(f"no usable tiles for years {sorted(set(years)) if years else 'all'}"
                           f" and zones {sorted(zones) if zones else 'all'}")
    report = BuildReport([], skipped=bad)
    if dry_run:
        for year, zone in usable:
            plan, _ = plan_partition(registry_path, year, zone, layout)
            report.summaries.append(plan.summary())
        return report
    check_writable(Path(output_dir))
    locked: list[StorePaths] = []
    try:
        for year, zone in usable:
            paths = StorePaths(Path(output_dir) / store_name(zone, year))
            acquire_lock(paths)
            locked.append(paths)
            recover(paths)
        for year, zone in usable:
            plan, mine = plan_partition(registry_path, year, zone, layout)
            report.results.append(build_zone(
                plan, base, output_dir, executor, layout, skipped=mine, resume=resume,
                max_in_flight=max_in_flight, on_progress=on_progress))
            report.summaries.append(plan.summary())
            del plan
    finally:
        for paths in locked:
            release_lock(paths)
    return report
