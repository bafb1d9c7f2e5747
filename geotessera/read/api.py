"""The public read functions: points, lazy xarray datasets, STAC items.

One dequantisation rule everywhere: ``value = int8 embedding × float32 scale``, NaN where the
scale is NaN (no data). Locations read the store of their own UTM zone (``seams``). xarray is
needed for ``open_store``, ``open_item`` and DataArray results, pystac for STAC sources (the
``read`` extra); ``sample`` on stores works with the core dependencies. Both are imported on
first use, so ``import geotessera.read`` loads neither.
"""

from __future__ import annotations

import math
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from geotessera.read.aliases import Points, Source
from geotessera.read.reader import Reader, ZoneStore, parse_points
from geotessera.read.sources import need_pystac

if TYPE_CHECKING:
    import pystac
    import xarray as xr


def _need_xarray() -> ModuleType:
    """The ``xarray`` module, imported on first use; ImportError with the ``pip install``
    line when the ``read`` extra is missing."""
    try:
        import xarray
    except ModuleNotFoundError as e:
        raise ImportError("xarray is not installed: pip install '.[read]' "
                          "(in the geotessera checkout)") from e
    return xarray


# --- sample ------------------------------------------------------------------------------------


@overload
def sample(points: Points, year: int, source: Source, *, allow_incomplete: bool = ...,
           as_dataarray: Literal[False] = ...) -> np.ndarray: ...
@overload
def sample(points: Points, year: int, source: Source, *, allow_incomplete: bool = ...,
           as_dataarray: Literal[True]) -> xr.DataArray: ...
def sample(points: Points, year: int, source: Source, *, allow_incomplete: bool = False,
           as_dataarray: bool = False) -> np.ndarray | xr.DataArray:
    """Dequantised embedding vectors at WGS84 points, across any zones.

    Each point reads the store of its own UTM zone (with the zone-seam rule of
    docs/reading.md §3), so one call may span zones and hemispheres. Use ``Reader`` for many
    small calls: it keeps the stores open.

    Parameters
    ----------
    points : Points
        ``(lon, lat)`` pairs in degrees: one pair, a sequence of pairs or an ``(n, 2)``
        array.
    year : int
        The year whose stores to read.
    source : Source
        A stores directory, one store, a STAC catalog or collection (path, URL or
        ``pystac.Catalog``) or the URL of a stores directory (``s3://``, ``https://``).
    allow_incomplete : bool, default False
        Read stores whose build did not complete.
    as_dataarray : bool, default False
        Return an ``xarray.DataArray`` (needs the ``read`` extra) instead of an array.

    Returns
    -------
    numpy.ndarray or xarray.DataArray
        ``(n, bands)`` float32, one row per point, NaN rows where no store has data (water,
        outside every store, a non-finite point, a zone the source has no store for). As a
        DataArray: dims ``(point, band)``, ``lon``/``lat`` coordinates, ``attrs["year"]``.

    Raises
    ------
    StoreError
        A listable source has no store for ``year``, or a store is damaged or incomplete
        (unless ``allow_incomplete``).
    ValueError
        ``points`` is not ``(n, 2)``.
    ImportError
        ``as_dataarray=True`` or a STAC source without the ``read`` extra.

    Examples
    --------
    >>> vectors = sample([(0.12, -0.17), (10.0, 10.0)], 2024, "demo/stores")
    >>> len(vectors), vectors.dtype, bool(np.isnan(vectors[1]).all())  # zone 32: no store
    (2, dtype('float32'), True)
    """
    values = Reader(source, year, allow_incomplete=allow_incomplete).sample(points)
    if not as_dataarray:
        return values
    xa = _need_xarray()
    lon, lat = parse_points(points)
    da: xr.DataArray = xa.DataArray(
        values, dims=("point", "band"), name="embeddings", attrs={"year": year},
        coords={"lon": ("point", lon), "lat": ("point", lat),
                "band": np.arange(values.shape[1])})
    return da


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


def open_store(path_or_url: str | os.PathLike[str], level: int = 0, *,
               chunks: Literal["auto", "shards"] | dict[str, int] | int | None = "auto",
               allow_incomplete: bool = False) -> xr.Dataset:
    """One level of a zone store as a lazy ``xarray.Dataset``.

    Nothing is read but metadata until values are asked for. The dataset holds int8
    ``embeddings`` (band, y, x), float32 ``scales`` (y, x), pixel-centre ``x``/``y``
    coordinates and the CF ``spatial_ref`` grid mapping (so rioxarray and odc-geo see the
    CRS); ``rgba`` too after the preview pass. Needs the ``read`` extra.

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A store (``utm31_2024.zarr``: a version, an old-layout store or a store home whose
        pointer names the version), as a path or a ``file://``, ``s3://`` or ``https://`` URL.
    level : int, default 0
        The multiscales level: 0 is native, ``k`` is ``Lk`` (2^k × the pixel size).
    chunks : {"auto", "shards"}, dict, int or None, default "auto"
        ``"auto"``: square dask chunks aligned to the shards whose dequantised float32 size
        is nearest dask's 128 MiB (``chunk_edge``; 512 × 512 × 128 bands for 1024-pixel
        shards). ``"shards"``: one dask chunk per shard. Anything else goes to
        ``xarray.open_zarr`` as it is.
    allow_incomplete : bool, default False
        Open a store whose build did not complete.

    Returns
    -------
    xarray.Dataset
        Lazy, with ``attrs`` ``geotessera:zone``, ``geotessera:year``, ``geotessera:level``.

    Raises
    ------
    StoreError
        Not a zone store, damaged, or incomplete (unless ``allow_incomplete``);
        ``StoreNotFoundError`` when nothing is there.
    ValueError
        ``level`` is not one of the store's levels.
    ImportError
        Without the ``read`` extra.

    Examples
    --------
    >>> ds = open_store("demo/stores/utm31_2024.zarr")
    >>> ds.embeddings.dims, ds.attrs["geotessera:zone"]
    (('band', 'y', 'x'), 31)
    """
    xa = _need_xarray()
    zs = ZoneStore.open(path_or_url, allow_incomplete)
    zs.check_all()  # a dataset for any use: every node checked, as meta.open_root does
    if not 0 <= level < len(zs.meta.levels):
        raise ValueError(f"{path_or_url}: level {level} not in 0..{len(zs.meta.levels) - 1}")
    lv = zs.meta.levels[level]
    if chunks in ("shards", "auto"):  # the largest stored object: a shard
        emb, _ = zs.arrays(lv)
        units = [a.shards or a.chunks for a in zs.arrays(lv)]
        shard = max(max(u[-2], u[-1]) for u in units)
        edge = shard if chunks == "shards" else chunk_edge(emb.shape[0], shard, emb.chunks[-1])
        chunks = {"y": edge, "x": edge}
    ds: xr.Dataset = xa.open_zarr(zs.root.store, group=lv.path, chunks=chunks,
                                  consolidated=False)
    if "spatial_ref" in ds.data_vars:
        ds = ds.set_coords("spatial_ref")
    ds.attrs.update({"geotessera:zone": zs.meta.zone, "geotessera:year": zs.meta.year,
                     "geotessera:level": lv.path})
    return ds


def dequantise_dataset(ds: xr.Dataset) -> xr.DataArray:
    """Float32 embeddings of an ``open_store`` dataset, lazily: ``embeddings × scales``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset with int8 ``embeddings`` (band, y, x) and float32 ``scales`` (y, x), as
        ``open_store`` or ``open_item`` return.

    Returns
    -------
    xarray.DataArray
        ``embeddings`` (band, y, x) float32, NaN where the scale is NaN (no data); lazy when
        ``ds`` is.

    Raises
    ------
    KeyError
        ``ds`` has no ``embeddings`` or ``scales``.

    Examples
    --------
    >>> emb = dequantise_dataset(open_store("demo/stores/utm31_2024.zarr"))
    >>> emb.dtype, emb.dims
    (dtype('float32'), ('band', 'y', 'x'))
    """
    out = ds["embeddings"].astype(np.float32) * ds["scales"].astype(np.float32)
    return out.rename("embeddings").assign_attrs(long_name="dequantised embedding")


def open_item(item: pystac.Item, level: int = 0, *, asset: str = "embeddings",
              **kw: Any) -> xr.Dataset:
    """Open a STAC item's Zarr asset with ``open_store`` (catalog → item → asset → dataset).

    Parameters
    ----------
    item : pystac.Item
        An item of the catalog ``stac`` writes.
    level : int, default 0
        As for ``open_store``.
    asset : str, default "embeddings"
        The asset whose href is the store.
    **kw
        ``chunks`` and ``allow_incomplete``, passed to ``open_store``.

    Returns
    -------
    xarray.Dataset
        As ``open_store`` returns it.

    Raises
    ------
    KeyError
        The item has no such asset.
    StoreError, ValueError, ImportError
        As for ``open_store``.

    Examples
    --------
    >>> item = catalog_items("demo/stores/stac/catalog.json", 2024)[-1]
    >>> open_item(item).attrs["geotessera:zone"]
    31
    """
    href = item.assets[asset].get_absolute_href()
    if href is None:
        raise KeyError(f"{item.id}: asset {asset!r} has no href")
    return open_store(href, level, **kw)


def catalog_items(catalog: str | os.PathLike[str] | pystac.Catalog,
                  year: int | None = None) -> list[pystac.Item]:
    """The items of a STAC catalog or collection, optionally of one year, sorted by id.

    Parameters
    ----------
    catalog : str, os.PathLike or pystac.Catalog
        The catalog's (or a collection's) JSON, by path or URL, or a pystac object.
    year : int, optional
        Only items whose ``geotessera:year`` is this.

    Returns
    -------
    list of pystac.Item

    Raises
    ------
    ValueError
        The JSON is a STAC object other than a catalog or collection.
    ImportError
        Without the ``read`` extra (pystac).

    Examples
    --------
    >>> [i.id for i in catalog_items("demo/stores/stac/catalog.json", 2024)]
    ['geotessera-2024-utm30', 'geotessera-2024-utm31']
    """
    pystac_ = need_pystac()
    if isinstance(catalog, (str, os.PathLike)):
        cat = pystac_.read_file(os.fspath(catalog))
    else:
        cat = catalog
    if not isinstance(cat, pystac_.Catalog):
        raise ValueError(f"{catalog}: a STAC {type(cat).__name__}, not a catalog or collection")
    found = [i for i in cat.get_items(recursive=True)
             if year is None or i.properties.get("geotessera:year") == year]
    return sorted(found, key=lambda i: i.id)
