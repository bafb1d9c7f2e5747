"""Every command's exit status: 0 success, 1 a data/build failure naming the file, 2 usage.

The table in docs/cli.md lists the same cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geotessera.cli import cli
from geotessera.archive.demo import DemoSpec, write_demo_archive

SPEC = DemoSpec(lon_min=0.0, lon_max=0.2, lat_min=0.0, lat_max=0.1, pixel_size=400.0,
                bands=4, years=(2024,))
LAYOUT = ["--bands", "4", "-j", "1", "--shard-px", "32", "--chunk-px", "16",
          "--scales-chunk-px", "32"]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exit")
    base, out, empty = root / "archive", root / "stores", root / "empty"
    write_demo_archive(base, SPEC)
    empty.mkdir()
    (root / "a_file").write_text("not a directory")
    res = CliRunner().invoke(cli, ["zarr-build", str(base), "-o", str(out), "-q", *LAYOUT])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["h3", str(out), "--year", "2024", "--res", "5", "-o",
                                   str(root / "h3.zarr"), "-j", "1", "-q"])
    assert res.exit_code == 0, res.output
    return {"base": base, "out": out, "store": out / "utm31_2024.zarr", "empty": empty,
            "file": root / "a_file", "root": root, "h3": root / "h3.zarr"}


CASES = [
    # (command line with {placeholders}, expected exit status, text expected on stderr)
    ("demo-data {root}/demo2 --lon-min 0 --lon-max 0.1 --lat-min 0 --lat-max 0.1 "
     "--pixel-size 400 --bands 2 --year 2024", 0, ""),
    ("demo-data {root}/demo3 --pixel-size -5", 2, "pixel_size"),
    ("demo-data {file}/sub --lon-min 0 --lon-max 0.1 --lat-min 0 --lat-max 0.1 "
     "--pixel-size 400 --bands 2 --year 2024", 1, "a_file"),
    ("scan {base} --bands 4", 0, ""),
    ("scan {empty}", 1, "global_0.1_degree_representation"),
    ("scan {root}/missing", 2, "does not exist"),
    ("zarr-build {base} -o {root}/dry --dry-run --bands 4", 0, ""),
    ("zarr-build {base} -o {root}/x --zones 61", 2, "zones"),
    ("zarr-build {base} -o {root}/x --codec blosc", 2, "expected none, zstd:N"),
    ("zarr-build {base} -o {root}/x --codec blosc-zstd:12", 2, "--codec"),
    ("zarr-build {base} -o {file}/x --bands 4 --no-rgb --no-stac", 1, "a_file"),
    ("zarr-build {base} -o {root}/x --bands 8", 1, "4 bands, expected 8"),
    ("verify {store} --base-dir {base} -j 1", 0, ""),
    ("verify {store}", 2, "--base-dir"),
    ("verify {empty} --base-dir {base} -j 1", 1, "empty"),
    ("registry-schema", 0, ""),
    ("registry-schema --bogus", 2, "bogus"),
    ("rgb {out} -j 1", 0, ""),
    ("rgb {empty} -j 1", 1, "empty"),
    ("rgb {out} --rgb-bands 0,1", 2, "three band"),
    ("quicklook {store} -o {root}/q.png", 0, ""),
    ("quicklook {store}", 2, "--output"),
    ("quicklook {empty} -o {root}/q2.png", 1, "empty"),
    ("mosaic {out} --year 2024 -o {root}/m.png", 0, ""),
    ("mosaic {out} --year 1999 -o {root}/m2.png", 1, "1999"),
    ("mosaic {out} --year 2024", 2, "--output"),
    ("stac {out} --validate", 0, ""),
    ("stac {empty}", 1, "empty"),
    ("stac {out} --href-base not-a-url", 2, "not-a-url"),
    ("info {store}", 0, ""),
    ("info {empty}", 1, "empty"),
    ("sample --lon 0.15 --lat 0.05 --year 2024 {out}", 0, ""),
    ("sample --lon 0.15 --lat 0.05 --year 1999 {out}", 1, "1999"),
    ("sample --lat 0.05 --year 2024 {out}", 2, "--lon"),
    ("h3 {out} --year 2024 --res 6 -o {root}/h3b.zarr -j 1", 0, ""),
    ("h3 {out} --year 1999 --res 6 -o {root}/h3c.zarr", 1, "1999"),
    ("h3 {out} --year 2024 --res 6 -o {h3}", 1, "exists"),
    ("h3 {out} --year 2024 --res 16 -o {root}/h3d.zarr", 2, "--res"),
    ("h3-plot {h3} -o {root}/h3.png", 0, ""),
    ("h3-plot {store} -o {root}/h3e.png", 1, "not an H3 summary"),
    ("h3-plot {h3} -o {root}/h3f.png --band 4", 2, "--band"),
    ("serve {root}/nowhere --no-browser", 1, "nowhere"),
    ("serve {out} --port 70000 --no-browser", 2, "--port"),
    ("tiles {out} --year 2024 -o {root}/p.pmtiles --minzoom 9 --maxzoom 9", 0, ""),
    ("tiles {out} --year 1999 -o {root}/q.pmtiles", 1, "1999"),
    ("tiles {out} --year 2024", 2, "-o"),
    ("sample --lon 181 --lat 0.05 --year 2024 {out}", 2, "181.0 is not a finite value"),
    ("sample --lon 0.15 --lat 91 --year 2024 {out}", 2, "91.0 is not a finite value"),
    ("sample --lon nan --lat 0.05 --year 2024 {out}", 2, "nan is not a finite value"),
    ("sample --lon 0.15 --lat -inf --year 2024 {out}", 2, "-inf is not a finite value"),
    ("zarr-build {base} -o {root}/big --shard-px 131072", 2, "2,267,742,732,288 bytes"),
    ("zarr-build {base} -o {root}/big --bands 4 --shard-px 32768", 2, "largest allowed"),
]


@pytest.mark.parametrize(("line", "code", "text"), CASES, ids=[c[0][:40] for c in CASES])
def test_exit_status(env, line, code, text):
    args = line.format(**{k: str(v) for k, v in env.items()}).split()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == code, (res.stdout, res.stderr)
    assert text in res.stderr
    if code == 1:  # exactly one error line for a failure
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1, res.stderr


@pytest.mark.parametrize("line", ["scan {empty}", "stac {empty}", "verify {empty} --base-dir {base}"])
def test_failures_with_json_print_one_document(env, line):
    args = line.format(**{k: str(v) for k, v in env.items()}).split() + ["--json"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1 and doc["error"]


def test_every_command_is_in_the_table():
    covered = {c[0].split()[0] for c in CASES}
    names = set(cli.list_commands(None))  # commands load lazily: list them by name
    assert covered == names, names ^ covered
