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
