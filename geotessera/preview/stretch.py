"""Colour stretches: dequantised values (or their principal components) → uint8 RGBA.

Pure numpy; knows nothing of stores. A ``Stretch`` is fitted once per year on a pooled sample
and recorded in every store of that year as ``geotessera:stretch``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("bands", "pca")
PERCENTILES = (2.0, 98.0)
_NORMALISATION = "each component stretched linearly by its own p2/p98 over the sample"


@dataclass(frozen=True, slots=True)
class Stretch:
    """The colour mapping of one year: channel values → [0, 255] by a linear stretch.

    Channel values are the dequantised ``bands`` (mode ``bands``) or the projections of the
    dequantised vector on three principal components (mode ``pca``).
    """

    mode: str
    bands: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    sample_pixels: int
    sample_shards: int
    seed: int
    percentiles: tuple[float, float] = PERCENTILES
    components: tuple[tuple[float, ...], ...] | None = None
    mean: tuple[float, ...] | None = None
    explained_variance: tuple[float, ...] | None = None
    explained_variance_ratio: tuple[float, ...] | None = None
    #: Where the sample was drawn: "stores" (the built stores) or "tiles" (the year's tiles,
    #: before the build); ``sample_shards`` counts the shards or tiles sampled.
    source: str = "stores"

    def channels(self, values: np.ndarray) -> np.ndarray:
        """(len(bands), …) dequantised values → (3, …) channel values."""
        if self.mode == "bands":
            return values
        comps = np.asarray(self.components, np.float32)
        shift = (comps @ np.asarray(self.mean, np.float32)).reshape(3, *[1] * (values.ndim - 1))
        return np.tensordot(comps, values, axes=(1, 0)) - shift

    def colour(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(len(bands), …) dequantised values and validity → (4, …) uint8 RGBA; alpha 255
        exactly where ``valid``; colour and alpha 0 elsewhere."""
        shape = (3, *[1] * valid.ndim)
        low, high = np.reshape(self.low, shape), np.reshape(self.high, shape)
        t = np.clip((self.channels(values) - low) / (high - low), 0.0, 1.0)
        out = np.zeros((4, *valid.shape), np.uint8)
        out[:3] = np.where(valid, np.rint(np.nan_to_num(t) * 255), 0)
        out[3] = np.where(valid, 255, 0)
        return out

    def to_attrs(self) -> dict[str, Any]:
        """The ``geotessera:stretch`` attribute (JSON types only)."""
        doc: dict[str, Any] = {
            "mode": self.mode, "bands": list(self.bands), "percentiles": list(self.percentiles),
            "min": list(self.low), "max": list(self.high), "sample_pixels": self.sample_pixels,
            "sample_shards": self.sample_shards, "seed": self.seed,
        }
        if self.source != "stores":  # stores sampled before the choice existed stay current
            doc["sample_source"] = self.source
        if self.mode == "pca":
            doc.update(components=[list(c) for c in self.components], mean=list(self.mean),
                       explained_variance=list(self.explained_variance),
                       explained_variance_ratio=list(self.explained_variance_ratio),
                       normalisation=_NORMALISATION)
        return json.loads(json.dumps(doc))


def fit_stretch(samples: np.ndarray, mode: str, bands: Iterable[int], *, seed: int,
                shards: int, percentiles: tuple[float, float] = PERCENTILES,
                source: str = "stores") -> Stretch:
    """Fit a stretch on ``samples`` (n, len(bands)) of dequantised values.

    Per channel, min/max are the percentiles of the channel values; max ≤ min becomes
    min + 1; no samples give min 0, max 1 (and, for PCA, unit components).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} not in {MODES}")
    bands, n = tuple(int(b) for b in bands), len(samples)
    pca: dict[str, Any] = {}
    if mode == "pca":
        pca = _pca(samples.astype(np.float64), len(bands))
    stretch = Stretch(mode, bands, (0.0,) * 3, (1.0,) * 3, n, shards, seed, percentiles,
                      **pca, source=source)
    if n:
        values = stretch.channels(samples.T.astype(np.float32)).astype(np.float64)
        low, high = np.percentile(values, percentiles, axis=1)
        high = np.where(high > low, high, low + 1.0)
        stretch = Stretch(mode, bands, tuple(map(float, low)), tuple(map(float, high)), n,
                          shards, seed, percentiles, **pca, source=source)
    return stretch


def _pca(x: np.ndarray, dims: int) -> dict[str, Any]:
    """Top three principal axes of ``x`` (n, dims) by eigen-decomposing the covariance; each
    axis signed so that its largest-magnitude coefficient is positive (deterministic)."""
    if len(x) < 2:
        comps, mean, var = np.eye(3, dims), np.zeros(dims), np.zeros(3)
        total = 0.0
    else:
        mean = x.mean(axis=0)
        cov = np.cov(x - mean, rowvar=False).reshape(dims, dims)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:3]
        comps, var, total = vecs[:, order].T, np.maximum(vals[order], 0.0), float(vals.sum())
        if len(comps) < 3:  # fewer than 3 bands: pad with zero components
            comps = np.vstack([comps, np.zeros((3 - len(comps), dims))])
            var = np.concatenate([var, np.zeros(3 - len(var))])
        signs = np.sign(comps[np.arange(3), np.abs(comps).argmax(axis=1)])
        comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    ratio = var / total if total > 0 else np.zeros(3)
    return {
        "components": tuple(tuple(map(float, c)) for c in comps),
        "mean": tuple(map(float, mean)), "explained_variance": tuple(map(float, var)),
        "explained_variance_ratio": tuple(map(float, ratio)),
    }


def colour_window(stretch: Stretch, read_bands: Callable[[int, int], np.ndarray],
                  scales: np.ndarray, strip: int) -> np.ndarray:
    """(4, h, w) uint8 RGBA of a window: its ``scales`` (h, w) and ``read_bands(a, b)``, the
    int8 (len(bands), b − a, w) values of the stretch's bands in rows [a, b), coloured
    ``strip`` rows at a time (strips without a valid pixel are not read). The values are
    made C-contiguous float32 first, so a window of the same rows and strips gives the same
    bytes whether it came from a store or from memory."""
    out = np.zeros((4, *scales.shape), np.uint8)
    for r0 in range(0, scales.shape[0], strip):
        s = scales[r0:r0 + strip]
        valid = np.isfinite(s)
        if valid.any():
            block = np.ascontiguousarray(read_bands(r0, r0 + len(s)), dtype=np.float32)
            out[:, r0:r0 + strip] = stretch.colour(block * np.where(valid, s, 0), valid)
    return out
