"""Where a build reads a tile's files: derived from the archive root and the tile's name and
year, never taken from a registry row.

The registry is data, not instructions. A row only says *which* tile-years exist; the three
file locations come from ``tiles.tile_paths`` under the archive root. A row whose stored paths
differ from the derived ones, a name or year that is not a tile name or a year, a value that
names a GDAL virtual filesystem (``/vsi…``), and a derived file whose real path (symlinks
followed) leaves the archive root are all refused with an ``ArchiveError`` naming the row
and the file, before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from geotessera.errors import ArchiveError
from geotessera.tiles import YEAR_RE, TilePaths, parse_tile_name, tile_paths

if TYPE_CHECKING:  # the registry pulls in pyarrow (~60 MiB RSS), which shard workers never use
    from geotessera.archive.registry import TileRecord

_KINDS = ("embeddings", "scales", "landmask")


def refuse_vsi(value: str, where: str) -> None:
    """Raise if ``value`` would make GDAL open a virtual filesystem (``/vsicurl/``, …)."""
    if "/vsi" in value.replace("\\", "/").lower():
        raise ArchiveError(where, f"{value!r} names a GDAL virtual filesystem (/vsi…); "
                                  "tile files are only read from the archive root")


def row_name(rec: TileRecord) -> str:
    return f"registry row (year {rec.year!r}, tile {rec.name!r})"


def tile_files(base: Path, rec: TileRecord) -> TilePaths:
    """The three files of ``rec`` under ``base``, checked to be what the row claims and to
    stay inside ``base`` with symlinks resolved. Raises ArchiveError otherwise."""
    base = Path(base)
    if parse_tile_name(rec.name) != rec.key or not YEAR_RE.fullmatch(str(rec.year)):
        raise ArchiveError(row_name(rec), "is not a tile name and year of the archive layout")
    derived = tile_paths(base, rec.year, rec.name)
    for kind in _KINDS:
        stored = getattr(rec, f"{kind}_path")
        refuse_vsi(str(stored), row_name(rec))
        expected = getattr(derived, kind)
        if stored != str(expected.relative_to(base)):
            raise ArchiveError(expected, f"{row_name(rec)} gives {kind}_path {stored!r}, not "
                                         f"this file; rescan with a fresh registry")
    root = os.path.realpath(base)
    for kind in _KINDS:
        path = getattr(derived, kind)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise ArchiveError(path, f"resolves to {real!r}, outside the archive root {root!r} "
                                     "(symlink leading out of the archive)")
    return derived
