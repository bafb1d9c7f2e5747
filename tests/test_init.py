"""The package's public surface: every name in __all__ resolves; heavy parts load lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import geotessera


def test_every_public_name_resolves():
    for name in geotessera.__all__:
        assert getattr(geotessera, name) is not None, name
    with pytest.raises(AttributeError):
        geotessera.no_such_thing  # noqa: B018


def test_importing_the_package_loads_no_zarr_or_xarray():
    code = "import sys, geotessera; print(sorted({'zarr', 'xarray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# --- the public API's types, as a user's type checker sees them --------------------------------

GOOD = '''
from typing import assert_type
import numpy as np
import xarray as xr
from geotessera import Reader, dequantise_dataset, open_store, read_region, sample
v = sample([(0.1, 0.2)], 2024, "demo/stores")
assert_type(v, np.ndarray)
assert_type(sample(np.zeros((3, 2)), 2024, "demo/stores", as_dataarray=True), xr.DataArray)
ds = open_store("x.zarr", chunks="shards")
assert_type(ds, xr.Dataset)
assert_type(dequantise_dataset(ds), xr.DataArray)
assert_type(read_region((0.0, 0.0, 1.0, 1.0), 2024, "s", crs=32631), xr.DataArray)
assert_type(Reader("s", 2024).sample((0.1, 0.2)), np.ndarray)
'''
BAD = '''
from geotessera import open_store, read_region, sample
sample([(0.1, 0.2)], "2024", "demo/stores")
read_region((0.0, 0.0, 1.0), 2024, "s")
open_store("x.zarr", chunks="everything")
read_region((0.0, 0.0, 1.0, 1.0), 2024, "s", crs=3.5)
'''


def test_a_type_checker_sees_the_public_signatures(tmp_path):
    """mypy, on a user's script importing from ``geotessera``: the lazy names have their real
    types (not Any), and wrong years, boxes, chunks and CRSs are errors."""
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    res = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir",
                          str(tmp_path / "cache"), "good.py", "bad.py"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    errors = [line for line in res.stdout.splitlines() if ": error:" in line]
    assert not [e for e in errors if e.startswith("good.py")], res.stdout
    assert sorted(int(e.split(":")[1]) for e in errors) == [3, 4, 5, 6], res.stdout
