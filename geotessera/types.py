"""Small frozen value types shared by every stage. No I/O, no arrays."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from geotessera.errors import CodecError

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


#: Blosc's shuffle filters, by the names of the Zarr v3 ``blosc`` codec. On 1-byte values
#: ``shuffle`` (byte shuffle) changes nothing; ``bitshuffle`` transposes the bits of each block.
Shuffle = Literal["bitshuffle", "shuffle", "noshuffle"]
BLOSC_SHUFFLES: tuple[Shuffle, ...] = ("bitshuffle", "shuffle", "noshuffle")


@dataclass(frozen=True, slots=True)
class BloscZstd:
    """Blosc with zstd inside, for the int8 embeddings: ``clevel`` 1…9 (blosc's scale: it
    runs zstd at level 2 × clevel − 1, so the default 2 is zstd's own level 3) and a
    ``shuffle`` of ``BLOSC_SHUFFLES``. Stored as the Zarr v3
    ``blosc`` codec with typesize 1, cname zstd and one block per inner chunk."""

    clevel: int = 2
    shuffle: Shuffle = "bitshuffle"

    def __post_init__(self) -> None:
        if not 1 <= self.clevel <= 9 or self.shuffle not in BLOSC_SHUFFLES:
            raise ValueError(f"blosc clevel={self.clevel} (1..9), shuffle={self.shuffle!r} "
                             f"(one of {', '.join(BLOSC_SHUFFLES)})")

    def __str__(self) -> str:
        return f"blosc-zstd:{self.clevel}:{self.shuffle}"


@dataclass(frozen=True, slots=True)
class StoreLayout:
    """Shard and chunk shape and codecs of the zone arrays (pixels on each spatial axis).

    ``blosc`` compresses ``embeddings`` (default blosc-zstd:2:bitshuffle); with ``blosc``
    None they take zstd at ``zstd_level`` like ``scales`` and ``rgba`` always do (None: no
    compressor; zstd itself maps level 0 to 3). ``with_codec("zstd:3")`` is the layout of
    the stores built before blosc became the default."""

    shard_px: int = 1024
    chunk_px: int = 32
    scales_chunk_px: int = 256
    zstd_level: int | None = 3
    pixel_major: bool = False
    blosc: BloscZstd | None = BloscZstd(2, "bitshuffle")

    def __post_init__(self) -> None:
        for name in ("shard_px", "chunk_px", "scales_chunk_px"):
            v = getattr(self, name)
            if v <= 0 or self.shard_px % v:
                raise ValueError(f"{name}={v} must be positive and divide shard_px={self.shard_px}")
        if self.zstd_level is not None and not 0 <= self.zstd_level <= 22:
            raise ValueError(f"zstd_level={self.zstd_level} outside 0..22")

    @property
    def codec(self) -> str:
        """The ``--codec`` spelling of the embeddings' compressor."""
        if self.blosc is not None:
            return str(self.blosc)
        return "none" if self.zstd_level is None else f"zstd:{self.zstd_level}"

    def with_codec(self, text: str) -> StoreLayout:
        """This layout with the codec ``text`` (``parse_codec``): ``none`` and ``zstd:N`` set
        every data array's compressor, ``blosc-zstd:…`` only the embeddings' (``scales`` and
        ``rgba`` keep ``zstd_level``). CodecError for a malformed name."""
        choice = parse_codec(text)
        if isinstance(choice, BloscZstd):
            return replace(self, blosc=choice)
        return replace(self, zstd_level=choice, blosc=None)


#: Largest raw shard a worker may assemble in memory: shard_px² × (bands + 4) bytes (int8
#: embeddings plus float32 scales). 2 GiB: 1024 px at 128 bands is 132 MiB; 4096 px is 2.06 GiB.
MAX_SHARD_BYTES = 2 * 1024**3


def shard_bytes(shard_px: int, bands: int) -> int:
    """Raw bytes of one assembled shard: ``shard_px² × (bands + 4)``."""
    return shard_px * shard_px * (bands + 4)


def check_shard_memory(shard_px: int, bands: int) -> None:
    """ValueError naming the numbers when one shard would exceed ``MAX_SHARD_BYTES``."""
    if (raw := shard_bytes(shard_px, bands)) > MAX_SHARD_BYTES:
        raise ValueError(
            f"shard_px={shard_px} at {bands} bands needs {raw:,} bytes per shard in each "
            f"worker (shard_px² × (bands + 4)), above the limit of {MAX_SHARD_BYTES:,} "
            f"(2 GiB); largest allowed shard_px is {max_shard_px(bands)}")


def max_shard_px(bands: int) -> int:
    """The largest shard edge whose raw shard fits ``MAX_SHARD_BYTES``."""
    return int((MAX_SHARD_BYTES // (bands + 4)) ** 0.5)


#: The codec names ``parse_codec`` accepts, as error messages spell them.
CODEC_SYNTAX = ("none, zstd:N (N in 0..22) or blosc-zstd:N[:SHUFFLE] (N in 1..9, SHUFFLE "
                f"{'|'.join(BLOSC_SHUFFLES)}, default {BLOSC_SHUFFLES[0]})")


def parse_codec(text: str) -> int | None | BloscZstd:
    """The compressor a codec name selects: ``none`` → None, ``zstd:N`` → the zstd level N
    (0…22; zstd maps 0 to its default level 3, so 0 is not "off"), ``blosc-zstd:N[:SHUFFLE]``
    → ``BloscZstd(N, SHUFFLE)`` (default bitshuffle). Case-insensitive; CodecError
    otherwise."""
    name, _, rest = text.strip().lower().partition(":")
    level, colon, shuffle = rest.partition(":")
    n = int(level) if level.isascii() and level.isdigit() else None
    if name == "none" and not rest:
        return None
    if name == "zstd" and n is not None and 0 <= n <= 22 and not colon:
        return n
    if name == "blosc-zstd" and n is not None and 1 <= n <= 9 and (
            shuffle in BLOSC_SHUFFLES or not colon):
        return BloscZstd(n, BLOSC_SHUFFLES[BLOSC_SHUFFLES.index(shuffle) if colon else 0])
    raise CodecError(f"codec {text!r}: expected {CODEC_SYNTAX}")


Affine6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class PixelGrid:
    """A north-up regular pixel grid: ``crs`` (``"EPSG:n"`` or WKT), ``transform`` (rasterio
    order ``(a, 0, c, 0, e, f)``, origin at the outer top-left corner) and ``shape`` (rows,
    cols). The one grid record: zone grids, levels and read targets are all PixelGrids.
    """

    crs: str
    transform: Affine6
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        a, b, _, d, e, _ = self.transform
        if b or d or a <= 0 or e >= 0:
            raise ValueError(f"not a north-up grid: transform {self.transform}")
        if min(self.shape) < 0:
            raise ValueError(f"negative shape {self.shape}")

    @classmethod
    def of(cls, epsg: int, pixel_size: float, left: float, top: float,
           shape: tuple[int, int]) -> PixelGrid:
        """Square pixels of ``pixel_size`` from the corner (``left``, ``top``) in EPSG:``epsg``."""
        return cls(f"EPSG:{epsg}", (float(pixel_size), 0.0, float(left), 0.0,
                                    -float(pixel_size), float(top)),
                   (int(shape[0]), int(shape[1])))

    @property
    def epsg(self) -> int | None:
        """The EPSG code when ``crs`` is ``EPSG:n``, else None."""
        head, _, code = self.crs.partition(":")
        return int(code) if head.upper() == "EPSG" and code.isdigit() else None

    @property
    def pixel_size(self) -> float:
        return self.transform[0]

    @property
    def left(self) -> float:
        return self.transform[2]

    @property
    def top(self) -> float:
        return self.transform[5]

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """Outer edges (xmin, ymin, xmax, ymax)."""
        a, _, c, _, e, f = self.transform
        return (c, f + e * self.shape[0], c + a * self.shape[1], f)

    def xy(self, rows: Any, cols: Any) -> tuple[Any, Any]:
        """Pixel-centre coordinates of (rows, cols) (scalars or numpy arrays)."""
        a, _, c, _, e, f = self.transform
        return c + (cols + 0.5) * a, f + (rows + 0.5) * e

    def rowcol(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Fractional (row, col) of points (pixel (r, c) covers [r, r+1) × [c, c+1))."""
        a, _, c, _, e, f = self.transform
        return (y - f) / e, (x - c) / a

    def coarser(self, factor: int = 2) -> PixelGrid:
        """Pixels ``factor`` times larger, same origin, shape divided rounding up."""
        a, _, c, _, e, f = self.transform
        return PixelGrid(self.crs, (a * factor, 0.0, c, 0.0, e * factor, f),
                         (-(-self.shape[0] // factor), -(-self.shape[1] // factor)))

    def window_of(self, bbox: tuple[float, float, float, float]) -> Window | None:
        """The pixels whose area meets ``bbox`` (xmin, ymin, xmax, ymax), clipped to the grid;
        None when nothing is inside."""
        r0, c0 = self.rowcol(bbox[0], bbox[3])
        r1, c1 = self.rowcol(bbox[2], bbox[1])
        win = Window(max(0, math.floor(r0)), min(self.height, math.ceil(r1)),
                     max(0, math.floor(c0)), min(self.width, math.ceil(c1)))
        return win if win.height > 0 and win.width > 0 else None


@dataclass(frozen=True, slots=True)
class Level:
    """One level of a store: its group ``path`` (``L0``, ``L1``, …) and its pixel grid."""

    path: str
    grid: PixelGrid

    @property
    def index(self) -> int:
        return int(self.path.rsplit("L", 1)[-1])

    @property
    def transform(self) -> Affine6:
        return self.grid.transform

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def pixel_size(self) -> float:
        return self.grid.pixel_size

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return self.grid.bbox

    @property
    def epsg(self) -> int | None:
        return self.grid.epsg

    def coarser(self) -> Level:
        """The next overview level: pixel size doubled, shape halved rounding up."""
        return Level(f"L{self.index + 1}", self.grid.coarser())

    @classmethod
    def of_attrs(cls, path: str, attrs: dict) -> Level:
        """From a level's ``proj:code``, ``spatial:transform`` and ``spatial:shape``."""
        t = tuple(float(v) for v in attrs["spatial:transform"][:6])
        return cls(path, PixelGrid(str(attrs["proj:code"]), t,
                                   tuple(int(v) for v in attrs["spatial:shape"])))
