"""Assemble one shard in memory from tile windows. Knows nothing of zarr.

A shard is filled from memory-mapped ``.npy`` windows and windowed landmask reads, under the
overlap rule of ``owner.py`` and the no-data rule: water (landmask 0) and non-finite scales
become NaN scales, and embeddings are 0 wherever scales are NaN. A scale of 0 is valid data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from .errors import ArchiveError
from .owner import choose_sources
from .types import TileKey, Window
from .zonegrid import ZoneGrid


@dataclass(frozen=True, slots=True)
class PieceSource:
    """One tile's contribution to a shard, with the absolute paths of its files."""

    key: TileKey
    tile_window: Window
    shard_window: Window
    embeddings: str
    scales: str
    landmask: str
    shape: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """A shard of a zone grid and the pieces that feed it; picklable."""

    grid: ZoneGrid
    row: int
    col: int
    pieces: tuple[PieceSource, ...]

    @property
    def window(self) -> Window:
        return self.grid.shard_window(self.row, self.col)


@dataclass(frozen=True, slots=True)
class PieceStat:
    """How many shard pixels a tile owned here, and how many of those had finite scales
    in the input (before the landmask): 0 of many means the tile's scales are broken."""

    name: str
    owned: int
    finite: int


@dataclass(frozen=True, slots=True)
class ShardData:
    embeddings: np.ndarray  # (bands, S, S) int8
    scales: np.ndarray  # (S, S) float32, NaN = no data
    stats: tuple[PieceStat, ...]


def assemble(spec: ShardSpec, pixel_major: bool) -> ShardData:
    """The shard's embeddings (bands, S, S) int8 and scales (S, S) float32.

    With ``pixel_major`` the embeddings are a (bands, S, S) view of an (S, S, bands) buffer,
    the tiles' own memory order, so no transposing copy is made here.
    """
    s = spec.grid.shard_px
    bands = spec.pieces[0].shape[2] if spec.pieces else 0
    if pixel_major:
        emb = np.zeros((s, s, bands), dtype=np.int8).transpose(2, 0, 1)
    else:
        emb = np.zeros((bands, s, s), dtype=np.int8)
    scales = np.full((s, s), np.nan, dtype=np.float32)
    src = choose_sources(spec.grid, spec.window, [(p.key, p.shard_window) for p in spec.pieces])
    stats = []
    for i, piece in enumerate(spec.pieces):
        owned = src[piece.shard_window.slices] == i
        if owned.any():
            finite = _copy_piece(piece, owned, emb, scales)
            stats.append(PieceStat(piece.key.name, int(owned.sum()), finite))
    return ShardData(emb, scales, tuple(stats))


def _copy_piece(piece: PieceSource, owned: np.ndarray, emb: np.ndarray, scales: np.ndarray) -> int:
    """Copy the owned pixels of one piece; returns how many had finite input scales."""
    tw, sw = piece.tile_window, piece.shard_window
    sc = _read_scales(piece, tw)
    finite_in = np.isfinite(sc)
    water = _read_landmask(piece, tw) == 0
    sc[water | ~finite_in] = np.nan
    valid = owned & np.isfinite(sc)
    scales[sw.slices][owned] = sc[owned]
    window = _open_npy(piece.embeddings, piece.shape, np.int8)[tw.slices]
    np.copyto(emb[(slice(None), *sw.slices)], window.transpose(2, 0, 1), where=valid)
    return int((owned & finite_in).sum())


def _open_npy(path: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ArchiveError(path, f"cannot map .npy: {e}") from e
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise ArchiveError(path, f"changed since the scan: {arr.dtype}{arr.shape}, "
                                 f"registry says {np.dtype(dtype)}{shape}")
    return arr


def _read_scales(piece: PieceSource, tw: Window) -> np.ndarray:
    """Scales of the window as a float32 (h, w) copy; 3-D scales reduce to the NaN-aware
    maximum over bands (as upstream did for the older (H, W, bands) files)."""
    h, w, bands = piece.shape
    try:
        arr = np.load(piece.scales, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ArchiveError(piece.scales, f"cannot map .npy: {e}") from e
    if arr.shape == (h, w, bands):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            return np.nanmax(arr[tw.slices], axis=2).astype(np.float32)
    if arr.shape != (h, w) or arr.dtype != np.float32:
        raise ArchiveError(piece.scales, f"changed since the scan: {arr.dtype}{arr.shape}")
    return np.array(arr[tw.slices], dtype=np.float32)


def _read_landmask(piece: PieceSource, tw: Window) -> np.ndarray:
    try:
        with rasterio.open(Path(piece.landmask)) as src:
            if (src.height, src.width) != piece.shape[:2]:
                raise ArchiveError(piece.landmask, f"changed since the scan: "
                                   f"{src.height}x{src.width}, expected {piece.shape[:2]}")
            win = RioWindow(tw.col0, tw.row0, tw.width, tw.height)
            return src.read(1, window=win)
    except RasterioError as e:
        raise ArchiveError(piece.landmask, f"cannot read landmask window: {e}") from e
