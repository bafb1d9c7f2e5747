"""The shard task of a build: assemble one shard from its tiles, write it whole. Picklable."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geotessera.build.assemble import PieceStat, ShardSpec, assemble
from geotessera.store.location import Location
from geotessera.store.zone import write_shard_arrays


@dataclass(frozen=True, slots=True)
class ShardTask:
    """Write one shard of one store; opens everything it needs from its locations."""

    store: Location
    spec: ShardSpec
    pixel_major: bool


@dataclass(frozen=True, slots=True)
class ShardResult:
    row: int
    col: int
    valid_pixels: int
    bytes_in: int
    stats: tuple[PieceStat, ...]
    #: Every object the task stored: (key below the store, size, CRC32C), for the journal.
    objects: tuple[tuple[str, int, int], ...] = ()


def write_shard(task: ShardTask) -> ShardResult:
    """Assemble the shard and write both arrays with one whole-shard write each; returns the
    objects written (for the journal).

    The shard is assembled in the tiles' pixel-major order whatever the stored order: tile
    rows copy as plain slices, and a band-major store transposes one cache-sized inner chunk
    at a time while encoding it (``store/shardio.py``)."""
    data = assemble(task.spec, pixel_major=True)
    objects = write_shard_arrays(task.store, task.spec.row, task.spec.col,
                                 embeddings=data.embeddings, scales=data.scales)
    valid = int(np.isfinite(data.scales).sum())
    bytes_in = sum(c[0].height * c[0].width * p.shape[2]
                   for p in task.spec.pieces if (c := p.core) is not None)
    return ShardResult(task.spec.row, task.spec.col, valid, bytes_in, data.stats,
                       tuple(objects))
