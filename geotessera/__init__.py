"""GeoTessera zone stores: turn the 0.1° tile archive into per-UTM-zone Zarr v3 stores.

The library never draws to a terminal; the ``geotessera-registry`` CLI does.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geotessera")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .errors import (  # noqa: E402
    ArchiveError,
    GeoTesseraError,
    NoTilesError,
    SelectionError,
    ShardWriteError,
    StoreError,
    TileProblemsError,
)
from .types import StoreLayout, TileGrid, TileKey, Window  # noqa: E402

__all__ = [
    "ArchiveError",
    "GeoTesseraError",
    "NoTilesError",
    "SelectionError",
    "ShardWriteError",
    "StoreError",
    "StoreLayout",
    "TileGrid",
    "TileKey",
    "TileProblemsError",
    "Window",
    "__version__",
]
