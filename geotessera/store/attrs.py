"""Attribute dictionaries of a zone store: conventions, CF fallback, provenance. Pure.

Encodings (see docs/format.md): zarr-conventions ``proj:``/``spatial:``/``multiscales`` v0.1
with the spec's own names; a CF ``spatial_ref`` grid mapping with a GDAL-ordered
GeoTransform; ``geoemb:`` on the root; provenance under ``geotessera:``. STAC-style
``proj:epsg``/``proj:transform`` are never written into Zarr attributes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pyproj import CRS

Affine6 = tuple[float, float, float, float, float, float]

PROJ = {
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/proj/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/proj/blob/v0.1/README.md",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL = {
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v0.1/README.md",
    "description": "Spatial coordinate information",
}
MULTISCALES = {
    "uuid": "d35379db-88df-4056-af3a-620245f8e347",
    "name": "multiscales",
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/multiscales/refs/tags/v0.1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/multiscales/blob/v0.1/README.md",
    "description": "Multiscale layout of zarr datasets",
}
GEOEMB = {
    "uuid": "61c12cc5-0e28-4056-999a-480cf3fb7e4c",
    "name": "geoemb:",
    "spec_url": "https://github.com/geo-embeddings/embeddings-zarr-convention",
    "description": "Geospatial embeddings",
}
SPATIAL_DIMS = ["y", "x"]


@lru_cache(maxsize=64)
def crs_wkt(epsg: int) -> str:
    return CRS.from_epsg(epsg).to_wkt()


def proj_attrs(epsg: int) -> dict[str, Any]:
    return {"proj:code": f"EPSG:{epsg}", "proj:wkt2": crs_wkt(epsg)}


def bbox_of(transform: Affine6, shape: tuple[int, int]) -> list[float]:
    """Outer edges [xmin, ymin, xmax, ymax] of a north-up grid."""
    a, _, c, _, e, f = transform
    h, w = shape
    return [c, f + e * h, c + a * w, f]


def spatial_attrs(transform: Affine6, shape: tuple[int, int], *, bbox: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "spatial:dimensions": SPATIAL_DIMS,
        "spatial:transform": [float(v) for v in transform],
        "spatial:shape": [int(shape[0]), int(shape[1])],
    }
    if bbox:
        out["spatial:bbox"] = bbox_of(transform, shape)
        out["spatial:registration"] = "pixel"
    return out


def gdal_geotransform(transform: Affine6) -> str:
    """GDAL order (c, a, b, f, d, e) as the space-separated string CF readers expect."""
    a, b, c, d, e, f = transform
    return " ".join(repr(float(v)) for v in (c, a, b, f, d, e))


def spatial_ref_attrs(epsg: int, transform: Affine6) -> dict[str, Any]:
    """CF grid-mapping attributes of the 0-D ``spatial_ref`` array (rioxarray/GDAL style)."""
    attrs = dict(CRS.from_epsg(epsg).to_cf())
    attrs["crs_wkt"] = crs_wkt(epsg)
    attrs["spatial_ref"] = crs_wkt(epsg)
    attrs["GeoTransform"] = gdal_geotransform(transform)
    return attrs


def level_attrs(epsg: int, transform: Affine6, shape: tuple[int, int]) -> dict[str, Any]:
    """Attributes of a level group (L0, L1, ...)."""
    return {
        "zarr_conventions": [PROJ, SPATIAL],
        **proj_attrs(epsg),
        **spatial_attrs(transform, shape, bbox=True),
    }


def data_array_attrs(
    epsg: int, transform: Affine6, shape: tuple[int, int], **extra: Any
) -> dict[str, Any]:
    """Attributes of a georeferenced data array (embeddings, scales, rgba)."""
    return {
        "zarr_conventions": [PROJ, SPATIAL],
        "proj:code": f"EPSG:{epsg}",
        **spatial_attrs(transform, shape, bbox=False),
        "grid_mapping": "spatial_ref",
        "coordinates": "spatial_ref",
        **extra,
    }


def coord_attrs(axis: str) -> dict[str, Any]:
    name = {"x": "projection_x_coordinate", "y": "projection_y_coordinate"}[axis]
    return {
        "standard_name": name,
        "long_name": f"{axis} coordinate of projection (pixel centre)",
        "units": "metre",
        "axis": axis.upper(),
    }


def layout_entry(level: int, transform: Affine6, shape: tuple[int, int]) -> dict[str, Any]:
    """One ``multiscales.layout`` item; level k is derived from k-1 by 2x2 averaging."""
    entry: dict[str, Any] = {"asset": f"L{level}"}
    if level > 0:
        entry["derived_from"] = f"L{level - 1}"
        entry["transform"] = {"scale": [2.0, 2.0], "translation": [0.0, 0.0]}
        entry["resampling_method"] = "average"
    entry["spatial:shape"] = [int(shape[0]), int(shape[1])]
    entry["spatial:transform"] = [float(v) for v in transform]
    return entry


def geoemb_attrs(bands: int, pixel_size: float) -> dict[str, Any]:
    return {
        "geoemb:type": "pixel",
        "geoemb:dimensions": bands,
        "geoemb:model": "https://geotessera.org/model/1.0",
        "geoemb:source_data": [
            "https://sentinels.copernicus.eu/web/sentinel/missions/sentinel-1",
            "https://sentinels.copernicus.eu/web/sentinel/missions/sentinel-2",
        ],
        "geoemb:data_type": "int8",
        "geoemb:gsd": float(pixel_size),
        "geoemb:quantization": {
            "method": "per_pixel_scale",
            "original_dtype": "float32",
            "quantized_dtype": "int8",
            "scale": {"type": "array", "array_name": "scales", "nodata": "NaN"},
        },
    }


def root_attrs(
    epsg: int, layout: list[dict[str, Any]], bbox: list[float], bands: int, pixel_size: float,
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Attributes of the store root: a multiscales group (no spatial:registration here,
    which would make GDAL check rank-matched scale vectors)."""
    return {
        "zarr_conventions": [MULTISCALES, PROJ, SPATIAL, GEOEMB],
        "multiscales": {"layout": layout, "resampling_method": "average"},
        **proj_attrs(epsg),
        "spatial:dimensions": SPATIAL_DIMS,
        "spatial:bbox": bbox,
        **geoemb_attrs(bands, pixel_size),
        **{f"geotessera:{k}": v for k, v in provenance.items()},
    }


def multiscales_attr(layout: list[dict[str, Any]]) -> dict[str, Any]:
    """The root ``multiscales`` object for layout entries L0…Ln (finest first)."""
    return {"layout": layout, "resampling_method": "average"}


def gdal_rgba_attrs() -> dict[str, Any]:
    """What GDAL's Zarr driver (3.12) reads as band colour interpretation of an array seen as
    a multiband raster: a ``COLOR_INTERPRETATION`` list, one name per band (a plain string is
    ignored). So QGIS/GDAL treat band 4 of ``rgba`` as alpha."""
    return {"COLOR_INTERPRETATION": ["Red", "Green", "Blue", "Alpha"]}


def channel_coord_attrs() -> dict[str, Any]:
    """Attributes of the ``channel`` coordinate (0..3) of the ``rgba`` arrays."""
    return {
        "long_name": "RGBA channel",
        "flag_values": [0, 1, 2, 3],
        "flag_meanings": "red green blue alpha",
    }
