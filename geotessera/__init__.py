"""GeoTessera zone stores: turn the 0.1° tile archive into per-UTM-zone Zarr v3 stores.

The library never draws to a terminal; the ``geotessera-registry`` CLI does.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    ArchiveError,
    CodecError,
    GeoTesseraError,
    NoTilesError,
    SelectionError,
    ShardWriteError,
    StoreError,
    TileProblemsError,
)
from .types import BloscZstd, StoreLayout, TileGrid, TileKey, Window

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from .archive.demo import DemoSpec, write_demo_archive
    from .archive.scan import scan_archive, update_registry
    from .build.plan import parse_zones, plan_zones
    from .build.run import build_stores
    from .build.verify import verify_store
    from .catalog.stac import write_catalog
    from .catalog.validate import validate_catalog
    from .preview.run import run_preview_pass
    from .read import (
        BBox,
        CRSLike,
        Points,
        Reader,
        Source,
        catalog_items,
        dequantise,
        dequantise_dataset,
        open_item,
        open_store,
        read_region,
        sample,
    )
    from .read.points import sample_file

#: Public functions, imported on first use so that ``import geotessera`` stays light (the read
#: side needs xarray, which is an optional extra).
_LAZY = {
    "scan_archive": "archive.scan", "update_registry": "archive.scan",
    "build_stores": "build.run", "plan_zones": "build.plan", "parse_zones": "build.plan",
    "verify_store": "build.verify", "run_preview_pass": "preview.run",
    "write_catalog": "catalog.stac", "validate_catalog": "catalog.validate",
    "open_store": "read", "sample": "read", "read_region": "read",
    "open_item": "read", "write_demo_archive": "archive.demo", "DemoSpec": "archive.demo",
    "Reader": "read", "dequantise_dataset": "read", "dequantise": "read",
    "catalog_items": "read", "sample_file": "read.points",
    "write_year_mosaic": "maps",
    "Points": "read", "BBox": "read", "CRSLike": "read", "Source": "read",
}


def _version() -> str:
    """The installed distribution's version (importlib.metadata is read on first use: it
    costs more than the rest of ``import geotessera``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("geotessera")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _version()
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'geotessera' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names including the lazily loaded ones (so completion shows them)."""
    return sorted(set(globals()) | set(__all__))


__all__ = [
    *sorted(_LAZY),
    "ArchiveError",
    "BloscZstd",
    "CodecError",
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
