"""What generic STAC loaders need from an item's assets, in one place.

Three ways in, each tested with the real library (tests/test_stac_loaders.py):

- **xpystac** (``xr.open_dataset(asset)``) and the **EOPF pattern**
  (``xr.open_dataset(asset.href, **asset.extra_fields["xarray:open_kwargs"])``) read the
  ``embeddings`` asset: the store root, media type ``application/vnd+zarr`` (the value both
  match), with ``xarray:open_kwargs`` naming the engine, the ``L0`` group and shard-aligned
  chunks. (The xarray-assets extension is not declared: its published v1.0.0 schema requires
  a placeholder ``template:new_field`` property, so no real item validates against it. The
  field itself is what xpystac and the EOPF tutorials read.)
- **odc-stac** reads through GDAL. GDAL 3.12's Zarr driver cannot decode the
  ``sharding_indexed`` codec (the embeddings), and finds the CRS only when opened through a
  ``ZARR:"store":/group/array`` connection string; so the unsharded L0 arrays ``scales`` and
  ``rgba`` get one asset each whose href is that connection string (media type
  ``application/zarr``, which odc-stac accepts), with core STAC 1.1 ``bands``. The
  connection string is absolute (GDAL cannot resolve it against the item): the store's local
  path, or ``/vsicurl/``, ``/vsis3/``, ``/vsigs/`` of ``--href-base``.

Once the preview pass is complete, an item also has a ``thumbnail`` (STAC's role for a small
picture in a browser or a catalog listing): the store's quicklook (``preview.quicklook``),
cropped to the data, at most ``THUMBNAIL_PX`` on its longer side, written as
``thumbnail.png`` beside the item.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pystac

from geotessera.preview.quicklook import encode_png, read_quicklook
from geotessera.store.meta import StoreMeta

#: The media type xpystac (0.5) and the EOPF/STAC-Zarr best practices use for a Zarr store.
ZARR_STORE_TYPE = "application/vnd+zarr"
#: A media type odc-stac treats as raster data (``NON_IMAGE_RASTER_MEDIA_TYPES``).
GDAL_ZARR_TYPE = "application/zarr"
_VSI = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/"}
RGBA_BANDS = ("red", "green", "blue", "alpha")
#: The thumbnail: its file name beside the item, and the longest side it aims at.
THUMBNAIL, THUMBNAIL_PX = "thumbnail.png", 256
THUMBNAIL_TITLE = "RGBA preview of the store, cropped to its data (PNG)"


def open_kwargs(level_path: str, chunks: dict[str, int]) -> dict[str, Any]:
    """``xarray:open_kwargs`` of the store asset: ``xr.open_dataset(href, **these)`` opens
    level ``level_path`` lazily with dask chunks ``chunks`` (whole shards)."""
    return {"engine": "zarr", "group": level_path, "chunks": dict(chunks),
            "zarr_format": 3, "consolidated": False}


# --- the store assets (xpystac, EOPF) ----------------------------------------------------------


def _dimensions(meta: StoreMeta, names: Iterable[str], sizes: dict[str, int]) -> dict:
    level = meta.levels[0]
    a, _, c, _, e, f = level.transform
    h, w = level.shape
    ref = meta.epsg
    dims: dict[str, Any] = {
        "x": {"type": "spatial", "axis": "x", "extent": [c + a / 2, c + a * (w - 0.5)],
              "step": a, "reference_system": ref},
        "y": {"type": "spatial", "axis": "y", "extent": [f + e * (h - 0.5), f + e / 2],
              "step": e, "reference_system": ref},
    }
    for name in names:
        if name not in dims:
            dims[name] = {"type": name, "extent": [0, sizes[name] - 1], "step": 1}
    return dims


def cube_fields(meta: StoreMeta, variables: Iterable[str]) -> dict[str, Any]:
    """``cube:dimensions``/``cube:variables`` for some arrays of the finest level."""
    chosen = [v for v in meta.variables if v.name in set(variables)]
    sizes = {d: n for v in chosen for d, n in zip(v.dims, v.shape)}
    dims = _dimensions(meta, [d for v in chosen for d in v.dims], sizes)
    cube_vars = {
        v.name: {"dimensions": list(v.dims), "type": "auxiliary" if v.name == "scales" else "data",
                 "description": v.description} | ({"nodata": "nan"} if v.name == "scales" else {})
        for v in chosen
    }
    return {"cube:dimensions": dims, "cube:variables": cube_vars}


def grid_fields(meta: StoreMeta) -> dict[str, Any]:
    """The ``proj:`` fields of the finest level's grid."""
    level = meta.levels[0]
    return {"proj:code": f"EPSG:{meta.epsg}", "proj:shape": list(level.shape),
            "proj:transform": list(level.transform), "proj:bbox": list(level.bbox)}


def zarr_asset(href: str, meta: StoreMeta, roles: list[str], title: str,
               variables: Iterable[str], chunks: dict[str, int]) -> pystac.Asset:
    """An asset of the whole store (its root group) showing ``variables`` of the finest
    level, with the zarr, projection and datacube fields and ``xarray:open_kwargs``."""
    fields = {
        "zarr:zarr_format": 3, "zarr:node_type": "group", "zarr:consolidated": meta.consolidated,
        **grid_fields(meta), **cube_fields(meta, variables),
        "xarray:open_kwargs": open_kwargs(meta.levels[0].path, chunks),
    }
    return pystac.Asset(href, title=title, media_type=ZARR_STORE_TYPE, roles=roles,
                        extra_fields=fields)


# --- per-array assets (GDAL, odc-stac) --------------------------------------------------------


def gdal_store_path(store: Any, href_base: str | None, name: str | None = None) -> str | None:
    """The store as GDAL names it: its local path, or the VSI path of ``href_base``/``name``
    (``name`` defaults to the store's name; None for a scheme GDAL has no virtual file
    system for)."""
    if href_base is None:
        return str(store)
    url = f"{href_base.rstrip('/')}/{name or store.name}"
    parts = urlsplit(url)
    if parts.scheme == "file":
        return parts.path
    if parts.scheme not in _VSI:
        return None
    rest = url if parts.scheme.startswith("http") else f"{parts.netloc}{parts.path}"
    return f"{_VSI[parts.scheme]}{rest}"


def gdal_href(store_path: str, level_path: str, array: str) -> str:
    """GDAL's connection string of one array: ``ZARR:"<store>":/<level>/<array>``."""
    return f'ZARR:"{store_path}":/{level_path}/{array}'


def gdal_assets(store_path: str, level_path: str, grid_fields: dict[str, Any],
                has_rgba: bool) -> dict[str, pystac.Asset]:
    """Per-array assets that odc-stac (GDAL) can read: ``scales`` and, after the preview
    pass, ``rgba``. ``grid_fields`` are the level's ``proj:`` fields."""
    out = {"scales": pystac.Asset(
        gdal_href(store_path, level_path, "scales"), media_type=GDAL_ZARR_TYPE,
        roles=["data"], title=f"float32 per-pixel scales of {level_path} (GDAL, odc-stac)",
        extra_fields={**grid_fields, "bands": [
            {"name": "scales", "data_type": "float32", "nodata": "nan",
             "description": "per-pixel scale; NaN = no data"}]})}
    if has_rgba:
        out["rgba"] = pystac.Asset(
            gdal_href(store_path, level_path, "rgba"), media_type=GDAL_ZARR_TYPE,
            roles=["visual"], title=f"uint8 RGBA preview of {level_path} (GDAL, odc-stac)",
            extra_fields={**grid_fields, "bands": [
                {"name": n, "data_type": "uint8"} for n in RGBA_BANDS]})
    return out


def thumbnail_png(store: Any) -> bytes:
    """The thumbnail of a store whose preview is complete, as PNG bytes (deterministic): its
    quicklook, every n-th pixel kept in both directions when even the coarsest level is
    larger than ``THUMBNAIL_PX`` (so the longer side is at most that)."""
    rgba, _ = read_quicklook(store, size=THUMBNAIL_PX)
    step = -(-max(rgba.shape[1:]) // THUMBNAIL_PX)
    return encode_png(np.ascontiguousarray(rgba[:, ::step, ::step]))


def thumbnail_asset(href: str) -> pystac.Asset:
    """The ``thumbnail`` asset: a PNG with role ``thumbnail``."""
    return pystac.Asset(href, title=THUMBNAIL_TITLE, media_type=pystac.MediaType.PNG,
                        roles=["thumbnail"])
