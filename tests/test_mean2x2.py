"""The compiled 2×2 reduction equals its numpy reference bit for bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.preview.mean2x2 import mean2x2, reference


def _case(seed: int, bands: int, h: int, w: int, pixel_major: bool):
    rng = np.random.default_rng(seed)
    shape = (2 * h, 2 * w, bands) if pixel_major else (bands, 2 * h, 2 * w)
    emb = rng.integers(-127, 128, shape, dtype=np.int8)
    emb = emb.transpose(2, 0, 1) if pixel_major else emb
    scales = rng.choice(np.array([0.0, -0.0, 1e-30, 0.003, 0.05, 7.5, np.nan, np.inf],
                                 np.float32), (2 * h, 2 * w))
    scales = np.where(rng.random((2 * h, 2 * w)) < 0.5,
                      rng.uniform(1e-4, 0.2, (2 * h, 2 * w)).astype(np.float32), scales)
    emb[:, rng.random((2 * h, 2 * w)) < 0.2] = 0  # zero vectors: zero means
    emb[:, rng.random((2 * h, 2 * w)) < 0.1] = 127  # saturated
    return emb, scales


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 130), st.integers(1, 9), st.integers(1, 9),
       st.booleans())
def test_the_compiled_loop_equals_the_reference_bit_for_bit(seed, bands, h, w, pm):
    emb, scales = _case(seed, bands, h, w, pm)
    q, s = mean2x2(emb, scales)
    q_ref, s_ref = reference(emb, scales)
    assert q.tobytes() == q_ref.tobytes()
    assert s.view(np.uint32).tobytes() == s_ref.view(np.uint32).tobytes()  # signs of 0 too


def test_a_zero_mean_gets_plus_zero_and_no_valid_child_nan():
    emb = np.zeros((3, 2, 4), np.int8)
    emb[:, :, 2:] = -5
    scales = np.array([[0.5, -0.0, np.nan, np.nan], [np.nan, 0.25, np.nan, -np.inf]],
                      np.float32)
    q, s = mean2x2(emb, scales)
    assert s[0, 0] == 0 and not np.signbit(s[0, 0]) and np.isnan(s[0, 1])
    assert not q.any()
