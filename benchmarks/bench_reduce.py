"""The 2×2 embeddings reduction of the overviews: the compiled loop against its numpy form.

    python benchmarks/bench_reduce.py [--repeat 3]

One 1024 × 1024 × 128 L0 shard of random int8 (a third of its pixels without data) is
reduced to its 512 × 512 parent window strip by strip, as the build's tasks do it
(``overviews.memory_strip`` rows at a time), once with children pixel-major (the build's
shard in memory) and once band-major (a store read through zarr). Printed: best CPU seconds
per shard of ``mean2x2.reference`` (the numpy formulation the build used before) and of
the compiled ``mean2x2``, their ratio, the first call's compile (or cache load) time, and
whether the two results are the same bytes (compared after the clock stops: a pixel-major
result, as the compiled loop gives of pixel-major children, is copied by its consumer).
Then the colour of the same pixel-major shard (a three-band ``bands`` stretch): numpy's
``colour_window`` in the build's strips against the compiled ``colourloop``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)

from geotessera.preview.mean2x2 import mean2x2, reference  # noqa: E402
from geotessera.preview.colourloop import colour_pixel_major  # noqa: E402
from geotessera.preview.overviews import memory_strip, strip_rows  # noqa: E402
from geotessera.preview.stretch import Stretch, colour_window  # noqa: E402

BANDS, SIDE = 128, 1024


def shard(pixel_major: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if pixel_major:
        emb = rng.integers(-127, 128, (SIDE, SIDE, BANDS), np.int8).transpose(2, 0, 1)
    else:
        emb = rng.integers(-127, 128, (BANDS, SIDE, SIDE), np.int8)
    scales = rng.uniform(1e-3, 0.1, (SIDE, SIDE)).astype(np.float32)
    scales[rng.random((SIDE, SIDE)) < 1 / 3] = np.nan
    return emb, scales


def reduce_shard(fn, emb, scales) -> tuple[float, bytes]:
    """CPU seconds of the reduction alone, and its result as band-major bytes (the bytes
    are taken after the clock stops: a pixel-major result's copy is its consumer's)."""
    strip, out = memory_strip(BANDS, SIDE // 2), []
    t0 = time.process_time()
    for o in range(0, SIDE // 2, strip):
        out.append(fn(emb[:, 2 * o:2 * (o + strip)], scales[2 * o:2 * (o + strip)]))
    cpu = time.process_time() - t0
    return cpu, b"".join(q.tobytes() + s.tobytes() for q, s in out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    mean2x2(np.zeros((BANDS, 2, 2), np.int8), np.ones((2, 2), np.float32))
    print(f"first call (compile or cache load): {time.perf_counter() - t0:.2f} s")
    rows = []
    for pixel_major in (True, False):
        emb, scales = shard(pixel_major)
        best, out = {}, {}
        for _ in range(args.repeat):
            for name, fn in (("numpy", reference), ("compiled", mean2x2)):
                cpu, out[name] = reduce_shard(fn, emb, scales)
                best[name] = min(best.get(name, cpu), cpu)
        rows.append(["pixel" if pixel_major else "band", f"{best['numpy']:.3f}",
                     f"{best['compiled']:.3f}", f"{best['numpy'] / best['compiled']:.1f}",
                     str(out["numpy"] == out["compiled"])])
    print(f"one {SIDE}² × {BANDS} shard to its parent window, best CPU s of {args.repeat}")
    print(h.table(["children", "numpy s", "compiled s", "speed-up", "same bytes"], rows))
    colour(args.repeat)


def colour(repeat: int) -> None:
    """The colour of one pixel-major shard: numpy (as the build's strips) and compiled."""
    emb, scales = shard(True)
    stretch = Stretch("bands", (0, 1, 2), (-40.0,) * 3, (40.0,) * 3, 1, 1, 0)
    strip = strip_rows(32, BANDS * SIDE)
    fns = {"numpy": lambda: colour_window(stretch, lambda a, b: emb[[0, 1, 2], a:b], scales,
                                          strip),
           "compiled": lambda: colour_pixel_major(stretch, emb, scales)}
    best, out = {}, {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.process_time()
            out[name] = fn()
            best[name] = min(best.get(name, 9e9), time.process_time() - t0)
    print(f"colour of one pixel-major {SIDE}² × {BANDS} shard, best CPU s of {repeat}")
    print(h.table(["numpy s", "compiled s", "speed-up", "same bytes"],
                  [[f"{best['numpy']:.3f}", f"{best['compiled']:.3f}",
                    f"{best['numpy'] / best['compiled']:.1f}",
                    str(np.array_equal(out["numpy"], out["compiled"]))]]))


if __name__ == "__main__":
    main()
