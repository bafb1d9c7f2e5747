"""The public read functions: points, lazy xarray datasets, STAC items.

One dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). Locations read the store of their own UTM zone (``seams``). xarray is
needed for ``open_store``, ``open_item`` and DataArray results (the ``read`` extra);
``sample`` works with the core dependencies.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pystac

from geotessera.read.reader import Reader, ZoneStore, parse_points
from geotessera.read.sources import Source

try:
    import xarray as xr
except ImportError:  # the optional `read` extra is not installed
    xr = None


def _need_xarray() -> None:
    if xr is None:
        raise ImportError("xarray is not installed: pip install '.[read]' (in the geotessera checkout)")


# --- sample ------------------------------------------------------------------------------------


def sample(points: Any, year: int, source: Source, *, allow_incomplete: bool = False,
           as_dataarray: bool = False):
    """Dequantised vectors at lon/lat points, across any zones: (n, bands) float32.

    ``points``: (n, 2) lon/lat pairs (or one pair). ``source``: a stores directory, one store,
    a STAC catalog/collection (path, URL or pystac object) or a stores-directory URL. Rows
    are NaN where there is no data, including zones the source has no store for. Raises
    StoreError when a listable source has no store at all for ``year``, or a store's build is
    incomplete (unless ``allow_incomplete``). ``as_dataarray`` returns an xarray.DataArray
    with dims (point, band) and lon/lat coordinates.
    """
    values = Reader(source, year, allow_incomplete=allow_incomplete).sample(points)
    if not as_dataarray:
        return values
    _need_xarray()
    lon, lat = parse_points(points)
    return xr.DataArray(values, dims=("point", "band"), name="embeddings",
                        coords={"lon": ("point", lon), "lat": ("point", lat),
                                "band": np.arange(values.shape[1])}, attrs={"year": year})


# --- lazy datasets -----------------------------------------------------------------------------

#: dask's default chunk size (``array.chunk-size``); ``open_store`` aims its dequantised
#: float32 (band, y, x) chunks at it.
TARGET_CHUNK_BYTES = 128 * 2**20


def chunk_edge(bands: int, shard: int, inner: int, target: int = TARGET_CHUNK_BYTES) -> int:
    """The square dask chunk edge (pixels) for ``open_store``: among ``shard·2^k`` (whole
    shards) and ``shard/2^k`` that are multiples of ``inner`` (a shard split along its inner
    chunks), the edge whose float32 ``(bands, edge, edge)`` chunk is nearest ``target`` by
    ratio (ties: the smaller). So every dask chunk boundary is a shard boundary or an inner
    chunk boundary inside one shard, and no dask chunk reads part of an inner chunk."""
    cands = [shard << k for k in range(16)]
    cands += [shard >> k for k in range(1, 16)
              if shard % (1 << k) == 0 and (shard >> k) % inner == 0]
    return min(cands, key=lambda e: (abs(math.log(bands * e * e * 4 / target)), e))


def open_store(path_or_url: str | Path, level: int = 0, *, chunks: Any = "auto",
               allow_incomplete: bool = False):
    """A level of a store as a lazy ``xarray.Dataset`` (int8 ``embeddings``, float32
    ``scales``, coordinates and the CF ``spatial_ref`` grid mapping, so rioxarray/odc-geo see
    the CRS). ``chunks="auto"`` (the default) gives square dask chunks aligned to the shards
    whose dequantised float32 size is nearest dask's 128 MiB (``chunk_edge``): 512 × 512 ×
    128 bands for the real 1024-pixel shards, a quarter of a shard. ``chunks="shards"``
    gives one dask chunk per shard; anything else goes to ``xarray.open_zarr``. Use
    ``dequantise_dataset`` for float32 values."""
    _need_xarray()
    zs = ZoneStore.open(path_or_url, allow_incomplete)
    if not 0 <= level < len(zs.meta.levels):
        raise ValueError(f"{path_or_url}: level {level} not in 0..{len(zs.meta.levels) - 1}")
    lv = zs.meta.levels[level]
    if chunks in ("shards", "auto"):  # the largest stored object: a shard
        emb, _ = zs.arrays(lv)
        units = [a.shards or a.chunks for a in zs.arrays(lv)]
        shard = max(max(u[-2], u[-1]) for u in units)
        edge = shard if chunks == "shards" else chunk_edge(emb.shape[0], shard, emb.chunks[-1])
        chunks = {"y": edge, "x": edge}
    ds = xr.open_zarr(zs.root.store, group=lv.path, chunks=chunks, consolidated=False)
    if "spatial_ref" in ds.data_vars:
        ds = ds.set_coords("spatial_ref")
    ds.attrs.update({"geotessera:zone": zs.meta.zone, "geotessera:year": zs.meta.year,
                     "geotessera:level": lv.path})
    return ds


def dequantise_dataset(ds) -> Any:
    """Lazy float32 ``embeddings × scales`` (band, y, x) of an ``open_store`` dataset."""
    out = ds["embeddings"].astype(np.float32) * ds["scales"].astype(np.float32)
    return out.rename("embeddings").assign_attrs(long_name="dequantised embedding")


def open_item(item: pystac.Item, level: int = 0, *, asset: str = "embeddings", **kw: Any):
    """Open a STAC item's Zarr asset with ``open_store`` (catalog → item → asset → dataset)."""
    return open_store(item.assets[asset].get_absolute_href(), level, **kw)


def catalog_items(catalog: str | Path | pystac.Catalog, year: int | None = None
          ) -> list[pystac.Item]:
    """The catalog's items (optionally of one year), sorted by id."""
    cat = catalog if isinstance(catalog, pystac.Catalog) else pystac.read_file(str(catalog))
    found = [i for i in cat.get_items(recursive=True)
             if year is None or i.properties.get("geotessera:year") == year]
    return sorted(found, key=lambda i: i.id)


