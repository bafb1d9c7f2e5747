"""A year's preview pyramid as one PMTiles v3 archive (static publishing, no server).

Every WebMercatorQuad tile from ``minzoom`` to ``maxzoom`` that touches a store of the year
is rendered exactly as ``serve`` renders it (``TileRenderer``) and written with the
``pmtiles`` package's writer, in tile-id order (a clustered archive). Tiles without data
are left out (readers treat a missing tile as empty). The archive is written beside the
target and renamed into place when complete. MapLibre reads it from any static URL by range
requests (npm ``pmtiles`` protocol).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pmtiles.tile import Compression, TileType, tileid_to_zxy, zxy_to_tileid
from pmtiles.writer import Writer

from .. import __version__
from ..errors import StoreError
from ..parallel import Progress, ProgressFn
from . import grid
from ._core import atomic_path
from .sources import Stretches, YearStores, layout_of
from .tiles import TileRenderer, TileRequest

#: Tiles rendered per batch (written in order after each batch).
BATCH = 64



@dataclass(frozen=True, slots=True)
class PMTilesReport:
    """What ``write_pmtiles`` wrote."""

    path: Path
    year: int
    minzoom: int
    maxzoom: int
    tiles: int  # tiles with data, written
    empty: int  # tiles rendered without data, left out
    bytes: int
    bounds: tuple[float, float, float, float]


def default_zooms(ys: YearStores) -> tuple[int, int]:
    """(0, the zoom whose ground resolution best matches the finest pixel size at the
    stores' mid latitude)."""
    finest = min(zs.meta.levels[0].pixel_size for zs in ys.stores)
    lat = sum((s + n) / 2 for _, (_, s, _, n) in ys.bboxes()) / len(ys.stores)
    return 0, grid.zoom_for_resolution(finest, lat)


def year_bounds(ys: YearStores) -> tuple[float, float, float, float]:
    boxes = [b for _, b in ys.bboxes()]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def tile_ids(ys: YearStores, minzoom: int, maxzoom: int) -> list[int]:
    """Sorted PMTiles ids of every tile of the zooms that touches a store's bbox."""
    ids = {zxy_to_tileid(*t) for z in range(minzoom, maxzoom + 1)
           for _, bbox in ys.bboxes() for t in grid.tiles_covering(bbox, z)}
    return sorted(ids)


def write_pmtiles(source: str, year: int, output: Path, *, minzoom: int | None = None,
                  maxzoom: int | None = None, workers: int = 2,
                  on_progress: ProgressFn | None = None) -> PMTilesReport:
    """Render the year's preview tiles of a local ``source`` into ``output`` (PMTiles v3).

    Raises StoreError when the source has no store of ``year`` or no tile has data, and
    ValueError for zooms outside 0..24 or minzoom > maxzoom.
    """
    layout = layout_of(source)
    if year not in layout.years:
        raise StoreError(source, f"no zone stores for year {year}; years are "
                                 f"{list(layout.years)}")
    ys = YearStores(source, year)
    lo, hi = default_zooms(ys)
    minzoom, maxzoom = lo if minzoom is None else minzoom, hi if maxzoom is None else maxzoom
    if not 0 <= minzoom <= maxzoom <= grid.MAX_ZOOM:
        raise ValueError(f"need 0 <= minzoom ({minzoom}) <= maxzoom ({maxzoom}) "
                         f"<= {grid.MAX_ZOOM}")
    renderer = TileRenderer({year: ys}, Stretches())
    ids = tile_ids(ys, minzoom, maxzoom)
    bounds = year_bounds(ys)
    with atomic_path(Path(output)) as tmp, open(tmp, "wb") as f:
        writer = Writer(f)
        written = _write_tiles(writer, renderer, year, ids, workers, on_progress)
        if not written:
            raise StoreError(source, f"no tile with data for year {year} at zooms "
                                     f"{minzoom}..{maxzoom}")
        writer.finalize(_header(bounds, minzoom, maxzoom), _metadata(ys, minzoom, maxzoom))
    return PMTilesReport(Path(output), year, minzoom, maxzoom, written, len(ids) - written,
                         Path(output).stat().st_size, bounds)


def _write_tiles(writer: Writer, renderer: TileRenderer, year: int, ids: list[int],
                 workers: int, on_progress: ProgressFn | None) -> int:
    def png(tid: int) -> bytes | None:
        tile = renderer.render(TileRequest(year, *tileid_to_zxy(tid)))
        return None if tile.empty else tile.png(level=6)  # published: smaller beats faster

    written = 0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            for tid, data in zip(batch, pool.map(png, batch)):
                if data is not None:
                    writer.write_tile(tid, data)
                    written += 1
            if on_progress:
                on_progress(Progress(f"tiles {year}", min(start + BATCH, len(ids)), len(ids)))
    return written


def _header(bounds, minzoom: int, maxzoom: int) -> dict:
    w, s, e, n = bounds
    e7 = lambda v: int(round(v * 1e7))  # noqa: E731
    return {"tile_type": TileType.PNG, "tile_compression": Compression.NONE,
            "min_zoom": minzoom, "max_zoom": maxzoom, "min_lon_e7": e7(w), "min_lat_e7": e7(s),
            "max_lon_e7": e7(e), "max_lat_e7": e7(n), "center_zoom": (minzoom + maxzoom) // 2,
            "center_lon_e7": e7((w + e) / 2), "center_lat_e7": e7((s + n) / 2)}


def _metadata(ys: YearStores, minzoom: int, maxzoom: int) -> dict:
    return json.loads(json.dumps({
        "name": f"geotessera {ys.year} preview", "format": "png", "type": "overlay",
        "description": f"GeoTessera embedding preview, year {ys.year}, zones "
                       + ", ".join(str(zs.meta.zone) for zs in ys.stores),
        "version": __version__, "minzoom": minzoom, "maxzoom": maxzoom,
        "geotessera:year": ys.year, "geotessera:zones": [zs.meta.zone for zs in ys.stores],
        "geotessera:stretch": ys.stretch_attrs}))
