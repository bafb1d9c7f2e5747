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

from geotessera.errors import ArchiveError
from geotessera.build.owner import choose_sources
from geotessera.build.sources import refuse_vsi
from geotessera.types import TileKey, Window
from geotessera.zonegrid import ZoneGrid, core_windows

#: Tile rows memory-mapped at a time while copying (128 rows × 1110 px × 128 B ≈ 18 MB).
MAP_ROWS = 128


@dataclass(frozen=True, slots=True)
class PieceSource:
    """One tile's contribution to a shard, with the absolute paths of its files. The windows
    include the tile's halo (see ``zonegrid.HALO_PX``)."""

    key: TileKey
    tile_window: Window
    shard_window: Window
    embeddings: str
    scales: str
    landmask: str
    shape: tuple[int, int, int]

    @property
    def core(self) -> tuple[Window, Window] | None:
        """(tile, shard) windows inside the raster; the windows above include the halo."""
        return core_windows(self.tile_window, self.shard_window, self.shape[:2])


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
    cores = [p.core for p in spec.pieces]
    src = choose_sources(spec.grid, spec.window, [
        (p.key, p.shard_window, c and c[1]) for p, c in zip(spec.pieces, cores, strict=True)])
    stats = []
    for i, (piece, core) in enumerate(zip(spec.pieces, cores, strict=True)):
        owned = src[piece.shard_window.slices] == i
        if not owned.any():
            continue
        in_core = np.zeros_like(owned)
        finite = 0
        if core is not None:
            rel = core[1].shift(-piece.shard_window.row0, -piece.shard_window.col0)
            in_core[rel.slices] = True
            finite += _copy_core(piece, core, owned[rel.slices], emb, scales)
        halo = owned & ~in_core
        if halo.any():
            finite += _copy_halo(piece, halo, emb, scales)
        stats.append(PieceStat(piece.key.name, int(owned.sum()), finite))
    return ShardData(emb, scales, tuple(stats))


def _copy_core(piece: PieceSource, core: tuple[Window, Window], owned: np.ndarray,
               emb: np.ndarray, scales: np.ndarray) -> int:
    """Copy the owned pixels inside the tile raster with window reads; returns how many had
    finite input scales.

    Owner borders are nearly straight, so a piece owns about one run of columns per row: each
    run is one plain slice copy (contiguous rows of 128-byte pixels from the memory map), no
    full-shard mask. Owned pixels without data are then zeroed; no other piece writes them,
    so the result equals the masked copy."""
    tw, sw = core
    sc = _read_scales(piece, tw)
    finite_in = np.isfinite(sc)
    water = _read_landmask(piece, tw) == 0
    sc[water | ~finite_in] = np.nan
    scales[sw.slices][owned] = sc[owned]
    dest = emb[(slice(None), *sw.slices)]
    rows, starts, stops = row_runs(owned)
    for r0 in range(0, tw.height, MAP_ROWS):
        # map the tile afresh per block of rows, so at most MAP_ROWS rows of its pages are
        # resident in this worker at a time (they count in its RSS until unmapped)
        block = _open_npy(piece.embeddings, piece.shape, np.int8)[
            tw.row0 + r0 : tw.row0 + r0 + MAP_ROWS, tw.col0 : tw.col1]
        lo, hi = np.searchsorted(rows, [r0, r0 + MAP_ROWS])
        for r, a, b in zip(rows[lo:hi], starts[lo:hi], stops[lo:hi], strict=True):
            dest[:, r, a:b] = block[r - r0, a:b].T
        del block
    nodata = owned & ~np.isfinite(sc)
    if nodata.any():
        dest[:, nodata] = 0
    return int((owned & finite_in).sum())


def row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, starts, stops) of the maximal runs of True in each row of a 2-D mask, in row
    then column order: ``mask[r, a:b]`` is all True for each run and the runs cover exactly
    the True pixels."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, stops = np.nonzero(step == -1)
    return rows, starts, stops


def _copy_halo(piece: PieceSource, halo: np.ndarray, emb: np.ndarray,
               scales: np.ndarray) -> int:
    """Fill owned crack pixels just outside the raster from the nearest edge pixel (at most
    HALO_PX away); returns how many had finite input scales."""
    h, w, _ = piece.shape
    rr, cc = np.nonzero(halo)
    tr = np.clip(rr + piece.tile_window.row0, 0, h - 1)
    tc = np.clip(cc + piece.tile_window.col0, 0, w - 1)
    sc = _gather_scales(piece, tr, tc)
    finite_in = np.isfinite(sc)
    box = Window(int(tr.min()), int(tr.max()) + 1, int(tc.min()), int(tc.max()) + 1)
    water = _read_landmask(piece, box)[tr - box.row0, tc - box.col0] == 0
    sc[water | ~finite_in] = np.nan
    srow, scol = rr + piece.shard_window.row0, cc + piece.shard_window.col0
    scales[srow, scol] = sc
    ok = np.isfinite(sc)
    vectors = _open_npy(piece.embeddings, piece.shape, np.int8)[tr[ok], tc[ok]]
    emb[:, srow[ok], scol[ok]] = vectors.T
    return int(finite_in.sum())


def _open_npy(path: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ArchiveError(path, f"cannot map .npy: {e}") from e
    if arr.shape != shape or arr.dtype != np.dtype(dtype):
        raise ArchiveError(path, f"changed since the scan: {arr.dtype}{arr.shape}, "
                                 f"registry says {np.dtype(dtype)}{shape}")
    return arr


def _scales_source(piece: PieceSource) -> np.ndarray:
    h, w, bands = piece.shape
    try:
        arr = np.load(piece.scales, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ArchiveError(piece.scales, f"cannot map .npy: {e}") from e
    if arr.shape not in ((h, w), (h, w, bands)) or arr.dtype != np.float32:
        raise ArchiveError(piece.scales, f"changed since the scan: {arr.dtype}{arr.shape}")
    return arr


def _as_2d_scales(values: np.ndarray, ndim: int) -> np.ndarray:
    """float32 copy; 3-D scales reduce to the NaN-aware maximum over bands (as upstream
    did for the older (H, W, bands) files)."""
    if ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            return np.nanmax(values, axis=-1).astype(np.float32)
    return np.array(values, dtype=np.float32)


def _read_scales(piece: PieceSource, tw: Window) -> np.ndarray:
    """Scales of a window inside the raster as a float32 (h, w) copy."""
    arr = _scales_source(piece)
    return _as_2d_scales(arr[tw.slices], arr.ndim)


def _gather_scales(piece: PieceSource, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    arr = _scales_source(piece)
    return _as_2d_scales(arr[rows, cols], arr.ndim)


def _read_landmask(piece: PieceSource, tw: Window) -> np.ndarray:
    refuse_vsi(piece.landmask, piece.landmask)  # GDAL would read /vsicurl/… over the network
    try:
        with rasterio.open(Path(piece.landmask)) as src:
            if (src.height, src.width) != piece.shape[:2]:
                raise ArchiveError(piece.landmask, f"changed since the scan: "
                                   f"{src.height}x{src.width}, expected {piece.shape[:2]}")
            win = RioWindow(tw.col0, tw.row0, tw.width, tw.height)
            return src.read(1, window=win)
    except RasterioError as e:
        raise ArchiveError(piece.landmask, f"cannot read landmask window: {e}") from e
