"""Read-side figures on a real-size (10 m, 128-band) store, against the source tiles.

    python benchmarks/bench_read.py [--tiles 16] [--cache DIR] [--points 1000] [--out FILE]
                                    [--only-regions] [--no-regions]

In one run: bytes read by a one-pixel lookup (a counting wrapper around the zarr store:
the embeddings must cost at most one inner chunk plus its shard's index), the warm median
latency of a one-pixel lookup, 1,000 random points through ``sample`` against the same
points from the source tiles (``np.load`` each tile once, index; also with ``mmap_mode``),
and the MB/s of a region read; then large multi-zone regions against decode + dequantise
of the store windows under them, CPU time and peak memory (``_regions.py``). The stores are
built once per archive with the CLI (default layout) and cached next to the archive.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import contextlib
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _regions  # noqa: E402
import _tilepoints as tp  # noqa: E402

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import zarr  # noqa: E402

from geotessera import read  # noqa: E402
from geotessera.archive import registry  # noqa: E402
from geotessera.read.reader import zones_of  # noqa: E402
from geotessera.store.location import Location  # noqa: E402
from geotessera.tiles import tile_paths  # noqa: E402

YEAR = 2024
WARM_REPEATS = 50


@contextlib.contextmanager
def counting_reads():
    """Record every byte read through ``Location``: (key, "range" | "suffix" | "whole", n),
    one entry per range of a ``read_ranges`` call."""
    reads: list[tuple[str, str, int]] = []
    orig = {n: getattr(Location, n) for n in ("read", "read_range", "read_suffix",
                                              "read_ranges")}

    def wrap(name, kind):
        def fn(self, key, *args, **kw):
            data = orig[name](self, key, *args, **kw)
            for piece in (data if name == "read_ranges" else [data]):
                reads.append((key, kind, len(piece)))
            return data
        return fn

    Location.read = wrap("read", "whole")
    Location.read_range = wrap("read_range", "range")
    Location.read_suffix = wrap("read_suffix", "suffix")
    Location.read_ranges = wrap("read_ranges", "range")
    try:
        yield reads
    finally:
        for n, f in orig.items():
            setattr(Location, n, f)


def one_pixel_bytes(store: Path, point: np.ndarray) -> dict:
    zs = read.ZoneStore.open(store)
    with counting_reads() as reads:  # metadata is read once per open; count the lookup alone
        zs.sample(point[:1, 0], point[:1, 1])
    emb = [r for r in reads if "/embeddings/" in r[0]]
    chunks = [r for r in emb if r[1] == "range"]
    arr = zs.arrays(zs.meta.levels[0])[0]
    inner = int(np.prod(arr.chunks))  # int8: bytes of one decoded inner chunk
    return {"reads": reads, "emb_chunk_reads": len(chunks),
            "emb_chunk_bytes": sum(r[2] for r in chunks),
            "emb_index_bytes": sum(r[2] for r in emb if r[1] != "range"),
            "inner_chunk_decoded_bytes": inner,
            "other_bytes": sum(r[2] for r in reads if "/embeddings/" not in r[0])}


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def from_tiles(archive: Path, zones: dict, points: np.ndarray, mmap: bool) -> np.ndarray:
    """The same vectors straight from the archive (the no-store way): each point's tile and
    pixel by the builder's placement and owner rule (``_tilepoints.Zone.locate``, so the
    pixels are the store's), then per tile ``np.load`` its .npy files (memory-mapped with
    ``mmap``), read its landmask, and index."""
    lon, lat = points[:, 0], points[:, 1]
    out = np.full((len(points), 128), np.nan, np.float32)
    zone_of = zones_of(lon, lat)
    for z in sorted(set(zone_of.tolist()) & zones.keys()):
        sel = np.flatnonzero(zone_of == z)
        tile, rows, cols = zones[z].locate(lon[sel], lat[sel])
        for t in sorted(set(tile.tolist()) - {-1}):
            here = tile == t
            paths = tile_paths(archive, YEAR, zones[z].records[t].name)
            with rasterio.open(paths.landmask) as src:
                mask = src.read(1)
            emb = np.load(paths.embeddings, mmap_mode="r" if mmap else None)
            scales = np.load(paths.scales, mmap_mode="r" if mmap else None)
            out[sel[here]] = tp.pixel_values(mask, emb, scales, rows[here], cols[here])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiles", type=int, default=16, help="tiles in the archive")
    ap.add_argument("--cache", type=Path, default=h.REPO / ".bench")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None, help="JSON figures [CACHE/read.json]")
    ap.add_argument("--only-regions", action="store_true", help="the multi-zone case alone")
    ap.add_argument("--no-regions", action="store_true", help="skip the multi-zone case")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved multi-zone runs")
    args = ap.parse_args(argv)
    if args.only_regions:
        figs = _regions.run(args.cache, h.built_stores, args.repeat)
        _regions.report(figs)
        (args.out or args.cache / "read-regions.json").write_text(json.dumps(figs, indent=1))
        return
    archive = h.cached_archive(args.cache, args.tiles, log=lambda m: print(m, file=sys.stderr))
    stores_dir = h.built_stores(archive, args.cache)
    store = sorted(stores_dir.glob(f"utm*_{YEAR}.zarr"))[0]
    h.warm_page_cache(archive)
    h.warm_page_cache(stores_dir)
    figs: dict = {"machine": _machine(), "tiles": args.tiles, "store": str(store)}

    pts = h.random_points(store, max(args.points, WARM_REPEATS), seed=0)
    land = pts[np.isfinite(read.sample(pts, YEAR, stores_dir)[:, 0])]
    one = one_pixel_bytes(store, land)
    figs["one_pixel"] = {k: v for k, v in one.items() if k != "reads"}

    reader = read.Reader(stores_dir, YEAR)
    reader.sample(pts[:1])
    it = iter(land)
    warm_reader = timed(lambda: reader.sample(next(it)[None, :]), WARM_REPEATS)
    it = iter(land)
    warm_call = timed(lambda: read.sample(next(it)[None, :], YEAR, stores_dir), WARM_REPEATS)
    one_pt = land[:1]
    reader.sample(one_pt)
    repeat_reader = timed(lambda: reader.sample(one_pt), WARM_REPEATS)
    figs["one_pixel_latency_ms"] = {"reader_median": 1e3 * statistics.median(warm_reader),
                                    "same_point_median": 1e3 * statistics.median(repeat_reader),
                                    "sample_call_median": 1e3 * statistics.median(warm_call)}

    batch = pts[:args.points]
    zones = tp.zones_of_records(registry.load(archive / registry.REGISTRY_FILENAME, [YEAR]))
    store_s = min(timed(lambda: read.sample(batch, YEAR, stores_dir), 3))
    tiles_s = min(timed(lambda: from_tiles(archive, zones, batch, mmap=False), 3))
    mmap_s = min(timed(lambda: from_tiles(archive, zones, batch, mmap=True), 3))
    a, b = read.sample(batch, YEAR, stores_dir), from_tiles(archive, zones, batch, mmap=False)
    same = np.mean([np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b)])
    with counting_reads() as reads:  # a fresh Reader: every byte the batch costs
        read.Reader(stores_dir, YEAR).sample(batch)
    warm = read.Reader(stores_dir, YEAR)
    warm.sample(batch)
    warm_s = min(timed(lambda: warm.sample(batch), 3))
    figs["points"] = {"n": len(batch), "store_s": store_s, "tiles_np_load_s": tiles_s,
                      "tiles_mmap_s": mmap_s, "same_vector_fraction": float(same),
                      "warm_reader_s": warm_s,
                      "bytes_per_point": sum(r[2] for r in reads) / len(batch)}

    lon0, lat0 = batch[:, 0].mean(), batch[:, 1].mean()
    bbox = (lon0 - 0.025, lat0 - 0.025, lon0 + 0.025, lat0 + 0.025)
    region_s = min(timed(lambda: read.read_region(bbox, YEAR, stores_dir), 3))
    da = read.read_region(bbox, YEAR, stores_dir)
    px = da.shape[1] * da.shape[2]
    root = zarr.open_group(str(store), mode="r")
    a, _, c, _, e, f = root["L0"].attrs["spatial:transform"]
    r0 = int(round((da.y.values[0] - f) / e - 0.5))
    c0 = int(round((da.x.values[0] - c) / a - 0.5))
    win = (slice(r0, r0 + da.shape[1]), slice(c0, c0 + da.shape[2]))

    def decode_dequantise():
        emb, sc = root["L0"]["embeddings"][(slice(None), *win)], root["L0"]["scales"][win]
        return emb.astype(np.float32) * sc

    floor_s = min(timed(decode_dequantise, 3))
    assert np.array_equal(decode_dequantise(), da.values, equal_nan=True)
    figs["region"] = {"bbox": bbox, "shape": list(da.shape), "seconds": region_s,
                      "decode_dequantise_s": floor_s,
                      "mb_per_s_stored": px * (da.shape[0] + 4) / region_s / h.MB,
                      "mb_per_s_float32_out": da.nbytes / region_s / h.MB}
    if not args.no_regions:
        figs["regions"] = _regions.run(args.cache, h.built_stores, args.repeat)
    report(figs)
    if "regions" in figs:
        _regions.report(figs["regions"])
    out = args.out or args.cache / "read.json"
    out.write_text(json.dumps(figs, indent=1))
    print(f"\nfigures written to {out}")


def _machine() -> dict:
    import os
    import platform

    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "zarr": zarr.__version__, "numpy": np.__version__}


def report(f: dict) -> None:
    one, lat, p, r = f["one_pixel"], f["one_pixel_latency_ms"], f["points"], f["region"]
    print(f"read benchmark  {f['machine']}  ({f['tiles']} tiles at 10 m, {f['store']})\n")
    print(h.table(["measure", "value"], [
        ["1-pixel: embeddings chunk reads", one["emb_chunk_reads"]],
        ["1-pixel: embeddings chunk bytes (compressed)", one["emb_chunk_bytes"]],
        ["1-pixel: embeddings shard-index bytes", one["emb_index_bytes"]],
        ["1-pixel: one inner chunk decoded (bytes)", one["inner_chunk_decoded_bytes"]],
        ["1-pixel: other bytes (scales chunk)", one["other_bytes"]],
        ["1-pixel warm median, open Reader (ms)", f"{lat['reader_median']:.2f}"],
        ["1-pixel warm median, sample() call (ms)", f"{lat['sample_call_median']:.2f}"],
        ["1-pixel warm median, open Reader, same point (ms)", f"{lat['same_point_median']:.2f}"],
        [f"{p['n']} points: sample() (s)", f"{p['store_s']:.3f}"],
        [f"{p['n']} points: tiles, np.load (s)", f"{p['tiles_np_load_s']:.3f}"],
        [f"{p['n']} points: tiles, np.load mmap (s)", f"{p['tiles_mmap_s']:.3f}"],
        [f"{p['n']} points: same vector as the tiles", f"{100 * p['same_vector_fraction']:.1f}%"],
        [f"{p['n']} points: warm Reader (s)", f"{p['warm_reader_s']:.3f}"],
        [f"{p['n']} points: bytes read per point (fresh Reader)", f"{p['bytes_per_point']:.0f}"],
        ["region: zarr slice + dequantise of the same window (s)",
         f"{r['decode_dequantise_s']:.3f}"],
        [f"region {r['shape'][1]}x{r['shape'][2]} px: seconds", f"{r['seconds']:.3f}"],
        ["region: MB/s of stored int8 + scales", f"{r['mb_per_s_stored']:.0f}"],
        ["region: MB/s of float32 output", f"{r['mb_per_s_float32_out']:.0f}"],
    ]))
    print("\ntargets")
    print(f"  {h.verdict(one['emb_chunk_reads'] <= 1)}  a one-pixel lookup reads at most one "
          f"inner chunk of embeddings ({one['emb_chunk_reads']})")
    print(f"  {h.verdict(lat['same_point_median'] <= 1.0)}  a warm one-pixel lookup <= 1 ms "
          f"({lat['same_point_median']:.2f} ms)")
    print(f"  {h.verdict(p['bytes_per_point'] <= 100e3)}  <= 100 KB read per point "
          f"({p['bytes_per_point'] / 1e3:.0f} KB)")
    print(f"  {h.verdict(p['store_s'] <= 3 * p['tiles_mmap_s'])}  {p['n']} points within 3x "
          f"of memory-mapped tiles ({p['store_s'] / p['tiles_mmap_s']:.2f}x)")
    print(f"  {h.verdict(p['store_s'] < p['tiles_np_load_s'])}  {p['n']} points: store faster "
          f"than np.load of the tiles ({p['tiles_np_load_s'] / p['store_s']:.1f}x)")


if __name__ == "__main__":
    main()
