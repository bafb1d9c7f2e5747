"""Reading zone stores: lazy xarray datasets, point samples and regions, directly or via STAC.

``sample`` needs only the core dependencies; ``open_store``, ``open_item``, ``read_region``
and DataArray results need xarray (the ``read`` extra).
"""

from geotessera.read.api import catalog_items, dequantise_dataset, open_item, open_store, sample
from geotessera.read.project import dequantise
from geotessera.read.reader import Reader, ZoneStore
from geotessera.read.region import read_region
from geotessera.read.sources import Source, StoreSet, stores_of

__all__ = ["Reader", "Source", "StoreSet", "ZoneStore", "catalog_items", "dequantise",
           "dequantise_dataset", "open_item", "open_store", "read_region", "sample",
           "stores_of"]
