"""The write floor: read every tile and write the same bytes through the same codec with the
same number of processes, no mosaicking. Run as a script (so it is timed like the CLI):

    python benchmarks/_floor.py ARCHIVE OUT -j N [--shard-px S --chunk-px C ...]

Why this is an honest floor for ``zarr-build``:

* same start-up: a fresh interpreter that imports numpy/zarr/rasterio and starts the same
  spawn process pool (``geotessera.parallel.process_pool``) with the same ``max_in_flight``;
* same reads: every tile's embeddings, scales and landmask, each byte read once;
* same codec and layout: the scratch store is made by ``geotessera.store.create_zone_store``
  with the same ``StoreLayout``, so the sharding, inner chunks, zstd level and transpose filter
  are the library's own, and each task writes one whole shard of both arrays, as the build does;
* same bytes: the tiles' pixels are packed end to end (row-major, the files' own order) into a
  1-shard-tall strip of ``ceil(pixels / S²)`` shards, so the embedding bytes written equal the
  bytes read, rounded up to one shard;
* same content: the no-data rule is applied (water and non-finite scales → NaN scales and
  zero embeddings), because runs of zeros compress much faster than data and the build's
  shards hold them; skipping it would make the floor slower than the real work;
* no mosaicking: no owner rule, no placement, no windows; a shard is filled by a few
  contiguous copies. In band-major mode the pixel-major tile rows still have to be transposed
  into the (band, pixel) buffer, so that copy is part of the floor too;
* timing: ``seconds`` runs from creating the store to the last shard, as the build's per-store
  ``seconds`` does (both include the pool's worker start-up, which happens on first submit).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import rasterio
from rasterio.windows import Window as RioWindow

sys.path.insert(0, str(Path(__file__).parent))
from _harness import embedding_files  # noqa: E402  (also makes this checkout importable)

from geotessera.parallel import imap_unordered, process_pool  # noqa: E402
from geotessera.store.zone import create_zone_store, write_shard_arrays  # noqa: E402
from geotessera.tiles import tile_paths  # noqa: E402
from geotessera.types import StoreLayout  # noqa: E402
from geotessera.zonegrid import ZoneGrid  # noqa: E402


@dataclass(frozen=True, slots=True)
class Piece:
    """Pixels [start, stop) of one tile (row-major) go to shard pixels [dest, dest + n)."""

    embeddings: str
    scales: str
    landmask: str
    shape: tuple[int, int, int]
    start: int
    stop: int
    dest: int


@dataclass(frozen=True, slots=True)
class FloorTask:
    store: str
    shard: int
    shard_px: int
    pixel_major: bool
    pieces: tuple[Piece, ...]


def _tiles(base: Path) -> list[tuple[Path, tuple[int, int, int]]]:
    """(embeddings path, (H, W, bands)) of every tile-year, from the .npy headers."""
    return [(emb, np.load(emb, mmap_mode="r").shape) for emb in embedding_files(base)]


def plan(base: Path, store: str, layout: StoreLayout) -> tuple[list[FloorTask], int, int]:
    """(tasks, number of shards, bands): the tiles' pixels packed end to end into shards."""
    tiles = _tiles(base)
    bands = tiles[0][1][2]
    per_shard = layout.shard_px**2
    total = sum(h * w for _, (h, w, _) in tiles)
    n_shards = math.ceil(total / per_shard)
    pieces: list[list[Piece]] = [[] for _ in range(n_shards)]
    offset = 0  # global pixel index of the tile's first pixel
    for emb, (h, w, b) in tiles:
        year, name = int(emb.parent.parent.name), emb.parent.name
        paths = tile_paths(base, year, name)
        pos = offset
        while pos < offset + h * w:
            k, dest = divmod(pos, per_shard)
            stop = min(offset + h * w, (k + 1) * per_shard)
            pieces[k].append(Piece(str(paths.embeddings), str(paths.scales), str(paths.landmask),
                                   (h, w, b), pos - offset, stop - offset, dest))
            pos = stop
        offset += h * w
    tasks = [FloorTask(store, k, layout.shard_px, layout.pixel_major, tuple(p))
             for k, p in enumerate(pieces)]
    return tasks, n_shards, bands


def _land(piece: Piece) -> np.ndarray:
    """Landmask values (flat) of the piece's pixels, read as whole rows."""
    h, w, _ = piece.shape
    r0, r1 = piece.start // w, -(-piece.stop // w)
    with rasterio.open(piece.landmask) as src:
        rows = src.read(1, window=RioWindow(0, r0, w, r1 - r0)).reshape(-1)
    return rows[piece.start - r0 * w : piece.stop - r0 * w]


def write_floor_shard(task: FloorTask) -> int:
    """Fill one shard by contiguous copies and write it whole; return embedding bytes read."""
    s, bands = task.shard_px, task.pieces[0].shape[2]
    if task.pixel_major:
        emb = np.zeros((s * s, bands), np.int8)
    else:
        emb = np.zeros((bands, s * s), np.int8)
    scales = np.full(s * s, np.nan, np.float32)
    nbytes = 0
    for p in task.pieces:
        dst = slice(p.dest, p.dest + p.stop - p.start)
        rows = np.load(p.embeddings, mmap_mode="r").reshape(-1, bands)[p.start : p.stop]
        sc = np.array(np.load(p.scales, mmap_mode="r").reshape(-1)[p.start : p.stop])
        nodata = (_land(p) == 0) | ~np.isfinite(sc)
        sc[nodata] = np.nan
        scales[dst] = sc
        if task.pixel_major:
            emb[dst] = rows
            emb[dst][nodata] = 0
        else:
            emb[:, dst] = rows.T
            emb[:, dst][:, nodata] = 0
        nbytes += rows.nbytes
    if task.pixel_major:
        out = emb.reshape(s, s, bands).transpose(2, 0, 1)  # as assemble() hands it to zarr
    else:
        out = emb.reshape(bands, s, s)
    write_shard_arrays(task.store, 0, task.shard, embeddings=out,  # the build's own writer
                       scales=scales.reshape(s, s))
    return nbytes


@click.command()
@click.argument("base", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("-j", "--workers", type=int, default=2)
@click.option("--shard-px", type=int, default=StoreLayout().shard_px)
@click.option("--chunk-px", type=int, default=StoreLayout().chunk_px)
@click.option("--scales-chunk-px", type=int, default=StoreLayout().scales_chunk_px)
@click.option("--zstd-level", type=int, default=StoreLayout().zstd_level)
@click.option("--pixel-major/--band-major", default=StoreLayout().pixel_major)
def main(base: Path, out: Path, workers: int, **layout_opts) -> None:
    """Write the floor store OUT from archive BASE; print one JSON document."""
    layout = StoreLayout(**layout_opts)
    store = out / "floor.zarr"
    out.mkdir(parents=True, exist_ok=True)
    tasks, n_shards, bands = plan(base, str(store), layout)
    s = layout.shard_px
    grid = ZoneGrid(31, 10.0, 0.0, float(s * 10), s, n_shards * s, s)
    t0 = time.perf_counter()
    create_zone_store(store, grid.pixels, bands, layout, {"floor": True})
    bytes_in = 0
    with process_pool(workers) as pool:
        for _, n in imap_unordered(write_floor_shard, tasks, pool, max_in_flight=workers + 1):
            bytes_in += n
    click.echo(json.dumps({"path": str(store), "shards_written": n_shards, "bytes_in": bytes_in,
                           "bytes_written_raw": n_shards * s * s * (bands + 4),
                           "seconds": round(time.perf_counter() - t0, 3)}))


if __name__ == "__main__":
    main()
