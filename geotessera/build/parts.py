"""Level 2 from the build's tasks: each block task leaves its quarter of an L2 shard as a
*part* object beside the journal, and one join task per L2 shard writes the shard from its
(up to four) parts, so no level below L1 is ever read back to make L2.

A part holds the quarter's embeddings as encoded inner chunks (the bytes the shard will
hold), and its scales and rgba zstd-compressed, behind a JSON header::

    8 bytes little-endian header length | header JSON | payload

The header names the quarter (row0, col0 within the L2 shard, in pixels), its shape, and
for every stored chunk its coordinates and byte range in the payload. Parts are data of
this build only: they live in the version's journal, are checked by size and CRC32C on
``--resume`` like every journaled object, and go with the journal when the store is
published.
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
from geotessera.preview.overviews import LevelReport, Reduced, run_shard_tasks, shard_windows
from geotessera.store.location import Location
from geotessera.store.publish import part_key
from geotessera.store.zone import embeddings_layout, encode_embeddings_part, write_shard_arrays
from geotessera.types import Level

_ZSTD = Zstd(level=3)


def encode_part(store: Location, quarter: Reduced, row0: int, col0: int) -> bytes:
    """The part object of an L2 quarter whose first pixel is (row0, col0) in its shard."""
    layout = embeddings_layout(store, "L2")
    chunks = encode_embeddings_part(quarter.embeddings, layout, row0, col0)
    body, index = bytearray(), []
    for (_, cy, cx), data in sorted(chunks.items()):
        index.append([cy, cx, len(body), len(data)])
        body += data
    blobs = {}
    for name, arr in (("scales", quarter.scales), ("rgba", quarter.rgba)):
        data = _ZSTD.encode(np.ascontiguousarray(arr))
        blobs[name] = [len(body), len(data)]
        body += data
    head = json.dumps({"row0": row0, "col0": col0, "shape": list(quarter.scales.shape),
                       "bands": int(quarter.embeddings.shape[0]), "chunks": index,
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
    """Write shard (row, col) of L2 of ``store`` from the parts ``keys`` below ``parts``."""

    store: Location
    parts: Location
    row: int
    col: int
    keys: tuple[str, ...]
    shape: tuple[int, int]  # L2's (height, width)
    level: int = 2


def join_shard(task: JoinTask) -> int:
    """Write the L2 shard whole from its parts; return its valid pixel count."""
    layout = embeddings_layout(task.store, "L2")
    s = layout.shard[1]
    chunks: dict[tuple[int, ...], bytes] = {}
    scales = np.full((s, s), np.nan, np.float32)
    rgba = np.zeros((4, s, s), np.uint8)
    for key in task.keys:
        part = decode_part(task.parts.read(key), task.parts.child(key))
        h, w = part.scales.shape
        scales[part.row0:part.row0 + h, part.col0:part.col0 + w] = part.scales
        rgba[:, part.row0:part.row0 + h, part.col0:part.col0 + w] = part.rgba
        chunks.update(part.chunks)
    rows, cols = shard_windows(task.shape, s, task.row, task.col)
    h, w = rows.stop - rows.start, cols.stop - cols.start
    write_shard_arrays(task.store, task.row, task.col, scales=scales[:h, :w],
                       rgba=rgba[:, :h, :w], level="L2", encoded=chunks)
    return int(np.isfinite(scales[:h, :w]).sum())



def join_parts(store: Location, parts: Location, level: Level, records: list[dict[str, Any]],
               executor: Executor, *, label: str = "", max_in_flight: int = 4,
               retries: int = DEFAULT_RETRIES, on_progress: ProgressFn | None = None,
               ) -> tuple[LevelReport, set[tuple[int, int]]]:
    """Write every L2 shard that has a part among the blocks' journal ``records``; returns
    the level's report and its non-empty shards. Part keys are derived from each record's
    block position, never read from the record."""
    t0 = time.perf_counter()
    by_shard: dict[tuple[int, int], list[str]] = {}
    for rec in records:
        if rec.get("parts"):
            by_shard.setdefault((rec["row"] // 2, rec["col"] // 2), []).append(
                part_key(rec["row"], rec["col"]))
    tasks = [JoinTask(store, parts, r, c, tuple(sorted(keys)), level.shape)
             for (r, c), keys in sorted(by_shard.items())]
    done = run_shard_tasks(join_shard, tasks, executor, max_in_flight=max_in_flight,
                           label=f"{label} {level.path}", on_progress=on_progress,
                           retries=retries)
    report = LevelReport(level.index, level.shape, len(tasks), sum(done.values()),
                         time.perf_counter() - t0)
    return report, {(t.row, t.col) for t, valid in done.items() if valid}
