"""Opened zone stores and point look-ups in them.

Points are routed to the store of their UTM zone (canonical EPSG:326ZZ northings, negative
south of the equator), as the builder placed them, under the seam rule of ``seams``. One
dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). No xarray.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geotessera.errors import StoreError, StoreNotFoundError
from geotessera.read.aliases import Points, Source
from geotessera.read.project import dequantise, transformer
from geotessera.read.seams import NEIGHBOUR_REACH_M, crack_pixels, edge_distance_m
from geotessera.read.sources import stores_of
from geotessera.store.location import Location
from geotessera.store.versions import published
from geotessera.store.meta import (
    FINEST_ARRAYS,
    ROOT_DOC,
    Opened,
    StoreMeta,
    check_nodes,
    decoding,
    meta_of,
    node_documents,
    open_checked,
)
from geotessera.store.pointread import PointReader, ScalesReader, read_window
from geotessera.types import Level


@dataclass(frozen=True, slots=True)
class ZoneStore:
    """An opened zone store: its parsed metadata (``meta``: zone, year, EPSG, levels,
    passes, from the root document and its consolidated metadata) and its ``Location``;
    zarr's root group (``root``), arrays and point readers are opened on first use and kept.
    Make one with ``ZoneStore.open``; ``Reader.zone`` returns them.

    Guarantee: no value is decoded with a node document that was not checked equal to its
    consolidated entry. The root and ``L0``'s ``embeddings`` and ``scales`` are checked on
    opening; any other array on first use (``arrays``, ``array``); ``check_all`` checks every
    node. A damaged or disagreeing document is a StoreError naming the store and the file.

    Examples
    --------
    >>> zs = ZoneStore.open("demo/stores/utm31_2024.zarr")
    >>> zs.meta.zone, zs.meta.year, zs.meta.levels[0].path
    (31, 2024, 'L0')
    """

    meta: StoreMeta
    location: Location
    #: what ``meta.open_checked`` read (``root`` is opened from it)
    opened: Opened | None = field(default=None, compare=False, repr=False)
    #: path → node document, from the consolidated metadata (each checked before use)
    docs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: paths of the nodes whose own zarr.json was found equal to ``docs``
    checked: set[str] = field(default_factory=set, compare=False, repr=False)
    _readers: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def open(cls, href: str | os.PathLike[str] | Location, allow_incomplete: bool = False,
             opened: Opened | None = None) -> ZoneStore:
        """Open a store by path, URL or ``Location`` (a store home opens the version its
        pointer names); StoreError if it is not a zone store, its build is not complete
        (unless ``allow_incomplete``) or a document checked is damaged or disagrees,
        StoreNotFoundError if nothing is there. ``opened`` is ``meta.open_checked`` of the
        published store ``href`` when already made."""
        if opened is None:
            loc = published(Location.parse(href))
            opened = open_checked(loc, FINEST_ARRAYS)
        else:
            loc = Location.parse(href)
        meta = meta_of(opened, str(loc))
        if not (allow_incomplete or meta.passes.get("build")):
            raise StoreError(loc, "build not complete (geotessera:build_complete is not "
                                   "true); pass allow_incomplete=True to read it anyway")
        return cls(meta, loc, opened, node_documents(opened.doc), set(opened.checked))

    @property
    def root(self) -> Any:
        """zarr's root group, read-only, opened on first use from the root document already
        read (parsing the consolidated metadata costs milliseconds: a point read whose
        layout the direct readers read never opens it). Read arrays through ``arrays`` and
        ``array``, which check their documents first."""
        if "root" not in self._readers:
            if self.opened is None:
                raise StoreError(self.location, "no root group: not opened by ZoneStore.open")
            self._readers["root"] = self.opened.group()
        return self._readers["root"]

    def check(self, *paths: str) -> None:
        """Check the documents of the nodes ``paths`` against the consolidated metadata, each
        once, those not yet checked read at once; StoreError naming the file for one that
        is damaged, missing or disagrees. Nothing to check without consolidated metadata
        (zarr and the point readers then read each node's own document)."""
        if todo := [p for p in paths if p in self.docs and p not in self.checked]:
            check_nodes(self.location, self.docs, todo)
            self.checked.update(todo)

    def check_all(self) -> None:
        """``check`` every node of the consolidated metadata (what ``meta.open_root`` does)."""
        self.check(*self.docs)

    def arrays(self, level: Level) -> tuple[Any, Any]:
        """(embeddings, scales) zarr arrays of a level, checked and opened once (opening one
        through zarr costs milliseconds, more than a warm point look-up)."""
        key = ("arrays", level.path)
        if key not in self._readers:
            emb, sc = f"{level.path}/embeddings", f"{level.path}/scales"
            self.check(emb, sc)
            self._readers[key] = (self.root[emb], self.root[sc])
        return self._readers[key]

    def array(self, level: Level, name: str) -> Any:
        """The zarr array ``name`` of a level (``rgba``, …), checked and opened once;
        KeyError when the level has none."""
        path = f"{level.path}/{name}"
        if ("array", path) not in self._readers:
            self.check(path)
            self._readers[("array", path)] = self.root[path]
        return self._readers[("array", path)]

    def fractional(self, level: Level, lon: np.ndarray, lat: np.ndarray):
        """(row, col) of lon/lat in ``level``'s pixels, fractional (pixel centres at .5)."""
        x, y = transformer("EPSG:4326", f"EPSG:{self.meta.epsg}").transform(lon, lat)
        return level.grid.rowcol(np.asarray(x), np.asarray(y))

    def sample(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """(n, bands) float32 at the finest level; NaN outside the grid or without data."""
        level = self.meta.levels[0]
        reader = self._point_reader(level)
        fr, fc = self.fractional(level, lon, lat)
        bands = reader.bands if reader is not None else self.arrays(level)[0].shape[0]
        out = np.full((len(lon), bands), np.nan, np.float32)
        inside = _inside(fr, fc, level.shape)
        if not inside.any():
            return out
        r, c = np.floor(fr[inside]).astype(np.int64), np.floor(fc[inside]).astype(np.int64)
        with ThreadPoolExecutor(1) as pool:  # remote shard indexes not kept: read meanwhile
            early = (pool.submit(reader.load_indexes, r, c) if reader is not None
                     and not self.location.is_local and reader.lacks_indexes(r, c) else None)
            sc = self._scales_at(level, r, c, lon[inside], lat[inside])
            if early is not None:
                early.result()
        have = np.isfinite(sc)  # read embeddings only where there is data
        if have.any():
            vectors = self._vectors(level, r[have], c[have])
            out[np.flatnonzero(inside)[have]] = dequantise(vectors, sc[have][:, None])
        return out

    def _scales_at(self, level: Level, r: np.ndarray, c: np.ndarray, lon: np.ndarray,
                   lat: np.ndarray) -> np.ndarray:
        """float32 scales at pixels (r, c) of locations (lon, lat); where a pixel is empty
        and the zone-edge crack rule applies, r and c are changed (in place) to the pixel
        the rule reads, and its scale is returned."""
        sc = self._scales(level, r, c)
        empty = np.flatnonzero(~np.isfinite(sc))
        if empty.size:
            r2, c2, crack = crack_pixels(self, level, r[empty], c[empty], lon[empty],
                                         lat[empty])
            if crack.any():
                i = empty[crack]
                r[i], c[i] = r2[crack], c2[crack]
                sc[i] = self._scales(level, r[i], c[i])
        return sc

    def _scales(self, level: Level, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """float32 scales at pixels: whole chunks read once into a bounded cache where the
        layout is ours, zarr's coordinate selection otherwise."""
        key = f"{level.path}/scales"
        if (reader := self._direct(key, key, ScalesReader)) is not None:
            return reader.values(r, c)
        return self.arrays(level)[1].vindex[r, c]

    def tile_edge(self, level: Level) -> int:
        """The tile edge ``tiles`` decodes fastest: the inner chunk's where the layout is ours."""
        return reader.chunk if (reader := self._point_reader(level)) is not None else 32

    def tiles(self, level: Level, rows: range, cols: range, edge: int, out: np.ndarray) -> None:
        """Decode ``level``'s int8 embeddings over the ``edge``-pixel tiles ``rows`` × ``cols``
        (tile indices) into ``out[:, i, j]``, a (band, len(rows), len(cols), edge, edge) view:
        inner chunk by inner chunk by the direct reader where the layout is ours and its
        chunk is the tile, through zarr's slice read otherwise; zeros beyond the array."""
        reader = self._point_reader(level)
        if reader is not None and reader.chunk == edge:
            reader.chunks(rows, cols, out)
            return
        h, w = level.shape
        r0, c0 = rows[0] * edge, cols[0] * edge
        r1, c1 = min((rows[-1] + 1) * edge, h), min((cols[-1] + 1) * edge, w)
        block = np.zeros((out.shape[0], len(rows) * edge, len(cols) * edge), np.int8)
        read_window(self.arrays(level)[0], slice(r0, r1), slice(c0, c1),
                    block[:, :r1 - r0, :c1 - c0])
        out[...] = block.reshape(out.shape[0], len(rows), edge, len(cols), edge).transpose(
            0, 1, 3, 2, 4)

    def _point_reader(self, level: Level) -> PointReader | None:
        """The direct reader of a level's embeddings (kept, so shard indexes are read once
        per store), or None when the layout is not one it reads."""
        return self._direct(level.path, f"{level.path}/embeddings", PointReader)

    def _direct(self, key: Any, path: str, reader: Any) -> Any:
        """``reader.open`` of array ``path`` (a direct reader class), kept under ``key``: the
        array's document checked first and the reader opened inside ``decoding``, so a
        damaged document is a StoreError naming it; None when the layout is not its own."""
        if key not in self._readers:
            self.check(path)
            with decoding(self.location, f"{path}/{ROOT_DOC}"):
                self._readers[key] = reader.open(self.location, path, self.docs.get(path))
        return self._readers[key]

    def _vectors(self, level: Level, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """(n, bands) int8: the direct point reader where the layout is ours, zarr's
        coordinate selection otherwise."""
        if (reader := self._point_reader(level)) is not None:
            return reader.vectors(r, c)
        emb_arr = self.arrays(level)[0]
        bands = np.arange(emb_arr.shape[0])
        return emb_arr.vindex[bands[:, None], r[None, :], c[None, :]].T


def _inside(fr: np.ndarray, fc: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return (fr >= 0) & (fr < shape[0]) & (fc >= 0) & (fc < shape[1])


def parse_points(points: Points) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) float64 copies of (n, 2) lon/lat pairs or of one pair; ValueError otherwise."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim == 1 and pts.size == 2:
        pts = pts[None, :]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (lon, lat) pairs, shape (n, 2); got {pts.shape}")
    return pts[:, 0].copy(), pts[:, 1].copy()


def zones_of(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """UTM zone of each point (tiles.utm_zone), 0 for a non-finite or out-of-range point."""
    ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    zone = np.floor_divide(np.where(ok, lon, 0.0) + 180.0, 6.0)  # utm_zone, vectorised:
    return np.where(ok, np.clip(zone + 1, 1, 60), 0).astype(int)  # float // is floor, as there


class Reader:
    """The stores of one year in one source, each opened on first use and kept open.

    Use it for many small look-ups: ``sample`` opens (and parses the metadata of) each store
    on every call, a Reader once. It keeps decoded chunks of each store it reads, least
    recently used dropped first, within ``store.pointread.CACHE_BYTES`` (128 MiB) each for
    embeddings and for scales, so repeated look-ups in one area read nothing again.

    Parameters
    ----------
    source : Source
        A stores directory, one store, a STAC catalog or collection (path, URL or
        ``pystac.Catalog``) or the URL of a stores directory (``s3://``, ``https://``).
    year : int
        The year whose stores to read.
    allow_incomplete : bool, default False
        Read stores whose build did not complete.

    Raises
    ------
    StoreError
        A listable source has no store for ``year`` (raised here, before any look-up).

    Examples
    --------
    >>> reader = Reader("demo/stores", 2024)
    >>> reader.sample([(0.12, -0.17)]).shape[0]
    1
    >>> reader.zone(31).meta.epsg, reader.zone(32)
    (32631, None)
    """

    def __init__(self, source: Source, year: int, *, allow_incomplete: bool = False) -> None:
        self.stores = stores_of(source, year)
        self.allow_incomplete = allow_incomplete
        self._open: dict[int, ZoneStore | None] = {}

    def zone(self, zone: int) -> ZoneStore | None:
        """The opened store of UTM ``zone`` (1–60), or None when the source has none for it.

        Raises StoreError when the store is damaged or incomplete (unless
        ``allow_incomplete``), and StoreNotFoundError when a listed store has gone.
        """
        if zone not in self._open:
            href = self.stores.href(zone)
            try:
                self._open[zone] = (ZoneStore.open(href, self.allow_incomplete,
                                                   self.stores.opened.get(zone))
                                    if href else None)
            except StoreNotFoundError:
                if self.stores.listed:
                    raise
                self._open[zone] = None  # a URL source: no store by that name
        return self._open[zone]

    def bands(self) -> int:
        """The number of embedding bands (of the first store found); StoreError when the
        source has no store for the year."""
        for zone in sorted(self.stores.hrefs) or sorted(z for z, s in self._open.items() if s):
            if (zs := self.zone(zone)) is not None:
                return zs.meta.bands or zs.arrays(zs.meta.levels[0])[0].shape[0]
        raise StoreError(self.stores.source, f"no zone store for year {self.stores.year} "
                                             f"(tried zones {sorted(self._open)})")

    def sample(self, points: Points) -> np.ndarray:
        """Dequantised vectors at WGS84 ``points``, as ``geotessera.read.sample`` reads them.

        Each point reads its own zone's store (with the zone-edge crack rule), else an
        adjacent zone's store that has data there.

        Parameters
        ----------
        points : Points
            ``(lon, lat)`` pairs: one pair, a sequence of pairs or an ``(n, 2)`` array.

        Returns
        -------
        numpy.ndarray
            ``(n, bands)`` float32; NaN rows where no store has data (water, outside every
            store, a non-finite point).

        Raises
        ------
        ValueError
            ``points`` is not ``(n, 2)``.
        StoreError
            A store the points need is damaged or incomplete.
        """
        lon, lat = parse_points(points)
        zones = zones_of(lon, lat)
        parts = []
        for z in sorted(set(zones.tolist()) - {0}):
            if (zs := self.zone(z)) is not None:
                sel = zones == z
                parts.append((sel, zs.sample(lon[sel], lat[sel])))
        out = np.full((len(lon), parts[0][1].shape[1] if parts else self.bands()), np.nan,
                      np.float32)
        for sel, vals in parts:
            out[sel] = vals
        self._from_neighbours(out, lon, lat, zones)
        return out

    def _from_neighbours(self, out: np.ndarray, lon: np.ndarray, lat: np.ndarray,
                         zones: np.ndarray) -> None:
        """Rows still without data, within NEIGHBOUR_REACH_M of their zone's edge, take the
        adjacent zones' stores where those have data (their tiles' rasters reach a little
        beyond their own zone's edge)."""
        todo = np.isnan(out[:, 0]) & (zones > 0)
        todo[todo] = edge_distance_m(lon[todo], lat[todo], zones[todo]) < NEIGHBOUR_REACH_M
        for z in sorted(set(zones[todo].tolist())):
            for other in ((z - 2) % 60 + 1, z % 60 + 1):
                sel = np.flatnonzero(todo & (zones == z) & np.isnan(out[:, 0]))
                if sel.size and (zs := self.zone(other)) is not None:
                    vals = zs.sample(lon[sel], lat[sel])
                    have = ~np.isnan(vals[:, 0])
                    out[sel[have]] = vals[have]
