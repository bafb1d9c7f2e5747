"""PMTiles archives of a year's preview: read back with the ``pmtiles`` package's reader,
every tile equals the tile the server serves, and tiles without data are absent."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from pmtiles.reader import MmapSource, Reader, all_tiles
from pmtiles.tile import Compression, TileType

from geotessera.cli import cli
from geotessera.errors import StoreError
from geotessera.viewer.pmtiles import write_pmtiles
from viewer_support import decode_png, request, running, served_stores

YEAR = 2024


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory):
    return served_stores(built, tmp_path_factory)


@pytest.fixture(scope="module")
def pmtiles_file(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("pmtiles") / f"preview_{YEAR}.pmtiles"
    result = CliRunner().invoke(cli, ["tiles", str(stores), "--year", str(YEAR), "-o", str(out),
                                      "--minzoom", "5", "--maxzoom", "11", "--json"])
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_archive_reads_back_and_equals_the_served_tiles(stores, pmtiles_file):
    path, doc = pmtiles_file
    assert doc["status"] == "ok" and doc["tiles"] > 0 and doc["minzoom"] == 5
    with open(path, "rb") as f:
        get = MmapSource(f)
        reader = Reader(get)
        header = reader.header()
        tiles = {zxy: bytes(data) for zxy, data in all_tiles(get)}
        meta = reader.metadata()
    assert header["tile_type"] == TileType.PNG and header["tile_compression"] == Compression.NONE
    assert header["clustered"] and header["max_zoom"] == 11 and header["min_zoom"] >= 5
    assert meta["geotessera:year"] == YEAR and meta["geotessera:zones"] == [30, 31]
    assert len(tiles) == doc["tiles"]
    assert {z for z, _, _ in tiles} == set(range(header["min_zoom"], 12))
    with running(stores) as server:
        for (z, x, y), data in sorted(tiles.items()):
            status, _, served = request(server, f"/tiles/{YEAR}/{z}/{x}/{y}.png")
            assert status == 200
            assert np.array_equal(decode_png(data), decode_png(served))
            assert decode_png(data)[3].any()  # only tiles with data are stored
        # a tile of the zooms inside the bounds but absent from the archive is empty
        absent = 0
        for x in range(2**9 - 4, 2**9 + 4):
            for y in range(2**9 - 4, 2**9 + 4):
                if (10, x, y) not in tiles:
                    assert reader_get(path, 10, x, y) is None
                    _, _, served = request(server, f"/tiles/{YEAR}/10/{x}/{y}.png")
                    assert not decode_png(served)[3].any()
                    absent += 1
    assert absent > 0


def reader_get(path, z, x, y):
    with open(path, "rb") as f:
        return Reader(MmapSource(f)).get(z, x, y)


def test_bounds_cover_the_stores(stores, pmtiles_file):
    path, doc = pmtiles_file
    west, south, east, north = doc["bounds"]
    assert west < -0.29 and east > 0.29 and south < -0.19 and north > 0.19
    with open(path, "rb") as f:
        h = Reader(MmapSource(f)).header()
    assert h["min_lon_e7"] == round(west * 1e7) and h["max_lat_e7"] == round(north * 1e7)


def test_bad_years_and_zooms(stores, tmp_path):
    with pytest.raises(StoreError, match="1999"):
        write_pmtiles(str(stores), 1999, tmp_path / "x.pmtiles")
    with pytest.raises(ValueError, match="minzoom"):
        write_pmtiles(str(stores), YEAR, tmp_path / "x.pmtiles", minzoom=9, maxzoom=3)
    with pytest.raises(StoreError, match="no tile with data"):
        write_pmtiles(str(stores), YEAR, tmp_path / "x.pmtiles", minzoom=0, maxzoom=0)
    assert not (tmp_path / "x.pmtiles").exists()  # nothing half-written is left
    out = CliRunner().invoke(cli, ["tiles", str(stores), "--year", "1999", "-o",
                                   str(tmp_path / "y.pmtiles")])
    assert out.exit_code == 1 and "1999" in out.stderr
    out = CliRunner().invoke(cli, ["tiles", str(stores), "--year", str(YEAR), "-o",
                                   str(tmp_path / "y.pmtiles"), "--minzoom", "9", "--maxzoom", "3"])
    assert out.exit_code == 2
