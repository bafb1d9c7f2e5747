"""What ``info`` shows about one store: metadata, data footprint, levels, passes and size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geotessera.catalog.footprint import data_footprint, footprint_geojson
from geotessera.store.location import Location
from geotessera.store.versions import published
from geotessera.store.meta import open_root, read_meta, store_size


def describe_store(href: Location | str | Path) -> dict[str, Any]:
    """A JSON-ready description of the store at ``href`` (reads one coarse valid mask)."""
    loc = published(Location.parse(href))
    root = open_root(loc)
    meta = read_meta(root, str(loc))
    fp = data_footprint(loc, root, meta)
    size, objects = store_size(loc)
    lv0 = meta.levels[0]
    bbox = footprint_geojson(meta.zone, fp.utm_bbox)[1] if fp.window else None
    return {
        "store": str(loc), "zone": meta.zone, "year": meta.year, "epsg": meta.epsg,
        "bands": meta.bands, "shape": list(lv0.shape), "pixel_size": lv0.pixel_size,
        "bbox_utm": list(lv0.bbox), "tiles": len(meta.tiles),
        "tiles_skipped": len(meta.tiles_skipped),
        "coverage": {"fraction": round(fp.coverage, 6), "method": fp.method,
                     "level": fp.level.path, "bbox_wgs84": bbox},
        "levels": [{"level": lv.path, "shape": list(lv.shape), "pixel_size": lv.pixel_size}
                   for lv in meta.levels],
        "passes": meta.passes, "size_bytes": size, "objects": objects,
        "build_time": meta.build_time, "version": meta.provenance.get("version"),
    }
