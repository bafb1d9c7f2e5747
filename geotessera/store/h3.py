"""The H3 summary as a Zarr v3 store (``geotessera.dggs`` computes it; zarr lives here).

Layout (dimensions ``cells``, ``band``), following the xdggs convention, so that
``xdggs.decode(xr.open_zarr(path))`` gives a dataset with an H3 index:

- ``cell_ids`` uint64 (cells): attrs ``grid_name: "h3"``, ``level: R``;
- ``band`` int32 (band): 0 … bands−1;
- ``mean`` float32 (cells, band): area-weighted mean dequantised vector;
- ``valid_area_m2`` float64, ``cell_area_m2`` float64, ``valid_fraction`` float32,
  ``pixel_count`` int64 (cells).

The root also declares the zarr-conventions ``dggs`` convention (``zarr_conventions`` and a
``dggs`` object) and carries ``geotessera:`` provenance; ``geotessera:h3_complete`` is written
last, so a store without it is unfinished. Metadata is consolidated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from ..errors import StoreError
from geotessera.dggs.summary import H3Summary

PRODUCT = "h3_summary"
COMPLETE = "geotessera:h3_complete"
DGGS_CONVENTION = {
    "uuid": "7b255807-140c-42ca-97f6-7a1cfecdbc38",
    "schema_url": ("https://raw.githubusercontent.com/zarr-conventions/dggs/refs/tags/v1/"
                   "schema.json"),
    "spec_url": "https://github.com/zarr-conventions/dggs/blob/v1/README.md",
    "name": "dggs",
    "description": "Discrete Global Grid Systems convention for zarr",
}
#: Bytes of one chunk of ``mean`` (uncompressed), before rounding to whole cells.
MEAN_CHUNK_BYTES = 2**20
_CELLS = ["cells"]
_VARS = {  # name: (dtype, long_name, units)
    "valid_area_m2": ("float64", ("valid area: sum of the true ground areas of the cell's "
                                  "valid pixels"), "m2"),
    "cell_area_m2": ("float64", "area of the cell on the WGS84 ellipsoid", "m2"),
    "valid_fraction": ("float32", "valid_area_m2 / cell_area_m2", "1"),
    "pixel_count": ("int64", "number of valid pixels counted in the cell", "1"),
}


def _exists(location: str) -> zarr.Group | None:
    try:
        return zarr.open_group(store=location, mode="r", zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None


def check_output(location: str | Path, overwrite: bool = False) -> None:
    """StoreError unless a summary may be written at ``location``: nothing is there, or an
    H3 summary is and ``overwrite`` is set (run it before computing, to fail early)."""
    location = str(location)
    old = _exists(location)
    if old is None and Path(location).exists() and "://" not in location:
        raise StoreError(location, "exists and is not a zarr group; not overwritten")
    if old is not None:
        if not overwrite:
            raise StoreError(location, "exists; pass overwrite (--overwrite) to replace it")
        if old.attrs.get("geotessera:product") != PRODUCT:
            raise StoreError(location, "exists and is not an H3 summary; not overwritten")


def _open_for_writing(location: str, overwrite: bool) -> zarr.Group:
    check_output(location, overwrite)
    return zarr.open_group(store=location, mode="w", zarr_format=3)


def _array(group: zarr.Group, name: str, data: np.ndarray, chunks: tuple[int, ...],
           dims: list[str], attrs: dict[str, Any]) -> None:
    arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                             dimension_names=dims, attributes=attrs, fill_value=0,
                             compressors=ZstdCodec(level=3))
    if data.size:
        arr[...] = data


def write_summary(summary: H3Summary, location: str | Path, *, overwrite: bool = False) -> str:
    """Write ``summary`` to a new Zarr v3 store at ``location``; returns it as a string.

    Refuses (StoreError) an existing location unless ``overwrite``, and never replaces
    anything that is not an H3 summary."""
    location = str(location)
    root = _open_for_writing(location, overwrite)
    n, bands = summary.mean.shape
    cells_chunk = (max(1, min(n, 2**22)),)
    _array(root, "cell_ids", summary.cells.astype(np.uint64), cells_chunk, _CELLS,
           {"grid_name": "h3", "level": summary.res})  # xdggs accepts no other attribute
    _array(root, "band", np.arange(bands, dtype=np.int32), (max(bands, 1),), ["band"],
           {"long_name": "embedding dimension"})
    per_chunk = max(1, min(n, MEAN_CHUNK_BYTES // (4 * max(bands, 1))))
    _array(root, "mean", summary.mean.astype(np.float32), (per_chunk, max(bands, 1)),
           ["cells", "band"], {"long_name": "area-weighted mean dequantised embedding",
                               "coordinates": "cell_ids"})
    values = {"valid_area_m2": summary.valid_area, "cell_area_m2": summary.cell_area,
              "valid_fraction": summary.valid_fraction, "pixel_count": summary.pixel_count}
    for name, (dtype, long_name, units) in _VARS.items():
        _array(root, name, np.asarray(values[name]).astype(dtype), cells_chunk, _CELLS,
               {"long_name": long_name, "units": units, "coordinates": "cell_ids"})
    root.attrs.update(_root_attrs(summary))
    root.attrs[COMPLETE] = True
    zarr.consolidate_metadata(location, zarr_format=3)
    return location


def _root_attrs(summary: H3Summary) -> dict[str, Any]:
    attrs = {"zarr_conventions": [DGGS_CONVENTION],
             "dggs": {"name": "h3", "refinement_level": summary.res,
                      "spatial_dimension": "cells", "coordinate": "cell_ids",
                      "compression": "none"}}
    prov = {"product": PRODUCT, **summary.provenance, "year": summary.year,
            "h3_resolution": summary.res}
    return attrs | {f"geotessera:{k}": v for k, v in prov.items()}


def read_summary(location: str | Path) -> H3Summary:
    """Read a complete H3 summary store; StoreError naming ``location`` otherwise."""
    location = str(location)
    root = _exists(location)
    if root is None:
        raise StoreError(location, "no zarr v3 group here")
    attrs = root.attrs.asdict()
    if attrs.get("geotessera:product") != PRODUCT:
        raise StoreError(location, "not an H3 summary (geotessera:product is not "
                                   f"{PRODUCT!r})")
    if not attrs.get(COMPLETE):
        raise StoreError(location, f"H3 summary is incomplete ({COMPLETE} is not true)")
    try:
        get = {name: np.asarray(root[name][...]) for name in
               ("cell_ids", "mean", "valid_area_m2", "cell_area_m2", "pixel_count")}
    except KeyError as e:
        raise StoreError(location, f"H3 summary lacks the array {e}") from e
    prov = {k[len("geotessera:"):]: v for k, v in attrs.items() if k.startswith("geotessera:")}
    return H3Summary(int(prov["h3_resolution"]), int(prov["year"]), get["cell_ids"],
                     get["mean"], get["valid_area_m2"], get["cell_area_m2"],
                     get["pixel_count"], prov)
