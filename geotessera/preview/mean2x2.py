"""The 2×2 mean-and-requantise of embeddings as one compiled loop (numba).

Written by hand because numpy cannot fuse it: as array operations the reduction makes
about fourteen passes over float64 temporaries of the children (products, sums, the
division, two band reductions, the requantising division, rounding, clipping, the cast),
and was the largest cost of a build's preview. This loop reads each child once and keeps
one pixel's means in a small buffer: per 1024² × 128 shard it took 0.29 CPU-s against
numpy's 0.86 with pixel-major children (a build's shard) and 0.42 against 0.74 band-major
(a store's window), ``benchmarks/bench_reduce.py`` at load 6.

It performs the same IEEE float64 operations in the same order as the numpy formulation
it replaced, kept here as ``reference`` (``tests/test_mean2x2.py`` checks the two agree
bit for bit), without fast-math, so no multiply-add is fused and the results do
not depend on the CPU. One deliberate difference: a pixel whose mean is zero in every band
gets scale +0.0; numpy's maximum of +0.0 and −0.0 returned either, depending on its SIMD
kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit  # the build's extra: readers never import this module

QMAX = 127
ROUND = 1.5 * 2.0**52  # adding and subtracting it rounds a float64 to an integer, ties even


@njit(cache=True, nogil=True)
def _kernel(emb, scales, out, out_scales):  # pragma: no cover - compiled
    """``emb`` (bands, 2h, 2w), any strides (one compiled version serves the build's
    pixel-major shards and the band-major windows read from a store, without a copy)."""
    h2, w2 = out_scales.shape
    bands = out.shape[0]
    mean = np.empty(bands, np.float64)
    s = np.empty(4, np.float64)
    for r in range(h2):
        for k in range(w2):
            n = 0.0
            for i in range(4):
                v = scales[2 * r + (i >> 1), 2 * k + (i & 1)]
                valid = np.isfinite(v)
                s[i] = v if valid else 0.0
                n += 1.0 if valid else 0.0
            if n == 0.0:
                out_scales[r, k] = np.nan
                for b in range(bands):
                    out[b, r, k] = 0
                continue
            r0, c0 = 2 * r, 2 * k
            for b in range(bands):
                # (row 0 + row 1) of the left column + the same of the right column
                mean[b] = ((np.float64(emb[b, r0, c0]) * s[0]
                            + np.float64(emb[b, r0 + 1, c0]) * s[2])
                           + (np.float64(emb[b, r0, c0 + 1]) * s[1]
                              + np.float64(emb[b, r0 + 1, c0 + 1]) * s[3])) / n
            peak = 0.0
            for b in range(bands):
                peak = max(peak, abs(mean[b]))
            scale = np.float32(peak / QMAX)
            out_scales[r, k] = scale
            d = np.float64(scale) if scale > 0 else 1.0
            for b in range(bands):
                # round half to even, as np.rint, without a libm call: exact for
                # |x| < 2**51 in IEEE arithmetic (here |x| ≤ 127.5)
                q = (mean[b] / d + ROUND) - ROUND
                out[b, r, k] = np.int8(min(max(q, -QMAX), QMAX))


def mean2x2(emb: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bands, 2h, 2w) int8 children (any strides) and their (2h, 2w) float32 scales →
    (bands, h, w) int8 and (h, w) float32: each pixel the mean of its valid children's
    dequantised vectors, requantised with ``scale = max|mean| / 127`` (NaN and zeros
    without a valid child)."""
    h, w = scales.shape[0] // 2, scales.shape[1] // 2
    out = np.empty((emb.shape[0], h, w), np.int8)
    out_scales = np.empty((h, w), np.float32)
    _kernel(emb, scales, out, out_scales)
    return out, out_scales


def reference(emb: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same reduction as numpy array operations (even sides): the specification the
    compiled loop is tested and measured against, not used by the build."""
    valid = np.isfinite(scales)
    s = np.where(valid, scales, 0).astype(np.float64)
    rows = emb[:, 0::2] * s[0::2] + emb[:, 1::2] * s[1::2]  # float64, half the rows
    mean = rows[..., 0::2] + rows[..., 1::2]
    del rows
    v = valid.astype(np.float64)
    count = (v[0::2, 0::2] + v[1::2, 0::2]) + (v[0::2, 1::2] + v[1::2, 1::2])
    mean /= np.maximum(count, 1)
    peak = np.abs(mean).max(axis=0)
    scale = np.where(count > 0, peak / QMAX, np.nan).astype(np.float32)
    np.divide(mean, np.where(scale > 0, scale, 1).astype(np.float64), out=mean)  # 0 stays 0
    np.rint(mean, out=mean)
    np.clip(mean, -QMAX, QMAX, out=mean)
    return mean.astype(np.int8), scale
