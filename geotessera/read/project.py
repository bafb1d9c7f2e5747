"""Coordinate transforms and dequantisation shared by the read side (pure, cached)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import Transformer


def dequantise(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``q`` (int8, any shape) × ``scale`` (broadcastable) as float32; NaN where scale is NaN."""
    return q.astype(np.float32) * np.asarray(scale, np.float32)


@lru_cache(maxsize=64)
def transformer(src: str, dst: str) -> Transformer:
    """A cached always-xy transformer between two CRS strings."""
    return Transformer.from_crs(src, dst, always_xy=True)


