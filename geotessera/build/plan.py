"""Planning a build: select tiles, group them by (zone, year), and derive each store's grid,
shard index and shard tasks. Pure arithmetic over registry records; no pixel is read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from geotessera.archive.registry import TileRecord
from geotessera.build.assemble import PieceSource, ShardSpec
from geotessera.build.sources import refuse_vsi, row_name, tile_files
from geotessera.build.tasks import FusedPreview, ShardTask
from geotessera.preview.stretch import Stretch
from geotessera.errors import (
    ArchiveError,
    GridError,
    LocationError,
    NoTilesError,
    SelectionError,
    TileProblemsError,
)
from geotessera.store.location import Location, check_relative
from geotessera.store.naming import store_name
from geotessera.tiles import tile_keys
from geotessera.types import StoreLayout, check_shard_memory
from geotessera.zonegrid import ShardIndexEntry, ZoneGrid, shard_index, zone_grid


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
    """Zone numbers from ``30``, ``30,31`` or ``29-34`` (and mixtures).

    Parameters
    ----------
    text : str or None
        The selection; None or blank selects every zone.

    Returns
    -------
    frozenset of int or None
        The zones (1–60), or None for all.

    Raises
    ------
    SelectionError
        Not a number, a range or a zone in 1–60.

    Examples
    --------
    >>> sorted(parse_zones("29-31,33"))
    [29, 30, 31, 33]
    """
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
    skip_bad: bool = False, base: Path | str | Location | None = None,
) -> tuple[list[TileRecord], list[TileRecord]]:
    """(usable, skipped) records of the selection. Raises TileProblemsError listing every
    problem in the selection (paths joined to ``base``) unless ``skip_bad``, and
    NoTilesError when nothing is left."""
    years = set(years) if years else None
    chosen = [r for r in records
              if (years is None or r.year in years) and (zones is None or r.zone in zones)]
    bad = [r for r in chosen if not r.usable]
    if bad and not skip_bad:
        raise TileProblemsError([(_show(base, path), problem) for path, problem in
                                 (r.issue for r in bad)])
    good = [r for r in chosen if r.usable]
    if not good:
        raise NoTilesError(f"no usable tiles for years {sorted(years) if years else 'all'} "
                           f"and zones {sorted(zones) if zones else 'all'}")
    return good, bad


def _show(base: Path | str | Location | None, rel: str) -> str:
    """``rel`` joined to the archive root for messages (a URL for remote archives)."""
    if isinstance(base, Location) or (base is not None and "://" in str(base)):
        loc = Location.parse(base)
        return str(loc.child(rel)) if not _escapes(rel) else f"{loc}: {rel}"
    return str((Path(base) if base is not None else Path()) / rel)


def _escapes(rel: str) -> bool:
    try:
        check_relative(rel)
    except LocationError:
        return True
    return False


def plan_zones(records: Iterable[TileRecord], layout: StoreLayout) -> list[ZonePlan]:
    """One plan per (zone, year) present, in (year, zone) order. Pure arithmetic.

    Parameters
    ----------
    records : iterable of TileRecord
        Registry rows (``scan_archive(...).records``).
    layout : StoreLayout
        Shard and chunk sizes and codec of the stores.

    Returns
    -------
    list of ZonePlan
        Each with its zone grid, shard index and shard tasks.

    Raises
    ------
    GridError
        Tiles of one zone and year with different pixel sizes.
    """
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
        try:  # the bound on a worker's memory, with the real band count
            check_shard_memory(layout.shard_px, next(iter(bands)))
        except ValueError as e:
            raise GridError(f"zone {zone} year {year}: {e}") from e
        grids = {r.key: r.grid for r in recs}
        grid = zone_grid(zone, grids.values(), layout.shard_px)
        shards = tuple(shard_index(grid, grids))
        plans.append(ZonePlan(zone, year, grid, bands.pop(), tuple(recs), shards))
    return plans


def shard_tasks(plan: ZonePlan, base: Path | str | Location, store: Location,
                layout: StoreLayout) -> list[ShardTask]:
    """One task per non-empty shard. Tile files are named by the archive root ``base`` and
    keys derived from each tile's name and year (``tiles.tile_keys``), never by paths read
    from the registry."""
    root = Location.parse(base)
    by_key = {r.key: r for r in plan.tiles}
    keys = {k: _tile_keys(r) for k, r in by_key.items()}
    tasks = []
    for entry in plan.shards:
        pieces = tuple(
            PieceSource(
                key=p.key, tile_window=p.tile_window, shard_window=p.shard_window, root=root,
                embeddings=keys[p.key][0], scales=keys[p.key][1], landmask=keys[p.key][2],
                shape=(by_key[p.key].height, by_key[p.key].width, plan.bands),
            )
            for p in entry.pieces
        )
        spec = ShardSpec(plan.grid, entry.row, entry.col, pieces)
        tasks.append(ShardTask(store, (spec,), layout.pixel_major, entry.row, entry.col))
    return tasks


def block_tasks(plan: ZonePlan, base: Path | str | Location, store: Location,
                layout: StoreLayout, preview: FusedPreview | None = None) -> list[ShardTask]:
    """The build's tasks: with a preview that has a level 1, one per L1 shard holding the
    (up to 2×2) planned L0 shards below it, in (row, col) order; otherwise one per L0 shard.
    Block (row, col) is the L1 shard's (or the L0 shard's) position."""
    single = shard_tasks(plan, base, store, layout)
    if preview is None or preview.l1_shape is None:
        return [replace(t, preview=preview) for t in single]
    blocks: dict[tuple[int, int], list[ShardSpec]] = {}
    for t in single:
        blocks.setdefault((t.row // 2, t.col // 2), []).extend(t.specs)
    return [ShardTask(store, tuple(sorted(specs, key=lambda s: (s.row, s.col))),
                      layout.pixel_major, r, c, preview)
            for (r, c), specs in sorted(blocks.items())]


def _tile_keys(rec: TileRecord) -> tuple[str, str, str]:
    try:
        return tile_keys(rec.year, rec.name)
    except ValueError as e:
        raise ArchiveError(rec.name, f"registry row is not a tile: {e}") from e


def check_sources(plans: Iterable[ZonePlan], base: Path | str | Location) -> None:
    """Raise ArchiveError before anything is written if any planned tile is not the
    archive's own: a name that is not a tile, a registry row whose stored paths disagree
    with the derived ones, a ``/vsi…`` value, or (on local disks) a file that resolves
    outside ``base`` (see ``sources.tile_files``)."""
    root = Location.parse(base)
    for plan in plans:
        for rec in plan.tiles:
            _tile_keys(rec)
            if root.is_local:
                tile_files(root.path, rec)
            else:
                for value in (rec.embeddings_path, rec.scales_path, rec.landmask_path):
                    refuse_vsi(str(value), row_name(rec))


def plan_id(plan: ZonePlan, layout: StoreLayout, stretch: Stretch | None = None) -> str:
    """A fingerprint of everything that determines a store's bytes (with the preview made
    in the same tasks, its ``stretch``): a journal written for one plan is only resumed by
    a build with the same fingerprint."""
    doc = {
        "grid": [plan.grid.zone, plan.grid.pixel_size, plan.grid.left, plan.grid.top,
                 plan.grid.height, plan.grid.width, plan.grid.shard_px],
        "bands": plan.bands, "layout": [getattr(layout, f.name) for f in
                                        dataclasses.fields(layout) if f.name != "blosc"],
        "tiles": sorted([r.name, *r.stat_key()] for r in plan.tiles),
    }
    if layout.blosc is not None:  # only then: zstd plans keep the fingerprints they had
        doc["blosc"] = str(layout.blosc)
    if stretch is not None:
        doc["stretch"] = stretch.to_attrs()
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


