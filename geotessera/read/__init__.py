"""Reading zone stores: lazy xarray datasets, point samples and regions, directly or via STAC.

``sample`` and ``Reader`` need only the core dependencies (numpy, pyproj, zarr, obstore);
``open_store``, ``open_item``, ``read_region``, ``catalog_items``, STAC sources and DataArray
results need the ``read`` extra (xarray, dask, pystac), imported on first use. Reading never
needs the builder's dependencies (pyarrow, rasterio/GDAL, shapely); point files in Parquet
(``sample_file``) need pyarrow.
"""

from geotessera.read.aliases import BBox, CRSLike, Points, Source
from geotessera.read.api import catalog_items, dequantise_dataset, open_item, open_store, sample
from geotessera.read.project import dequantise
from geotessera.read.reader import Reader, ZoneStore
from geotessera.read.region import read_region
from geotessera.read.sources import StoreSet, stores_of

__all__ = ["BBox", "CRSLike", "Points", "Reader", "Source", "StoreSet", "ZoneStore",
           "catalog_items", "dequantise", "dequantise_dataset", "open_item", "open_store",
           "read_region", "sample", "stores_of"]
