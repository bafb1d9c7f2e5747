"""The registry file: schema, Parquet round trip, atomic save, errors, generated docs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields, replace
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from geotessera.archive import registry
from geotessera.errors import ArchiveError
from geotessera.archive.registry import (
    PARTITIONING,
    TileRecord,
    arrow_schema,
    load,
    migrate,
    partitions,
    save,
    schema_document,
    schema_markdown,
)

REPO = Path(__file__).parent.parent
MTIME = 1_700_000_000_123_456_789  # nanoseconds, not a multiple of 1000


def _record(**kw) -> TileRecord:
    tile_dir = "global_0.1_degree_representation/2024/grid_0.15_-0.05"
    rec = TileRecord(
        year=2024, name="grid_0.15_-0.05", lon=0.15, lat=-0.05, lon_i=15, lat_i=-5, zone=31,
        epsg=32731, pixel_size=10.0, transform=(10.0, 0.0, 183_000.123, 0.0, -10.0, 9_994_466.5),
        height=1107, width=1113, bands=128, scales_ndim=2,
        embeddings_path=f"{tile_dir}/grid_0.15_-0.05.npy",
        scales_path=f"{tile_dir}/grid_0.15_-0.05_scales.npy",
        landmask_path="global_0.1_degree_tiff_all/grid_0.15_-0.05.tiff",
        embeddings_size=157_000_000, scales_size=4_900_000, landmask_size=12_345,
        embeddings_mtime=MTIME, scales_mtime=MTIME + 1, landmask_mtime=MTIME - 999,
    )  # fmt: skip
    return replace(rec, **kw)


def _records() -> list[TileRecord]:
    """A clean row, a row with a problem and every nullable field None, and a duplicate."""
    broken = _record(
        year=2025, name="grid_0.25_0.05", lon=0.25, lat=0.05, lon_i=25, lat_i=5, epsg=32631,
        pixel_size=None, transform=None, height=None, width=None, bands=None, scales_ndim=None,
        embeddings_size=None, scales_size=None, landmask_size=None, embeddings_mtime=None,
        scales_mtime=None, landmask_mtime=None, problem="file missing", problem_path="x.npy",
    )  # fmt: skip
    dup = _record(name="grid_0.150_-0.050", duplicate_of="grid_0.15_-0.05")
    return [_record(), broken, dup]


def test_record_fields_equal_schema_columns_in_order():
    names = [f.name for f in fields(TileRecord)]
    assert names == [c["name"] for c in schema_document()["columns"]]
    assert names == arrow_schema().names
    nullable = {c["name"]: c["nullable"] for c in schema_document()["columns"]}
    assert {f.name: f.nullable for f in arrow_schema()} == nullable


def test_save_load_round_trip_is_exact(tmp_path):
    recs = _records()
    path = tmp_path / "registry.parquet"
    save(recs, path)
    loaded = load(path)
    key = lambda r: (r.year, r.lat_i, r.lon_i, r.name)  # noqa: E731 - save sorts by this
    assert loaded == sorted(recs, key=key)
    clean = next(r for r in loaded if r.name == "grid_0.15_-0.05")
    assert clean.embeddings_mtime == MTIME and clean.landmask_mtime == MTIME - 999
    assert isinstance(clean.transform, tuple)
    assert all(getattr(loaded[-1], f.name) is None for f in fields(TileRecord)
               if f.name in ("pixel_size", "transform", "scales_mtime", "height"))


def test_save_overwrites_atomically_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "registry.parquet"
    save(_records(), path)
    save(_records()[:1], path)
    assert len(load(path)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.parquet"]


def _files(path):
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "registry.parquet"
    save(_records(), path)
    before = _files(path)

    def boom(*args, **kwargs):
        Path(args[1]).write_bytes(b"half a parquet file")  # a partial write, then failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(ArchiveError, match=r"registry.parquet: cannot write registry: No space"):
        save(_records()[:1], path)
    assert _files(path) == before
    assert len(load(path)) == 3
    assert [p for p in path.rglob(".*")] == []


def test_load_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "registry.parquet"
    with pytest.raises(ArchiveError) as e:
        load(path)
    assert e.value.path == str(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("content", [b"", b"not parquet at all\n" * 10])
def test_load_non_parquet_file_is_archive_error(tmp_path, content):
    path = tmp_path / "registry.parquet"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match="not a geotessera registry"):
        load(path)


def test_load_parquet_without_registry_columns_is_archive_error(tmp_path):
    path = tmp_path / "registry.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    with pytest.raises(ArchiveError, match=str(path)):
        load(path)


def test_file_is_plain_parquet_with_the_documented_schema(tmp_path):
    """Other tools read it: pyarrow gives the documented types, mtimes as ns timestamps."""
    path = tmp_path / "registry.parquet"
    save(_records(), path)
    table = ds.dataset(path, format="parquet",
                       partitioning=ds.partitioning(PARTITIONING, flavor="hive")).to_table()
    table = table.select(arrow_schema().names).sort_by([("year", "ascending")])
    assert table.schema.equals(arrow_schema(), check_metadata=False)
    assert table.num_rows == 3
    assert table.schema.metadata[b"geotessera-registry-version"] == b"1"
    assert table.column("embeddings_mtime").type == pa.timestamp("ns", tz="UTC")
    ns = table.column("embeddings_mtime").cast(pa.int64()).to_pylist()
    assert MTIME in ns and None in ns
    assert table.column("transform").to_pylist()[0] == list(_record().transform)


def test_file_reads_with_pandas_if_installed(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "registry.parquet"
    save(_records(), path)
    df = pd.read_parquet(path)  # partition keys (year, zone) come last, from the directories
    assert sorted(df.columns) == sorted(arrow_schema().names)
    assert MTIME in [t.value for t in df["embeddings_mtime"] if not pd.isna(t)]


_NO_PANDAS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pandas":
            raise ImportError("pandas blocked for this test")
sys.meta_path.insert(0, _Block())
from geotessera.archive.registry import load, save
from test_registry import _records
save(_records(), sys.argv[1])
got = load(sys.argv[1])
assert len(got) == 3 and set(got) == set(_records()), got
print("ok")
"""


def test_load_works_without_pandas(tmp_path):
    """pandas is not a core dependency: a registry with ns mtimes must load without it."""
    proc = subprocess.run(
        [sys.executable, "-c", _NO_PANDAS, str(tmp_path / "registry.parquet")],
        cwd=Path(__file__).parent, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_docs_are_generated_from_the_schema():
    docs = (REPO / "docs" / "registry.md").read_text()
    assert docs == schema_markdown(), "docs/registry.md is stale: regenerate it with `make docs`"
    for col in schema_document()["columns"]:
        assert f"| `{col['name']}` | `{col['type']}` |" in docs


def test_packaged_schema_equals_registry_schema_json():
    """geotessera/data/registry_schema.json is the shipped copy of registry/schema.json."""
    source = json.loads((REPO / "registry" / "schema.json").read_text())
    assert schema_document() == source


def test_installed_package_finds_its_schema(tmp_path):
    """Run from an unrelated directory, so the schema comes from the installed package."""
    code = ("import geotessera, json; from importlib import resources; "
            "from geotessera.archive.registry import schema_document, arrow_schema; "
            "print(json.dumps([geotessera.__file__, len(arrow_schema()), "
            "resources.files('geotessera').joinpath('data/registry_schema.json').is_file()]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    file, ncols, is_file = json.loads(proc.stdout)
    assert "site-packages" in file
    assert ncols == len(schema_document()["columns"]) and is_file
    assert resources.files("geotessera").joinpath("data/registry_schema.json").is_file()



# --- the partitioned dataset -------------------------------------------------------------------


def _zoned() -> list[TileRecord]:
    """Rows in two years and two zones (30 and 31)."""
    out = []
    for year in (2024, 2025):
        for lon_i, zone in ((-15, 30), (-5, 30), (5, 31), (15, 31)):
            name = f"grid_{lon_i / 100:.2f}_0.05"
            out.append(_record(year=year, name=name, lon=lon_i / 100, lon_i=lon_i, lat=0.05,
                               lat_i=5, zone=zone, epsg=32600 + zone))
    return out


def test_save_writes_one_file_per_year_and_zone(tmp_path):
    path = tmp_path / "registry.parquet"
    save(_zoned(), path)
    assert partitions(path) == [(2024, 30), (2024, 31), (2025, 30), (2025, 31)]
    files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*.parquet"))
    assert files == [f"year={y}/zone={z}/part-0.parquet" for y in (2024, 2025) for z in (30, 31)]
    assert load(path) == sorted(_zoned(), key=lambda r: (r.year, r.lat_i, r.lon_i, r.name))


def test_load_of_one_partition_opens_no_other_file(tmp_path):
    """Predicate pushdown on the partition keys: the other partitions' files are never
    opened (they are garbage here, and the load still succeeds)."""
    path = tmp_path / "registry.parquet"
    save(_zoned(), path)
    for y, z in [(2024, 30), (2025, 30), (2025, 31)]:
        (path / f"year={y}" / f"zone={z}" / "part-0.parquet").write_bytes(b"garbage")
    rows = load(path, [2024], [31])
    assert [(r.year, r.zone) for r in rows] == [(2024, 31), (2024, 31)]
    with pytest.raises(ArchiveError, match="not a geotessera registry"):
        load(path, [2025], [31])


def test_scoped_save_keeps_partitions_outside_the_scope(tmp_path):
    path = tmp_path / "registry.parquet"
    save(_zoned(), path)
    zone31 = [r for r in _zoned() if r.zone == 31 and r.year == 2024][:1]
    save(zone31, path, scope=lambda y, z: z == 31)
    assert partitions(path) == [(2024, 30), (2024, 31), (2025, 30)]
    assert len(load(path, zones=[31])) == 1 and len(load(path, zones=[30])) == 4


def test_single_file_registry_is_read_and_migrated(tmp_path):
    path = tmp_path / "registry.parquet"
    pq.write_table(registry.to_table(_zoned()), path)  # what version 1 wrote
    assert partitions(path) == [(2024, 30), (2024, 31), (2025, 30), (2025, 31)]
    assert len(load(path, [2025], [30])) == 2
    old = load(path)
    backup = migrate(path)
    assert path.is_dir() and backup == tmp_path / "registry.parquet.v1" and backup.is_file()
    assert load(path) == old
    pq.write_table(registry.to_table(_zoned()[:1]), path.with_name("r2.parquet"))
    save(_zoned(), path.with_name("r2.parquet"))  # saving over a single file migrates it
    assert (tmp_path / "r2.parquet.v1").is_file() and load(tmp_path / "r2.parquet") == old
