"""Assemble one shard in memory from tile windows. Knows nothing of zarr.

A shard is filled from ``.npy`` windows (memory-mapped locally, row-run range requests
remotely) and windowed landmask reads, under the
overlap rule of ``owner.py`` and the no-data rule: water (landmask 0) and non-finite scales
become NaN scales, and embeddings are 0 wherever scales are NaN. A scale of 0 is valid data.
"""

from __future__ import annotations

import mmap
import warnings
from dataclasses import dataclass

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window as RioWindow

from geotessera.archive.remote import RemoteNpy, open_raster
from geotessera.errors import ArchiveError
from geotessera.build.owner import choose_sources
from geotessera.build.sources import refuse_vsi
from geotessera.store.location import Location
from geotessera.types import TileKey, Window
from geotessera.zonegrid import ZoneGrid, core_windows

#: Tile rows memory-mapped at a time while copying (64 rows × 1110 px × 128 B ≈ 9 MB).
MAP_ROWS = 64


@dataclass(frozen=True, slots=True)
class PieceSource:
    """One tile's contribution to a shard: the archive ``root`` and the keys of its files
    below it (derived from the tile name). The windows include the tile's halo (see
    ``zonegrid.HALO_PX``)."""

    key: TileKey
    tile_window: Window
    shard_window: Window
    root: Location
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
    #: .npy bytes fetched from remote tiles (0 for local, memory-mapped tiles) and the
    #: bytes of the pixels the shard used (windows plus halo pixels, embeddings and scales).
    fetched: int = 0
    needed: int = 0
    #: The private anonymous mapping holding pixel-major embeddings (None otherwise).
    pages: mmap.mmap | None = None

    def release_rows(self, r0: int, r1: int) -> None:
        """Give the memory of embedding rows [r0, r1) back to the OS, so a reader that is
        done with them need not hold the whole shard; those rows read as 0 afterwards, the
        others are untouched (only pages wholly inside the rows go). A no-op unless the
        embeddings are pixel-major on a platform with ``MADV_DONTNEED``."""
        if self.pages is None:
            return
        row = self.embeddings[:, 0].nbytes
        start = -(-r0 * row // mmap.PAGESIZE) * mmap.PAGESIZE
        stop = r1 * row // mmap.PAGESIZE * mmap.PAGESIZE
        if stop > start:
            self.pages.madvise(mmap.MADV_DONTNEED, start, stop - start)


def assemble(spec: ShardSpec, pixel_major: bool) -> ShardData:
    """The shard's embeddings (bands, S, S) int8 and scales (S, S) float32.

    With ``pixel_major`` the embeddings are a (bands, S, S) view of an (S, S, bands) buffer,
    the tiles' own memory order, so no transposing copy is made here.
    """
    s = spec.grid.shard_px
    bands = spec.pieces[0].shape[2] if spec.pieces else 0
    pages = _pages(s * s * bands) if pixel_major else None
    if pages is not None:
        emb = np.frombuffer(pages, np.int8).reshape(s, s, bands).transpose(2, 0, 1)
    elif pixel_major:
        emb = np.zeros((s, s, bands), dtype=np.int8).transpose(2, 0, 1)
    else:
        emb = np.zeros((bands, s, s), dtype=np.int8)
    scales = np.full((s, s), np.nan, dtype=np.float32)
    cores = [p.core for p in spec.pieces]
    src = choose_sources(spec.grid, spec.window, [
        (p.key, p.shard_window, c and c[1]) for p, c in zip(spec.pieces, cores, strict=True)])
    stats = []
    fetched = needed = 0
    for i, (piece, core) in enumerate(zip(spec.pieces, cores, strict=True)):
        owned = src[piece.shard_window.slices] == i
        if not owned.any():
            continue
        in_core = np.zeros_like(owned)
        finite = 0
        files = TileArrays(piece)
        if core is not None:
            rel = core[1].shift(-piece.shard_window.row0, -piece.shard_window.col0)
            in_core[rel.slices] = True
            finite += _copy_core(files, core, owned[rel.slices], emb, scales)
        halo = owned & ~in_core
        if halo.any():
            finite += _copy_halo(files, halo, emb, scales)
        stats.append(PieceStat(piece.key.name, int(owned.sum()), finite))
        fetched += files.fetched
        needed += files.needed
    return ShardData(emb, scales, tuple(stats), fetched, needed, pages)


def _pages(nbytes: int) -> mmap.mmap | None:
    """Zeroed private anonymous memory of ``nbytes`` whose pages can be given back one row
    range at a time (``ShardData.release_rows``); None where that is not possible."""
    if nbytes == 0 or not hasattr(mmap, "MADV_DONTNEED") or not hasattr(mmap, "MAP_PRIVATE"):
        return None
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)


def _copy_core(files: TileArrays, core: tuple[Window, Window], owned: np.ndarray,
               emb: np.ndarray, scales: np.ndarray) -> int:
    """Copy the owned pixels inside the tile raster with window reads; returns how many had
    finite input scales.

    Owner borders are nearly straight, so a piece owns about one run of columns per row: each
    run is one plain slice copy (contiguous rows of 128-byte pixels from the memory map), no
    full-shard mask. Owned pixels without data are then zeroed; no other piece writes them,
    so the result equals the masked copy."""
    tw, sw = core
    sc = files.scales_window(tw)
    finite_in = np.isfinite(sc)
    water = files.landmask(tw) == 0
    sc[water | ~finite_in] = np.nan
    scales[sw.slices][owned] = sc[owned]
    dest = emb[(slice(None), *sw.slices)]
    rows, starts, stops = row_runs(owned)
    for r0 in range(0, tw.height, MAP_ROWS):
        # map the tile afresh per block of rows, so at most MAP_ROWS rows of its pages are
        # resident in this worker at a time (they count in its RSS until unmapped)
        block = files.embeddings_rows(tw, r0, MAP_ROWS)
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


def _copy_halo(files: TileArrays, halo: np.ndarray, emb: np.ndarray,
               scales: np.ndarray) -> int:
    """Fill owned crack pixels just outside the raster from the nearest edge pixel (at most
    HALO_PX away); returns how many had finite input scales."""
    piece = files.piece
    h, w, _ = piece.shape
    rr, cc = np.nonzero(halo)
    tr = np.clip(rr + piece.tile_window.row0, 0, h - 1)
    tc = np.clip(cc + piece.tile_window.col0, 0, w - 1)
    sc = files.scales_gather(tr, tc)
    finite_in = np.isfinite(sc)
    box = Window(int(tr.min()), int(tr.max()) + 1, int(tc.min()), int(tc.max()) + 1)
    water = files.landmask(box)[tr - box.row0, tc - box.col0] == 0
    sc[water | ~finite_in] = np.nan
    srow, scol = rr + piece.shard_window.row0, cc + piece.shard_window.col0
    scales[srow, scol] = sc
    ok = np.isfinite(sc)
    vectors = files.embeddings_gather(tr[ok], tc[ok])
    emb[:, srow[ok], scol[ok]] = vectors.T
    return int(finite_in.sum())


class TileArrays:
    """The embeddings, scales and landmask of one piece, opened once per shard task: local
    tiles memory-mapped (today's path), remote tiles through ``RemoteNpy`` (row-run range
    requests) and GDAL windows. Counts the bytes fetched and needed."""

    def __init__(self, piece: PieceSource) -> None:
        self.piece = piece
        self.needed = 0
        self._emb: np.ndarray | RemoteNpy | None = None
        self._sc: np.ndarray | RemoteNpy | None = None

    @property
    def fetched(self) -> int:
        return sum(a.fetched for a in (self._emb, self._sc) if isinstance(a, RemoteNpy))

    def _open(self, key: str, dtype: type, shapes: tuple[tuple[int, ...], ...]):
        p = self.piece
        loc = p.root.child(key)
        if p.root.is_local:
            try:
                arr = np.load(loc.path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise ArchiveError(loc, f"cannot map .npy: {e}") from e
        else:
            arr = RemoteNpy.open(p.root, key)
        if arr.shape not in shapes or arr.dtype != np.dtype(dtype):
            raise ArchiveError(loc, f"changed since the scan: {arr.dtype}{arr.shape}, "
                                    f"registry says {np.dtype(dtype)}{shapes[0]}")
        return arr

    def _embeddings(self):
        if self._emb is None:
            self._emb = self._open(self.piece.embeddings, np.int8, (self.piece.shape,))
        return self._emb

    def _scales(self):
        if self._sc is None:
            h, w, bands = self.piece.shape
            self._sc = self._open(self.piece.scales, np.float32, ((h, w), (h, w, bands)))
        return self._sc

    def _count(self, pixels: int, arr) -> None:
        self.needed += pixels * int(np.prod(arr.shape[2:], dtype=np.int64)) * arr.dtype.itemsize

    def embeddings_window(self, tw: Window) -> np.ndarray:
        arr = self._embeddings()
        self._count(tw.height * tw.width, arr)
        return arr.window(*tw.slices) if isinstance(arr, RemoteNpy) else arr[tw.slices]

    def embeddings_rows(self, tw: Window, r0: int, n: int) -> np.ndarray:
        """Rows [r0, r0 + n) of window ``tw`` as (rows, cols, bands). A local tile is mapped
        afresh for each call and the map dropped with the block, so at most ``n`` rows of its
        pages stay resident in the worker (they count in its RSS until unmapped)."""
        rows = slice(tw.row0 + r0, min(tw.row1, tw.row0 + r0 + n))
        arr = self._embeddings()
        self._count((rows.stop - rows.start) * tw.width, arr)
        if isinstance(arr, RemoteNpy):
            return arr.window(rows, slice(tw.col0, tw.col1))
        self._emb = None  # the caller's block holds the only reference to the map
        return arr[rows, tw.col0:tw.col1]

    def embeddings_gather(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        arr = self._embeddings()
        self._count(len(rows), arr)
        return arr.gather(rows, cols) if isinstance(arr, RemoteNpy) else arr[rows, cols]

    def scales_window(self, tw: Window) -> np.ndarray:
        """Scales of a window inside the raster as a float32 (h, w) copy."""
        arr = self._scales()
        self._count(tw.height * tw.width, arr)
        values = arr.window(*tw.slices) if isinstance(arr, RemoteNpy) else arr[tw.slices]
        return _as_2d_scales(values, arr.ndim)

    def scales_gather(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        arr = self._scales()
        self._count(len(rows), arr)
        values = arr.gather(rows, cols) if isinstance(arr, RemoteNpy) else arr[rows, cols]
        return _as_2d_scales(values, arr.ndim)

    def landmask(self, tw: Window) -> np.ndarray:
        refuse_vsi(self.piece.landmask, self.piece.landmask)  # never a GDAL /vsi… path
        loc = self.piece.root.child(self.piece.landmask)
        try:
            with open_raster(loc) as src:
                if (src.height, src.width) != self.piece.shape[:2]:
                    raise ArchiveError(loc, f"changed since the scan: {src.height}x"
                                            f"{src.width}, expected {self.piece.shape[:2]}")
                return src.read(1, window=RioWindow(tw.col0, tw.row0, tw.width, tw.height))
        except RasterioError as e:
            raise ArchiveError(loc, f"cannot read landmask window: {e}") from e


def _as_2d_scales(values: np.ndarray, ndim: int) -> np.ndarray:
    """float32 copy; 3-D scales reduce to the NaN-aware maximum over bands (as upstream
    did for the older (H, W, bands) files)."""
    if ndim == 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels stay NaN
            return np.nanmax(values, axis=-1).astype(np.float32)
    return np.array(values, dtype=np.float32)
