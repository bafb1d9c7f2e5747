"""Packaging conventions: py.typed ships, the public names (lazy ones too) are listed by
__all__ and dir(), no doc sends users to PyPI's unrelated ``geotessera``, and the read API
imports and runs without the builder's dependencies (and ``sample`` without the read extra)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np

import geotessera
from geotessera.catalog.stac import write_catalog
from geotessera.cli import COMMANDS
from geotessera.cli._output import COMMAND_EXTRAS, PROVIDERS
from geotessera.read import dequantise_dataset, open_store, read_region, sample

REPO = Path(__file__).resolve().parents[1]


def test_py_typed_ships_in_the_package():
    assert (Path(geotessera.__file__).parent / "py.typed").is_file()


def test_all_and_dir_show_the_lazy_public_names():
    for name in ("Reader", "dequantise_dataset", "open_store", "sample", "sample_file",
                 "catalog_items", "__version__"):
        assert name in geotessera.__all__ and name in dir(geotessera), name
        assert getattr(geotessera, name) is not None
    assert geotessera.Reader.__module__ == "geotessera.read.reader"


def test_docs_never_install_geotessera_from_the_package_index():
    pattern = re.compile(r"pip install\s+['\"]?geotessera(\[|\b)")
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            assert not pattern.search(line), f"{doc.name}:{n}: {line}"


# --- a read-only install -----------------------------------------------------------------------
#
# What the read extra must not need: the builder's dependencies, the CLI's renderer and the
# other extras. The child processes below set them to None in sys.modules, which is how
# Python sees a module that is not installed (``import`` raises ModuleNotFoundError,
# ``importlib.util.find_spec`` returns None), and report what they did import.

BUILDER = ("pyarrow", "rasterio", "shapely", "affine", "jsonschema", "rich", "matplotlib", "h3",
           "morecantile", "pmtiles", "distributed", "rioxarray")
READ_EXTRA = ("xarray", "dask", "pystac", "pandas")
POINTS = [(-0.15, 0.05), (0.12, -0.17), (-0.05, -0.11), (10.0, 10.0)]


def _child(code: str, blocked: tuple[str, ...], tmp_path: Path) -> dict:
    """Run ``code`` in a fresh interpreter with ``blocked`` modules absent; its last line
    is JSON, returned with ``loaded``: which of BUILDER + READ_EXTRA it imported."""
    prelude = (f"import sys, json\nfor m in {list(blocked)!r}:\n    sys.modules[m] = None\n")
    tail = (f"\nOUT['loaded'] = sorted(m for m in {list(BUILDER + READ_EXTRA)!r} "
            "if sys.modules.get(m) is not None)\nprint(json.dumps(OUT))\n")
    res = subprocess.run([sys.executable, "-c", prelude + code + tail], capture_output=True,
                         text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_importing_the_read_api_loads_no_optional_dependency(tmp_path):
    code = ("import geotessera, geotessera.read\n"
            "from geotessera import (Reader, open_store, read_region, sample, open_item,\n"
            "    dequantise_dataset, catalog_items, sample_file)\n"
            "OUT = {}\n")
    assert _child(code, (), tmp_path)["loaded"] == []


def test_sample_and_reader_work_with_the_core_alone(built, tmp_path):
    code = (f"from geotessera.read import Reader, sample\n"
            f"v = sample({POINTS!r}, 2024, {str(built)!r})\n"
            f"r = Reader({str(built)!r}, 2024).sample({POINTS[1]!r})\n"
            "OUT = {'v': [[None if x != x else x for x in row] for row in v.tolist()],\n"
            "       'r': r.tolist()}\n")
    out = _child(code, BUILDER + READ_EXTRA, tmp_path)
    want = sample(POINTS, 2024, built)  # in this process, with everything installed
    got = np.array(out["v"], dtype=np.float64)
    np.testing.assert_array_equal(got, want.astype(np.float64))
    assert np.isfinite(got[:3]).all() and np.isnan(got[3]).all()
    np.testing.assert_array_equal(np.array(out["r"])[0], want[1])
    assert out["loaded"] == []


def test_the_read_extra_works_without_the_builder(built, tmp_path):
    """open_store, dequantise_dataset, read_region (on the lattice, across the seam into
    another CRS) and a STAC source, with pyarrow, rasterio, shapely and rich absent."""
    cat = write_catalog(built, tmp_path / "stac").catalog
    bbox, store = (-0.1, 0.02, 0.1, 0.18), str(built / "utm31_2024.zarr")
    code = (f"import numpy as np\nfrom geotessera.read import *\n"
            f"ds = open_store({store!r})\n"
            f"np.save('window.npy', dequantise_dataset(ds).isel(x=slice(40, 60)).values)\n"
            f"np.save('region.npy', read_region({bbox!r}, 2024, {str(built)!r}).values)\n"
            f"np.save('geo.npy', read_region({bbox!r}, 2024, {str(built)!r}, crs='EPSG:4326',"
            f" resolution=0.002).values)\n"
            f"np.save('stac.npy', sample({POINTS!r}, 2024, {str(cat)!r}))\n"
            "OUT = {'chunks': dict(ds.embeddings.chunksizes)}\n")
    out = _child(code, BUILDER, tmp_path)
    ds = open_store(store)
    want = {"window": dequantise_dataset(ds).isel(x=slice(40, 60)).values,
            "region": read_region(bbox, 2024, built).values,
            "geo": read_region(bbox, 2024, built, crs="EPSG:4326", resolution=0.002).values,
            "stac": sample(POINTS, 2024, built)}
    for name, values in want.items():
        got = np.load(tmp_path / f"{name}.npy")
        assert np.isfinite(got).any(), name
        np.testing.assert_array_equal(got, values, err_msg=name)
    assert {k: tuple(v) for k, v in out["chunks"].items()} == dict(ds.embeddings.chunksizes)
    assert not set(out["loaded"]) & set(BUILDER)


# --- the extras ----------------------------------------------------------------------------------

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
#: The distributions that install a module, where their names differ (affine comes with
#: rasterio; pystac-core is pystac without its extension packages).
DISTS = {"affine": {"rasterio"}, "pystac": {"pystac", "pystac-core"}}
#: A distribution another one installs: pystac requires pystac-core.
COVERED_BY = {"pystac-core": "pystac"}


def _names(reqs: list[str]) -> set[str]:
    return {re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0].lower() for r in reqs}


def test_the_core_has_none_of_the_builders_dependencies():
    core = _names(PROJECT["dependencies"])
    assert core >= {"zarr", "numpy", "pyproj", "obstore", "click"}
    assert not core & {"pyarrow", "rasterio", "shapely", "pystac", "jsonschema", "pandas",
                       "xarray", "rich", "matplotlib"}


def test_the_cli_names_extras_that_install_the_module():
    extras = PROJECT["optional-dependencies"]
    for module, named in PROVIDERS.items():
        for extra in named:
            assert DISTS.get(module, {module}) & _names(extras[extra]), (module, extra)
    for command, named in COMMAND_EXTRAS.items():
        assert command in COMMANDS and set(named) <= set(extras), command


def test_all_holds_every_extra_but_the_tools():
    extras = PROJECT["optional-dependencies"]
    features = set(extras) - {"all", "test", "bench"}
    assert {"read", "build", "viewer", "distributed", "h3", "plot", "parquet"} <= features
    wanted = {COVERED_BY.get(n, n) for x in features for n in _names(extras[x])}
    assert _names(extras["all"]) == wanted
    assert "matplotlib" in _names(extras["plot"])
