"""The 2×2 mean-and-requantise of embeddings as compiled loops (numba).

Written by hand because numpy cannot fuse it: as array operations the reduction makes
about fourteen passes over float64 temporaries of the children (products, sums, the
division, two band reductions, the requantising division, rounding, clipping, the cast),
and was the largest cost of a build's preview. These loops read each child once and keep
one pixel's means in a small buffer. Two versions, chosen by the children's layout:
pixel-major children (a build's shard: bands at unit stride) take ``_pixel_major``, whose
band loops the compiler vectorises and whose output is pixel-major too, so the next
level's reduction takes it again; any other layout (band-major windows read from a store)
takes ``_any_strides``. Per 1024² × 128 shard (``benchmarks/bench_reduce.py``, load 0.3):
pixel-major 0.057 CPU-s against 0.093 for ``_any_strides`` and 0.31 for numpy;
band-major 0.25 against numpy's 0.27–0.38.

Both perform the same IEEE float64 operations in the same order as the numpy formulation
they replaced, kept here as ``reference`` (``tests/test_mean2x2.py`` checks them against it
bit for bit), without fast-math, so no multiply-add is fused and the results do not depend
on the CPU or the layout. One deliberate difference: a pixel whose mean is zero in every
band gets scale +0.0; numpy's maximum of +0.0 and −0.0 returned either, depending on its
SIMD kernel.
"""

from __future__ import annotations

import numpy as np
from numba import njit  # the build's extra: readers never import this module

QMAX = 127
ROUND = 1.5 * 2.0**52  # adding and subtracting it rounds a float64 to an integer, ties even


@njit(cache=True, nogil=True)
def _pixel_major(emb, scales, out, out_scales):  # pragma: no cover - compiled
    """``emb`` (2h, 2w, bands) and ``out`` (h, w, bands), bands at unit stride: each
    pixel's band loops run over contiguous memory (vectorised)."""
    h2, w2 = out_scales.shape
    bands = emb.shape[2]
    mean = np.empty(bands, np.float64)
    for r in range(h2):
        r0 = 2 * r
        for k in range(w2):
            c0 = 2 * k
            v0, v1 = scales[r0, c0], scales[r0, c0 + 1]
            v2, v3 = scales[r0 + 1, c0], scales[r0 + 1, c0 + 1]
            f0, f1, f2, f3 = np.isfinite(v0), np.isfinite(v1), np.isfinite(v2), np.isfinite(v3)
            n = ((1.0 if f0 else 0.0) + (1.0 if f1 else 0.0)) + (
                (1.0 if f2 else 0.0) + (1.0 if f3 else 0.0))
            o = out[r, k]
            if n == 0.0:
                out_scales[r, k] = np.nan
                o[:] = 0
                continue
            s0 = np.float64(v0) if f0 else 0.0
            s1 = np.float64(v1) if f1 else 0.0
            s2 = np.float64(v2) if f2 else 0.0
            s3 = np.float64(v3) if f3 else 0.0
            e0, e1, e2, e3 = emb[r0, c0], emb[r0, c0 + 1], emb[r0 + 1, c0], emb[r0 + 1, c0 + 1]
            for b in range(bands):
                # (row 0 + row 1) of the left column + the same of the right column
                mean[b] = ((np.float64(e0[b]) * s0 + np.float64(e2[b]) * s2)
                           + (np.float64(e1[b]) * s1 + np.float64(e3[b]) * s3)) / n
            o_scale, d = _scale(mean)
            out_scales[r, k] = o_scale
            for b in range(bands):
                o[b] = _quantise(mean[b], d)


@njit(cache=True, nogil=True, inline="always")
def _scale(mean):  # pragma: no cover - compiled
    """(float32 max|mean| / 127, the float64 divisor of the requantising: 1 for scale 0)."""
    peak = 0.0
    for b in range(mean.shape[0]):
        peak = max(peak, abs(mean[b]))
    scale = np.float32(peak / QMAX)
    return scale, (np.float64(scale) if scale > 0 else 1.0)


@njit(cache=True, nogil=True, inline="always")
def _quantise(x, d):  # pragma: no cover - compiled
    """round(x / d) to int8 within ±127: half to even, as np.rint, without a libm call
    (exact for |x / d| < 2**51 in IEEE arithmetic; here ≤ 127.5)."""
    q = (x / d + ROUND) - ROUND
    return np.int8(min(max(q, -QMAX), QMAX))


@njit(cache=True, nogil=True)
def _any_strides(emb, scales, out, out_scales):  # pragma: no cover - compiled
    """``emb`` (bands, 2h, 2w) and ``out`` (bands, h, w), any strides (the band-major
    windows read from a store, without a copy)."""
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
            out_scales[r, k], d = _scale(mean)
            for b in range(bands):
                out[b, r, k] = _quantise(mean[b], d)


def mean2x2(emb: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bands, 2h, 2w) int8 children (any strides) and their (2h, 2w) float32 scales →
    (bands, h, w) int8 and (h, w) float32: each pixel the mean of its valid children's
    dequantised vectors, requantised with ``scale = max|mean| / 127`` (NaN and zeros
    without a valid child). Pixel-major children (bands at unit stride) give a
    pixel-major result (a view of (h, w, bands) memory), any others a band-major one; the
    values do not depend on it."""
    bands, h, w = emb.shape[0], scales.shape[0] // 2, scales.shape[1] // 2
    out_scales = np.empty((h, w), np.float32)
    if is_pixel_major(emb):
        out = np.empty((h, w, bands), np.int8)
        _pixel_major(emb.transpose(1, 2, 0), scales, out, out_scales)
        return out.transpose(2, 0, 1), out_scales
    out = np.empty((bands, h, w), np.int8)
    _any_strides(emb, scales, out, out_scales)
    return out, out_scales


def is_pixel_major(emb: np.ndarray) -> bool:
    """True when a (bands, h, w) array keeps each pixel's bands at unit stride."""
    return emb.shape[0] == 1 or emb.strides[0] == emb.itemsize


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
