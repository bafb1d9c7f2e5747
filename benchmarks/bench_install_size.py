"""What a read-only install costs, measured on a real one: a fresh virtual environment,
``pip install '.[read]'`` from this checkout (as docs/reading.md tells users), the size of
its site-packages, and the read API run in that environment on a tiny store.

    python benchmarks/bench_install_size.py [EXTRA ...] [--json] [--keep DIR]

EXTRA defaults to ``read``; ``core`` installs no extra. Run it in the project's environment
(``make bench``): the tiny store is built here, with the builder, and its values read here
are compared with those read in the fresh environment. pip takes the packages from its
index (or its cache). Figures, in MB of 10^6 bytes:

- ``added``: bytes of the files the install added to site-packages (a fresh venv holds pip
  already). Target: under 250 MB for ``read``.
- ``added on disk``: the same in allocated blocks (``du``), which rounds every file up.
- ``site-packages``: everything there, pip included, in bytes and on disk.

Prints PASS/FAIL per target and exits 1 on a FAIL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # an installed geotessera still wins; else use this checkout
    sys.path.append(str(REPO))

MB = 1e6
TARGET_MB = 250.0
#: Modules a read-only install must not have (the builder's and the CLI renderer's).
NOT_INSTALLED = ("pyarrow", "rasterio", "shapely", "jsonschema", "rich", "matplotlib")
POINTS = [(-0.15, 0.05), (0.12, -0.17), (-0.05, -0.11), (10.0, 10.0)]
BBOX = (-0.1, 0.02, 0.1, 0.18)  # across the zone 30|31 seam

#: Run in the fresh environment: read the tiny store with the public API, save the values,
#: report which modules are importable and which were imported.
CHECK = """
import importlib.util, json, sys
import numpy as np
args = json.loads(sys.argv[1])
out = {"absent": [m for m in args["absent"] if importlib.util.find_spec(m) is None]}
from geotessera.read import Reader, sample
np.save("sample.npy", sample(args["points"], 2024, args["stores"]))
np.save("reader.npy", Reader(args["stores"], 2024).sample(args["points"]))
if args["read"]:
    from geotessera.read import dequantise_dataset, open_store, read_region
    ds = open_store(args["store"])
    np.save("window.npy", dequantise_dataset(ds).isel(x=slice(40, 60)).values)
    np.save("region.npy", read_region(args["bbox"], 2024, args["stores"]).values)
    np.save("geo.npy", read_region(args["bbox"], 2024, args["stores"], crs="EPSG:4326",
                                   resolution=0.002).values)
    np.save("stac.npy", sample(args["points"], 2024, args["catalog"]))
out["imported"] = sorted(m for m in args["absent"] + ["pandas", "xarray", "pystac"]
                         if sys.modules.get(m) is not None)
print(json.dumps(out))
"""


def _site_packages(venv: Path) -> Path:
    out = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """relative path → (bytes, allocated bytes) of every regular file under ``root``."""
    found = {}
    for d, _, names in os.walk(root):
        for n in names:
            st = os.lstat(os.path.join(d, n))
            found[os.path.relpath(os.path.join(d, n), root)] = (st.st_size, st.st_blocks * 512)
    return found


def _largest(site: Path, before: dict[str, tuple[int, int]], n: int = 8) -> list[tuple[str, int]]:
    """The ``n`` largest top-level entries the install added (packages and their libs)."""
    sizes: dict[str, int] = {}
    for rel, (size, _) in _files(site).items():
        if rel not in before:
            top = rel.split(os.sep)[0]
            sizes[top] = sizes.get(top, 0) + size
    return sorted(sizes.items(), key=lambda kv: -kv[1])[:n]


def tiny_stores(where: Path) -> tuple[Path, Path]:
    """Build two zones' stores of a small demo archive and their catalog: (stores, catalog)."""
    from geotessera.archive.demo import DemoSpec, write_demo_archive
    from geotessera.parallel import process_pool
    from geotessera.pipeline import zarr_build
    from geotessera.types import StoreLayout

    spec = DemoSpec(pixel_size=160.0, bands=8, years=(2024,))
    write_demo_archive(where / "archive", spec)
    with process_pool(1) as pool:
        zarr_build(where / "archive", where / "stores", pool, expected_bands=spec.bands,
                   layout=StoreLayout(shard_px=64, chunk_px=16, scales_chunk_px=32))
    return where / "stores", where / "stores" / "stac" / "catalog.json"


def expected(stores: Path, catalog: Path, read: bool) -> dict[str, object]:
    """The values the check must find, read here with every dependency installed."""
    from geotessera.read import Reader, sample

    want = {"sample": sample(POINTS, 2024, stores), "reader": Reader(stores, 2024).sample(POINTS)}
    if read:
        from geotessera.read import dequantise_dataset, open_store, read_region

        ds = open_store(stores / "utm31_2024.zarr")
        want["window"] = dequantise_dataset(ds).isel(x=slice(40, 60)).values
        want["region"] = read_region(BBOX, 2024, stores).values
        want["geo"] = read_region(BBOX, 2024, stores, crs="EPSG:4326", resolution=0.002).values
        want["stac"] = sample(POINTS, 2024, catalog)
    return want


def measure(extras: list[str], work: Path) -> dict:
    """Install, measure and check; every figure and verdict in one JSON-able dict."""
    import numpy as np

    spec = "" if extras in ([], ["core"]) else f"[{','.join(extras)}]"
    read = "read" in extras
    light = set(extras) <= {"read", "core"}  # the targets are for a read-only install
    stores, catalog = tiny_stores(work / "data")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = _site_packages(venv)
    before = _files(site)
    t0 = time.perf_counter()
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                    f"{REPO}{spec}"], check=True)
    install_s = time.perf_counter() - t0
    after = _files(site)
    added = {k: v for k, v in after.items() if k not in before}
    args = {"points": POINTS, "bbox": BBOX, "stores": str(stores), "catalog": str(catalog),
            "store": str(stores / "utm31_2024.zarr"), "read": read,
            "absent": list(NOT_INSTALLED)}
    run = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK, json.dumps(args)],
                         capture_output=True, text=True, cwd=work)
    if run.returncode != 0:
        raise SystemExit(f"the read API failed in the fresh environment:\n{run.stderr}")
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    equal = {name: bool(np.array_equal(np.load(work / f"{name}.npy"), values, equal_nan=True))
             for name, values in expected(stores, catalog, read).items()}
    dists = subprocess.run([str(venv / "bin" / "pip"), "list", "--format", "json",
                            "--disable-pip-version-check"],
                           capture_output=True, text=True, check=True)
    added_mb = sum(s for s, _ in added.values()) / MB
    return {
        "install": f"pip install '.{spec}'", "install_s": round(install_s, 1),
        "distributions": len(json.loads(dists.stdout)),
        "added_mb": round(added_mb, 1),
        "added_disk_mb": round(sum(b for _, b in added.values()) / MB, 1),
        "site_packages_mb": round(sum(s for s, _ in after.values()) / MB, 1),
        "site_packages_disk_mb": round(sum(b for _, b in after.values()) / MB, 1),
        "largest_mb": {k: round(v / MB, 1) for k, v in _largest(site, before)},
        "not_installed": seen["absent"], "imported": seen["imported"], "values_equal": equal,
        "targets": [
            {"target": f"'.{spec}' adds < {TARGET_MB:.0f} MB to site-packages",
             "value": round(added_mb, 1), "ok": added_mb < TARGET_MB or not light},
            {"target": f"none of {', '.join(NOT_INSTALLED)} installed",
             "value": seen["absent"],
             "ok": sorted(seen["absent"]) == sorted(NOT_INSTALLED) or not light},
            {"target": "the read API in the fresh environment reads what this one reads",
             "value": equal, "ok": all(equal.values())},
        ],
    }


def main() -> None:
    argv = sys.argv[1:]
    as_json = "--json" in argv
    keep = Path(argv[argv.index("--keep") + 1]) if "--keep" in argv else None
    extras = [a for i, a in enumerate(argv) if not a.startswith("--")
              and (i == 0 or argv[i - 1] != "--keep")] or ["read"]
    with tempfile.TemporaryDirectory(prefix="install-size-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        figs = measure(extras, work)
    if as_json:
        print(json.dumps(figs, indent=2))
    else:
        print(f"{figs['install']}: {figs['distributions']} distributions in "
              f"{figs['install_s']:.0f} s")
        print(f"  added to site-packages   {figs['added_mb']:7.1f} MB "
              f"({figs['added_disk_mb']:.1f} MB on disk)")
        print(f"  site-packages, pip incl. {figs['site_packages_mb']:7.1f} MB "
              f"({figs['site_packages_disk_mb']:.1f} MB on disk)")
        for name, mb in figs["largest_mb"].items():
            print(f"    {name:28s} {mb:7.1f} MB")
        for t in figs["targets"]:
            print(f"  {'PASS' if t['ok'] else 'FAIL'}  {t['target']}: {t['value']}")
    if not all(t["ok"] for t in figs["targets"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
