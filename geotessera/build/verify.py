"""verify: compare a store with its source tiles and check its metadata and shard objects.

Pixel comparison re-assembles shards from the source tiles under the same overlap and
no-data rules the build used and demands exact equality (NaN equals NaN). ``full`` compares
every non-empty shard; otherwise a seeded sample of ``sample`` shards (a single damaged shard
among N non-empty ones is found by the comparison with probability min(1, sample / N)). In
both modes every stored embeddings shard object of every level is checked against the plan
and for integrity (index CRC32C, index bounds, a seeded decode of two inner chunks), and
every metadata document is decoded and compared with the consolidated metadata.
"""

from __future__ import annotations

import random
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geotessera.archive.registry import TileRecord
from geotessera.archive.scan import InspectTask, inspect_tile
from geotessera.build.assemble import assemble
from geotessera.build.plan import plan_zones, shard_tasks
from geotessera.build.tasks import ShardTask
from geotessera.errors import GeoTesseraError, StoreError, TaskFailed
from geotessera.parallel import DEFAULT_RETRIES, imap_unordered
from geotessera.store.location import Location
from geotessera.store.meta import is_damage, metadata_problems
from geotessera.store.shardio import IntegrityTask, check_integrity, read_layout
from geotessera.store.versions import published
from geotessera.store.zone import (
    EMBEDDINGS,
    SCALES,
    layout_of,
    open_level,
    open_root,
    stored_chunks,
)
from geotessera.tiles import parse_tile_name


@dataclass
class VerifyReport:
    store: str
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0  # stored shard objects whose index CRC32C was checked
    chunks_decoded: int = 0  # inner chunks decoded by that check
    shards_nonempty: int = 0  # shards the plan fills (the pixel comparison draws from these)
    shards_compared: int = 0
    pixels_compared: int = 0
    pixels_mismatched: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class Comparison:
    row: int
    col: int
    pixels: int
    mismatched: int
    first: tuple[int, int] | None
    error: str | None = None


def compare_shard(task: ShardTask) -> Comparison:
    """Re-assemble one shard from the sources and compare it with the store, exactly.
    A shard that cannot be read or re-assembled is a finding, not a crash."""
    rows, cols = task.spec.window.slices
    try:
        data = assemble(task.spec, pixel_major=False)
    except GeoTesseraError as e:
        return Comparison(task.spec.row, task.spec.col, 0, 0, None, f"source: {e}")
    try:
        level = open_level(task.store, write=False)
        emb, scales = level[EMBEDDINGS][:, rows, cols], level[SCALES][rows, cols]
    except Exception as e:  # noqa: BLE001 - any decode failure is reported, with its cause
        return Comparison(task.spec.row, task.spec.col, 0, 0, None,
                          f"cannot decode: {type(e).__name__}: {e}")
    bad = ~((scales == data.scales) | (np.isnan(scales) & np.isnan(data.scales)))
    bad |= (emb != data.embeddings).any(axis=0)
    where = np.argwhere(bad)
    first = None
    if len(where):
        first = (int(where[0][0]) + task.spec.window.row0, int(where[0][1]) + task.spec.window.col0)
    return Comparison(task.spec.row, task.spec.col, bad.size, int(bad.sum()), first)


def verify_store(store: Location | Path | str, base: Path, executor: Executor, *,
                 sample: int = 8, full: bool = False, seed: int = 0, max_in_flight: int = 8,
                 retries: int = DEFAULT_RETRIES) -> VerifyReport:
    """Check one store (a version, or a store home whose pointer names it); every finding is
    a line in ``report.problems``. A comparison task that raises (a worker lost, say, rather
    than a finding) runs again up to ``retries`` times; if it still fails, that is a finding
    and the comparisons stop.

    Parameters
    ----------
    store : Location, Path or str
        The store (a path or URL).
    base : Path
        The archive root whose tiles the store was built from.
    executor : concurrent.futures.Executor
        Runs the shard comparisons.
    sample : int, default 8
        Non-empty shards to compare (a seeded sample), unless ``full``.
    full : bool, default False
        Compare every non-empty shard.
    seed, max_in_flight, retries
        The sample's seed; comparisons in flight; attempts after the first.

    Returns
    -------
    VerifyReport
        ``ok`` when ``problems`` is empty; counts of shards, chunks and pixels checked.
    """
    store, base = published(Location.parse(store)), Path(base)
    report = VerifyReport(str(store))
    try:
        root = open_root(store)
        documents = metadata_problems(Location.parse(store), listing=True)
    except StoreError as e:
        report.problems.append(str(e))
        return report
    report.problems += [f"{where}: {problem}" for where, problem in documents]
    if any(is_damage(problem) for _, problem in documents):
        return report  # later checks read these documents; disagreeing ones still decode
    report.problems += check_metadata(store, root)
    if report.problems and "geotessera:zone" not in root.attrs:
        return report
    plan = _plan(store, base, root, report)
    if plan is None:
        return report
    report.problems += _check_shard_objects(store, root, plan)
    _check_integrity(store, root, executor, seed, report)
    tasks = shard_tasks(plan, base, Location.parse(store), layout_of(store))
    report.shards_nonempty = len(tasks)
    if not full:
        tasks = sorted(random.Random(seed).sample(tasks, min(sample, len(tasks))),
                       key=lambda t: (t.spec.row, t.spec.col))
    try:
        _compare(report, store, imap_unordered(compare_shard, tasks, executor,
                                               max_in_flight=max_in_flight, retries=retries))
    except TaskFailed as e:
        report.problems.append(f"{store}: shard ({e.task.spec.row}, {e.task.spec.col}): "
                               f"not compared, {e.attempts} attempt(s) failed: {e.cause}")
    return report


def _compare(report: VerifyReport, store: Path, results) -> None:
    for _, c in results:
        report.shards_compared += 1
        report.pixels_compared += c.pixels
        report.pixels_mismatched += c.mismatched
        if c.error:
            report.problems.append(f"{store}: shard ({c.row}, {c.col}): {c.error}")
        if c.mismatched:
            report.problems.append(
                f"{store}: shard ({c.row}, {c.col}): {c.mismatched} pixel(s) differ from the "
                f"source tiles, first at zone pixel (row, col) = {c.first}")


def _check_integrity(store: Path, root, executor: Executor, seed: int,
                     report: VerifyReport) -> None:
    """Every stored embeddings shard object of every level: index CRC32C, index inside the
    object, and a seeded decode of two inner chunks (so any flipped index byte is found)."""
    loc = Location.parse(store)
    tasks = []
    for entry in root.attrs["multiscales"]["layout"]:
        path = f"{entry['asset']}/{EMBEDDINGS}"
        layout = read_layout(loc, path)
        if layout is None:
            report.problems.append(f"{store}/{path}: not the sharded layout this tool writes")
            continue
        grid = stored_chunks(store, root[path])
        tasks += [IntegrityTask(loc, path, tuple(int(i) for i in rc), layout, seed=seed)
                  for rc in np.argwhere(grid)]
    for _, (decoded, problem) in imap_unordered(check_integrity, tasks, executor):
        report.shards_checked += 1
        report.chunks_decoded += decoded
        if problem:
            report.problems.append(problem)


def _plan(store: Path, base: Path, root, report: VerifyReport):
    """The plan the store should have been built from, re-derived from the source tiles."""
    zone, year = root.attrs["geotessera:zone"], root.attrs["geotessera:year"]
    emb = root["L0"][EMBEDDINGS]
    records: list[TileRecord] = []
    if not isinstance(year, int) or isinstance(year, bool):
        report.problems.append(f"{store}/zarr.json: geotessera:year {year!r} is not a year")
        return None
    for name in root.attrs.get("geotessera:tiles", []):
        key = parse_tile_name(name) if isinstance(name, str) else None
        if key is None:  # the store is data: a name like '../x' must not become a path
            report.problems.append(f"{store}/zarr.json: geotessera:tiles lists {name!r}, "
                                   "which is not a tile name")
            return None
        rec = inspect_tile(InspectTask(str(base.resolve()), year, name, key, emb.shape[0]))
        if rec.issue:
            report.problems.append(f"{base / rec.issue[0]}: {rec.issue[1]}")
        records.append(rec)
    if report.problems or not records:
        if not records:
            report.problems.append(f"{store}: lists no source tiles (geotessera:tiles)")
        return None
    (plan,) = plan_zones(records, layout_of(store))
    level = root["L0"].attrs
    if list(plan.grid.transform) != level["spatial:transform"] or \
            [plan.grid.height, plan.grid.width] != level["spatial:shape"]:
        report.problems.append(
            f"{store}: grid {level['spatial:shape']} at {level['spatial:transform']} differs "
            f"from the grid the source tiles imply ({plan.grid.height}x{plan.grid.width} at "
            f"{list(plan.grid.transform)})")
        return None
    if (plan.zone, plan.year) != (zone, year):
        report.problems.append(f"{store}: attributes say zone {zone} year {year}")
    return plan


def _check_shard_objects(store: Path, root, plan) -> list[str]:
    """Every embeddings shard object belongs to a planned shard, every shard footprint with
    scales data has an embeddings shard object, and their count matches the build's."""
    s = plan.grid.shard_px
    planned = {(e.row, e.col) for e in plan.shards}
    emb_grid = stored_chunks(store, root["L0"][EMBEDDINGS])[0]
    emb_shards = {(int(r), int(c)) for r, c in np.argwhere(emb_grid)}
    chunk = root["L0"][SCALES].chunks
    scale_shards = {(int(r) * chunk[0] // s, int(c) * chunk[1] // s)
                    for r, c in np.argwhere(stored_chunks(store, root["L0"][SCALES]))}
    problems = [f"{store}: unexpected embeddings shard {rc} (no tile covers it)"
                for rc in sorted(emb_shards - planned)]
    problems += [f"{store}: shard {rc} has scales data but no embeddings shard object"
                 for rc in sorted(scale_shards - emb_shards)]
    expected = root.attrs.get("geotessera:shards_with_data")
    if expected is not None and expected != len(scale_shards):
        problems.append(f"{store}: {len(scale_shards)} shard footprints hold data, the build "
                        f"recorded {expected}")
    return problems


def check_metadata(store: Path, root) -> list[str]:
    """Attributes, shapes, transforms and flags agree with each other and with the spec."""
    a = root.attrs
    missing = [k for k in ("geotessera:zone", "geotessera:year", "multiscales", "proj:code")
               if k not in a]
    if missing:
        return [f"{store}: missing root attribute(s) {missing}"]
    problems = []
    if not a.get("geotessera:build_complete"):
        problems.append(f"{store}: geotessera:build_complete is not true (interrupted build)")
    if a["proj:code"] != f"EPSG:{32600 + a['geotessera:zone']}":
        problems.append(f"{store}: proj:code {a['proj:code']} does not match zone "
                        f"{a['geotessera:zone']}")
    if a.get("geotessera:tiles_written") != len(a.get("geotessera:tiles", [])):
        problems.append(f"{store}: geotessera:tiles_written disagrees with geotessera:tiles")
    for entry in a["multiscales"]["layout"]:
        problems += _check_level(store, root, entry)
    if a.get("geotessera:rgb_complete") and "rgba" not in root["L0"]:
        problems.append(f"{store}: geotessera:rgb_complete is true but L0/rgba is missing")
    return problems


def _check_level(store: Path, root, entry: dict) -> list[str]:
    name = entry["asset"]
    if name not in root:
        return [f"{store}: multiscales layout names {name!r} but the group is missing"]
    level = root[name]
    t, shape = entry["spatial:transform"], entry["spatial:shape"]
    problems = []
    if level.attrs.get("spatial:transform") != t or level.attrs.get("spatial:shape") != shape:
        problems.append(f"{store}/{name}: spatial:transform/shape differ from the layout")
    for arr_name in (EMBEDDINGS, SCALES, "rgba"):
        if arr_name not in level:
            if arr_name != "rgba":
                problems.append(f"{store}/{name}: array {arr_name!r} missing")
            continue
        arr = level[arr_name]
        if list(arr.shape[-2:]) != shape or arr.attrs.get("spatial:transform") != t:
            problems.append(f"{store}/{name}/{arr_name}: shape {arr.shape} or transform "
                            f"disagrees with the level ({shape}, {t})")
    x, y = level["x"][:], level["y"][:]
    ex = t[2] + (np.arange(shape[1]) + 0.5) * t[0]
    ey = t[5] + (np.arange(shape[0]) + 0.5) * t[4]
    if x.shape != ex.shape or y.shape != ey.shape or not (
            np.allclose(x, ex, atol=1e-6) and np.allclose(y, ey, atol=1e-6)):
        problems.append(f"{store}/{name}: x/y coordinates are not the pixel centres of "
                        f"spatial:transform")
    gt = [float(v) for v in level["spatial_ref"].attrs.get("GeoTransform", "").split()]
    if gt != [t[2], t[0], t[1], t[5], t[3], t[4]]:
        problems.append(f"{store}/{name}/spatial_ref: GeoTransform {gt} disagrees with "
                        f"spatial:transform {t}")
    return problems
