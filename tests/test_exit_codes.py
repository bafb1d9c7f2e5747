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
    return {"base": base, "out": out, "store": out / "utm31_2024.zarr", "empty": empty,
            "file": root / "a_file", "root": root}


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
    ("stac {out} --validate", 0, ""),
    ("stac {empty}", 1, "empty"),
    ("stac {out} --href-base not-a-url", 2, "not-a-url"),
    ("info {store}", 0, ""),
    ("info {empty}", 1, "empty"),
    ("sample --lon 0.15 --lat 0.05 --year 2024 {out}", 0, ""),
    ("sample --lon 0.15 --lat 0.05 --year 1999 {out}", 1, "1999"),
    ("sample --lat 0.05 --year 2024 {out}", 2, "--lon"),
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
