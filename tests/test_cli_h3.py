"""``h3`` and ``h3-plot`` through the CLI: the summary store, exit codes, and PNGs whose pixels
show each cell's hexagon in the colour computed here from the summary."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h3
import matplotlib
import numpy as np
import pytest
from click.testing import CliRunner, Result
from matplotlib.image import imread
from pyproj import Proj

from geotessera.cli import cli
from geotessera.dggs import read_summary, summarise, write_summary
from geotessera.dggs.summary import H3Summary

YEAR = 2024
SEA = np.array([0xDF, 0xE7, 0xEE]) / 255  # the map's sphere/ocean fill
TOL = 2.5 / 255


def run(*args) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def made(built, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("h3cli") / "summary.zarr"
    res = run("h3", built, "--year", YEAR, "--res", 6, "-o", out, "-j", 2, "--json")
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout)


def pixel_of(doc: dict, lon: float, lat: float) -> tuple[int, int]:
    """(row, col) of a lon/lat point in the PNG, from the map's PROJ string and its axes box
    as the command reports them (computed here with pyproj, not by the plot code)."""
    if doc["projection"] == "equal-area":
        lon = (lon - doc["centre"][0] + 180) % 360 - 180
    x, y = Proj(doc["definition"])(lon, lat)
    x0, x1, y0, y1 = doc["limits"]
    left, top, right, bottom = doc["axes_px"]
    return (int(top + (y1 - y) / (y1 - y0) * (bottom - top)),
            int(left + (x - x0) / (x1 - x0) * (right - left)))


def centres(cells: np.ndarray) -> np.ndarray:
    return np.array([h3.api.basic_int.cell_to_latlng(c) for c in cells.tolist()])


def assert_cell_colours(png: Path, doc: dict, cells: np.ndarray, rgb: np.ndarray,
                        points: np.ndarray | None = None) -> None:
    """Each (lat, lon) point (default: the cell centres) shows its cell's colour."""
    img = imread(str(png))[..., :3]
    assert img.shape[:2] == (doc["size_px"][1], doc["size_px"][0])
    pts = centres(cells) if points is None else points
    got = np.array([img[pixel_of(doc, lon, lat)] for lat, lon in pts])
    bad = np.abs(got - rgb).max(axis=1) > TOL
    assert not bad.any(), (np.flatnonzero(bad), got[bad][:3], rgb[bad][:3])


def test_h3_writes_the_summary_the_library_computes(made, built):
    out, doc = made
    assert doc["status"] == "ok" and doc["res"] == 6 and doc["level"] == "L0"
    assert [s["zone"] for s in doc["stores"]] == [30, 31] and doc["workers"] == 2
    s = read_summary(out)
    assert doc["cells"] == s.cells.size > 50 and doc["pixels"] == int(s.pixel_count.sum())
    with ThreadPoolExecutor(2) as pool:
        lib = summarise(built, YEAR, 6, pool)
    assert np.array_equal(s.cells, lib.cells) and np.array_equal(s.mean, lib.mean)
    assert doc["cells_per_second"] > 0


def test_band_plot_shows_every_hexagon_in_its_viridis_colour(made, tmp_path):
    out, _ = made
    png = tmp_path / "band.png"
    res = run("h3-plot", out, "-o", png, "--band", 3, "--projection", "equal-area",
              "--extent", "data", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    s = read_summary(out)
    v = s.mean[:, 3].astype(np.float64)
    lo, hi = np.percentile(v, [2, 98])
    want = matplotlib.colormaps["viridis"](np.clip((v - lo) / (hi - lo), 0, 1))[:, :3]
    assert doc["cells_drawn"] == s.cells.size
    assert_cell_colours(png, doc, s.cells, want)
    assert len({tuple(np.round(c, 2)) for c in want}) > 30  # really many colours
    img = imread(str(png))[..., :3]
    left, top, _, _ = doc["axes_px"]
    assert np.abs(img[int(top) + 3, int(left) + 3] - SEA).max() < TOL  # a corner: no cell


def expected_pca(mean: np.ndarray) -> np.ndarray:
    x = mean.astype(np.float64)
    c = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    out = []
    for axis in vt[:3]:
        axis = axis * np.sign(axis[np.argmax(np.abs(axis))])
        score = c @ axis
        lo, hi = np.percentile(score, [2, 98])
        out.append(np.clip((score - lo) / (hi - lo), 0, 1))
    return np.column_stack(out)


def test_default_pca_globe_plot_colours_cells_by_their_principal_components(made, tmp_path):
    out, _ = made
    png = tmp_path / "pca.png"
    res = run("h3-plot", out, "-o", png, "--extent", "data", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    s = read_summary(out)
    assert doc["projection"] == "globe" and doc["colour"]["mode"] == "pca"
    lat, lon = centres(s.cells).mean(axis=0)
    assert abs(doc["centre"][0] - lon) < 0.2 and abs(doc["centre"][1] - lat) < 0.2
    assert_cell_colours(png, doc, s.cells, expected_pca(s.mean))


def test_world_globe_puts_the_cells_at_the_centre_of_the_disk(made, tmp_path):
    out, _ = made
    png = tmp_path / "globe.png"
    doc = json.loads(run("h3-plot", out, "-o", png, "--band", 0, "--json").stdout)
    img = imread(str(png))[..., :3]
    s = read_summary(out)
    row, col = pixel_of(doc, doc["centre"][0], doc["centre"][1])
    _, _, r_edge, _ = doc["axes_px"]
    assert np.abs(img[row, col] - SEA).max() > 0.1  # a cell is drawn at the view centre
    r_sea, c_sea = pixel_of(doc, doc["centre"][0] + 45, doc["centre"][1] + 15)  # off the grid
    assert np.abs(img[r_sea, c_sea] - SEA).max() < TOL  # elsewhere on the sphere: no cell
    assert doc["cells_drawn"] == s.cells.size and r_edge > col


LATS, LONS = np.arange(-16, -5, 1.5), np.r_[176.25:179.1:0.7, -179:-176:0.7]  # 1° off the seam


def interior_points(cell: int, res: int, lats, lons, margin: float) -> np.ndarray:
    """(lat, lon) candidates well inside ``cell``: the points ``margin`` degrees of arc
    north, south, east and west of each are in the cell too."""
    keep = []
    for la in lats:
        m_lon = margin / max(np.cos(np.radians(la)), 1e-3)
        for lo in lons:
            near = [(la + dy, ((lo + dx + 180) % 360) - 180) for dy in (-margin, 0, margin)
                    for dx in (-m_lon, 0, m_lon) if abs(la + dy) <= 90]
            if all(h3.api.basic_int.latlng_to_cell(a, b, res) == cell for a, b in near):
                keep.append((la, lo))
    return np.array(keep)


def make_summary(cells: list[int], res: int, where: Path) -> tuple[Path, H3Summary]:
    cells = np.unique(np.array(cells, np.uint64))
    n = cells.size
    mean = (np.linspace(-1, 1, n)[:, None] * np.ones((1, 2))).astype(np.float32)
    s = H3Summary(res, YEAR, cells, mean, np.ones(n), np.ones(n), np.ones(n, np.int64), {})
    return Path(write_summary(s, where)), s


@pytest.fixture(scope="module")
def seam_summary(tmp_path_factory) -> tuple[Path, H3Summary, int]:
    """A resolution-1 summary with a cell across the antimeridian and its neighbours."""
    cross = h3.api.basic_int.latlng_to_cell(-11.2, 179.9, 1)  # about half on each side
    lons = np.array([v[1] for v in h3.api.basic_int.cell_to_boundary(cross)])
    assert lons.min() < -170 and lons.max() > 170  # it does cross
    path, s = make_summary([cross, *h3.api.basic_int.grid_ring(cross, 1)], 1,
                           tmp_path_factory.mktemp("seam") / "seam.zarr")
    return path, s, cross


def band0_colours(s: H3Summary) -> np.ndarray:
    v = s.mean[:, 0].astype(np.float64)
    lo, hi = np.percentile(v, [2, 98])
    return matplotlib.colormaps["viridis"](np.clip((v - lo) / (hi - lo), 0, 1))[:, :3]


def colour_of(s: H3Summary, cell: int, n: int) -> np.ndarray:
    return np.repeat(band0_colours(s)[[int(np.searchsorted(s.cells, np.uint64(cell)))]], n, 0)


def test_equal_area_map_splits_a_cell_across_the_antimeridian(seam_summary, tmp_path):
    path, s, cross = seam_summary
    png = tmp_path / "seam.png"
    doc = json.loads(run("h3-plot", path, "-o", png, "--band", 0, "--projection",
                         "equal-area", "--json").stdout)
    pts = interior_points(cross, 1, LATS, LONS, 0.5)
    assert (pts[:, 1] > 0).sum() >= 3 and (pts[:, 1] < 0).sum() >= 3  # both sides of the map
    assert_cell_colours(png, doc, s.cells, colour_of(s, cross, len(pts)), pts)
    img = imread(str(png))[..., :3]
    lat0 = h3.api.basic_int.cell_to_latlng(cross)[0]
    for lon in (-75, 15, 105):  # off the graticule; no streak from a wrongly joined polygon
        assert np.abs(img[pixel_of(doc, lon, lat0)] - SEA).max() < TOL


def test_equal_area_map_draws_the_polar_cells_across_the_seam(tmp_path):
    # at resolution 1 each pole lies inside one cell (at resolution 0 it lies on an edge);
    # that the pieces close along the pole line exactly is test_dggs_shapes' area test
    north, south = (h3.api.basic_int.latlng_to_cell(v, 0, 1) for v in (90, -90))
    path, s = make_summary([north, south, h3.api.basic_int.latlng_to_cell(0, 0, 1)], 1,
                           tmp_path / "poles.zarr")
    png = tmp_path / "poles.png"  # centred on 70°E: the map's seam at 110°W cuts the cells
    doc = json.loads(run("h3-plot", path, "-o", png, "--band", 0, "--projection",
                         "equal-area", "--centre", "70,0", "--width", 3200, "--json").stdout)
    for cell, sign in ((north, 1), (south, -1)):
        pts = interior_points(cell, 1, sign * np.arange(83.0, 86.6, 0.5),
                              np.arange(-175, 180, 10.0), 0.6)  # a few px in y
        rel = (pts[:, 1] - 70 + 180) % 360 - 180
        assert (rel < -150).sum() >= 3 and (rel > 150).sum() >= 3  # at both map edges
        assert_cell_colours(png, doc, s.cells, colour_of(s, cell, len(pts)), pts)


def test_globe_over_the_antimeridian_draws_the_cells_whole(seam_summary, tmp_path):
    path, s, cross = seam_summary
    png = tmp_path / "seam_globe.png"
    doc = json.loads(run("h3-plot", path, "-o", png, "--band", 0, "--centre", "180,0",
                         "--json").stdout)
    pts = interior_points(cross, 1, LATS, LONS, 0.5)
    assert_cell_colours(png, doc, s.cells, colour_of(s, cross, len(pts)), pts)
    assert doc["cells_drawn"] == s.cells.size


def test_globe_clips_cells_at_the_limb(tmp_path):
    limb = [h3.api.basic_int.latlng_to_cell(0, lon, 1) for lon in (89.0, 91.5, 95.0, 130)]
    path, s = make_summary(limb, 1, tmp_path / "limb.zarr")
    png = tmp_path / "limb.png"
    doc = json.loads(run("h3-plot", path, "-o", png, "--band", 0, "--centre", "0,0",
                         "--width", 3200, "--json").stdout)
    assert doc["cells_drawn"] == 2  # the cells at 89° and 91.5°E straddle the limb; the rest hide
    img = imread(str(png))[..., :3]
    row0, col0 = pixel_of(doc, 0, 0)
    radius = pixel_of(doc, 90, 0)[1] - col0
    colours, seen = band0_colours(s), 0
    for inside_px in (4, 6, 8, 10, 14):  # just inside the limb, along the equator
        lon = np.degrees(np.arcsin(1 - inside_px / radius))
        cell = h3.api.basic_int.latlng_to_cell(0, lon, 1)
        k = np.searchsorted(s.cells, np.uint64(cell))
        want = colours[k] if k < s.cells.size and s.cells[k] == cell else SEA
        seen += want is not SEA
        assert np.abs(img[row0, col0 + radius - inside_px] - want).max() < TOL
    assert seen >= 2


# --- errors and options ------------------------------------------------------------------------


def test_exit_codes_name_the_file(made, built, tmp_path):
    out, _ = made
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("h3", empty, "--year", YEAR, "--res", 5, "-o", tmp_path / "x.zarr", "--json")
    assert res.exit_code == 1 and "no zone stores for year 2024" in json.loads(res.stdout)["error"]
    assert run("h3", built, "--year", YEAR, "--res", 16, "-o", tmp_path / "x.zarr").exit_code == 2
    res = run("h3", built, "--year", YEAR, "--res", 6, "-o", out, "--json")
    assert res.exit_code == 1 and "exists; pass overwrite" in json.loads(res.stdout)["error"]
    res = run("h3", built, "--year", YEAR, "--res", 6, "--level", 3, "-o", tmp_path / "y.zarr")
    assert res.exit_code == 1 and "has no level 3" in res.output
    res = run("h3-plot", built / "utm30_2024.zarr", "-o", tmp_path / "m.png", "--json")
    assert res.exit_code == 1 and "utm30_2024.zarr: not an H3 summary" in res.stdout
    res = run("h3-plot", out, "-o", tmp_path / "m.png", "--band", 8)
    assert res.exit_code == 2 and "has 8 bands" in res.output
    assert run("h3-plot", out, "-o", tmp_path / "m.png", "--centre", "x").exit_code == 2
    assert not (tmp_path / "m.png").exists()


def test_scheduler_runs_the_tasks_on_a_dask_cluster(made, built, tmp_path):
    import distributed
    out, _ = made
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        res = run("h3", built, "--year", YEAR, "--res", 6, "-o", tmp_path / "d.zarr",
                  "--scheduler", cluster.scheduler_address, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["scheduler"] == cluster.scheduler_address
    a, b = read_summary(out), read_summary(tmp_path / "d.zarr")
    assert np.array_equal(a.cells, b.cells) and np.array_equal(a.mean, b.mean)
    assert np.array_equal(a.valid_area, b.valid_area)
