"""RGBA PNG encoding for tiles (stdlib zlib).

Written here rather than through GDAL's PNG driver (as ``quicklook`` does): tiles are
encoded on many threads at once, and that path has to silence rasterio's
NotGeoreferencedWarning with ``warnings.catch_warnings``, which is not thread-safe (the
global filters leak between threads). This encoder has no global state. Rows use the PNG
"Up" filter (each row minus the one above, mod 256), which suits smooth previews.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVEL = 6


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def encode_rgba(rgba: np.ndarray, level: int = LEVEL) -> bytes:
    """(4, h, w) uint8 → PNG bytes (8-bit RGBA, non-interlaced)."""
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[0] != 4:
        raise ValueError(f"need (4, h, w) uint8, got {rgba.shape} {rgba.dtype}")
    _, h, w = rgba.shape
    rows = np.ascontiguousarray(rgba.transpose(1, 2, 0)).reshape(h, w * 4)
    up = rows.copy()
    up[1:] -= rows[:-1]  # uint8 arithmetic wraps mod 256, as the filter requires
    raw = np.empty((h, w * 4 + 1), np.uint8)
    raw[:, 0] = 2  # filter type Up
    raw[:, 1:] = up
    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)  # 8 bits, colour type 6 = RGBA
    return (SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))
