"""Small frozen value types shared by every stage. No I/O, no arrays."""

from __future__ import annotations

from dataclasses import dataclass

#: False northing of the southern UTM projections (EPSG:327ZZ).
SOUTH_FALSE_NORTHING = 10_000_000.0
#: Embedding dimensions of the GeoTessera model.
N_BANDS = 128


@dataclass(frozen=True, slots=True, order=True)
class TileKey:
    """A 0.1° tile, named by its centre in hundredths of a degree (0.15°E → 15).

    Ordering is (lat_i, lon_i): south to north, then west to east. Centres are at .x5, so
    ``lon_i % 10 == 5`` and ``lat_i % 10 == 5`` for every valid key.
    """

    lat_i: int
    lon_i: int

    @property
    def lon(self) -> float:
        return self.lon_i / 100.0

    @property
    def lat(self) -> float:
        return self.lat_i / 100.0

    @property
    def cell(self) -> tuple[int, int]:
        """(⌊10·lon⌋, ⌊10·lat⌋) of every point inside the tile's 0.1° cell."""
        return ((self.lon_i - 5) // 10, (self.lat_i - 5) // 10)

    @property
    def name(self) -> str:
        """The archive's spelling, ``grid_{lon:.2f}_{lat:.2f}``."""
        return f"grid_{_fmt_hundredths(self.lon_i)}_{_fmt_hundredths(self.lat_i)}"

    @property
    def is_centred(self) -> bool:
        """True when the centre sits at .x5 as the archive requires."""
        return self.lon_i % 10 == 5 and self.lat_i % 10 == 5


def _fmt_hundredths(v: int) -> str:
    sign = "-" if v < 0 else ""
    return f"{sign}{abs(v) // 100}.{abs(v) % 100:02d}"


@dataclass(frozen=True, slots=True)
class TileGrid:
    """A tile's raster grid in its native UTM CRS (EPSG:326ZZ or 327ZZ).

    ``left``/``top`` are the outer corner of pixel (0, 0) in native metres, not snapped to
    the pixel lattice (the landmask convention).
    """

    epsg: int
    pixel_size: float
    left: float
    top: float
    height: int
    width: int

    @property
    def zone(self) -> int:
        return self.epsg % 100

    @property
    def south(self) -> bool:
        return self.epsg // 100 == 327

    @property
    def canonical_top(self) -> float:
        """Top edge in the zone's canonical northern CRS (southern tiles shifted down)."""
        return self.top - SOUTH_FALSE_NORTHING if self.south else self.top

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """Native affine in rasterio order (a, b, c, d, e, f)."""
        return (self.pixel_size, 0.0, self.left, 0.0, -self.pixel_size, self.top)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open pixel rectangle: rows [row0, row1), cols [col0, col1)."""

    row0: int
    row1: int
    col0: int
    col1: int

    def __post_init__(self) -> None:
        if self.row1 < self.row0 or self.col1 < self.col0:
            raise ValueError(f"inverted window {self!r}")

    @property
    def height(self) -> int:
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        return self.col1 - self.col0

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.row0, self.row1), slice(self.col0, self.col1))

    def shift(self, drow: int, dcol: int) -> Window:
        return Window(self.row0 + drow, self.row1 + drow, self.col0 + dcol, self.col1 + dcol)

    def intersect(self, other: Window) -> Window | None:
        r0, r1 = max(self.row0, other.row0), min(self.row1, other.row1)
        c0, c1 = max(self.col0, other.col0), min(self.col1, other.col1)
        if r0 >= r1 or c0 >= c1:
            return None
        return Window(r0, r1, c0, c1)


@dataclass(frozen=True, slots=True)
class StoreLayout:
    """Shard and chunk shape and codec of the zone arrays (pixels on each spatial axis)."""

    shard_px: int = 1024
    chunk_px: int = 32
    scales_chunk_px: int = 256
    zstd_level: int = 3
    pixel_major: bool = False

    def __post_init__(self) -> None:
        for name in ("shard_px", "chunk_px", "scales_chunk_px"):
            v = getattr(self, name)
            if v <= 0 or self.shard_px % v:
                raise ValueError(f"{name}={v} must be positive and divide shard_px={self.shard_px}")
        if not 0 <= self.zstd_level <= 22:
            raise ValueError(f"zstd_level={self.zstd_level} outside 0..22")
