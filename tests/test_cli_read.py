"""``stac``, ``info`` and ``sample`` through the CLI: JSON on stdout, errors as exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from geotessera import read
from geotessera.cli import cli


def run(*args) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def stores(built, tmp_path) -> Path:
    dst = tmp_path / "stores"
    for name in ("utm30_2024.zarr", "utm31_2024.zarr"):
        shutil.copytree(built / name, dst / name)
    return dst


def test_stac_writes_validates_and_reruns_idempotently(stores):
    res = run("stac", stores, "--validate", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["status"] == "ok" and doc["validated"] == 4 and len(doc["written"]) == 4
    assert doc["items"] == ["geotessera-2024-utm30", "geotessera-2024-utm31"]
    again = json.loads(run("stac", stores, "--json").stdout)
    assert again["written"] == [] and len(again["unchanged"]) == 4 and again["validated"] is None
    human = run("stac", stores, "-o", stores / "elsewhere", "--validate")
    assert human.exit_code == 0
    assert "2 item(s)" in human.output and "validated 4 STAC object(s)" in human.output


def test_other_libraries_log_only_with_vv_and_always_to_stderr(stores, monkeypatch):
    """With AWS keys in the environment, rasterio asks botocore for them and botocore logs
    where it found them (INFO). Other libraries' INFO is not shown unless -vv, and then on
    stderr: stdout is the JSON document only, either way."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    line = "Found credentials in environment variables"
    res = run("stac", stores, "--json")
    assert res.exit_code == 0, res.output
    assert line not in res.output
    assert json.loads(res.stdout)["status"] == "ok"
    loud = run("stac", stores, "--json", "-vv")
    assert loud.exit_code == 0, loud.output
    assert line in loud.stderr
    assert json.loads(loud.stdout)["status"] == "ok"


def test_stac_rejects_a_non_url_href_base_and_an_empty_directory(stores, tmp_path):
    res = run("stac", stores, "--href-base", "bucket/path")
    assert res.exit_code == 2 and "--href-base" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("stac", empty, "--json")
    assert res.exit_code == 1
    assert "no zone stores" in json.loads(res.stdout)["error"]


def test_info_describes_a_store(built):
    res = run("info", built / "utm31_2024.zarr", "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["zone"], d["year"], d["epsg"], d["bands"]) == (31, 2024, 32631, 8)
    assert d["tiles"] == 12 and d["passes"]["build"] is True and d["passes"]["rgb"] is False
    assert [lv["level"] for lv in d["levels"]] == ["L0"] and d["pixel_size"] == 160.0
    assert 0.3 < d["coverage"]["fraction"] < 1 and d["coverage"]["method"] == "pixels"
    w, s, e, n = d["coverage"]["bbox_wgs84"]
    assert -0.01 < w < 0.01 and 0.29 < e < 0.31 and s < -0.19 and n > 0.19
    assert d["size_bytes"] > 100_000 and d["objects"] > 10
    text = run("info", built / "utm31_2024.zarr").output
    assert "zone 31 (EPSG:32631), year 2024" in text and "build done" in text
    assert "rgb NOT done" in text and "L0 320x256 @160 m" in text


def test_info_on_a_directory_that_is_not_a_store(tmp_path):
    res = run("info", tmp_path)
    assert res.exit_code == 1 and "not a zarr v3 group" in res.output


def test_sample_prints_the_vector(built):
    want = read.sample([(-0.15, 0.05), (10.0, 10.0)], 2024, built)
    res = run("sample", "--lon", -0.15, "--lat", 0.05, "--lon", 10, "--lat", 10,
              "--year", 2024, built, "--json")
    assert res.exit_code == 0, res.output
    points = json.loads(res.stdout)["points"]
    np.testing.assert_array_equal(np.array(points[0]["vector"], np.float32), want[0])
    assert points[1]["vector"] is None
    text = run("sample", "--lon", -0.15, "--lat", 0.05, "--year", 2024, built).output
    assert text.startswith("-0.150000 0.050000: ") and len(text.split(":")[1].split()) == 8
    assert float(text.split(":")[1].split()[0]) == pytest.approx(float(want[0, 0]), rel=1e-5)


def test_sample_errors_name_the_source_and_year(built):
    res = run("sample", "--lon", 0.1, "--lat", 0.1, "--year", 2023, built)
    assert res.exit_code == 1 and "2023" in res.output and str(built) in res.output
    res = run("sample", "--lon", 0.1, "--lon", 0.2, "--lat", 0.1, "--year", 2024, built)
    assert res.exit_code == 2
