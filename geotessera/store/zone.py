"""The Zarr v3 zone store: create it, write whole shards, add levels, consolidate.

``geotessera.store`` is the one package that writes zarr, and it knows nothing of tiles.
Layout (docs/format.md): root multiscales group; level groups ``L0``, ``L1``, … with
``embeddings`` int8 (band, y, x), ``scales`` float32 (y, x), ``rgba`` uint8 (channel, y, x)
after the preview pass, 1-D ``x``/``y``/``band``/``channel`` coordinates and a 0-D CF
``spatial_ref``. Every shard is written whole, exactly once, by one task. Stores are named by
``Location`` (a path or URL).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from zarr.codecs import BloscCodec, TransposeCodec, ZstdCodec
from zarr.storage import WrapperStore

from geotessera.errors import StoreError
from geotessera.store import attrs as md
from geotessera.store.location import Location
from geotessera.store.meta import ROOT_DOC, decoding
from geotessera.store.shardio import (
    ShardLayout,
    ENCODE_THREADS,
    blosc_blocksize,
    encode_chunks,
    fsync_file,
    read_layout,
    write_encoded_shard,
    write_shard,
)
from geotessera.types import Level, PixelGrid, StoreLayout

EMBEDDINGS = "embeddings"
SCALES = "scales"
RGBA = "rgba"
CHANNEL = "channel"

StoreLike = Location | str | Path


def open_root(store: StoreLike, *, write: bool = False) -> zarr.Group:
    """A store's root group, bypassing consolidated metadata (for writers and checkers).
    A missing or damaged root document is a StoreError naming it (``meta.decoding``)."""
    loc = Location.parse(store)
    with decoding(loc, ROOT_DOC):
        return zarr.open_group(store=loc.zarr_store(read_only=not write),
                               mode="r+" if write else "r", zarr_format=3,
                               use_consolidated=False)


def open_level(store: StoreLike, path: str = "L0", *, write: bool = True) -> zarr.Group:
    """A level group of a store, bypassing consolidated metadata."""
    loc = Location.parse(store)
    with decoding(loc, f"{path}/{ROOT_DOC}"):
        return zarr.open_group(store=loc.zarr_store(read_only=not write), path=path,
                               mode="r+" if write else "r", zarr_format=3,
                               use_consolidated=False)


# --- creating ----------------------------------------------------------------------------------


def create_zone_store(store: StoreLike, grid: PixelGrid, bands: int, layout: StoreLayout,
                      provenance: dict[str, Any]) -> None:
    """Create an empty store (metadata, coordinates, no shards), replacing any there."""
    loc = Location.parse(store)
    shape, epsg = grid.shape, grid.epsg
    root = zarr.open_group(store=loc.zarr_store(read_only=False), mode="w", zarr_format=3)
    root.attrs.update(md.root_attrs(
        epsg, [md.layout_entry(0, grid.transform, shape)], list(grid.bbox), bands,
        grid.pixel_size, provenance,
    ))
    level = root.create_group("L0", attributes=md.level_attrs(epsg, grid.transform, shape))
    _create_data_arrays(level, grid, bands, layout)
    create_coords(loc, level, grid, bands)


def _create_data_arrays(level: zarr.Group, grid: PixelGrid, bands: int,
                        layout: StoreLayout) -> None:
    shape, epsg = grid.shape, grid.epsg
    s, c, sc = layout.shard_px, layout.chunk_px, layout.scales_chunk_px
    zstd = None if layout.zstd_level is None else ZstdCodec(level=layout.zstd_level)
    packed = zstd if layout.blosc is None else BloscCodec(
        typesize=1, cname="zstd", clevel=layout.blosc.clevel, shuffle=layout.blosc.shuffle,
        blocksize=blosc_blocksize((bands, c, c)))
    level.create_array(
        EMBEDDINGS, shape=(bands, *shape), dtype="int8", chunks=(bands, c, c),
        shards=(bands, s, s), compressors=packed, fill_value=0,
        filters=[TransposeCodec(order=(1, 2, 0))] if layout.pixel_major else None,
        dimension_names=("band", "y", "x"),
        attributes=md.data_array_attrs(
            epsg, grid.transform, shape,
            long_name="int8-quantised embedding; multiply by scales",
        ),
    )
    # Unsharded on purpose: scales chunks nest inside the shard footprint (so one task still
    # writes them all, whole), and GDAL < 3.13, which cannot decode sharding, can read them.
    level.create_array(
        SCALES, shape=shape, dtype="float32", chunks=(sc, sc),
        compressors=zstd, fill_value=np.nan, dimension_names=("y", "x"),
        attributes=md.data_array_attrs(
            epsg, grid.transform, shape,
            long_name="per-pixel dequantisation scale; NaN = no data",
        ),
    )


def create_coords(store: StoreLike, level: zarr.Group, grid: PixelGrid, bands: int) -> None:
    """The 1-D pixel-centre ``x``/``y``, ``band`` and the 0-D CF ``spatial_ref`` of a level."""
    x, _ = grid.xy(0, np.arange(grid.width))
    _, y = grid.xy(np.arange(grid.height), 0)
    for name, values in (("x", x), ("y", y)):
        arr = level.create_array(name, shape=values.shape, dtype="float64", chunks=values.shape,
                                 dimension_names=(name,), attributes=md.coord_attrs(name))
        arr[:] = values
    band = level.create_array("band", shape=(bands,), dtype="int32", chunks=(bands,),
                              dimension_names=("band",),
                              attributes={"long_name": "embedding dimension"})
    band[:] = np.arange(bands, dtype=np.int32)
    ref = level.create_array("spatial_ref", shape=(), dtype="int32",
                             attributes=md.spatial_ref_attrs(grid.epsg, grid.transform))
    ref[...] = 0
    _write_empty_dimension_names(Location.parse(store), f"{level.path}/spatial_ref")


def _write_empty_dimension_names(store: Location, array_path: str) -> None:
    """Give a 0-D array ``dimension_names: []``. zarr-python (3.1 to 3.4 at least) turns an
    empty tuple into "no dimension names" and omits the key; readers that require the field
    on every array (xarray, the spatial convention) expect ``[]``. Rewritten as JSON through
    the location, so it works on any store."""
    key = f"{array_path}/zarr.json"
    doc = json.loads(store.read(key))
    doc["dimension_names"] = []
    store.write(key, json.dumps(doc, indent=2).encode())


def create_level(store: StoreLike, level: Level) -> None:
    """(Re)create the empty overview level group ``level.path``: L0's arrays, codecs and
    attributes on ``level``'s grid, an empty ``rgba`` and the coordinates."""
    loc = Location.parse(store)
    root = open_root(loc, write=True)
    emb0, sc0 = root["L0"][EMBEDDINGS], root["L0"][SCALES]
    bands, shard, chunk, sc_chunk = emb0.shape[0], emb0.shards[1], emb0.chunks[1], sc0.chunks[0]
    g = level.grid
    group = root.create_group(level.path, overwrite=True,
                              attributes=md.level_attrs(g.epsg, g.transform, g.shape))
    attrs = {EMBEDDINGS: dict(emb0.attrs), SCALES: dict(sc0.attrs)}
    for name in attrs:
        attrs[name].update(md.data_array_attrs(g.epsg, g.transform, g.shape))
    group.create_array(
        EMBEDDINGS, shape=(bands, *g.shape), dtype="int8", chunks=(bands, chunk, chunk),
        shards=(bands, shard, shard), compressors=emb0.compressors, filters=emb0.filters,
        fill_value=0, dimension_names=("band", "y", "x"), attributes=attrs[EMBEDDINGS],
    )
    group.create_array(
        SCALES, shape=g.shape, dtype="float32", chunks=(sc_chunk, sc_chunk),
        compressors=sc0.compressors, fill_value=np.nan, dimension_names=("y", "x"),
        attributes=attrs[SCALES],
    )
    _create_rgba(group, g)
    create_coords(loc, group, g, bands)


def create_rgba(store: StoreLike, level: Level) -> None:
    """(Re)create an empty ``rgba`` (and its ``channel`` coordinate) in a level group."""
    _create_rgba(open_level(store, level.path), level.grid)


def _create_rgba(group: zarr.Group, grid: PixelGrid) -> None:
    """``rgba`` uint8 (channel, y, x), chunked and compressed like the level's ``scales``
    (unsharded, so GDAL < 3.13 reads it; chunks nest in the shard footprint), and its
    ``channel`` coordinate 0..3."""
    like = group[SCALES]
    chunk = like.chunks[0]
    group.create_array(
        RGBA, shape=(4, *like.shape), dtype="uint8", chunks=(4, chunk, chunk),
        compressors=like.compressors, fill_value=0, overwrite=True,
        dimension_names=(CHANNEL, "y", "x"),
        attributes=md.data_array_attrs(
            grid.epsg, grid.transform, grid.shape,
            long_name="RGBA preview; alpha 255 exactly where scales are finite",
            **md.gdal_rgba_attrs(),
        ),
    )
    chan = group.create_array(CHANNEL, shape=(4,), dtype="int32", chunks=(4,), overwrite=True,
                              dimension_names=(CHANNEL,), attributes=md.channel_coord_attrs())
    chan[:] = np.arange(4, dtype=np.int32)


def drop_overviews(store: StoreLike) -> None:
    """Delete every overview group ``L1``, ``L2``, … (L0 is never touched)."""
    root = open_root(store, write=True)
    for name in list(root.group_keys()):
        if re.fullmatch(r"L[1-9]\d*", name):
            del root[name]


# --- writing shards ----------------------------------------------------------------------------


#: An object a shard write stored: (key below the store, size in bytes, CRC32C).
Written = tuple[str, int, int]


class _Recorder(WrapperStore):
    """Passes writes through and notes (key, size, CRC32C) of every object it stored."""

    def __init__(self, store: Any, log: list[Written]) -> None:
        super().__init__(store)
        self.log = log

    async def set(self, key: str, value: Any) -> None:
        await self._store.set(key, value)
        data = value.to_bytes()
        self.log.append((key, len(data), google_crc32c.value(data)))


def _writable_store(loc: Location) -> Any:
    """The zarr store shard writes go through (a seam for fault-injection tests)."""
    return loc.zarr_store(read_only=False)


def embeddings_layout(store: StoreLike, level: str = "L0") -> ShardLayout:
    """The sharded layout of a level's ``embeddings`` (StoreError if it is not ours)."""
    loc = Location.parse(store)
    layout = read_layout(loc, f"{level}/{EMBEDDINGS}")
    if layout is None:
        raise StoreError(loc.child(level, EMBEDDINGS), "not the sharded layout this tool "
                                                       "writes")
    return layout


def encode_embeddings_part(block: np.ndarray, layout: ShardLayout, row0: int, col0: int, *,
                           threads: int = ENCODE_THREADS) -> dict[tuple[int, ...], bytes]:
    """The encoded inner chunks of an embeddings block (bands, h, w) whose first pixel is
    (row0, col0) within its shard (chunks it ends in completed with fill), for
    ``write_shard_arrays(encoded=…)``;
    compressed on ``threads`` threads (the bytes do not depend on it)."""
    c = layout.chunk[1]
    return encode_chunks(block, layout, (0, row0 // c, col0 // c), threads=threads)


def write_shard_arrays(store: StoreLike, row: int, col: int, *, scales: np.ndarray,
                       embeddings: np.ndarray | None = None, rgba: np.ndarray | None = None,
                       level: str = "L0",
                       encoded: dict[tuple[int, ...], bytes] | None = None) -> list[Written]:
    """Write shard (row, col) of a level whole: ``embeddings`` (bands, S, S) as one shard
    object, or its inner chunks already ``encoded`` (``encode_embeddings_part`` of its
    parts; the same bytes), and ``scales`` (h, w) and ``rgba`` (4, h, w) over the same
    pixels. At a level's lower/right edge the blocks may be smaller than S (they are padded
    with fill).

    Returns every object stored, with its size and CRC32C. On a local disk each is fsynced
    before this returns; on an object store each PUT has completed."""
    loc = Location.parse(store)
    log: list[Written] = []
    group = zarr.open_group(store=_Recorder(_writable_store(loc), log), path=level,
                            mode="r+", zarr_format=3, use_consolidated=False)
    s = group[EMBEDDINGS].shards[1]
    h, w = scales.shape
    rows, cols = slice(row * s, row * s + h), slice(col * s, col * s + w)
    if embeddings is not None or encoded is not None:
        layout = embeddings_layout(loc, level)
        key = f"{level}/{EMBEDDINGS}/{layout.key((0, row, col))}"
        if encoded is not None:
            size, crc = write_encoded_shard(loc, f"{level}/{EMBEDDINGS}", (0, row, col),
                                            encoded, layout)
        else:
            size, crc = write_shard(loc, f"{level}/{EMBEDDINGS}", (0, row, col),
                                    embeddings, layout,
                                    skip=_no_data_chunks(scales, s, layout.chunk[1])[None])
        if size:
            log.append((key, size, crc))
    group[SCALES][rows, cols] = scales
    if rgba is not None:
        group[RGBA][:, rows, cols] = rgba
    if loc.is_local:  # zarr's LocalStore does not fsync; the journal must not run ahead
        for key, _, _ in log:
            fsync_file(loc.path / key)
    return sorted(log)


def _no_data_chunks(scales: np.ndarray, s: int, c: int) -> np.ndarray:
    """(S/c, S/c) bool: inner chunks whose scales are all NaN (or padding), whose embeddings
    are therefore all fill (the no-data rule) and need not be looked at."""
    full = np.full((s, s), np.nan, np.float32)
    full[: scales.shape[0], : scales.shape[1]] = scales
    return np.isnan(full.reshape(s // c, c, s // c, c)).all(axis=(1, 3))


# --- root metadata -----------------------------------------------------------------------------


def update_root_attrs(store: StoreLike, extra: dict[str, Any] | None = None,
                      **provenance: Any) -> None:
    """Set ``geotessera:*`` provenance keys (and ``extra`` keys as given) on the root."""
    root = open_root(store, write=True)
    root.attrs.update({**(extra or {}),
                       **{f"geotessera:{k}": v for k, v in provenance.items()}})


def consolidate(store: StoreLike) -> None:
    """Rewrite consolidated metadata at the root (and only there)."""
    loc = Location.parse(store)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(loc.zarr_store(read_only=False), zarr_format=3)


# --- reading back what was stored --------------------------------------------------------------


def stored_chunks(store: StoreLike, arr: zarr.Array) -> np.ndarray:
    """Boolean grid of ``arr``'s stored objects (shards, or chunks when unsharded).

    Listed through the location, so it works on any store that can list. All-fill chunks are
    never stored, so a False cell holds no data; a key that is not a chunk of this array is
    a StoreError.
    """
    loc = Location.parse(store)
    unit = arr.shards or arr.chunks
    grid = np.zeros([math.ceil(n / u) for n, u in zip(arr.shape, unit, strict=True)], bool)
    prefix = f"{arr.path}/c/"
    for key in loc.keys(prefix.rstrip("/")):
        rel = key[len(prefix):]
        try:
            grid[tuple(int(k) for k in rel.split("/"))] = True
        except (ValueError, IndexError) as e:
            raise StoreError(loc, f"unexpected chunk key {key!r}") from e
    return grid


def layout_of(store: StoreLike, level: str = "L0") -> StoreLayout:
    """The StoreLayout a level's arrays were created with (read back from their metadata)."""
    loc = Location.parse(store)
    emb = embeddings_layout(loc, level)
    try:
        scales = json.loads(loc.read(f"{level}/{SCALES}/zarr.json"))
        sc = int(scales["chunk_grid"]["configuration"]["chunk_shape"][0])
        zstd = [c for c in scales["codecs"] if c["name"] == "zstd"]
        zstd_level = int(zstd[0]["configuration"]["level"]) if zstd else None
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(loc.child(level, SCALES, "zarr.json"), f"unreadable: {e}") from e
    return StoreLayout(shard_px=emb.shard[1], chunk_px=emb.chunk[1], scales_chunk_px=sc,
                       zstd_level=zstd_level, pixel_major=emb.transpose is not None,
                       blosc=emb.blosc)
