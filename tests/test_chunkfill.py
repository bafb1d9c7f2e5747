"""Chunks encoded as they fill are, byte for byte, the chunks of the whole array."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geotessera.build.chunkfill import ChunkFiller
from geotessera.store.shardio import ShardLayout, encode_chunks
from geotessera.types import BloscZstd

BANDS, C, S = 4, 8, 32


def _layout(transpose: bool) -> ShardLayout:
    return ShardLayout((BANDS, 64, 64), (BANDS, S, S), (BANDS, C, C), "int8", None,
                       (1, 2, 0) if transpose else None, blosc=BloscZstd(2, "bitshuffle"))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), transpose=st.booleans(),
       h=st.integers(1, S), w=st.integers(1, S),
       cuts=st.lists(st.integers(1, S - 1), max_size=4), order=st.randoms())
def test_pieces_in_any_order_give_the_chunks_of_the_whole(seed, transpose, h, w, cuts,
                                                          order):
    """Rows and columns of an (h, w) area cut at arbitrary lines, pasted shuffled: finish()
    equals encode_chunks of the whole shard with zeros outside the area (partly covered
    edge chunks included, untouched chunks absent)."""
    rng = np.random.default_rng(seed)
    whole = np.zeros((S, S, BANDS), np.int8)
    whole[:h, :w] = rng.integers(-127, 128, (h, w, BANDS), dtype=np.int8)
    whole[:h, :w][rng.random((h, w)) < 0.3] = 0  # some zero pixels, maybe whole chunks
    ys = sorted({0, h, *(c for c in cuts if c < h)})
    xs = sorted({0, w, *(c for c in cuts if c < w)})
    pieces = [(y0, x0, whole[y0:y1, x0:x1]) for y0, y1 in zip(ys, ys[1:])
              for x0, x1 in zip(xs, xs[1:])]
    order.shuffle(pieces)
    layout = _layout(transpose)
    filler = ChunkFiller(layout, BANDS)
    for y0, x0, piece in pieces:
        filler.paste(piece, y0, x0)
    assert filler.finish() == encode_chunks(whole.transpose(2, 0, 1), layout, (0, 0, 0),
                                            threads=1)


def test_a_chunk_is_encoded_as_soon_as_it_is_full_and_not_held_raw():
    filler = ChunkFiller(_layout(False), BANDS)
    piece = np.ones((C // 2, 2 * C, BANDS), np.int8)
    filler.paste(piece, 0, 0)
    assert not filler.chunks and len(filler.pending) == 2
    filler.paste(piece, C // 2, 0)
    assert set(filler.chunks) == {(0, 0, 0), (0, 0, 1)} and not filler.pending
