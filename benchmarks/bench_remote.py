"""Remote tile input: bytes a shard task fetches from ``s3://`` tiles against the bytes it needs.

    python benchmarks/bench_remote.py [--pixel-size 40] [--shard-px 256] [--tiles 2]

Starts moto's S3 server on loopback, uploads a demo archive (``--tiles`` × ``--tiles`` tiles of
128 bands at ``--pixel-size``; at 40 m a tile is about 280 px wide, so 256 px shards cut tiles
as 1024 px shards cut the real 10 m tiles), scans it from ``s3://`` and assembles every shard
from there and from the local copy. Prints, per shard: ``.npy`` bytes fetched (whole tile rows,
one range request per run of rows) over bytes needed (window pixels plus halo pixels, embeddings
and scales), and the wall time of the remote and local assembly. Landmask reads go through
GDAL (``/vsis3/``) and are not counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _s3  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixel-size", type=float, default=40.0)
    ap.add_argument("--shard-px", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=2)
    args = ap.parse_args()

    from geotessera.archive.demo import DemoSpec, write_demo_archive
    from geotessera.archive.scan import scan_archive
    from geotessera.build.assemble import assemble
    from geotessera.build.plan import plan_zones, select, shard_tasks
    from geotessera.store.location import Location
    from geotessera.types import StoreLayout

    moto = _s3.start_moto("tiles")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp) / "archive"
            n = args.tiles
            spec = DemoSpec(lon_min=0.2, lon_max=round(0.2 + n / 10, 2), lat_min=52.0,
                            lat_max=round(52 + n / 10, 2), years=(2024,),
                            pixel_size=args.pixel_size, bands=128, missing_fraction=0.0)
            write_demo_archive(base, spec)
            _s3.upload_tree(moto.client(), base, "tiles", "a", (".npy", ".tiff"))
            root = Location.parse("s3://tiles/a")
            with ThreadPoolExecutor(16) as pool:
                t0 = time.perf_counter()
                records = scan_archive(root, pool).records
                scan_s = time.perf_counter() - t0
            layout = StoreLayout(shard_px=args.shard_px, chunk_px=32, scales_chunk_px=128)
            good, _ = select(records, None, None)
            rows = []
            for plan in plan_zones(good, layout):
                for task in shard_tasks(plan, root, Location.parse(tmp), layout):
                    t0 = time.perf_counter()
                    remote = assemble(task.spec, True)
                    t1 = time.perf_counter()
                    local_spec = replace(task.spec, pieces=tuple(
                        replace(p, root=Location.parse(base)) for p in task.spec.pieces))
                    assemble(local_spec, True)
                    t2 = time.perf_counter()
                    rows.append((task.spec.row, task.spec.col, len(task.spec.pieces),
                                 remote.fetched, remote.needed, t1 - t0, t2 - t1))
    finally:
        moto.stop()
    ratios = [f / nd for *_, f, nd, _, _ in rows if nd]
    print(f"{len(records)} tiles at {args.pixel_size:g} m, 128 bands; {len(rows)} shards of "
          f"{args.shard_px} px; s3 scan {scan_s:.2f} s")
    print(h.table(["shard", "pieces", "fetched MB", "needed MB", "fetched/needed",
                   "s3 s", "local s"],
                  [[f"{r},{c}", p, f"{f / 1e6:.2f}", f"{nd / 1e6:.2f}",
                    f"{f / nd:.2f}" if nd else "-", f"{a:.2f}", f"{b:.2f}"]
                   for r, c, p, f, nd, a, b in rows]))
    tf, tn = sum(r[3] for r in rows), sum(r[4] for r in rows)
    print(f"\nfetched/needed over all shards: {tf / tn:.2f} ({tf / 1e6:.1f} MB of "
          f"{tn / 1e6:.1f} MB); per shard median {statistics.median(ratios):.2f}, "
          f"max {max(ratios):.2f}")


if __name__ == "__main__":
    main()
