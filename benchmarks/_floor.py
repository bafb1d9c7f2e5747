"""The write floor: read every tile and compress the same bytes, in the same inner-chunk shape,
with the same codecs (numcodecs blosc or zstd for the embeddings, zstd for the scales), and
write them; no placement and none of the build's own writer. Run as a script (so it is timed
like the CLI):

    python benchmarks/_floor.py ARCHIVE OUT -j N [--shard-px S --chunk-px C --codec C ...]

Why this is an honest floor for ``zarr-build``:

* same start-up: a fresh interpreter that starts the same spawn process pool
  (``geotessera.parallel.process_pool``) with the same ``max_in_flight``, one task per shard;
* same reads: every tile's embeddings, scales and landmask, each byte read once;
* same codecs and chunk shape, independent code: each inner chunk is C² consecutive pixels of
  the packed tiles (the byte count of a C × C inner chunk), made band-major (or left
  pixel-major) and compressed with the layout's embeddings codec on the same number of
  threads per task: ``numcodecs.Blosc`` configured as the store's ``blosc`` codec (cname
  zstd, the same clevel and shuffle, typesize 1, one block per chunk: ``embeddings_codec``),
  or ``numcodecs.Zstd`` at the same level (``--codec zstd:N``); scales go through zstd at
  ``zstd_level``, as in the store, in chunks of the scales chunk's size, one object per
  chunk; embedding chunks of a shard are written as one object. Nothing of
  ``geotessera.store`` is used, so a slow (or fast) shard writer cannot move the floor;
* same bytes: the tiles' pixels are packed end to end (the files' own order) into
  ``ceil(pixels / S²)`` shards, so the embedding bytes compressed equal the bytes read;
* same content: the no-data rule is applied (water and non-finite scales → NaN scales and
  zero embeddings) and all-zero chunks are not written, as in the store, because runs of
  zeros compress much faster than data;
* no mosaicking: no owner rule, no placement, no windows. In band-major mode each chunk is
  transposed from the tiles' pixel-major order, in cache-sized blocks: that copy is part of
  the floor;
* timing: ``seconds`` runs from the first task to the last shard (the pool's worker start-up
  happens on first submit, as in the build).
"""

from __future__ import annotations

import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import rasterio
from numcodecs import Blosc, Zstd
from rasterio.windows import Window as RioWindow

sys.path.insert(0, str(Path(__file__).parent))
from _harness import embedding_files  # noqa: E402  (also makes this checkout importable)

from geotessera.parallel import imap_unordered, process_pool  # noqa: E402
from geotessera.tiles import tile_paths  # noqa: E402
from geotessera.types import StoreLayout  # noqa: E402

#: Threads compressing inner chunks inside one task: the build's default.
DEFAULT_THREADS = 2
#: numcodecs' blosc shuffle constants by the Zarr v3 names.
SHUFFLES = {"bitshuffle": Blosc.BITSHUFFLE, "shuffle": Blosc.SHUFFLE,
            "noshuffle": Blosc.NOSHUFFLE}


def embeddings_codec(layout: StoreLayout, chunk_bytes: int) -> Blosc | Zstd | None:
    """The numcodecs codec of the layout's int8 embedding chunks of ``chunk_bytes`` bytes,
    configured as zarr configures the store's (docs/format.md §6): blosc with zstd inside,
    typesize 1 and one block per chunk, or zstd at ``zstd_level``, or none."""
    if layout.blosc is not None:
        return Blosc("zstd", layout.blosc.clevel, SHUFFLES[layout.blosc.shuffle],
                     blocksize=chunk_bytes, typesize=1)
    return scales_codec(layout)


def scales_codec(layout: StoreLayout) -> Zstd | None:
    """zstd at ``zstd_level`` (the scales' codec whatever the embeddings'), or none."""
    return None if layout.zstd_level is None else Zstd(level=layout.zstd_level)


def _encode(codec: Blosc | Zstd | None, data: np.ndarray) -> bytes:
    return data.tobytes() if codec is None else codec.encode(data)


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
    out: str
    shard: int
    layout: StoreLayout
    threads: int
    pieces: tuple[Piece, ...]


def _tiles(base: Path) -> list[tuple[Path, tuple[int, int, int]]]:
    """(embeddings path, (H, W, bands)) of every tile-year, from the .npy headers."""
    return [(emb, np.load(emb, mmap_mode="r").shape) for emb in embedding_files(base)]


def plan(base: Path, out: str, layout: StoreLayout, threads: int) -> tuple[list[FloorTask], int]:
    """(tasks, bands): the tiles' pixels packed end to end into shards."""
    tiles = _tiles(base)
    bands = tiles[0][1][2]
    per_shard = layout.shard_px**2
    total = sum(h * w for _, (h, w, _) in tiles)
    pieces: list[list[Piece]] = [[] for _ in range(math.ceil(total / per_shard))]
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
    return [FloorTask(out, k, layout, threads, tuple(p)) for k, p in enumerate(pieces)], bands


def _land(piece: Piece) -> np.ndarray:
    """Landmask values (flat) of the piece's pixels, read as whole rows."""
    h, w, _ = piece.shape
    r0, r1 = piece.start // w, -(-piece.stop // w)
    with rasterio.open(piece.landmask) as src:
        rows = src.read(1, window=RioWindow(0, r0, w, r1 - r0)).reshape(-1)
    return rows[piece.start - r0 * w : piece.stop - r0 * w]


def _fill(task: FloorTask) -> tuple[np.ndarray, np.ndarray, int]:
    """The packed shard, pixel-major (S², bands) int8 and (S²,) float32, and bytes read."""
    s, bands = task.layout.shard_px, task.pieces[0].shape[2]
    emb = np.zeros((s * s, bands), np.int8)
    scales = np.full(s * s, np.nan, np.float32)
    nbytes = 0
    for p in task.pieces:
        dst = slice(p.dest, p.dest + p.stop - p.start)
        emb[dst] = np.load(p.embeddings, mmap_mode="r").reshape(-1, bands)[p.start : p.stop]
        sc = np.array(np.load(p.scales, mmap_mode="r").reshape(-1)[p.start : p.stop])
        nodata = (_land(p) == 0) | ~np.isfinite(sc)
        sc[nodata] = np.nan
        scales[dst] = sc
        emb[dst][nodata] = 0
        nbytes += (p.stop - p.start) * bands
    return emb, scales, nbytes


def write_floor_shard(task: FloorTask) -> int:
    """Fill one shard by contiguous copies, compress and write it; return embedding bytes read."""
    emb, scales, nbytes = _fill(task)
    lay = task.layout
    n = lay.chunk_px**2
    codec, sc_codec = embeddings_codec(lay, n * emb.shape[1]), scales_codec(lay)

    def encode(i: int) -> bytes:
        chunk = emb[i * n : (i + 1) * n]
        if not chunk.any():
            return b""
        return _encode(codec, chunk if lay.pixel_major else np.ascontiguousarray(chunk.T))

    with ThreadPoolExecutor(task.threads) as pool:
        pieces = list(pool.map(encode, range(len(emb) // n)))
    out = Path(task.out)
    with open(out / f"emb.{task.shard}", "wb") as f:
        f.write(b"".join(pieces))
    m = lay.scales_chunk_px**2
    for i in range(len(scales) // m):
        (out / f"scales.{task.shard}.{i}").write_bytes(_encode(sc_codec,
                                                               scales[i * m : (i + 1) * m]))
    return nbytes


@click.command()
@click.argument("base", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("-j", "--workers", type=int, default=2)
@click.option("--threads", type=int, default=DEFAULT_THREADS, help="encoding threads per task")
@click.option("--shard-px", type=int, default=StoreLayout().shard_px)
@click.option("--chunk-px", type=int, default=StoreLayout().chunk_px)
@click.option("--scales-chunk-px", type=int, default=StoreLayout().scales_chunk_px)
@click.option("--zstd-level", type=int, default=StoreLayout().zstd_level)
@click.option("--pixel-major/--band-major", default=StoreLayout().pixel_major)
@click.option("--codec", default=None, help="as zarr-build --codec [default: the layout's]")
def main(base: Path, out: Path, workers: int, threads: int, codec: str | None,
         **layout_opts) -> None:
    """Write the floor's objects into OUT from archive BASE; print one JSON document."""
    layout = StoreLayout(**layout_opts)
    layout = layout if codec is None else layout.with_codec(codec)
    store = out / "floor"
    store.mkdir(parents=True, exist_ok=True)
    tasks, bands = plan(base, str(store), layout, threads)
    s = layout.shard_px
    t0 = time.perf_counter()
    bytes_in = 0
    with process_pool(workers) as pool:
        for _, n in imap_unordered(write_floor_shard, tasks, pool, max_in_flight=workers + 1):
            bytes_in += n
    click.echo(json.dumps({"path": str(store), "shards_written": len(tasks), "bytes_in": bytes_in,
                           "bytes_written_raw": len(tasks) * s * s * (bands + 4),
                           "seconds": round(time.perf_counter() - t0, 3)}))


if __name__ == "__main__":
    main()
