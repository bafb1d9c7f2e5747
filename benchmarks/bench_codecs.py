"""Codec choice by measurement: compression ratio and CPU per GB of the embeddings' inner
chunks, for each codec and chunk byte order, on two kinds of data.

    python benchmarks/bench_codecs.py [--cache DIR] [--rows 512] [--out FILE]

Data (one real-size 10 m tile of the cached bench archive, ``rows`` × 1024 pixels, 128 bands):

* ``synthetic``: the demo generator's own statistics (smooth fields, per-pixel scale
  max|v|/127, ±1 noise, its water mask);
* ``real-like``: the same pixels with N(0, 12) noise per value re-quantised to saturation
  (every pixel again has a band at ±127, as the archive's quantiser leaves it), and long
  water runs: the left 40 % of columns and a band of rows zeroed (as a coast and an estuary),
  on top of the generator's water.

Each codec encodes every 32 × 32 × 128 inner chunk (band-major: (128, 32, 32) bytes;
pixel-major: (32, 32, 128)), all-zero chunks skipped as the store skips them, on one thread;
``cpu s/GB`` is process CPU time per GB of raw chunk bytes (encode, and decode of the result).
Codecs are named as ``zarr-build --codec`` names them and built by the store's own
``shardio.compressor``, so each is exactly what the store writes: numcodecs' ``Zstd(level)``
and ``Blosc('zstd', level, shuffle, blocksize=<one chunk>, typesize=1)`` (typesize 1 for
int8, so byte shuffle is a no-op and bit shuffle transposes bits within each block; one
block per chunk so the bytes do not depend on blosc's threads, and at 128 KiB chunks and
level >= 3 blosc's automatic block size would be the whole chunk anyway).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

from geotessera.store.shardio import ShardLayout, compressor  # noqa: E402
from geotessera.types import N_BANDS, BloscZstd, parse_codec  # noqa: E402

CHUNK = 32
CODECS = ["none", "zstd:1", "zstd:3", "zstd:5", "zstd:9", "blosc-zstd:3:noshuffle",
          "blosc-zstd:1:bitshuffle", "blosc-zstd:2:bitshuffle",
          "blosc-zstd:3:bitshuffle", "blosc-zstd:5:bitshuffle"]


def codec_of(name: str, bands: int = N_BANDS):
    """The numcodecs codec the store uses for ``--codec name`` on (bands, 32, 32) chunks."""
    choice = parse_codec(name)
    blosc = choice if isinstance(choice, BloscZstd) else None
    chunk = (bands, CHUNK, CHUNK)
    return compressor(ShardLayout(chunk, chunk, chunk, "int8", None if blosc else choice,
                                  blosc=blosc))


def load(cache: Path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, 1024, 128) int8 with the no-data rule applied, and its land mask."""
    import rasterio

    base = h.cached_archive(cache, 4)
    emb = h.embedding_files(base)[0]
    q = np.array(np.load(emb, mmap_mode="r")[:rows, :1024])
    sc = np.load(emb.with_name(emb.stem + "_scales.npy"), mmap_mode="r")[:rows, :1024]
    tif = base / "global_0.1_degree_tiff_all" / f"{emb.parent.name}.tiff"
    with rasterio.open(tif) as src:
        land = src.read(1)[:rows, :1024] != 0
    land &= np.isfinite(sc)
    q[~land] = 0
    return q, land


def real_like(q: np.ndarray, land: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = q.astype(np.float32) + rng.normal(0, 12, q.shape).astype(np.float32)
    peak = np.maximum(np.abs(v).max(axis=-1, keepdims=True), 1e-6)
    out = np.clip(np.rint(v / peak * 127), -127, 127).astype(np.int8)
    water = ~land.copy()
    water[:, : int(0.4 * q.shape[1])] = True
    water[q.shape[0] // 3 : q.shape[0] // 3 + 96] = True
    out[water] = 0
    return out


def chunks(q: np.ndarray, band_major: bool) -> list[np.ndarray]:
    h_, w_, _ = q.shape
    out = []
    for r in range(0, h_, CHUNK):
        for c in range(0, w_, CHUNK):
            block = q[r : r + CHUNK, c : c + CHUNK]
            if block.any():
                out.append(np.ascontiguousarray(block.transpose(2, 0, 1)) if band_major
                           else np.ascontiguousarray(block))
    return out


def measure(data: list[np.ndarray], codec) -> dict:
    raw = sum(c.nbytes for c in data)
    t0 = time.process_time()
    enc = [codec.encode(c) if codec else c.tobytes() for c in data]
    t1 = time.process_time()
    for e in enc:
        if codec:
            codec.decode(e)
    t2 = time.process_time()
    size = sum(len(e) for e in enc)
    return {"raw_bytes": raw, "stored_bytes": size, "ratio": raw / size,
            "encode_cpu_s_per_gb": (t1 - t0) / raw * 1e9,
            "decode_cpu_s_per_gb": (t2 - t1) / raw * 1e9}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    q, land = load(args.cache, args.rows)
    datasets = {"synthetic": q, "real-like": real_like(q, land)}
    rows, figs = [], []
    for dname, d in datasets.items():
        for band_major in (True, False):
            cs = chunks(d, band_major)
            for name in CODECS:
                m = measure(cs, codec_of(name, d.shape[-1]))
                fig = {"data": dname, "order": "band" if band_major else "pixel",
                       "codec": name, **m}
                figs.append(fig)
                rows.append([dname, fig["order"], name, f"{m['ratio']:.2f}",
                             f"{m['encode_cpu_s_per_gb']:.2f}",
                             f"{m['decode_cpu_s_per_gb']:.2f}"])
                print(f"{dname} {fig['order']} {name}", file=sys.stderr, flush=True)
    print(h.table(["data", "order", "codec", "ratio", "encode cpu s/GB", "decode cpu s/GB"],
                  rows))
    out = args.out or args.cache / "codecs.json"
    out.write_text(json.dumps(figs, indent=1))
    print(f"\nfigures written to {out}")


if __name__ == "__main__":
    main()
