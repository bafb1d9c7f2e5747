"""See the zone stores: Web Mercator tiles, a MapLibre page, PMTiles archives.

``open_viewer(source)`` opens a local stores directory, store or STAC catalog;
``ViewerServer(viewer, host, port)`` serves it (``geotessera-registry serve``);
``write_pmtiles`` writes a year's preview pyramid as one PMTiles archive
(``geotessera-registry tiles``). Needs the ``viewer`` extra (morecantile, pmtiles).
"""

from __future__ import annotations

__all__ = ["open_viewer", "ViewerServer", "write_pmtiles", "TileRequest"]


def __getattr__(name: str):
    if name in ("open_viewer", "ViewerServer"):
        from . import server

        return getattr(server, name)
    if name == "write_pmtiles":
        from .pmtiles import write_pmtiles

        return write_pmtiles
    if name == "TileRequest":
        from .tiles import TileRequest

        return TileRequest
    raise AttributeError(f"module 'geotessera.viewer' has no attribute {name!r}")
