"""A content manifest of a build of a fixed small archive: one SHA-256 per stored object.

Metadata documents are compared as JSON without the keys that name the time or the tool
version of a build (``geotessera:build_time``, ``geotessera:version``), so a manifest pins
every byte of data and every other byte of metadata. Written with the package-root API only,
so the same script runs against older releases. The committed manifest was first made with
the code before the restructure (commit 32ffb90); it was regenerated once since, when the
``rgba`` arrays gained GDAL's ``COLOR_INTERPRETATION`` attribute (only the ``rgba/zarr.json``
documents and the consolidated root changed; every data object kept its bytes).

The manifest pins the zstd layout (``--codec zstd:3``: zstd level 3 on every data array),
the default until blosc-zstd with bit shuffle became the embeddings' default: ``build_fixed``
asks for it explicitly (``blosc=None``, passed only where ``StoreLayout`` has the field, so
releases from before blosc build the same layout), and the manifest was not regenerated.
tests/test_determinism.py covers the bytes of the default layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VOLATILE = ("geotessera:build_time", "geotessera:version")


def strip(doc, volatile=VOLATILE):
    """``doc`` without the keys in ``volatile``, at any depth."""
    if isinstance(doc, dict):
        return {k: strip(v, volatile) for k, v in doc.items() if k not in volatile}
    if isinstance(doc, list):
        return [strip(v, volatile) for v in doc]
    return doc


def manifest(stores: Path) -> dict[str, str]:
    """{relative object path: sha256} of every object of every store under ``stores``."""
    out = {}
    # each published store by its name (on disk a symlink to the current version), so the
    # keys do not depend on the version names of the versioned layout
    for store in sorted(stores.glob("utm*_*.zarr")):
        root = store.resolve()
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            data = p.read_bytes()
            if p.name == "zarr.json":
                data = json.dumps(strip(json.loads(data)), sort_keys=True).encode()
            out[f"{store.name}/{p.relative_to(root)}"] = hashlib.sha256(data).hexdigest()
    return out


def build_fixed(base: Path, out: Path) -> None:
    """The fixed archive (two zones, both hemispheres, 160 m, 8 bands) built with zstd level
    3 on every data array and previewed."""
    import geotessera as gt

    spec = gt.DemoSpec(pixel_size=160.0, bands=8, years=(2024,), missing_fraction=0.2)
    gt.write_demo_archive(base, spec)
    with ThreadPoolExecutor(2) as pool:
        records = gt.scan_archive(base, pool, expected_bands=8).records
        zstd_only = ({"blosc": None} if "blosc" in {f.name for f in
                                                    dataclasses.fields(gt.StoreLayout)} else {})
        layout = gt.StoreLayout(shard_px=64, chunk_px=16, scales_chunk_px=32, **zstd_only)
        gt.build_stores(base, out, records, pool, layout=layout, max_in_flight=3)
        gt.run_preview_pass(out, pool, max_in_flight=3)


if __name__ == "__main__":  # python tests/golden.py WORKDIR > manifest.json
    work = Path(sys.argv[1])
    build_fixed(work / "archive", work / "stores")
    print(json.dumps(manifest(work / "stores"), indent=1, sort_keys=True))
