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
from geotessera.build.run import BuildReport, build_stores
from geotessera.errors import NoTilesError
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn
from geotessera.preview.stretch import Stretch
from geotessera.store.location import Location
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
    resume: bool = False, max_in_flight: int = 4, retries: int = DEFAULT_RETRIES,
    on_progress: ProgressFn | None = None, stretches: dict[int, Stretch] | None = None,
) -> BuildReport:
    """Plan and (unless ``dry_run``) build every selected (zone, year) store, one partition
    in memory at a time, each through ``run.build_stores`` (same checks, lock and publish).
    Problem tiles anywhere in the selection stop the build before anything is written
    (TileProblemsError, unless ``skip_bad``); an empty selection is NoTilesError. A store
    whose year has a stretch in ``stretches`` is built with its preview."""
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
    for year, zone in usable:
        rows = registry.load(registry_path, [year], [zone])
        part = build_stores(base, output_dir, rows, executor, layout=layout, dry_run=dry_run,
                            skip_bad=True, resume=resume, max_in_flight=max_in_flight,
                            retries=retries, on_progress=on_progress, stretches=stretches)
        report.results += part.results
        report.summaries += part.summaries
    return report
