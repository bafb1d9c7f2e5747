"""Levels 2…n from the build's tasks: each block task leaves its quarter of an L2 shard as a
*part* object beside the journal, and one join task per L2 shard writes the shard from its
(up to four) parts and leaves its own quarter of L3 as a part, and so on up the pyramid, so
no level is ever read back from the store to make the next.

A part holds the quarter's embeddings as encoded inner chunks (the bytes the shard will
hold), and its scales and rgba zstd-compressed, behind a JSON header::

    8 bytes little-endian header length | header JSON | payload

The header names the quarter (row0, col0 within the L2 shard, in pixels), its shape, and
for every stored chunk its coordinates and byte range in the payload. Parts are data of
this build only: they live in the version's journal and go with it when the store is
published. The blocks' L2 parts are journaled and checked by size and CRC32C on
``--resume`` like every journaled object; the coarser ones are rewritten by every run.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numcodecs import Zstd

from geotessera.errors import StoreError
from geotessera.parallel import DEFAULT_RETRIES, ProgressFn
from geotessera.preview.overviews import (
    LevelReport,
    Reduced,
    memory_strip,
    reduce_window,
    run_shard_tasks,
    shard_windows,
)
from geotessera.store.location import Location
from geotessera.store.publish import part_key
from geotessera.store.shardio import ShardLayout, decode_chunk
from geotessera.store.zone import (
    create_level,
    embeddings_layout,
    encode_embeddings_part,
    write_shard_arrays,
)
from geotessera.types import Level

_ZSTD = Zstd(level=3)


def encode_part(store: Location, quarter: Reduced, row0: int, col0: int, *,
                level: str = "L2") -> bytes:
    """The part object of a quarter of a ``level`` shard whose first pixel is (row0, col0)
    in that shard."""
    layout = embeddings_layout(store, level)
    chunks = encode_embeddings_part(quarter.embeddings, layout, row0, col0)
    return pack_part(chunks, quarter.scales, quarter.rgba, row0, col0,
                     int(quarter.embeddings.shape[0]))


def pack_part(chunks: dict[tuple[int, ...], bytes], scales: np.ndarray, rgba: np.ndarray,
              row0: int, col0: int, bands: int) -> bytes:
    """The part object of a quarter whose inner chunks are already ``chunks`` (keys
    (0, cy, cx) in the shard, as ``encode_embeddings_part`` gives them)."""
    body, index = bytearray(), []
    for (_, cy, cx), data in sorted(chunks.items()):
        index.append([cy, cx, len(body), len(data)])
        body += data
    blobs = {}
    for name, arr in (("scales", scales), ("rgba", rgba)):
        data = _ZSTD.encode(np.ascontiguousarray(arr))
        blobs[name] = [len(body), len(data)]
        body += data
    head = json.dumps({"row0": row0, "col0": col0, "shape": list(scales.shape),
                       "bands": bands, "chunks": index,
                       **blobs}).encode()
    return len(head).to_bytes(8, "little") + head + bytes(body)


@dataclass(frozen=True, slots=True)
class Part:
    """A decoded part: its place in the shard, encoded chunks, scales and rgba."""

    row0: int
    col0: int
    chunks: dict[tuple[int, int, int], bytes]
    scales: np.ndarray
    rgba: np.ndarray


def decode_part(raw: bytes, where: Location) -> Part:
    """A part object back; StoreError naming ``where`` when it is not one."""
    try:
        n = int.from_bytes(raw[:8], "little")
        head = json.loads(raw[8:8 + n])
        body = memoryview(raw)[8 + n:]
        h, w = (int(v) for v in head["shape"])

        def blob(name, dtype, shape):
            a, m = (int(v) for v in head[name])
            return np.frombuffer(_ZSTD.decode(body[a:a + m]), dtype).reshape(shape)

        chunks = {(0, int(cy), int(cx)): bytes(body[int(a):int(a) + int(m)])
                  for cy, cx, a, m in head["chunks"]}
        return Part(int(head["row0"]), int(head["col0"]), chunks,
                    blob("scales", np.float32, (h, w)), blob("rgba", np.uint8, (4, h, w)))
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise StoreError(where, f"not a level-2 part ({type(e).__name__}: {e})") from e


@dataclass(frozen=True, slots=True)
class JoinTask:
    """Write shard (row, col) of level ``level`` of ``store`` from the parts ``keys`` below
    ``parts``; with ``leave_part``, also leave the shard's quarter of the next level as a
    part, so that level is joined in turn and no level is read back from the store."""

    store: Location
    parts: Location
    row: int
    col: int
    keys: tuple[str, ...]
    shape: tuple[int, int]  # the level's (height, width)
    level: int = 2
    leave_part: bool = False


def join_shard(task: JoinTask) -> int:
    """Write the shard whole from its parts (and leave its part of the next level); return
    its valid pixel count."""
    layout = embeddings_layout(task.store, f"L{task.level}")
    s = layout.shard[1]
    chunks: dict[tuple[int, ...], bytes] = {}
    joined = Reduced.filled(None, s, s)
    for key in task.keys:
        part = decode_part(task.parts.read(key), task.parts.child(key))
        joined.paste(Reduced(None, part.scales, part.rgba), part.row0, part.col0,
                     embeddings=False)
        chunks.update(part.chunks)
    rows, cols = shard_windows(task.shape, s, task.row, task.col)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    scales, rgba = joined.scales[:h, :w], joined.rgba[:, :h, :w]
    write_shard_arrays(task.store, task.row, task.col, scales=scales, rgba=rgba,
                       level=f"L{task.level}", encoded=chunks)
    valid = int(np.isfinite(scales).sum())
    if task.leave_part and valid:
        _leave_part(task, layout, chunks, scales, rgba)
    return valid


def _leave_part(task: JoinTask, layout: ShardLayout, chunks: dict[tuple[int, ...], bytes],
                scales: np.ndarray, rgba: np.ndarray) -> None:
    """Reduce the joined shard (its chunks decoded a chunk row at a time) into its quarter
    of the next level's shard and write that as a part."""
    bands, half = layout.shape[0], layout.shard[1] // 2
    h, w = scales.shape
    shape = (-(-h // 2), -(-w // 2))
    q = reduce_window(_ChunkRows(chunks, layout, w), scales, rgba, bands, shape,
                      memory_strip(bands, shape[1]))
    if shape != (half, half):  # a level's edge: the part holds whole chunks, fill beyond
        full = Reduced.filled(bands, half, half)
        full.paste(q, 0, 0)
        q = full
    data = encode_part(task.store, q, (task.row % 2) * half, (task.col % 2) * half,
                       level=f"L{task.level + 1}")
    task.parts.write(part_key(task.row, task.col, task.level + 1), data)


class _ChunkRows:
    """``read(a, b)``: rows [a, b) of a shard, (bands, b − a, w) int8, from its encoded
    inner chunks, decoding one row of chunks at a time (the last one kept)."""

    def __init__(self, chunks: dict[tuple[int, ...], bytes], layout: ShardLayout,
                 width: int) -> None:
        self.chunks, self.layout, self.width = chunks, layout, width
        self.cached: tuple[int, np.ndarray] | None = None

    def row(self, cy: int) -> np.ndarray:
        if self.cached is None or self.cached[0] != cy:
            bands, c, s = self.layout.shape[0], self.layout.chunk[1], self.layout.shard[1]
            out = np.zeros((bands, c, s), np.int8)
            for cx in range(s // c):
                if (raw := self.chunks.get((0, cy, cx))) is not None:
                    out[:, :, cx * c:(cx + 1) * c] = decode_chunk(raw, self.layout)
            self.cached = (cy, out)
        return self.cached[1]

    def __call__(self, a: int, b: int) -> np.ndarray:
        c = self.layout.chunk[1]
        pieces = [self.row(cy)[:, max(a - cy * c, 0):b - cy * c, :self.width]
                  for cy in range(a // c, (b - 1) // c + 1)]
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)


def join_levels(store: Location, parts: Location, levels: list[Level],
                records: list[dict[str, Any]], executor: Executor, *, label: str = "",
                max_in_flight: int = 4, retries: int = DEFAULT_RETRIES,
                on_progress: ProgressFn | None = None) -> list[LevelReport]:
    """Write ``levels`` (L2, which exists, then each coarser one, created here) from parts: L2's from the blocks' journal ``records``, each next level's left by
    the joins of the level before. Returns a report per level. Part keys are derived from
    shard positions, never read from a record."""
    keys: dict[tuple[int, int], list[str]] = {}
    for rec in records:
        if rec.get("parts"):
            keys.setdefault((rec["row"] // 2, rec["col"] // 2), []).append(
                part_key(rec["row"], rec["col"]))
    reports = []
    for i, level in enumerate(levels):
        t0, last = time.perf_counter(), i == len(levels) - 1
        if not last:  # its parts are encoded with the next level's layout
            create_level(store, levels[i + 1])
        tasks = [JoinTask(store, parts, r, c, tuple(sorted(k)), level.shape, level.index,
                          not last) for (r, c), k in sorted(keys.items())]
        done = run_shard_tasks(join_shard, tasks, executor, max_in_flight=max_in_flight,
                               label=f"{label} {level.path}", on_progress=on_progress,
                               retries=retries)
        reports.append(LevelReport(level.index, level.shape, len(tasks), sum(done.values()),
                                   time.perf_counter() - t0))
        keys = {}
        for t, valid in sorted(done.items(), key=lambda kv: (kv[0].row, kv[0].col)):
            if valid:
                keys.setdefault((t.row // 2, t.col // 2), []).append(
                    part_key(t.row, t.col, level.index + 1))
    return reports
