"""The task of a build: assemble shards from their tiles and write each whole. Picklable.

A task is a *block*: the L0 shards below one L1 shard (up to 2×2), or one L0 shard when the
build makes no preview or the store has no overview level. With a preview, the task also
colours each L0 shard with the year's stretch while it is in memory and reduces it into its
quarter of the L1 shard (``preview.overviews.reduce_window``, the same arithmetic as the
separate pass), so the preview never reads L0 back. The L1 quarters are kept as encoded
inner chunks (about half a raw quarter each) until the L1 shard is written whole, and the
block's L2 quarter as the L2 shard's encoded chunks, each encoded once it is filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np

from geotessera.build.assemble import PieceStat, ShardData, ShardSpec, assemble
from geotessera.build.chunkfill import ChunkFiller
from geotessera.build.parts import pack_part
from geotessera.store.publish import part_key
from geotessera.preview.overviews import (
    Reduced,
    reduce_window,
    shard_windows,
    strip_rows,
)
from geotessera.preview.stretch import Stretch, colour_window
from geotessera.store.location import Location
from geotessera.store.zone import (
    embeddings_layout,
    encode_embeddings_part,
    write_shard_arrays,
)


@dataclass(frozen=True, slots=True)
class FusedPreview:
    """The preview a block task makes: ``rgba`` with ``stretch`` and, when ``l1_shape`` is
    set, the level-1 shard of the block."""

    stretch: Stretch
    l1_shape: tuple[int, int] | None
    #: Where each block leaves its quarter of an L2 shard (``build/parts.py``); None when the
    #: store has no L2 or its half shards are not whole chunks (L2 is then made from L1).
    parts: Location | None = None


@dataclass(frozen=True, slots=True)
class ShardTask:
    """Write the L0 shards ``specs`` of block (row, col) of one store (and, with
    ``preview``, their colour and L1 shard); opens everything it needs from its locations."""

    store: Location
    specs: tuple[ShardSpec, ...]
    pixel_major: bool
    row: int = 0
    col: int = 0
    preview: FusedPreview | None = None

    @property
    def spec(self) -> ShardSpec:
        """The first shard (for messages)."""
        return self.specs[0]


@dataclass(frozen=True, slots=True)
class ShardResult:
    row: int
    col: int
    valid_pixels: int
    bytes_in: int
    stats: tuple[PieceStat, ...]
    #: Every object the task stored: (key below the store, size, CRC32C), for the journal.
    objects: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class BlockResult:
    """One block: its L0 shards' results, every object written, L1's valid pixels."""

    row: int
    col: int
    shards: tuple[ShardResult, ...]
    objects: tuple[tuple[str, int, int], ...]
    l1_valid: int = 0
    #: The block's L2 part, (key below the journal, size, CRC32C); empty without one.
    parts: tuple[tuple[str, int, int], ...] = ()


class _Level1:
    """The L1 shard of a block, filled quarter by quarter: embeddings as encoded chunks when
    a quarter is whole inner chunks, else as one raw block. The block (row, col) is quarter
    (row % 2, col % 2) of an L2 shard; with ``parts`` its embeddings are encoded into that
    shard's chunks as the rows come (``ChunkFiller``), never held whole."""

    def __init__(self, store: Location, bands: int, parts: bool, row: int, col: int) -> None:
        self.layout = embeddings_layout(store, "L1")
        s = self.layout.shard[1]
        self.half = s // 2
        self.encoded: dict[tuple[int, ...], bytes] | None = (
            {} if quarters_encodable(s, self.layout.chunk[1]) else None)
        #: The L1 shard's scales and rgba, and its embeddings when kept raw (else None).
        self.level = Reduced.filled(None if self.encoded is not None else bands, s, s,
                                    pixel_major=True)
        self.bands, h = bands, self.half
        self.l2 = Reduced.filled(None, h, h) if parts else None
        self.l2_at = ((row % 2) * h, (col % 2) * h)  # the quarter's first pixel in L2's shard
        self.l2_chunks = ChunkFiller(embeddings_layout(store, "L2"), bands) if parts else None

    def add(self, qy: int, qx: int, data: ShardData, rgba: np.ndarray) -> None:
        """Reduce an L0 shard into quarter (qy, qx), one row of L1 inner chunks at a time
        (when encoded): each row's chunks are encoded and its L2 rows reduced before the
        next, so no reduced quarter is ever held whole (the same bytes: every output pixel
        depends on its 2×2 children alone, every chunk on its own pixels). This is the
        shard's last reader: its embedding rows are released as they are reduced."""
        emb, scales = data.embeddings, data.scales
        h, w = scales.shape
        hh, ww = -(-h // 2), -(-w // 2)
        bands = emb.shape[0]
        step = self.layout.chunk[1] if self.encoded is not None else hh
        for a in range(0, hh, step):
            rows = slice(2 * a, min(2 * (a + step), h))
            out = reduce_window(lambda i, j, r=rows.start: emb[:, r + i:r + j, :w],
                                scales[rows], rgba[:, rows], bands, (min(step, hh - a), ww),
                                step, pixel_major=True)
            self._keep(out, qy * self.half + a, qx * self.half)
            data.release_rows(rows.start, rows.stop)

    def _keep(self, out: Reduced, r0: int, c0: int) -> None:
        """Keep rows of L1 whose first pixel is (r0, c0) in the shard, and their L2 rows."""
        hh, ww = out.scales.shape
        self.level.paste(out, r0, c0, embeddings=self.encoded is None)
        if self.l2 is not None:  # L1 quarters are whole (L0 is whole shards): so are these
            q = reduce_window(lambda a, b: out.embeddings[:, a:b], out.scales, out.rgba,
                              out.embeddings.shape[0], (hh // 2, ww // 2),
                              max(1, hh // 2), pixel_major=True)
            self.l2.paste(q, r0 // 2, c0 // 2, embeddings=False)
            pm = q.embeddings.transpose(1, 2, 0)  # (h, w, bands): its memory, no copy
            self.l2_chunks.paste(pm, self.l2_at[0] + r0 // 2, self.l2_at[1] + c0 // 2)
        if self.encoded is not None:
            # on this thread: chunks kept across the block, allocated by an encoder thread,
            # stayed resident in that thread's malloc arena after the block (glibc does not
            # trim a thread arena's top); here they live in the main heap, which is trimmed
            self.encoded.update(encode_embeddings_part(out.embeddings, self.layout, r0, c0,
                                                       threads=1))

    def write_part(self, parts: Location, row: int, col: int):
        """Leave the block's L2 quarter beside the journal; () when it holds no data."""
        if self.l2 is None or not np.isfinite(self.l2.scales).any():
            return ()
        data = pack_part(self.l2_chunks.finish(), self.l2.scales, self.l2.rgba, *self.l2_at,
                         self.bands)
        key = part_key(row, col)
        parts.write(key, data)
        return ((key, len(data), google_crc32c.value(data)),)

    def write(self, store: Location, row: int, col: int, shape: tuple[int, int]):
        rows, cols = shard_windows(shape, self.layout.shard[1], row, col)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        objects = write_shard_arrays(
            store, row, col, scales=self.level.scales[:h, :w], rgba=self.level.rgba[:, :h, :w],
            level="L1", embeddings=self.level.embeddings, encoded=self.encoded)
        if self.encoded is not None:
            self.encoded.clear()  # stored: the chunks go before the L2 part is unpacked
        return objects, int(np.isfinite(self.level.scales[:h, :w]).sum())


def write_shard(task: ShardTask) -> BlockResult:
    """Assemble and write each shard of the block whole (and its preview); returns what was
    written, for the journal.

    Shards are assembled in the tiles' pixel-major order whatever the stored order: tile
    rows copy as plain slices, and a band-major store transposes one cache-sized inner chunk
    at a time while encoding it (``store/shardio.py``)."""
    pv = task.preview
    l0_chunk = embeddings_layout(task.store, "L0").chunk[1]
    level1 = None
    results, objects = [], []
    for spec in task.specs:
        data = assemble(spec, pixel_major=True)
        emb, scales = data.embeddings, data.scales
        rgba = None if pv is None else _colour(pv.stretch, emb, scales, l0_chunk)
        written = write_shard_arrays(task.store, spec.row, spec.col, embeddings=emb,
                                     scales=scales, rgba=rgba)
        if pv is not None and pv.l1_shape is not None:
            level1 = level1 or _Level1(task.store, emb.shape[0], pv.parts is not None,
                                       task.row, task.col)
            level1.add(spec.row % 2, spec.col % 2, data, rgba)
        results.append(_result(spec, data, written))
        objects += written
        del emb, scales, rgba, data  # the shard's arrays go before the next one is assembled
    l1_valid, parts = 0, ()
    if level1 is not None:
        written, l1_valid = level1.write(task.store, task.row, task.col, pv.l1_shape)
        objects += written
        if pv.parts is not None:
            parts = level1.write_part(pv.parts, task.row, task.col)
    return BlockResult(task.row, task.col, tuple(results), tuple(sorted(objects)), l1_valid,
                       parts)


def _result(spec: ShardSpec, data, written) -> ShardResult:
    bytes_in = sum(c[0].height * c[0].width * p.shape[2]
                   for p in spec.pieces if (c := p.core) is not None)
    return ShardResult(spec.row, spec.col, int(np.isfinite(data.scales).sum()), bytes_in,
                       data.stats, tuple(written))


def quarters_encodable(shard_px: int, chunk_px: int) -> bool:
    """True when a quarter of a shard is whole inner chunks (and halves again evenly), so
    quarters can be encoded apart and joined; else L1 is kept raw and L2 made from L1."""
    half = shard_px // 2
    return shard_px % 2 == 0 and half % chunk_px == 0 and half % 2 == 0


def _colour(stretch: Stretch, emb: np.ndarray, scales: np.ndarray, chunk_px: int
            ) -> np.ndarray:
    """The shard's rgba: the bytes ``preview.run.colour_shard`` makes, strip by strip (one
    compiled loop over the pixel-major shard for a ``bands`` stretch)."""
    if stretch.mode == "bands" and emb.strides[0] == 1:
        from geotessera.preview.colourloop import colour_pixel_major  # numba, as the 2×2 mean

        return colour_pixel_major(stretch, emb, scales)
    bands = stretch.bands
    every = bands == tuple(range(emb.shape[0]))
    strip = strip_rows(chunk_px, emb.shape[0] * scales.shape[1])
    return colour_window(stretch, lambda a, b: emb[:, a:b] if every
                         else emb[list(bands), a:b], scales, strip)
