"""CLI conventions, through click's runner and real subprocesses: shared options before the
subcommand, an example in every --help, Ctrl-C → 130 with a --resume hint, a closed pipe →
quiet exit 0, plain tables on a pipe, a --help that imports nothing heavy, documented shell
completion, and a missing optional dependency → exit 1 with the pip line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.table import Table

from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.cli import COMMANDS, EXAMPLES, cli
from geotessera.cli._output import missing_dependency, render_table

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
BOX = set("│┃━─┏┓┗┛┡┩╇╋")


def _py(code: str, *args, **kw) -> subprocess.CompletedProcess:
    """``python -c code`` on this checkout, as a user's shell would run the CLI."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=kw.pop("env", ENV), timeout=300, **kw)


MAIN = "import sys; from geotessera.cli import main; main(sys.argv[1:])"


@pytest.mark.parametrize("args", [["-q", "--json", "info"], ["--json", "info", "-q"],
                                  ["info", "--json", "-q"], ["-v", "info", "--json"]])
def test_shared_options_before_or_after_the_subcommand(built, args):
    store = str(built / "utm31_2024.zarr")
    i = args.index("info")
    res = CliRunner().invoke(cli, [*args[:i + 1], store, *args[i + 1:]])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["zone"] == 31  # --json took effect wherever it was


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_shows_an_example_and_the_summary(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Example:" in res.output
    for line in EXAMPLES[name].splitlines():
        assert f"$ {line}" in res.output
    top = CliRunner().invoke(cli, ["--help"]).output
    assert f"{name}" in top and COMMANDS[name][2] in top


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom geotessera.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint('LOADED', sorted(m for m in ('zarr', 'numpy', "
            "'rich', 'pystac', 'rasterio', 'importlib.metadata') if m in sys.modules))")
    res = _py(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "LOADED []"


def test_version_still_works():
    res = _py(MAIN, "--version")
    assert res.returncode == 0 and res.stdout.startswith("geotessera-registry, version ")


def test_shell_completion_as_documented():
    res = _py(MAIN, env={**ENV, "_GEOTESSERA_REGISTRY_COMPLETE": "bash_source"})
    assert res.returncode == 0 and "complete -o nosort -F" in res.stdout
    env = {**ENV, "_GEOTESSERA_REGISTRY_COMPLETE": "bash_complete",
           "COMP_WORDS": "geotessera-registry zarr-b", "COMP_CWORD": "1"}
    res = _py(MAIN, env=env)
    assert "zarr-build" in res.stdout
    docs = (REPO / "docs" / "cli.md").read_text()
    assert "_GEOTESSERA_REGISTRY_COMPLETE=bash_source" in docs


def test_tables_are_plain_on_a_pipe():
    table = Table(title="t")
    for col in ("store", "tiles"):
        table.add_column(col)
    table.add_row("utm31_2024.zarr", "12")
    assert BOX & set(render_table(table, tty=True))
    plain = render_table(table, tty=False)
    assert not BOX & set(plain) and "utm31_2024.zarr" in plain and "12" in plain


def test_dry_run_table_through_a_real_pipe(archive, tmp_path):
    res = _py(MAIN, "zarr-build", archive, "-o", tmp_path / "out", "--dry-run", "--bands", "8")
    assert res.returncode == 0, res.stderr
    assert "utm31_2024.zarr" in res.stdout and not BOX & set(res.stdout)


def test_sample_into_head_ends_quietly(built):
    lon = [f"--lon={0.01 + 0.0001 * i:.4f}" for i in range(1500)]
    lat = ["--lat=0.05"] * 1500
    cmd = [sys.executable, "-c", MAIN, "sample", str(built), "--year", "2024", *lon, *lat]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does after its line
    rc = proc.wait(timeout=300)
    stderr = proc.stderr.read().decode()
    assert first.startswith(b"0.010000 0.050000:")
    assert rc == 0 and stderr == "", stderr


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path):
    base = tmp_path / "archive"
    write_demo_archive(base, DemoSpec(lon_min=0.0, lon_max=0.4, lat_min=0.0, lat_max=0.4,
                                      pixel_size=40.0, bands=8, years=(2024,)))
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "zarr-build", str(base), "-o", str(tmp_path / "out"),
         "-j", "1", "--bands", "8", "--shard-px", "64", "--chunk-px", "16",
         "--scales-chunk-px", "64"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=ENV, start_new_session=True)
    deadline = time.monotonic() + 240
    while not list((tmp_path / "out").glob("*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the build is writing
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, stderr = proc.communicate(timeout=120)
    stderr = stderr.decode()
    assert proc.returncode == 130, stderr
    assert "interrupted; rerun with --resume" in stderr
    assert "Aborted!" not in stderr


def test_missing_optional_dependency_is_exit_1_with_the_pip_line(built, tmp_path):
    block = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'jsonschema':\n"
             "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
             "sys.meta_path.insert(0, Block())\n")
    res = _py(block + MAIN, "stac", built, "-o", tmp_path / "stac", "--validate")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "jsonschema is not installed" in lines[0]
    assert "pip install '.[build]' (in the geotessera checkout)" in lines[0]
    line = missing_dependency(ModuleNotFoundError("No module named 'xarray'", name="xarray"))
    assert "pip install '.[read]'" in line
    assert missing_dependency(ImportError("cannot import name 'x' from 'y'")) is None


def test_error_lines_print_brackets_as_they_are(tmp_path):
    odd = tmp_path / "stores[plot]"  # rich must not take "[plot]" for markup
    odd.mkdir()
    res = CliRunner().invoke(cli, ["stac", str(odd)])
    assert res.exit_code == 1
    assert f"error: {odd}: no zone stores" in res.stderr


# --- commands on an install without their extra ------------------------------------------------

#: What the core and the read extra do not install (set to None in sys.modules: how Python
#: sees a module that is not installed).
NOT_IN_READ = ("pyarrow", "rasterio", "shapely", "affine", "jsonschema", "rich", "matplotlib",
               "h3", "morecantile", "pmtiles", "distributed")
NOT_IN_CORE = (*NOT_IN_READ, "xarray", "dask", "pystac", "pandas")


def _without(modules: tuple[str, ...], *args, **kw) -> subprocess.CompletedProcess:
    prelude = f"import sys\nfor m in {list(modules)!r}:\n    sys.modules[m] = None\n"
    return _py(prelude + MAIN, *args, **kw)


@pytest.mark.parametrize("argv", [["zarr-build", "ARCHIVE", "-o", "OUT"], ["zarr-build", "--help"],
                                  ["scan", "ARCHIVE"], ["demo-data", "OUT"], ["info", "STORE"],
                                  ["stac", "STORES", "--validate"], ["-q", "verify", "--help"]])
def test_a_builder_command_without_the_build_extra_names_its_pip_line(built, tmp_path, argv):
    subs = {"ARCHIVE": str(tmp_path), "OUT": str(tmp_path / "out"), "STORES": str(built),
            "STORE": str(built / "utm31_2024.zarr")}
    res = _without(NOT_IN_READ, *[subs.get(a, a) for a in argv])
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and " is not installed" in lines[0]
    assert lines[0].endswith("pip install '.[build]' (in the geotessera checkout)"), lines[0]
    assert res.stdout == "" and not (tmp_path / "out").exists()


def test_a_missing_extra_under_json_is_one_json_document(tmp_path):
    res = _without(NOT_IN_READ, "--json", "demo-data", tmp_path / "out")
    assert res.returncode == 1
    doc = json.loads(res.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1 and "'.[build]'" in doc["error"]


def test_sample_runs_on_the_core_alone_and_prints_the_same(built):
    args = ["sample", "--year", "2024", "--lon", "0.12", "--lat", "-0.17", "--lon", "10",
            "--lat", "10", built]
    full, core = _py(MAIN, *args), _without(NOT_IN_CORE, *args)
    assert full.returncode == 0 and core.returncode == 0, core.stderr
    assert core.stdout == full.stdout and "no data" in core.stdout
    full, core = _py(MAIN, *args, "--json"), _without(NOT_IN_CORE, *args, "--json")
    assert json.loads(core.stdout) == json.loads(full.stdout)


def test_sample_of_a_stac_catalog_without_the_read_extra_names_it(built, tmp_path):
    from geotessera.catalog.stac import write_catalog

    cat = write_catalog(built, tmp_path / "stac").catalog
    res = _without(NOT_IN_CORE, "sample", "--year", "2024", "--lon", "0.1", "--lat", "0.1", cat)
    assert res.returncode == 1
    assert res.stderr.strip().endswith("pip install '.[read]' (in the geotessera checkout)")


def test_without_rich_errors_and_logs_are_plain_lines(built):
    res = _without(NOT_IN_CORE, "sample", "--year", "1999", "--lon", "0.1", "--lat", "0.1",
                   built)
    assert res.returncode == 1
    assert res.stderr.startswith("error: ") and "1999" in res.stderr and "[" not in res.stderr


def test_the_top_level_help_needs_no_extra():
    res = _without(NOT_IN_CORE, "--help")
    assert res.returncode == 0 and "zarr-build" in res.stdout


def test_the_pip_line_names_the_commands_own_extra():
    def mnf(name: str) -> ModuleNotFoundError:
        return ModuleNotFoundError(f"No module named {name!r}", name=name)

    assert "'.[build]'" in missing_dependency(mnf("pystac"), "stac")
    assert "'.[read]'" in missing_dependency(mnf("pystac"), "sample")
    assert "'.[viewer]'" in missing_dependency(mnf("pystac"), "serve")
    assert "'.[parquet]'" in missing_dependency(mnf("pyarrow"), "sample")
    assert "'.[build]'" in missing_dependency(mnf("pyarrow"), "scan")
    assert "'.[distributed]'" in missing_dependency(mnf("distributed.client"), "zarr-build")
    assert "'.[plot]'" in missing_dependency(mnf("matplotlib"), None)  # a command not listed
    assert missing_dependency(mnf("somepkg"), "scan").endswith("pip install somepkg")
