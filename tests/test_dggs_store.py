"""The H3 summary store: xdggs opens it, it round-trips, and it never replaces other data."""

from __future__ import annotations

import json
import shutil
import warnings

import h3
import numpy as np
import pytest
import xarray as xr
import xdggs
import zarr

from geotessera.store.h3 import read_summary, write_summary
from geotessera.dggs.summary import H3Summary
from geotessera.errors import StoreError


def small_summary(res: int = 7, bands: int = 5) -> H3Summary:
    rng = np.random.default_rng(1)
    cells = np.unique(np.array([h3.api.basic_int.latlng_to_cell(la, lo, res)
                                for la, lo in rng.uniform([-50, -170], [60, 170], (40, 2))],
                               np.uint64))
    n = cells.size
    area = np.array([h3.api.basic_int.cell_area(c, unit="m^2") for c in cells.tolist()])
    return H3Summary(res, 2024, cells, rng.normal(size=(n, bands)).astype(np.float32),
                     area * rng.uniform(0.1, 1, n), area, rng.integers(1, 900, n),
                     {"source": "test", "level": "L0"})


def open_dataset(path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's note that consolidated metadata is not spec
        return xr.open_zarr(path)


def test_xdggs_decodes_the_store(tmp_path):
    s = small_summary()
    path = write_summary(s, tmp_path / "s.zarr")
    ds = open_dataset(path)
    assert dict(ds.sizes) == {"cells": s.cells.size, "band": 5}
    assert ds["mean"].dims == ("cells", "band") and ds["cell_ids"].dtype == np.uint64
    assert ds["cell_ids"].attrs == {"grid_name": "h3", "level": 7}
    for convention in (None, "xdggs", "zarr"):
        dec = xdggs.decode(ds, convention=convention) if convention else xdggs.decode(ds)
        assert dec.dggs.grid_info.level == 7
        assert type(dec.dggs.grid_info).__name__ == "H3Info"
        centres = dec.dggs.cell_centers()
        lat, lon = np.array([h3.api.basic_int.cell_to_latlng(c) for c in s.cells.tolist()]).T
        np.testing.assert_allclose(centres["latitude"], lat, atol=1e-9)
        np.testing.assert_allclose(centres["longitude"], lon, atol=1e-9)


def test_round_trip_and_provenance(tmp_path):
    s = small_summary()
    path = write_summary(s, tmp_path / "s.zarr")
    back = read_summary(path)
    for name in ("cells", "mean", "valid_area", "cell_area", "pixel_count"):
        assert np.array_equal(getattr(back, name), getattr(s, name)), name
    assert back.res == 7 and back.year == 2024
    meta = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())
    attrs = meta["attributes"]
    assert attrs["geotessera:product"] == "h3_summary" and attrs["geotessera:h3_complete"]
    assert attrs["dggs"]["refinement_level"] == 7 and attrs["geotessera:source"] == "test"
    assert "consolidated_metadata" in meta
    np.testing.assert_allclose(open_dataset(path)["valid_fraction"], s.valid_fraction,
                               rtol=1e-7)


def test_existing_outputs_are_refused_or_replaced_only_when_they_are_summaries(tmp_path, built):
    s = small_summary()
    path = tmp_path / "s.zarr"
    write_summary(s, path)
    with pytest.raises(StoreError, match=r"s\.zarr: exists; pass overwrite"):
        write_summary(s, path)
    write_summary(small_summary(res=5), path, overwrite=True)
    assert read_summary(path).res == 5
    other = tmp_path / "not_a_summary"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(StoreError, match="not a zarr group"):
        write_summary(s, other, overwrite=True)
    assert (other / "keep.txt").exists()
    store = tmp_path / "utm31_2024.zarr"
    shutil.copytree(built / "utm31_2024.zarr", store)
    with pytest.raises(StoreError, match="not an H3 summary; not overwritten"):
        write_summary(s, store, overwrite=True)
    assert zarr.open_group(str(store), mode="r").attrs["geotessera:zone"] == 31


def test_reading_something_else_fails_naming_it(tmp_path, built):
    with pytest.raises(StoreError, match=r"utm31_2024\.zarr: not an H3 summary"):
        read_summary(built / "utm31_2024.zarr")
    with pytest.raises(StoreError, match="no zarr v3 group"):
        read_summary(tmp_path / "nothing.zarr")
    path = write_summary(small_summary(), tmp_path / "s.zarr")
    root = zarr.open_group(path, mode="r+")
    root.attrs["geotessera:h3_complete"] = False
    zarr.consolidate_metadata(path)
    with pytest.raises(StoreError, match="incomplete"):
        read_summary(path)
