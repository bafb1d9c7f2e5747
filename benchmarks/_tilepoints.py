"""Point reads straight from an archive's tiles, without a store: what a store's point reads
are measured against (``bench_remote_points.py``).

Which tile and pixel a lon/lat reads follows the builder's rules, through its own code, so
the values equal a store's bit for bit: the point's pixel on the zone lattice (canonical
EPSG:326ZZ, origin on whole pixels, ``zonegrid.zone_grid``), each tile placed at the nearest
pixel (``zonegrid.placement``); the tile that owns the pixel's centre (its 0.1° cell) where
its raster covers the pixel, else the owner rule's fallbacks (``build.owner.choose_sources``
on the one pixel: the covering tile with the nearest centre, else the owner's nearest edge
pixel); no data where the landmask is 0 or the scale is not finite (``build.assemble``).
Tile grids come from the archive's registry (the landmask transforms the scan recorded).

Bytes come from the remote tiles in one of three ways (``TileReader.fetch``):

* ``serial``: per tile, its two ``.npy`` headers (one range request each, kept) and its
  landmask (one GET of the whole ~6 KB GeoTIFF, kept); per point on land, one range request
  of the 4 bytes of its scale and, where that is finite, one of the 128 bytes of its
  embedding, one request after another through ``Location.read_range`` (as the store
  reader did before it fetched a batch's chunks concurrently).
* ``concurrent``: the same requests, each tile's through ``obstore.get_ranges`` with
  coalescing off (obstore runs up to 10 at once; it merges only touching ranges).
* ``whole``: per tile, GET its whole embeddings, scales and landmask objects and index them
  (nothing kept between calls).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import obstore
from rasterio.io import MemoryFile

from geotessera.archive.registry import TileRecord
from geotessera.archive.remote import NpyHeader, parse_npy_header, read_bytes, read_npy_header
from geotessera.build.owner import NO_SOURCE, cell_codes, choose_sources
from geotessera.read.project import dequantise, transformer
from geotessera.read.reader import parse_points, zones_of
from geotessera.store.location import Location
from geotessera.tiles import tile_keys
from geotessera.types import TileKey, Window
from geotessera.zonegrid import HALO_PX, ZoneGrid, placement, zone_grid

FETCHES = ("serial", "concurrent", "whole")
Ranges = Callable[[Location, str, np.ndarray, int], list[bytes]]


@dataclass(frozen=True, slots=True)
class Zone:
    """One zone's tiles on its lattice: records, their placed windows, the cell index."""

    grid: ZoneGrid
    records: tuple[TileRecord, ...]
    windows: tuple[Window, ...]
    by_cell: dict[tuple[int, int], int]

    @classmethod
    def of(cls, zone: int, records: Sequence[TileRecord]) -> Zone:
        grid = zone_grid(zone, [r.grid for r in records], 1)  # any padding: same lattice
        return cls(grid, tuple(records), tuple(placement(grid, r.grid) for r in records),
                   {r.key.cell: i for i, r in enumerate(records)})

    def locate(self, lon: np.ndarray, lat: np.ndarray):
        """(record index or -1, tile row, tile col) of each point's pixel."""
        x, y = transformer("EPSG:4326", f"EPSG:{self.grid.epsg}").transform(lon, lat)
        fr, fc = self.grid.pixels.rowcol(np.asarray(x), np.asarray(y))
        r, c = np.floor(fr).astype(np.int64), np.floor(fc).astype(np.int64)
        clon, clat = transformer(f"EPSG:{self.grid.epsg}", "EPSG:4326").transform(
            *self.grid.pixels.xy(r, c))
        code = cell_codes(np.asarray(clon), np.asarray(clat))
        tile = np.full(len(r), -1, np.int64)
        for i in range(len(r)):  # the owner where its raster covers the pixel (most points)
            cell = (int(code[i]) // 2000 - 1800, int(code[i]) % 2000 - 900)
            t = self.by_cell.get(cell)
            if t is not None and _inside(self.windows[t], r[i], c[i]):
                tile[i] = t
            else:
                tile[i] = self._fallback(cell, int(r[i]), int(c[i]))
        w = [self.windows[t] if t >= 0 else Window(0, 1, 0, 1) for t in tile]
        rows = np.array([min(max(ri - wi.row0, 0), wi.height - 1) for ri, wi in zip(r, w)])
        cols = np.array([min(max(ci - wi.col0, 0), wi.width - 1) for ci, wi in zip(c, w)])
        return tile, rows.astype(np.int64), cols.astype(np.int64)

    def _fallback(self, cell: tuple[int, int], r: int, c: int) -> int:
        """The owner rule on the one pixel, among the tiles of the 3 × 3 cells around."""
        here = Window(r, r + 1, c, c + 1)
        pieces, index = [], []
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                t = self.by_cell.get((cell[0] + dx, cell[1] + dy))
                if t is None:
                    continue
                w = self.windows[t]
                wide = Window(w.row0 - HALO_PX, w.row1 + HALO_PX, w.col0 - HALO_PX,
                              w.col1 + HALO_PX)
                if wide.intersect(here) is None:
                    continue
                core = w.intersect(here)
                pieces.append((self.records[t].key, Window(0, 1, 0, 1),
                               core and core.shift(-r, -c)))
                index.append(t)
        if not pieces:
            return -1
        src = int(choose_sources(self.grid, here, pieces)[0, 0])
        return -1 if src == NO_SOURCE else index[src]


def _inside(w: Window, r: int, c: int) -> bool:
    return w.row0 <= r < w.row1 and w.col0 <= c < w.col1


@dataclass
class TileFiles:
    """One tile's headers (or, fetched whole, its arrays) and landmask."""

    embeddings: str
    scales: str
    emb: NpyHeader
    sc: NpyHeader
    land: np.ndarray
    arrays: tuple[np.ndarray, np.ndarray] | None = None  # fetched whole

    @classmethod
    def open(cls, root: Location, rec: TileRecord, whole: bool) -> TileFiles:
        emb_key, sc_key, land_key = tile_keys(rec.year, rec.name)
        with MemoryFile(root.read(land_key)) as mem, mem.open() as src:
            land, transform = src.read(1), tuple(src.transform)[:6]
        arrays = None
        if whole:
            raw = [root.read(k) for k in (emb_key, sc_key)]
            emb, sc = (parse_npy_header(b) for b in raw)
            arrays = tuple(np.frombuffer(b, h.dtype, offset=h.offset).reshape(h.shape)
                           for b, h in zip(raw, (emb, sc), strict=True))
        else:
            emb, sc = read_npy_header(root, emb_key), read_npy_header(root, sc_key)
        files = cls(emb_key, sc_key, emb, sc, land, arrays)
        files.check(rec, transform)
        return files

    def check(self, rec: TileRecord, transform: tuple[float, ...]) -> None:
        """Refuse a tile whose files do not have the layout this reader indexes."""
        e, s = self.emb, self.sc
        ok = (len(e.shape) == 3 and e.dtype == np.int8 and not e.fortran and not s.fortran
              and s.shape == e.shape[:2] and s.dtype == np.float32
              and self.land.shape == e.shape[:2] == (rec.height, rec.width)
              and np.allclose(transform, rec.transform))
        if not ok:
            raise ValueError(f"{rec.name}: unexpected layout {e} {s} {self.land.shape} "
                             f"{transform} (registry: {rec.height}x{rec.width} {rec.transform})")

    def values(self, root: Location, rows: np.ndarray, cols: np.ndarray,
               ranges: Ranges | None) -> np.ndarray:
        """(n, bands) float32 at tile pixels; NaN where there is no data."""
        if self.arrays is not None:
            return pixel_values(self.land, *self.arrays, rows, cols)
        bands = self.emb.shape[2]
        out = np.full((len(rows), bands), np.nan, np.float32)
        idx = np.flatnonzero(self.land[rows, cols] != 0)  # water reads nothing more
        r, c = rows[idx], cols[idx]
        pix = r * self.emb.shape[1] + c
        raw = ranges(root, self.scales, self.sc.offset + pix * 4, 4)
        scale = np.frombuffer(b"".join(raw), self.sc.dtype)
        ok = np.isfinite(scale)
        raw = ranges(root, self.embeddings, self.emb.offset + pix[ok] * bands, bands)
        q = np.frombuffer(b"".join(raw), np.int8).reshape(-1, bands)
        out[idx[ok]] = dequantise(q, scale[ok][:, None])
        return out


def pixel_values(land: np.ndarray, emb: np.ndarray, scales: np.ndarray, rows: np.ndarray,
                 cols: np.ndarray) -> np.ndarray:
    """(n, bands) float32 at tile pixels of a tile's arrays (``np.load``, memory-mapped or
    not): NaN where the landmask is 0 or the scale is not finite, as the builder assembles."""
    out = np.full((len(rows), emb.shape[2]), np.nan, np.float32)
    idx = np.flatnonzero(land[rows, cols] != 0)
    r, c = rows[idx], cols[idx]
    scale = np.asarray(scales[r, c], np.float32)
    ok = np.isfinite(scale)
    out[idx[ok]] = dequantise(np.asarray(emb[r[ok], c[ok]]), scale[ok][:, None])
    return out


def zones_of_records(records: Sequence[TileRecord]) -> dict[int, Zone]:
    """The usable tiles of ``records`` by UTM zone, each zone on its lattice."""
    by_zone: dict[int, list[TileRecord]] = {}
    for r in records:
        if r.usable:
            by_zone.setdefault(r.zone, []).append(r)
    return {z: Zone.of(z, recs) for z, recs in by_zone.items()}


def serial_ranges(root: Location, key: str, starts: np.ndarray, length: int) -> list[bytes]:
    return [read_bytes(root, key, int(s), int(s) + length) for s in starts]


def concurrent_ranges(root: Location, key: str, starts: np.ndarray,
                      length: int) -> list[bytes]:
    if not len(starts):
        return []
    got = obstore.get_ranges(root.obstore(), key, starts=[int(s) for s in starts],
                             lengths=[length] * len(starts), coalesce=0)
    return [bytes(b) for b in got]


class TileReader:
    """Points from the remote tiles of one year; headers and landmasks kept per reader
    (except with ``fetch="whole"``, which keeps nothing)."""

    def __init__(self, root: Location | str, records: Sequence[TileRecord],
                 fetch: str = "serial") -> None:
        if fetch not in FETCHES:
            raise ValueError(f"fetch must be one of {FETCHES}, not {fetch!r}")
        self.root, self.fetch = Location.parse(root), fetch
        self.records = [r for r in records if r.usable]
        self.bands = self.records[0].bands
        self.zones = zones_of_records(self.records)
        self._files: dict[TileKey, TileFiles] = {}

    def sample(self, points) -> np.ndarray:
        """(n, bands) float32 at WGS84 (lon, lat) points; NaN where there is no data."""
        lon, lat = parse_points(points)
        out = np.full((len(lon), self.bands), np.nan, np.float32)
        zones = zones_of(lon, lat)
        for z in sorted(set(zones.tolist()) & self.zones.keys()):
            sel = np.flatnonzero(zones == z)
            tile, rows, cols = self.zones[z].locate(lon[sel], lat[sel])
            for t in sorted(set(tile.tolist()) - {-1}):
                here = tile == t
                files = self._open(self.zones[z].records[t])
                out[sel[here]] = files.values(self.root, rows[here], cols[here],
                                              _RANGES.get(self.fetch))
        return out

    def _open(self, rec: TileRecord) -> TileFiles:
        if self.fetch == "whole":
            return TileFiles.open(self.root, rec, whole=True)
        if rec.key not in self._files:
            self._files[rec.key] = TileFiles.open(self.root, rec, whole=False)
        return self._files[rec.key]


_RANGES: dict[str, Ranges] = {"serial": serial_ranges, "concurrent": concurrent_ranges}
