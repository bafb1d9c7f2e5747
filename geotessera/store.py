"""The Zarr v3 zone store: create it, write whole shards, consolidate. The only zarr importer
on the write path.

Layout (docs/format.md): root multiscales group; level group ``L0`` with ``embeddings``
int8 (band, y, x), ``scales`` float32 (y, x), 1-D ``x``/``y``/``band`` coordinates and a 0-D
CF ``spatial_ref``. Every shard is written whole, exactly once, by one task.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import TransposeCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from . import metadata as md
from .assemble import PieceStat, ShardSpec, assemble
from .errors import StoreError
from .shardfile import stream_shard
from .types import StoreLayout
from .zonegrid import ZoneGrid

EMBEDDINGS = "embeddings"
SCALES = "scales"


def store_name(zone: int, year: int) -> str:
    return f"utm{zone:02d}_{year}.zarr"


def create_zone_store(
    path: Path, grid: ZoneGrid, bands: int, layout: StoreLayout, provenance: dict[str, Any]
) -> None:
    """Create an empty store (metadata, coordinates, no shards), replacing any at ``path``."""
    shape = (grid.height, grid.width)
    root = zarr.open_group(store=str(path), mode="w", zarr_format=3)
    root.attrs.update(md.root_attrs(
        grid.epsg, [md.layout_entry(0, grid.transform, shape)], list(grid.bbox), bands,
        grid.pixel_size, provenance,
    ))
    level = root.create_group("L0", attributes=md.level_attrs(grid.epsg, grid.transform, shape))
    _create_data_arrays(level, grid, bands, layout)
    create_coords(level, grid, bands)


def _create_data_arrays(level: zarr.Group, grid: ZoneGrid, bands: int, layout: StoreLayout):
    shape = (grid.height, grid.width)
    s, c, sc = layout.shard_px, layout.chunk_px, layout.scales_chunk_px  # noqa
    zstd = ZstdCodec(level=layout.zstd_level)
    level.create_array(
        EMBEDDINGS, shape=(bands, *shape), dtype="int8", chunks=(bands, c, c),
        shards=(bands, s, s), compressors=zstd, fill_value=0,
        filters=[TransposeCodec(order=(1, 2, 0))] if layout.pixel_major else None,
        dimension_names=("band", "y", "x"),
        attributes=md.data_array_attrs(
            grid.epsg, grid.transform, shape,
            long_name="int8-quantised embedding; multiply by scales",
        ),
    )
    # Unsharded on purpose: scales chunks nest inside the shard footprint (so one task still
    # writes them all, whole), and GDAL < 3.13, which cannot decode sharding, can read them.
    level.create_array(
        SCALES, shape=shape, dtype="float32", chunks=(sc, sc),
        compressors=zstd, fill_value=np.nan, dimension_names=("y", "x"),
        attributes=md.data_array_attrs(
            grid.epsg, grid.transform, shape,
            long_name="per-pixel dequantisation scale; NaN = no data",
        ),
    )


def create_coords(level: zarr.Group, grid: ZoneGrid, bands: int) -> None:
    p = grid.pixel_size
    x = grid.left + (np.arange(grid.width) + 0.5) * p
    y = grid.top - (np.arange(grid.height) + 0.5) * p
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
    _write_empty_dimension_names(ref)


def _write_empty_dimension_names(arr: zarr.Array) -> None:
    """Give a 0-D array ``dimension_names: []``. zarr-python 3.1 turns an empty tuple into
    "no dimension names" and omits the key; readers that require the field on every array
    (xarray, the spatial convention) expect ``[]``. Rewritten through the store API, so it
    works on any zarr store."""
    proto = default_buffer_prototype()
    doc = json.loads(arr.metadata.to_buffer_dict(proto)["zarr.json"].to_bytes())
    doc["dimension_names"] = []
    buf = proto.buffer.from_bytes(json.dumps(doc, indent=2).encode())
    sync((arr.store_path / "zarr.json").set(buf))


@dataclass(frozen=True, slots=True)
class ShardTask:
    """Write one shard of one store; picklable, opens everything it needs by path."""

    store: str
    spec: ShardSpec
    pixel_major: bool


@dataclass(frozen=True, slots=True)
class ShardResult:
    row: int
    col: int
    valid_pixels: int
    bytes_in: int
    stats: tuple[PieceStat, ...]


def open_level(store: str, path: str = "L0") -> zarr.Group:
    """Open a level group of a store for writing (the one place shard writers open it)."""
    return zarr.open_group(store=store, path=path, mode="r+", zarr_format=3,
                           use_consolidated=False)


def write_shard(task: ShardTask) -> ShardResult:
    """Assemble the shard and write both arrays with one whole-shard write each."""
    data = assemble(task.spec, task.pixel_major)
    rows, cols = task.spec.window.slices
    level = open_level(task.store)
    write_embeddings_shard(level[EMBEDDINGS], task.spec.row, task.spec.col,
                           data.embeddings)
    level[SCALES][rows, cols] = data.scales
    valid = int(np.isfinite(data.scales).sum())
    bytes_in = sum(c[0].height * c[0].width * p.shape[2]
                   for p in task.spec.pieces if (c := p.core) is not None)
    return ShardResult(task.spec.row, task.spec.col, valid, bytes_in, data.stats)


def write_embeddings_shard(arr: zarr.Array, row: int, col: int,
                           block: np.ndarray) -> None:
    """One whole-shard write: streamed chunk by chunk on a local store (see shardfile.py for
    why), through zarr on any other store."""
    store = arr.store_path.store
    if type(store) is LocalStore:
        codecs = arr.metadata.codecs[0].codecs
        transpose = next((tuple(c.order) for c in codecs if isinstance(c, TransposeCodec)), None)
        level = next(c.level for c in codecs if isinstance(c, ZstdCodec))
        key = arr.metadata.encode_chunk_key((0, row, col))
        path = Path(store.root) / arr.store_path.path / key
        stream_shard(path, block, arr.chunks, level, transpose)
    else:
        s = arr.shards[1]
        arr[:, row * s:(row + 1) * s, col * s:(col + 1) * s] = block


def update_root_attrs(path: Path, **provenance: Any) -> None:
    """Set ``geotessera:*`` provenance keys on the root group."""
    root = zarr.open_group(store=str(path), mode="r+", zarr_format=3, use_consolidated=False)
    root.attrs.update({f"geotessera:{k}": v for k, v in provenance.items()})


def consolidate(path: Path) -> None:
    """Rewrite consolidated metadata at the root (and only there)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(str(path), zarr_format=3)


def _decode_key(enc: Any, key: str) -> tuple[int, ...]:
    """Chunk coordinates of a key (zarr 3.1's own decoder mis-strips the ``c/`` prefix)."""
    if enc.name == "default":
        key = key[2:] if key.startswith("c" + enc.separator) else key
    return tuple(int(k) for k in key.split(enc.separator))


def stored_chunks(arr: zarr.Array) -> np.ndarray:
    """Boolean grid of the array's stored objects (shards, or chunks when unsharded).

    Listed through the zarr store API, so it works on any store that can list. All-fill
    chunks are never stored, so a False cell holds no data; a key that is not a chunk of
    this array is a StoreError.
    """
    unit = arr.shards or arr.chunks
    grid = np.zeros([math.ceil(n / u) for n, u in zip(arr.shape, unit)], bool)
    prefix = f"{arr.path}/"

    async def keys() -> list[str]:
        return [k async for k in arr.store.list_prefix(prefix)]

    for key in sync(keys()):
        rel = key[len(prefix):]
        if rel == "zarr.json":
            continue
        try:
            grid[_decode_key(arr.metadata.chunk_key_encoding, rel)] = True
        except (ValueError, IndexError) as e:
            raise StoreError(arr.store, f"unexpected chunk key {key!r}") from e
    return grid


def layout_of(level: zarr.Group) -> StoreLayout:
    """The StoreLayout a level's arrays were created with (read back from their metadata)."""
    emb, scales = level[EMBEDDINGS], level[SCALES]
    codecs = emb.metadata.codecs[0].codecs  # inside sharding_indexed
    pixel_major = any(isinstance(c, TransposeCodec) for c in codecs)
    zstd = [c for c in codecs if isinstance(c, ZstdCodec)]
    return StoreLayout(shard_px=emb.shards[1], chunk_px=emb.chunks[1],
                       scales_chunk_px=scales.chunks[0],
                       zstd_level=zstd[0].level if zstd else 0, pixel_major=pixel_major)
