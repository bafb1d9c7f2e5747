"""The compiled colour loop gives colour_window's bytes, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.preview.colourloop import colour_pixel_major
from geotessera.preview.stretch import Stretch, colour_window

BANDS = 6


def _stretch(bands, low, high) -> Stretch:
    return Stretch("bands", tuple(bands), tuple(low), tuple(high), 1, 1, 0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 40), w=st.integers(1, 40),
       bands=st.lists(st.integers(0, BANDS - 1), min_size=3, max_size=3),
       low=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
       span=st.lists(st.floats(1e-6, 6), min_size=3, max_size=3),
       strip=st.integers(1, 16))
def test_equals_colour_window_on_a_pixel_major_shard(seed, h, w, bands, low, span, strip):
    rng = np.random.default_rng(seed)
    pm = rng.integers(-128, 128, (h, w, BANDS), dtype=np.int8)
    scales = rng.choice(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, 3e38],
                                 np.float32), (h, w))
    plain = rng.random((h, w)) < 0.7
    scales[plain] = rng.lognormal(-4, 2, plain.sum()).astype(np.float32) * rng.choice(
        [-1, 1], plain.sum())
    stretch = _stretch(bands, low, [lo + s for lo, s in zip(low, span, strict=True)])
    emb = pm.transpose(2, 0, 1)  # band-major view of pixel-major memory, as the build's
    expected = colour_window(stretch, lambda a, b: emb[list(bands), a:b], scales, strip)
    np.testing.assert_array_equal(colour_pixel_major(stretch, emb, scales), expected)


def test_a_pca_stretch_is_refused():
    pca = Stretch("pca", tuple(range(BANDS)), (0,) * 3, (1,) * 3, 1, 1, 0,
                  components=((1.0,) * BANDS,) * 3, mean=(0.0,) * BANDS)
    with pytest.raises(ValueError, match="bands"):
        colour_pixel_major(pca, np.zeros((BANDS, 2, 2), np.int8), np.ones((2, 2), np.float32))
