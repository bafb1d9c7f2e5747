"""Multi-zone ``read_region`` against an independent floor (for bench_read.py).

The archive: 2 × 4 real-size 10 m tiles at 52°N from 0.2°W to 0.2°E, so zones 30 and 31
each hold half of it. The window, 0.24° × 0.12° across the 30|31 meridian, is read into
one zone's UTM lattice (the default, zone 31), the other zone's (EPSG:32630) and WGS84.

**The floor** knows nothing of the reader: for each zone store, the bounds of the output
grid (from the returned coordinates) are transformed into the store's CRS with pyproj
(densified edges), turned into the store's L0 pixel window by its ``spatial:transform``,
clipped to the store and to the bounding box of its finite scales there (shard padding and
no-data margins hold no data; the floor is given this crop for free, untimed), read with
zarr's own ``arr[:, rows, cols]`` and dequantised into a new float32 array
(``np.multiply(int8, scale, out=...)``). Summed over the stores, that is the decoding and
dequantising any reader must do for this output: the bytes under it.

Time: CPU seconds (``time.process_time``, every thread's), reader and floor interleaved in
one process, alternating which goes first; the reader's wall seconds too (its chunk fetches
and decodes run on threads). Memory: in a fresh child process per measurement, the peak
RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) above the RSS before the call, and
tracemalloc's peak (numpy's buffers; not GDAL's), each against the output's ``nbytes``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import zarr
from pyproj import CRS, Transformer

import _harness as h
from geotessera import read
from geotessera.archive.demo import DemoSpec
from geotessera.store.location import Location
from geotessera.store.pointread import PointReader

YEAR = 2024
SPEC = DemoSpec(lon_min=-0.2, lon_max=0.2, lat_min=52.0, lat_max=52.2, years=(YEAR,),
                pixel_size=10.0, bands=128, seed=0, missing_fraction=0.0)
BBOX = (-0.12, 52.04, 0.12, 52.16)
#: (name, crs, resolution) of each output.
CASES = [("utm31 (default)", None, None), ("utm30", "EPSG:32630", None),
         ("wgs84 0.0001 deg", "EPSG:4326", 1e-4)]
TARGET_TIME, TARGET_MEMORY = 1.5, 1.5


def read_case(stores: Path, case: int):
    _, crs, res = CASES[case]
    return read.read_region(BBOX, YEAR, stores, crs=crs, resolution=res)


def _output_bounds(da) -> tuple[CRS, tuple[float, float, float, float]]:
    """(CRS, (left, bottom, right, top)) of the output grid, from its pixel-centre coords."""
    x, y = da.x.values, da.y.values
    rx, ry = abs(x[1] - x[0]), abs(y[1] - y[0])
    return (CRS.from_wkt(da.spatial_ref.attrs["crs_wkt"]),
            (x.min() - rx / 2, y.min() - ry / 2, x.max() + rx / 2, y.max() + ry / 2))


def floor_windows(stores: Path, da) -> list[tuple[Path, tuple[slice, slice]]]:
    """(store, L0 window) of every store under the output grid ``da``."""
    crs, bounds = _output_bounds(da)
    out = []
    for store in sorted(stores.glob(f"utm*_{YEAR}.zarr")):
        l0 = zarr.open_group(str(store), mode="r")["L0"]
        a, _, c, _, e, f = l0.attrs["spatial:transform"]
        rows, cols = l0["scales"].shape
        epsg = 32600 + int(store.name[3:5])
        x0, y0, x1, y1 = Transformer.from_crs(crs, epsg, always_xy=True).transform_bounds(
            *bounds, densify_pts=21)
        r0, r1 = max(math.floor((y1 - f) / e), 0), min(math.ceil((y0 - f) / e), rows)
        c0, c1 = max(math.floor((x0 - c) / a), 0), min(math.ceil((x1 - c) / a), cols)
        if r0 >= r1 or c0 >= c1:
            continue
        have = np.isfinite(l0["scales"][r0:r1, c0:c1])  # only the stored data's extent:
        rows, cols = np.flatnonzero(have.any(1)), np.flatnonzero(have.any(0))  # no padding
        if rows.size:
            out.append((store, (slice(r0 + int(rows[0]), r0 + int(rows[-1]) + 1),
                                slice(c0 + int(cols[0]), c0 + int(cols[-1]) + 1))))
    return out


def floor_read(windows) -> list[np.ndarray]:
    """zarr's slice read of every window and its dequantisation into a new float32 array."""
    got = []
    for store, win in windows:
        l0 = zarr.open_group(str(store), mode="r")["L0"]
        emb, sc = l0["embeddings"][(slice(None), *win)], l0["scales"][win]
        out = np.empty(emb.shape, np.float32)
        np.multiply(emb, sc[None], out=out)
        got.append(out)
    return got


def floor_direct(windows) -> list[np.ndarray]:
    """The same windows decoded by the project's own inner-chunk decoder (``PointReader``,
    whole chunks, no region logic) and dequantised: a second floor, for the reader's
    overhead beyond its decoder (``read_region`` bypasses zarr's read pipeline)."""
    got = []
    for store, (rs, cs) in windows:
        loc = Location.parse(store)
        reader = PointReader.open(loc, "L0/embeddings")
        e = reader.chunk
        crows, ccols = range(rs.start // e, (rs.stop - 1) // e + 1), range(
            cs.start // e, (cs.stop - 1) // e + 1)
        q = np.empty((reader.bands, len(crows), len(ccols), e, e), np.int8)
        reader.chunks(crows, ccols, q)
        l0 = zarr.open_group(str(store), mode="r")["L0"]
        sc = l0["scales"][crows[0] * e:(crows[-1] + 1) * e, ccols[0] * e:(ccols[-1] + 1) * e]
        sc = sc.reshape(len(crows), e, len(ccols), e).transpose(0, 2, 1, 3)
        out = np.empty(q.shape, np.float32)
        np.multiply(q, sc[None], out=out)
        got.append(out)
    return got


def _cpu(fn, walls: list[float]) -> float:
    """CPU seconds of ``fn()`` (every thread's); its wall seconds appended to ``walls``."""
    t0, w0 = time.process_time(), time.perf_counter()
    fn()
    walls.append(time.perf_counter() - w0)
    return time.process_time() - t0


def timings(stores: Path, repeats: int) -> list[dict]:
    """Per case: reader and floor CPU seconds, interleaved, and the ratio of the medians."""
    figs = []
    for k, (name, _, _) in enumerate(CASES):
        da = read_case(stores, k)  # warm: the page cache, GDAL and pyproj set-up
        windows = floor_windows(stores, da)
        floor_px = sum((r.stop - r.start) * (c.stop - c.start) for _, (r, c) in windows)
        shape, nbytes = list(da.shape), da.nbytes
        del da
        runs: dict[str, list[float]] = {"r": [], "f": [], "d": []}
        walls: dict[str, list[float]] = {"r": [], "f": [], "d": []}
        for i in range(repeats):
            order = [("r", lambda: read_case(stores, k)), ("f", lambda: floor_read(windows)),
                     ("d", lambda: floor_direct(windows))]
            for tag, fn in order[i % 3:] + order[:i % 3]:
                runs[tag].append(_cpu(fn, walls[tag]))
        reader_s, floor_s = runs["r"], runs["f"]
        med_r, med_f = float(np.median(reader_s)), float(np.median(floor_s))
        figs.append({"case": name, "shape": shape, "out_nbytes": nbytes,
                     "floor_windows": [[w.name, [s.start, s.stop], [t.start, t.stop]]
                                       for w, (s, t) in windows],
                     "floor_px": floor_px, "reader_cpu_s": reader_s, "floor_cpu_s": floor_s,
                     "direct_floor_cpu_s": runs["d"], "reader_wall_s": walls["r"],
                     "direct_floor_wall_s": walls["d"], "ratio": med_r / med_f,
                     "ratio_direct": med_r / float(np.median(runs["d"]))})
    return figs


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def child_memory(stores: Path, case: int, which: str) -> dict:
    """In this (fresh) process: peak RSS and tracemalloc peak of one reader or floor call."""
    da = read_case(stores, case)  # imports, GDAL/pyproj set-up; then measure a second call
    windows, nbytes = floor_windows(stores, da), da.nbytes
    del da
    fn = (lambda: read_case(stores, case)) if which == "reader" else (
        lambda: floor_read(windows))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _vm("VmRSS:")
    res = fn()
    hwm = _vm("VmHWM:") - before
    del res
    tracemalloc.start()
    res = fn()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rss_peak_delta": hwm, "traced_peak": traced, "out_nbytes": nbytes}


def memory(stores: Path) -> list[dict]:
    figs = []
    for k, (name, _, _) in enumerate(CASES):
        row = {"case": name}
        for which in ("reader", "floor"):
            out = subprocess.run(
                [sys.executable, __file__, str(stores), str(k), which], check=True,
                capture_output=True, text=True, env=h.child_env(), cwd=h.REPO).stdout
            row[which] = json.loads(out.splitlines()[-1])
        figs.append(row)
    return figs


def build(cache: Path, build_stores) -> Path:
    archive = h.cached_spec_archive(cache, "seam8", SPEC, log=lambda m: print(m, file=sys.stderr))
    stores = build_stores(archive, cache)
    h.warm_page_cache(stores)
    return stores


def run(cache: Path, build_stores, repeats: int = 3) -> dict:
    stores = build(cache, build_stores)
    return {"bbox": BBOX, "stores": str(stores), "timings": timings(stores, repeats),
            "memory": memory(stores)}


def report(f: dict) -> None:
    print(f"\nmulti-zone read_region, bbox {f['bbox']} across the zone 30|31 meridian "
          "(cpu s: median of the interleaved runs)")
    rows = []
    for t, m in zip(f["timings"], f["memory"], strict=True):
        out = t["out_nbytes"]
        rows.append([t["case"], "x".join(map(str, t["shape"][1:])), f"{out / h.MIB:.0f}",
                     f"{t['floor_px'] / (t['shape'][1] * t['shape'][2]):.2f}",
                     f"{np.median(t['floor_cpu_s']):.2f}",
                     f"{np.median(t['direct_floor_cpu_s']):.2f}",
                     f"{np.median(t['reader_cpu_s']):.2f}",
                     f"{np.median(t['reader_wall_s']):.2f}",
                     f"{t['ratio']:.2f}", f"{t['ratio_direct']:.2f}",
                     f"{m['reader']['rss_peak_delta'] / out:.2f}",
                     f"{m['reader']['traced_peak'] / out:.2f}",
                     f"{m['floor']['rss_peak_delta'] / out:.2f}"])
    print(h.table(["output", "px", "out MiB", "floor px/out px", "floor cpu s",
                   "direct floor cpu s", "read_region cpu s", "wall s", "ratio", "ratio direct",
                   "peak RSS/out", "traced/out", "floor RSS/out"], rows))
    print("ratio = read_region / floor (zarr's decode + dequantise); ratio direct = against "
          "the project's own\nchunk decoder + dequantise (the decoder read_region uses); "
          "memory = peak above the RSS before / output bytes")
    for t, m in zip(f["timings"], f["memory"], strict=True):
        mem = m["reader"]["rss_peak_delta"] / t["out_nbytes"]
        print(f"  {h.verdict(t['ratio'] <= TARGET_TIME)}  {t['case']}: read_region within "
              f"{TARGET_TIME}x of decode + dequantise ({t['ratio']:.2f}x)")
        print(f"  {h.verdict(mem <= TARGET_MEMORY)}  {t['case']}: peak memory <= "
              f"{TARGET_MEMORY}x the output ({mem:.2f}x)")


if __name__ == "__main__":  # a memory child: STORES CASE reader|floor
    print(json.dumps(child_memory(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3])))
    os._exit(0)
