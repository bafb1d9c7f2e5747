"""Listing an archive: every tile-year directory, and each file's size and mtime.

A local archive is walked with ``os.scandir``; an object store is listed with one paginated
listing per year and one of the landmasks (sizes and mtimes come with the listing, no request
per object). File keys are always derived from the tile name (``tiles.tile_keys``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from geotessera.errors import ArchiveError
from geotessera.store.location import Location
from geotessera.tiles import EMBEDDINGS_DIR, LANDMASKS_DIR, YEAR_RE, parse_tile_name, tile_keys
from geotessera.types import TileKey

if TYPE_CHECKING:
    from geotessera.archive.registry import TileRecord

def list_archive(base: Path, years: Iterable[int] | None = None):
    """(year, name, key) for every tile directory, plus names that did not parse.

    Raises ArchiveError when ``base`` has no embeddings directory.
    """
    root = Path(base) / EMBEDDINGS_DIR
    if not root.is_dir():
        raise ArchiveError(root, "not found: is this a GeoTessera archive base directory?")
    wanted = set(years) if years else None
    found, ignored = [], []
    for year_dir in sorted(root.iterdir()):
        if not (year_dir.is_dir() and YEAR_RE.match(year_dir.name)):
            ignored.append(str(year_dir.relative_to(base)))
            continue
        year = int(year_dir.name)
        if wanted is not None and year not in wanted:
            continue
        for entry in sorted(os.scandir(year_dir), key=lambda e: e.name):
            key = parse_tile_name(entry.name) if entry.is_dir() else None
            if key is None:
                ignored.append(str(Path(entry.path).relative_to(base)))
            else:
                found.append((year, entry.name, key))
    return found, ignored


def stat_file(path: Path) -> tuple[int | None, int | None]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None, None
    return st.st_size, st.st_mtime_ns


Stats = dict[tuple[int, str], tuple[tuple[int | None, int | None], ...]]


def list_tiles(root: Location, years: Iterable[int] | None, previous: list[TileRecord]
          ) -> tuple[list[tuple[int, str, TileKey]], list[str], Stats | None]:
    """(year, name, key) of every tile, ignored names, and the files' stats when the
    listing gave them (None: stat or HEAD each file)."""
    if root.is_local:
        found, ignored = list_archive(root.path, years)
        return found, ignored, _local_stats(root.path, found)
    if root.scheme == "s3":
        return list_remote(root, years)
    wanted = set(years) if years else None
    found = sorted({(r.year, r.name, r.key) for r in previous
                    if (wanted is None or r.year in wanted)
                    and parse_tile_name(r.name) is not None}, key=lambda t: (t[0], t[1]))
    if not found:
        raise ArchiveError(root, "an http(s) archive cannot be listed: scan needs a registry "
                                 "naming its tiles (scan an s3:// or local copy first)")
    return found, [], None


def _local_stats(base: Path, found: list[tuple[int, str, TileKey]]) -> Stats:
    return {(y, n): tuple(stat_file(base / k) for k in tile_keys(y, n)) for y, n, _ in found}


def list_remote(root: Location, years: Iterable[int] | None = None
                ) -> tuple[list[tuple[int, str, TileKey]], list[str], Stats]:
    """List an object-store archive: one paginated listing per year plus one of the
    landmasks, giving every file's size and mtime without a request per object."""
    year_names = root.child(EMBEDDINGS_DIR).dirs()
    if not year_names:
        raise ArchiveError(root.child(EMBEDDINGS_DIR),
                           "not found: is this a GeoTessera archive base directory?")
    wanted = set(years) if years else None
    masks = {k: (size, mtime) for k, size, mtime in root.entries(LANDMASKS_DIR)}
    found, ignored, stats = [], [], {}
    for year_name in year_names:
        if not YEAR_RE.fullmatch(year_name):
            ignored.append(f"{EMBEDDINGS_DIR}/{year_name}")
            continue
        year = int(year_name)
        if wanted is not None and year not in wanted:
            continue
        files: dict[str, dict[str, tuple[int, int]]] = {}
        for k, size, mtime in root.entries(f"{EMBEDDINGS_DIR}/{year_name}"):
            parts = k.split("/")
            if len(parts) < 4:  # an object directly in the year directory
                ignored.append(k)
                continue
            files.setdefault(parts[2], {})[k] = (size, mtime)
        for name in sorted(files):
            key = parse_tile_name(name)
            if key is None:
                ignored.append(f"{EMBEDDINGS_DIR}/{year_name}/{name}")
                continue
            found.append((year, name, key))
            emb, sc, lm = tile_keys(year, name)
            stats[(year, name)] = (files[name].get(emb, (None, None)),
                                   files[name].get(sc, (None, None)), masks.get(lm, (None, None)))
    return found, ignored, stats


