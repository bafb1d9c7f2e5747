"""zarr-build to S3 (moto's server on loopback) against the same build to the local disk.

    python benchmarks/bench_s3.py [--tiles 4] [--cache DIR] [-j 2]

In one run, on the same cached archive of real-size 10 m tiles: ``zarr-build --no-rgb
--no-stac`` to a local directory and to ``s3://bench/stores`` on a ThreadedMotoServer in this
process (the CLI subprocess finds it through the standard AWS environment), fastest of
``--repeat`` runs each, and their ratio; then, from the server's request count (``_s3``), the
requests per shard by method, and the bytes stored per shard. moto keeps objects in memory and runs in
this Python process, so the ratio measures the object-store code path (HTTP, PUT per
object), not a real network: a lower bound for a remote S3.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402  (also makes this checkout importable)
import _s3  # noqa: E402

from geotessera.store.location import Location  # noqa: E402
from geotessera.store.versions import StoreHome  # noqa: E402

FLAGS = ["--json", "-q", "--no-rgb", "--no-stac"]


def build(archive: Path, out: str, workers: int) -> tuple[h.Measured, dict]:
    cmd = [*h.cli_prefix(), "zarr-build", str(archive), "-o", out, "-j", str(workers), *FLAGS]
    m = h.run_measured(cmd)
    (doc,) = json.loads(m.stdout)["stores"]
    return m, doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=4)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gt-bench")
    ap.add_argument("-j", "--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    archive = h.cached_archive(args.cache, args.tiles)
    h.warm_page_cache(archive)
    moto = _s3.start_moto("bench")
    local_dir = Path(tempfile.mkdtemp(prefix="gt-bench-s3-"))
    runs: dict[str, list[h.Measured]] = {"local": [], "s3": []}
    try:
        for i in range(args.repeat):
            m, doc = build(archive, str(local_dir / f"r{i}"), args.workers)
            runs["local"].append(m)
            moto.requests.clear()
            m, sdoc = build(archive, f"s3://bench/stores{i}", args.workers)
            runs["s3"].append(m)
            seen = [(r.method, r.path) for r in moto.requests.take()]
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)
    best = {k: min(v, key=lambda m: m.wall_s) for k, v in runs.items()}
    shards = sdoc["shards_with_data"] or 1
    home = StoreHome.of(Location.parse(f"s3://bench/stores{args.repeat - 1}"), sdoc["store"])
    version = home.current()
    sizes = [version.size(k) or 0 for k in version.keys()]
    prefix = f"/bench/stores{args.repeat - 1}/{sdoc['store'][:-5]}/{sdoc['version']}/L0/"
    shard_req = Counter(m for m, p in seen if p.startswith(prefix + "embeddings/c/"))
    scales_req = Counter(m for m, p in seen if p.startswith(prefix + "scales/c/"))
    all_req = Counter(m for m, _ in seen)
    print(f"archive: {args.tiles} tiles of 10 m, 128 bands; -j {args.workers}; "
          f"{sdoc['shards_nonempty']} shards ({sdoc['shards_with_data']} with data)")
    print(h.table(["target", "wall s", "cpu s", "tiles/s", "peak tree RSS MB"], [
        [k, f"{m.wall_s:.2f}", f"{m.cpu_s:.2f}", f"{args.tiles / m.wall_s:.3f}",
         f"{m.peak_tree_rss / h.MB:.0f}"] for k, m in best.items()]))
    print(f"s3 / local wall time: {best['s3'].wall_s / best['local'].wall_s:.2f}x "
          f"(best of {args.repeat})")
    print("requests per shard with data (whole S3 build, all objects): "
          + ", ".join(f"{k} {v / shards:.2f}" for k, v in sorted(all_req.items())))
    print("requests on embeddings shard objects per shard: "
          + ", ".join(f"{k} {v / shards:.2f}" for k, v in sorted(shard_req.items())))
    print("  (obstore uploads an object above its 5 MiB part size as one multipart upload: a "
          "POST to start, one PUT per part, a POST to complete; still one object, never read)")
    print("requests on scales chunk objects per shard: "
          + ", ".join(f"{k} {v / shards:.2f}" for k, v in sorted(scales_req.items())))
    print(f"bytes stored per shard: {sum(sizes) / shards / h.MIB:.2f} MiB "
          f"({len(sizes)} objects, {sum(sizes) / h.MB:.1f} MB in the version)")


if __name__ == "__main__":
    main()
