"""The zone-wide grid of a store and the shard index that feeds it. Pure arithmetic.

A zone grid is a regular lattice in the canonical northern CRS EPSG:326ZZ (southern
northings minus 10,000,000 m, so one continuous axis), origin snapped to the pixel size,
extent padded to whole shards. Each tile is placed at the nearest pixel.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from geotessera.errors import GridError
from geotessera.types import PixelGrid, TileGrid, TileKey, Window


@dataclass(frozen=True, slots=True)
class ZoneGrid:
    """A zone-wide pixel grid. ``left``/``top`` are the outer corner of pixel (0, 0)."""

    zone: int
    pixel_size: float
    left: float
    top: float
    height: int
    width: int
    shard_px: int

    def __post_init__(self) -> None:
        if self.height % self.shard_px or self.width % self.shard_px:
            raise ValueError(f"grid {self.height}x{self.width} not padded to {self.shard_px}")

    @property
    def epsg(self) -> int:
        return 32600 + self.zone

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Affine in rasterio order (a, b, c, d, e, f); origin at the top-left corner."""
        return (self.pixel_size, 0.0, self.left, 0.0, -self.pixel_size, self.top)

    @property
    def pixels(self) -> PixelGrid:
        """The grid as a PixelGrid in EPSG:326ZZ."""
        return PixelGrid.of(self.epsg, self.pixel_size, self.left, self.top,
                            (self.height, self.width))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Outer edges (xmin, ymin, xmax, ymax) in canonical metres."""
        return self.pixels.bbox

    @property
    def shards_shape(self) -> tuple[int, int]:
        return (self.height // self.shard_px, self.width // self.shard_px)

    def shard_window(self, sr: int, sc: int) -> Window:
        s = self.shard_px
        return Window(sr * s, (sr + 1) * s, sc * s, (sc + 1) * s)


def zone_grid(zone: int, tiles: Iterable[TileGrid], shard_px: int) -> ZoneGrid:
    """The smallest shard-padded grid on the pixel lattice that holds every tile.

    Raises GridError for an empty tile set, mixed zones or mixed pixel sizes.
    """
    tiles = list(tiles)
    if not tiles:
        raise GridError(f"zone {zone}: no tiles")
    sizes = {t.pixel_size for t in tiles}
    if len(sizes) != 1:
        raise GridError(f"zone {zone}: tiles with different pixel sizes {sorted(sizes)} m "
                        f"cannot share one grid; build them separately (--zones/--year)")
    if {t.zone for t in tiles} != {zone}:
        raise GridError(f"zone {zone}: tiles from zones {sorted({t.zone for t in tiles})}")
    p = sizes.pop()
    left = math.floor(min(t.left for t in tiles) / p) * p
    top = math.ceil(max(t.canonical_top for t in tiles) / p) * p
    right = math.ceil(max(t.left + t.width * p for t in tiles) / p) * p
    bottom = math.floor(min(t.canonical_top - t.height * p for t in tiles) / p) * p
    width = _pad(round((right - left) / p), shard_px)
    height = _pad(round((top - bottom) / p), shard_px)
    return ZoneGrid(zone, p, float(left), float(top), height, width, shard_px)


def _pad(n: int, m: int) -> int:
    return max(m, -(-n // m) * m)


def placement(grid: ZoneGrid | PixelGrid, tile: TileGrid) -> Window:
    """Zone pixel window that a tile's raster occupies (nearest-pixel placement) on a grid
    with the zone grid's origin and pixel size.

    Guarantee: tile pixel (r, c) lands on zone pixel (window.row0 + r, window.col0 + c).
    """
    p = grid.pixel_size
    row0 = round((grid.top - tile.canonical_top) / p)
    col0 = round((tile.left - grid.left) / p)
    return Window(row0, row0 + tile.height, col0, col0 + tile.width)


#: Pieces reach this many pixels beyond a tile's raster, so the tile that owns a pixel can
#: still give it a value where rounding left its raster just short of its own 0.1° cell.
HALO_PX = 1


def core_windows(tile_window: Window, shard_window: Window, tile_shape: tuple[int, int]):
    """(tile, shard) windows of the pixels a piece's tile raster really covers, or None when
    the piece is halo only. ``tile_window`` may reach HALO_PX beyond ``tile_shape``."""
    real = tile_window.intersect(Window(0, tile_shape[0], 0, tile_shape[1]))
    if real is None:
        return None
    dr, dc = shard_window.row0 - tile_window.row0, shard_window.col0 - tile_window.col0
    return real, real.shift(dr, dc)


@dataclass(frozen=True, slots=True)
class ShardPiece:
    """The part of one tile, widened by its halo, that falls inside one shard.

    Guarantee: ``tile_window.shift(*tile_origin) == shard_window.shift(*shard_origin)`` in
    zone pixels, i.e. both windows name the same zone pixels. ``tile_window`` may start at
    -HALO_PX or end HALO_PX past ``tile_shape``; ``core`` is the part inside the raster.
    """

    key: TileKey
    tile_window: Window
    shard_window: Window
    tile_shape: tuple[int, int]

    @property
    def core(self) -> tuple[Window, Window] | None:
        return core_windows(self.tile_window, self.shard_window, self.tile_shape)


@dataclass(frozen=True, slots=True)
class ShardIndexEntry:
    """A non-empty shard: its position and the tile pieces that feed it, sorted by key."""

    row: int
    col: int
    pieces: tuple[ShardPiece, ...]


def shard_index(grid: ZoneGrid, tiles: dict[TileKey, TileGrid]) -> list[ShardIndexEntry]:
    """Every non-empty shard with its pieces, in (row, col) order; pieces sorted by key.

    Guarantee: every pixel of every tile (and of its halo, inside the grid) appears in
    exactly one piece of one shard.
    """
    by_shard: dict[tuple[int, int], list[ShardPiece]] = {}
    s, h = grid.shard_px, HALO_PX
    for key in sorted(tiles):
        win = placement(grid, tiles[key])
        if win.row0 < 0 or win.col0 < 0 or win.row1 > grid.height or win.col1 > grid.width:
            raise GridError(f"{key.name} at {win} lies outside the zone grid")
        wide = Window(win.row0 - h, win.row1 + h, win.col0 - h, win.col1 + h).intersect(
            Window(0, grid.height, 0, grid.width))
        for sr in range(wide.row0 // s, (wide.row1 - 1) // s + 1):
            for sc in range(wide.col0 // s, (wide.col1 - 1) // s + 1):
                shard = grid.shard_window(sr, sc)
                part = wide.intersect(shard)
                if part is None:
                    continue
                piece = ShardPiece(
                    key=key,
                    tile_window=part.shift(-win.row0, -win.col0),
                    shard_window=part.shift(-shard.row0, -shard.col0),
                    tile_shape=(win.height, win.width),
                )
                by_shard.setdefault((sr, sc), []).append(piece)
    return [
        ShardIndexEntry(sr, sc, tuple(sorted(pieces, key=lambda p: p.key)))
        for (sr, sc), pieces in sorted(by_shard.items())
    ]

