"""The year mosaic: every store of a year drawn in one lon/lat map, checked pixel by pixel
against the stores' own rgba (read here with zarr and pyproj), with the real matplotlib."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from matplotlib.text import Text
from pyproj import Geod, Transformer

from geotessera.cli import cli
from geotessera.errors import StoreError
from geotessera.maps import compose_year, write_year_mosaic
from geotessera.maps.figure import (
    BACKGROUND,
    degree_label,
    draw_mosaic,
    graticule_ticks,
    legend_lines,
    nice_length,
)
from geotessera.maps.mosaic import (
    YearMosaic,
    choose_level,
    metres_per_degree_lat,
    metres_per_degree_lon,
    output_grid,
)
from geotessera.preview.quicklook import read_png
from geotessera.store.zone import consolidate, update_root_attrs
from geotessera.types import Level, PixelGrid
from test_preview import copy_stores, previewed_stores

WIDTH = 800
GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory) -> Path:
    return previewed_stores(built, tmp_path_factory)[0]


@pytest.fixture(scope="module")
def drawn(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("mosaic") / "mosaic_2024.png"
    return write_year_mosaic(stores, 2024, out, width_px=WIDTH)


def _level_rgba(store: Path, level: str):
    """(rgba, transform, zone) of one level of a store, read with zarr alone."""
    root = zarr.open_group(str(store), mode="r")
    entry = next(e for e in root.attrs["multiscales"]["layout"] if e["asset"] == level)
    return root[f"{level}/rgba"][:], entry["spatial:transform"], root.attrs["geotessera:zone"]


def _neighbourhood(store: Path, level: str, lon: np.ndarray, lat: np.ndarray):
    """(n, 9, 4) rgba of the 3 × 3 level pixels around each point (alpha 0 outside)."""
    rgba, (a, _, c, _, e, f), zone = _level_rgba(store, level)
    x, y = Transformer.from_crs(4326, 32600 + zone, always_xy=True).transform(lon, lat)
    row, col = np.floor((y - f) / e).astype(int), np.floor((x - c) / a).astype(int)
    out = np.zeros((len(lon), 9, 4), np.uint8)
    for k, (dr, dc) in enumerate((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)):
        r, cc = row + dr, col + dc
        ok = (r >= 0) & (r < rgba.shape[1]) & (cc >= 0) & (cc < rgba.shape[2])
        out[ok, k] = rgba[:, r[ok], cc[ok]].T
    return out


def _points(drawn, step_px: int = 7):
    """lon/lat of a regular grid of image pixel centres inside the map, none within 3 pixels
    of a graticule line or of the zone edge at 0° (where two stores overlap)."""
    left, top, right, bottom = drawn.map_px
    cols = np.arange(left + 4, right - 4, step_px) + 0.5
    rows = np.arange(top + 4, bottom - 4, step_px) + 0.5
    cc, rr = (v.ravel() for v in np.meshgrid(cols, rows))
    w, s, e, n = drawn.bounds
    lon = w + (cc - left) / (right - left) * (e - w)
    lat = n - (rr - top) / (bottom - top) * (n - s)
    away = np.ones(lon.size, bool)
    for g in (*drawn.graticule[0], 0.0):
        away &= np.abs(drawn.pixel(g, 0)[0] - cc) > 3
    for g in drawn.graticule[1]:
        away &= np.abs(drawn.pixel(0, g)[1] - rr) > 3
    return lon[away], lat[away], cc[away].astype(int), rr[away].astype(int)


# --- pure parts --------------------------------------------------------------------------------


def _levels(*sizes):
    return tuple(Level(f"L{i}", PixelGrid.of(32631, s, 0, 0, (10, 10)))
                 for i, s in enumerate(sizes))


@pytest.mark.parametrize(("target", "want"), [(35, "L1"), (20, "L1"), (19.9, "L0"),
                                              (5, "L0"), (1000, "L3")])
def test_choose_level_takes_the_coarsest_fine_enough(target, want):
    levels = _levels(10, 20, 40, 80)
    assert choose_level(levels, target).path == want
    assert choose_level(levels[::-1], target).path == want


@pytest.mark.parametrize("lat", [0.0, -0.15, 45.0, 60.2, -71.0])
def test_degree_lengths_agree_with_geodesics(lat):
    _, _, along = GEOD.inv(10.0, lat, 10.001, lat)
    _, _, north = GEOD.inv(10.0, lat - 0.0005, 10.0, lat + 0.0005)
    assert metres_per_degree_lon(lat) == pytest.approx(along * 1000, rel=1e-6)
    assert metres_per_degree_lat(lat) == pytest.approx(north * 1000, rel=1e-6)


@pytest.mark.parametrize(("bounds", "box"), [((-0.3, -0.2, 0.3, 0.2), (688, 860)),
                                             ((10.0, 59.0, 10.5, 61.0), (500, 400)),
                                             ((-1.0, -0.01, 1.0, 0.01), (300, 300))])
def test_output_grid_has_ground_square_pixels_and_covers_the_bounds(bounds, box):
    (w, s, e, n), (h, wd) = output_grid(bounds, *box)
    assert w <= bounds[0] and s <= bounds[1] and e >= bounds[2] and n >= bounds[3]
    assert wd <= box[0] and h <= box[1] and (wd == box[0] or h == box[1])
    dx, dy = (e - w) / wd, (n - s) / h
    assert dy / dx == pytest.approx(math.cos(math.radians((s + n) / 2)), rel=1e-9)


def test_labels_ticks_and_bar_lengths():
    assert [degree_label(v, "lon", 1) for v in (-0.2, 0.0, 0.3)] == ["0.2°W", "0.0°", "0.3°E"]
    assert degree_label(-0.15, "lat", 2) == "0.15°S" and degree_label(60, "lat", 0) == "60°N"
    assert list(graticule_ticks(-0.3, 0.3, 6)) == pytest.approx([-0.3, -0.2, -0.1, 0, 0.1,
                                                                  0.2, 0.3])
    assert list(graticule_ticks(10.03, 10.49, 4)) == pytest.approx([10.1, 10.2, 10.3, 10.4])
    assert [nice_length(v) for v in (0.7, 1, 3.9, 7.5, 19, 430)] == [0.5, 1, 2, 5, 10, 200]


# --- the map of the session stores -------------------------------------------------------------


def test_png_has_the_reported_size_and_the_map_fits_in_it(drawn):
    png = read_png(Path(drawn.path))
    assert png.shape[0] == 4 and (png.shape[2], png.shape[1]) == drawn.size_px
    assert drawn.size_px[0] == WIDTH
    left, top, right, bottom = drawn.map_px
    assert 0 < left < right < WIDTH and 0 < top < bottom < drawn.size_px[1]
    assert drawn.zones == (30, 31) and drawn.year == 2024


def test_map_is_cropped_to_the_data_of_both_hemispheres(drawn, stores):
    lons, lats = [], []
    for name in ("utm30_2024.zarr", "utm31_2024.zarr"):
        root = zarr.open_group(str(stores / name), mode="r")
        rows, cols = np.nonzero(np.isfinite(root["L0/scales"][:]))
        x, y = root["L0/x"][:][cols], root["L0/y"][:][rows]
        lon, lat = Transformer.from_crs(32600 + root.attrs["geotessera:zone"], 4326,
                                        always_xy=True).transform(x, y)
        lons.append(lon)
        lats.append(lat)
    lon, lat = np.concatenate(lons), np.concatenate(lats)
    w, s, e, n = drawn.bounds
    assert s < 0 < n  # both hemispheres
    slack = 0.004  # about 450 m: two 160 m store pixels and one map pixel
    assert w <= lon.min() and lon.min() - w < slack and e >= lon.max() and e - lon.max() < slack
    assert s <= lat.min() and lat.min() - s < slack and n >= lat.max() and n - lat.max() < slack


def test_pixels_show_the_store_colours_and_water_shows_the_background(drawn, stores):
    png = read_png(Path(drawn.path))
    lon, lat, col, row = _points(drawn)
    seen = np.moveaxis(png[:3, row, col], 0, -1).astype(int)
    zone = np.where(lon < 0, 30, 31)
    checked = {"land": 0, "water": 0}
    hemispheres = set()
    for z in (30, 31):
        sel = np.flatnonzero(zone == z)
        hood = _neighbourhood(stores / f"utm{z}_2024.zarr", drawn.levels[z], lon[sel], lat[sel])
        land = (hood[:, :, 3] == 255).all(axis=1)
        water = (hood[:, :, 3] == 0).all(axis=1)
        for i in np.flatnonzero(land):
            diff = np.abs(hood[i, :, :3].astype(int) - seen[sel[i]]).max(axis=1)
            assert diff.min() <= 1, (lon[sel[i]], lat[sel[i]], seen[sel[i]], hood[i, 4])
            hemispheres.add(lat[sel[i]] > 0)
        background = np.array([int(BACKGROUND[k:k + 2], 16) for k in (1, 3, 5)])
        for i in np.flatnonzero(water):
            assert np.abs(seen[sel[i]] - background).max() <= 1, (lon[sel[i]], lat[sel[i]])
        checked["land"] += int(land.sum())
        checked["water"] += int(water.sum())
    assert checked["land"] > 2000 and checked["water"] > 300, checked
    assert hemispheres == {True, False}


def test_scale_bar_is_true_along_its_latitude(drawn):
    w, _, e, _ = drawn.bounds
    left, _, right, _ = drawn.map_px
    dlon = drawn.scale_px / (right - left) * (e - w)
    _, _, metres = GEOD.inv(0.0, drawn.scale_lat, dlon, drawn.scale_lat)
    assert metres == pytest.approx(drawn.scale_km * 1000, rel=1e-4)
    assert 0.1 < drawn.scale_px / (right - left) < 0.5
    assert drawn.scale_km == nice_length(drawn.scale_km)


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def test_legend_states_the_stretch_of_the_stores(stores):
    stretch = zarr.open_group(str(stores / "utm30_2024.zarr"), mode="r").attrs[
        "geotessera:stretch"]
    mosaic = compose_year(stores, 2024, max_width=300, max_height=300)
    fig, drawn = draw_mosaic(mosaic, 420)
    texts = [t.get_text().replace("\n", " ") for t in fig.findobj(Text) if t.get_text()]
    title = next(t for t in texts if t.startswith("GeoTessera embeddings"))
    assert "2024" in title and "30, 31" in title
    assert any(t.endswith("°E") for t in texts) and any(t.endswith("°S") for t in texts)
    assert any("km" in t for t in texts)
    for c, channel in enumerate(("red", "green", "blue")):
        line = next(t for t in texts if t.startswith(f"{channel} = band"))
        band, lo, hi = _numbers(line)
        assert band == stretch["bands"][c]
        assert lo == pytest.approx(stretch["min"][c], rel=1e-3, abs=1e-3)
        assert hi == pytest.approx(stretch["max"][c], rel=1e-3, abs=1e-3)
    assert any("98th percentile" in t for t in texts) and any("water" in t for t in texts)
    assert f"{stretch['sample_pixels']:,}" in drawn.legend[-1]


def test_pca_legend_gives_each_component_and_its_variance():
    stretch = {"mode": "pca", "bands": list(range(8)), "percentiles": [2.0, 98.0],
               "min": [-11.6, -7.29, -7.7], "max": [13.7, 7.85, 7.18], "sample_pixels": 9,
               "sample_shards": 1, "seed": 0, "explained_variance_ratio": [0.52, 0.2, 0.113]}
    _, lines, _ = legend_lines(stretch)
    assert [(_numbers(ln)) for ln in lines] == [[1, 52.0, -11.6, 13.7], [2, 20.0, -7.29, 7.85],
                                                [3, 11.3, -7.7, 7.18]]
    rgba = np.zeros((4, 30, 40), np.uint8)
    fig, _ = draw_mosaic(YearMosaic(2024, rgba, (0.0, 0.0, 0.4, 0.3), (), stretch), 400)
    texts = {t.get_text().replace("\n", " ") for t in fig.findobj(Text)}  # lines wrapped
    assert set(lines) <= texts and any("principal components 1–3 of 8 bands" in t for t in texts)


def test_a_coarse_map_reads_a_coarse_level(stores):
    mosaic = compose_year(stores, 2024, max_width=60, max_height=60)
    ground = min(mosaic.pixel_deg[0] * metres_per_degree_lon(0.25),
                 mosaic.pixel_deg[1] * metres_per_degree_lat(0.0))
    for part in mosaic.parts:
        root = zarr.open_group(str(stores / f"utm{part.zone}_2024.zarr"), mode="r")
        sizes = {e["asset"]: e["spatial:transform"][0] for e in root.attrs["multiscales"]["layout"]}
        assert part.level.path != "L0" and sizes[part.level.path] <= ground
        assert all(s > ground for s in sizes.values() if s > sizes[part.level.path])
    assert mosaic.rgba.shape[1:] == mosaic.shape and max(mosaic.shape) == 60


# --- bad input ---------------------------------------------------------------------------------


def test_no_store_of_the_year_names_the_source(stores, tmp_path):
    with pytest.raises(StoreError, match=f"{re.escape(str(stores))}.*1999"):
        write_year_mosaic(stores, 1999, tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def test_a_store_without_preview_is_named(built, tmp_path):
    with pytest.raises(StoreError, match=r"utm30_2024.*rgb_complete is not true"):
        write_year_mosaic(built, 2024, tmp_path / "m.png")
    assert not list(tmp_path.iterdir())


def test_stores_with_different_stretches_are_refused(stores, tmp_path):
    copy = copy_stores(stores, tmp_path / "stores", 2024)
    store = copy / "utm31_2024.zarr"
    stretch = dict(zarr.open_group(str(store), mode="r").attrs["geotessera:stretch"])
    update_root_attrs(store, stretch={**stretch, "seed": 99})
    consolidate(store)
    with pytest.raises(StoreError, match=r"utm31_2024.zarr: its geotessera:stretch differs"):
        compose_year(copy, 2024)


def test_a_store_that_lost_its_rgba_array_is_named(stores, tmp_path):
    copy = copy_stores(stores, tmp_path / "stores", 2024)
    for level_dir in (copy / "utm30_2024.zarr").glob("L*"):
        shutil.rmtree(level_dir / "rgba")
    root = copy / "utm30_2024.zarr"
    update_root_attrs(root)
    consolidate(root)
    with pytest.raises(StoreError, match=r"utm30_2024.zarr/L\d+: no rgba preview array"):
        compose_year(copy, 2024)


# --- the command -------------------------------------------------------------------------------


def test_cli_writes_the_map_and_reports_it(stores, tmp_path):
    out = tmp_path / "m.png"
    res = CliRunner().invoke(cli, ["mosaic", str(stores), "--year", "2024", "-o", str(out),
                                   "--width", "500", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    png = read_png(out)
    assert (png.shape[2], png.shape[1]) == (doc["width"], doc["height"]) and doc["width"] == 500
    assert doc["zones"] == [30, 31] and doc["year"] == 2024 and doc["output"] == str(out)
    assert any(line.startswith("red = band 0") for line in doc["legend"])
    bad = CliRunner().invoke(cli, ["mosaic", str(stores), "--year", "2024", "-o",
                                   str(tmp_path / "b.png"), "--width", "100"])
    assert bad.exit_code == 2 and "--width" in bad.stderr


def test_cli_without_matplotlib_is_exit_1_with_the_pip_line(stores, tmp_path):
    block = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'matplotlib':\n"
             "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
             "sys.meta_path.insert(0, Block())\n"
             "from geotessera.cli import main; main(sys.argv[1:])")
    repo = Path(__file__).resolve().parents[1]
    res = subprocess.run([sys.executable, "-c", block, "mosaic", str(stores), "--year", "2024",
                          "-o", str(tmp_path / "m.png")], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(repo)}, timeout=300)
    assert res.returncode == 1, res.stderr
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "matplotlib is not installed" in errors[0]
    assert "pip install '.[plot]'" in res.stderr
    assert not (tmp_path / "m.png").exists()
