"""Equal-area summaries of a year's zone stores on the H3 discrete global grid.

``summarise`` computes, for every H3 cell at a resolution that holds data, the area-weighted
mean dequantised vector, the valid area, the cell area and the pixel count, shard by shard
on an executor; ``write_summary``/``read_summary`` store it as Zarr v3 (xdggs convention);
``plot_summary`` draws it as hexagons on a globe or an equal-area world map. ``h3`` is
needed (the ``h3`` extra), and matplotlib and shapely for the plot (the ``plot`` extra).
Names are imported on first use, so ``import geotessera.dggs`` stays light.
"""

_LAZY = {
    "summarise": "summary", "plan_stores": "summary", "H3Summary": "summary",
    "write_summary": "store", "read_summary": "store",
    "plot_summary": "plot", "PlotResult": "plot",
    "CellSums": "cells", "merge_sums": "cells", "true_areas": "cells",
    "default_level": "cells",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module = _LAZY[name]
        where = "geotessera.store.h3" if module == "store" else f"geotessera.dggs.{module}"
        return getattr(import_module(where), name)
    raise AttributeError(f"module 'geotessera.dggs' has no attribute {name!r}")


__all__ = [  # noqa: RUF022 - grouped by module, as _LAZY
    "summarise", "plan_stores", "H3Summary", "write_summary", "read_summary", "plot_summary",
    "PlotResult", "CellSums", "merge_sums", "true_areas", "default_level",
]
