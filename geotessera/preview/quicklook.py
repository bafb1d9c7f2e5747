"""PNG quicklooks of a store's RGBA preview, so a zone can be looked at without a GIS.

PNG encoding goes through GDAL's PNG driver via rasterio (a core dependency already), so no
image library is added. The file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from geotessera.atomic import atomic_path
from geotessera.errors import StoreError
from geotessera.store.zone import RGBA
from geotessera.store.meta import open_root
from geotessera.types import Window

DEFAULT_SIZE = 1024
#: Refuse to draw a level larger than this (4 bytes per pixel in memory).
MAX_PIXELS = 1 << 26


@dataclass(frozen=True, slots=True)
class Quicklook:
    """A quicklook: where it was written (None: not written), which level, the level's
    (height, width) and pixel size (m)."""

    path: Path | None
    level: int
    shape: tuple[int, int]
    pixel_size: float
    #: The pixels of the level the PNG shows: the bounding window of the pixels with data
    #: (alpha > 0) when cropped, the whole level otherwise (or when no pixel has data).
    window: Window | None = None


def choose_level(layout: list[dict[str, Any]], size: int) -> int:
    """Index of the finest layout level whose longer side is ≤ ``size``; the coarsest if none
    fits. ``layout`` is the root ``multiscales.layout`` (finest first)."""
    for i, entry in enumerate(layout):
        if max(entry["spatial:shape"]) <= size:
            return i
    return len(layout) - 1


def encode_png(rgba: np.ndarray) -> bytes:
    """(4, h, w) uint8 → PNG bytes (RGBA, 8 bits per channel)."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[0] != 4:
        raise ValueError(f"need (4, h, w) uint8, got {rgba.shape} {rgba.dtype}")
    _, h, w = rgba.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=w, height=h, count=4, dtype="uint8") as dst:
                dst.write(rgba)
            return mem.read()


def write_png(path: Path, rgba: np.ndarray) -> None:
    """Encode ``rgba`` and write it to ``path`` atomically."""
    data = encode_png(rgba)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def data_window(alpha: np.ndarray) -> Window:
    """The smallest window holding every pixel with ``alpha > 0`` (all of it if none)."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return Window(0, alpha.shape[0], 0, alpha.shape[1])
    return Window(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def read_quicklook(store: Any, *, level: int | None = None, size: int = DEFAULT_SIZE,
                   crop: bool = True) -> tuple[np.ndarray, Quicklook]:
    """The (4, h, w) uint8 ``rgba`` of level ``level`` (default: ``choose_level(…, size)``)
    of ``store`` (a path, URL or Location), cropped to the pixels with data unless ``crop``
    is false, and what it is (``path`` None). Raises StoreError if the preview pass has not
    completed or the level is absent or too large to draw."""
    root = open_root(store)
    if root.attrs.get("geotessera:rgb_complete") is not True:
        raise StoreError(store, "no complete preview (geotessera:rgb_complete is not true); "
                                "run `geotessera-registry rgb` first")
    layout = root.attrs["multiscales"]["layout"]
    level = choose_level(layout, size) if level is None else level
    if not 0 <= level < len(layout):
        raise StoreError(store, f"no level {level}; levels are 0..{len(layout) - 1}")
    entry = layout[level]
    h, w = entry["spatial:shape"]
    if h * w > MAX_PIXELS:
        raise StoreError(store, f"level {level} is {w}x{h} px, more than {MAX_PIXELS} pixels; "
                                "choose a coarser --level")
    rgba = root[f"{entry['asset']}/{RGBA}"][:]
    win = data_window(rgba[3]) if crop else Window(0, h, 0, w)
    return (rgba[:, win.row0:win.row1, win.col0:win.col1],
            Quicklook(None, level, (h, w), float(entry["spatial:transform"][0]), win))


def write_quicklook(store: Path, output: Path, *, level: int | None = None,
                    size: int = DEFAULT_SIZE, crop: bool = True) -> Quicklook:
    """Write ``read_quicklook(store, …)`` as a PNG at ``output`` (atomically)."""
    rgba, info = read_quicklook(store, level=level, size=size, crop=crop)
    write_png(output, rgba)
    return replace(info, path=Path(output))


def read_png(path: Path) -> np.ndarray:
    """(4, h, w) uint8 of an RGBA PNG (the inverse of ``write_png``; used by tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()
