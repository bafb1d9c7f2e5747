"""Maps of a year's zone stores: their previews drawn in one map projection (PNG)."""

from geotessera.maps.figure import MosaicMap, write_year_mosaic
from geotessera.maps.mosaic import YearMosaic, compose_year

__all__ = ["MosaicMap", "YearMosaic", "compose_year", "write_year_mosaic"]
