"""``zarr_build``: the whole job as one call: registry → zone stores → preview → STAC.

The CLI, a cluster driver and a notebook share this function; the executor is passed in (a
spawn process pool, a dask.distributed executor, a thread pool in tests), and progress
arrives as ``Progress`` events. Nothing here draws or prints.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from geotessera.archive.registry import REGISTRY_FILENAME
from geotessera.archive.scan import ScanResult, update_registry
from geotessera.build.run import BuildReport
from geotessera.build.stretch import tile_stretch
from geotessera.build.zones import build_from_registry, selected_partitions
from geotessera.catalog.stac import CatalogReport, write_catalog
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn
from geotessera.preview.run import PreviewReport, StoreReport, find_stores, run_preview_pass
from geotessera.preview.sample import SampleSpec
from geotessera.errors import LocationError
from geotessera.store.location import Location
from geotessera.types import N_BANDS, StoreLayout

#: Header reads of a scan are I/O bound: threads, not processes.
SCAN_THREADS = 32


@dataclass(frozen=True, slots=True)
class PreviewOptions:
    """How the preview pass colours a year: ``mode`` "bands" (three ``bands``) or "pca"."""

    mode: str = "bands"
    bands: tuple[int, ...] = (0, 1, 2)
    seed: int = 0
    force: bool = False
    sample: SampleSpec = SampleSpec()


@dataclass
class PipelineReport:
    """What each stage did; a stage that did not run is None."""

    scan: ScanResult | None = None
    registry: Path | None = None
    build: BuildReport | None = None
    preview: PreviewReport | None = None
    catalog: CatalogReport | None = None
    notes: list[str] = field(default_factory=list)


def default_registry(base: Path | str | Location, registry: Path | None = None) -> Path:
    """``registry`` or ``base/registry.parquet``; a remote archive (``s3://``, ``https://``)
    has no default: the registry is a local file the maintainer keeps (LocationError)."""
    if registry is not None:
        return Path(registry)
    root = Location.parse(base)
    if not root.is_local:
        raise LocationError(root.url, "a remote archive needs a local registry path "
                                      "(--registry)")
    return root.path / REGISTRY_FILENAME


def scan(base: Path | str | Location, registry: Path | None = None, *,
         years: Iterable[int] | None = None, zones: Iterable[int] | None = None,
         expected_bands: int = N_BANDS,
         on_progress: ProgressFn | None = None) -> ScanResult:
    """Update the registry of ``base`` (default ``base/registry.parquet``) incrementally;
    only the partitions of ``years`` and ``zones`` are read and rewritten.
    ``base`` may be a path or an ``s3://``/``http(s)://`` URL; header reads run on a
    thread pool with many requests in flight."""
    path = default_registry(base, registry)
    with ThreadPoolExecutor(SCAN_THREADS) as pool:
        return update_registry(
            base, path, pool, years=years or None, zones=zones, expected_bands=expected_bands,
            on_progress=on_progress)


def _archive_root(base: Path | str | Location) -> Location:
    root = Location.parse(base)
    return Location.parse(root.path.resolve()) if root.is_local else root


def zarr_build(
    base: Path | str | Location, output_dir: Location | Path, executor: Executor, *,
    years: Iterable[int] | None = None, zones: frozenset[int] | None = None,
    layout: StoreLayout = StoreLayout(), registry: Path | None = None,
    expected_bands: int = N_BANDS, dry_run: bool = False, resume: bool = False,
    skip_bad: bool = False, preview: PreviewOptions | None = PreviewOptions(),
    catalog: bool = True, build: bool = True, max_in_flight: int = 4,
    retries: int = DEFAULT_RETRIES, on_progress: ProgressFn | None = None,
) -> PipelineReport:
    """Scan ``base``, build every selected (zone, year) store into ``output_dir`` (a path or
    a ``file://``/``s3://`` Location, with its storage options) with its preview
    (``preview=None`` skips it) and regenerate the STAC catalog (``catalog``).

    The preview is made in the same pass as the data: each year's stretch is fitted on a
    sample of that year's tiles first, the shard tasks colour L0 and write L1 while the
    shard is in memory, and L2… follow from L1 before the store is published. Other stores
    of the year already in ``output_dir`` that record another stretch are coloured again
    with this one, so a year always has one stretch. ``build=False`` runs the separate
    preview pass instead (its stretch sampled from the stores).

    ``build=False`` runs only the later passes on the stores already there. A dry run plans
    and stops. A shard task that raises runs again up to ``retries`` times, on any
    executor; then errors propagate (the stores published before a failure stay published).
    """
    report = PipelineReport()
    years = sorted(set(years)) if years else None
    if build:
        report.registry = default_registry(base, registry)
        report.scan = scan(base, report.registry, years=years, zones=zones,
                           expected_bands=expected_bands, on_progress=on_progress)
        opts = dict(max_in_flight=max_in_flight, retries=retries, on_progress=on_progress)
        fitted = None
        if preview is not None and not dry_run:
            fitted = _tile_stretches(_archive_root(base), report.registry, years, zones,
                                     executor, preview, opts)
        report.build = build_from_registry(
            _archive_root(base), output_dir, report.registry, executor, years=years,
            zones=zones, layout=layout, dry_run=dry_run, skip_bad=skip_bad, resume=resume,
            stretches=fitted and fitted.stretches, **opts)
        if fitted is not None:
            report.preview = _after_build(output_dir, executor, report.build, fitted,
                                          preview.force, opts)
    if dry_run:
        return report
    if preview is not None and not build:
        report.preview = run_preview_pass(
            output_dir, executor, years=years, zones=zones, mode=preview.mode,
            bands=preview.bands, seed=preview.seed, sample=preview.sample,
            force=preview.force, max_in_flight=max_in_flight, retries=retries,
            on_progress=on_progress)
    if catalog:
        report.catalog = write_catalog(output_dir)
    return report


def _tile_stretches(root: Location, registry: Path, years: list[int] | None,
                    zones: frozenset[int] | None, executor: Executor,
                    preview: PreviewOptions, opts) -> PreviewReport:
    """The stretch of every year the build selects, fitted on that year's tiles (all its
    zones); returned as the start of the preview report."""
    out = PreviewReport()
    for year in sorted({y for y, _ in selected_partitions(registry, years, zones)}):
        t0 = time.perf_counter()
        out.stretches[year] = tile_stretch(
            root, registry, year, executor, mode=preview.mode, bands=preview.bands,
            seed=preview.seed, spec=preview.sample, **opts)
        out.sample_seconds[year] = time.perf_counter() - t0
    return out


def _after_build(output_dir: Location | Path, executor: Executor, build: BuildReport,
                 fitted: PreviewReport, force: bool, opts) -> PreviewReport:
    """The preview report of a build, after colouring again the year's other stores whose
    recorded stretch differs (``force``: all of them)."""
    built = {(r.year, r.zone) for r in build.results}
    for r in build.results:
        fitted.stores.append(StoreReport(r.store, r.zone, r.year, False,
                                         tuple(r.preview_levels), r.seconds))
    for year in sorted({y for y, _ in built}):
        others = {s.zone for s in find_stores(output_dir, [year]) if (year, s.zone) not in built}
        if others:
            again = run_preview_pass(output_dir, executor, years=[year], zones=others,
                                     stretches=fitted.stretches, force=force, **opts)
            fitted.stores += again.stores
    return fitted
