"""Quicklook PNGs: level choice, exact RGBA round trip, refusal of unfinished previews."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from geotessera.cli import cli
from geotessera.errors import StoreError
from geotessera.preview.quicklook import (
    choose_level,
    encode_png,
    read_png,
    read_quicklook,
    write_png,
    write_quicklook,
)
from test_preview import previewed_stores


@pytest.fixture(scope="module")
def store(built, tmp_path_factory) -> Path:
    out, _ = previewed_stores(built, tmp_path_factory)
    return out / "utm31_2024.zarr"


def _rgba(store: Path, level: int) -> np.ndarray:
    return zarr.open_group(str(store), mode="r")[f"L{level}"]["rgba"][:]


LAYOUT = [{"spatial:shape": [320, 256]}, {"spatial:shape": [160, 128]},
          {"spatial:shape": [80, 64]}]


@pytest.mark.parametrize(("size", "level"), [(1000, 0), (320, 0), (319, 1), (100, 2), (5, 2)])
def test_choose_level_picks_the_finest_that_fits(size, level):
    assert choose_level(LAYOUT, size) == level


def test_png_round_trip_is_exact(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (4, 7, 11)).astype(np.uint8)
    write_png(tmp_path / "a.png", rgba)
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.array_equal(read_png(tmp_path / "a.png"), rgba)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="uint8"):
        encode_png(rgba[:3])


def test_quicklook_writes_the_chosen_level(store, tmp_path):
    res = write_quicklook(store, tmp_path / "q.png", size=200, crop=False)
    assert (res.level, res.shape, res.pixel_size) == (1, (160, 128), 320.0)
    assert np.array_equal(read_png(tmp_path / "q.png"), _rgba(store, 1))
    res0 = write_quicklook(store, tmp_path / "q0.png", level=0, crop=False)
    assert res0.shape == (320, 256)
    assert np.array_equal(read_png(tmp_path / "q0.png"), _rgba(store, 0))


def test_quicklook_is_cropped_to_the_data(store, tmp_path):
    res = write_quicklook(store, tmp_path / "q.png", level=0)
    full, w = _rgba(store, 0), res.window
    png = read_png(tmp_path / "q.png")
    assert np.array_equal(png, full[:, w.row0:w.row1, w.col0:w.col1])
    alpha = png[3] > 0
    assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
    assert alpha.sum() == (full[3] > 0).sum()  # nothing with data was cut off
    assert png[0].size < full[0].size and alpha.mean() > (full[3] > 0).mean()


def test_read_quicklook_is_what_write_quicklook_writes(store, tmp_path):
    rgba, info = read_quicklook(store, size=200)
    res = write_quicklook(store, tmp_path / "q.png", size=200)
    assert info.path is None and res.path == tmp_path / "q.png"
    assert (info.level, info.shape, info.window) == (res.level, res.shape, res.window)
    assert np.array_equal(read_png(res.path), rgba)


def test_quicklook_refuses_missing_levels_and_unfinished_previews(store, built, tmp_path):
    with pytest.raises(StoreError, match="no level 9"):
        write_quicklook(store, tmp_path / "q.png", level=9)
    raw = tmp_path / "raw.zarr"
    shutil.copytree(built / "utm31_2024.zarr", raw)  # built but never previewed
    with pytest.raises(StoreError, match="rgb_complete"):
        write_quicklook(raw, tmp_path / "q.png")
    assert not (tmp_path / "q.png").exists()


def test_cli_quicklook(store, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["quicklook", str(store), "-o", str(tmp_path / "q.png"),
                              "--size", "100", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["level"], doc["width"], doc["height"]) == (2, 64, 80)
    r0, r1, c0, c1 = doc["crop"]  # cropped to the data by default
    assert np.array_equal(read_png(tmp_path / "q.png"), _rgba(store, 2)[:, r0:r1, c0:c1])
    bad = runner.invoke(cli, ["quicklook", str(store), "-o", str(tmp_path / "b.png"),
                              "--level", "7"])
    assert bad.exit_code == 1 and "no level 7" in bad.output
