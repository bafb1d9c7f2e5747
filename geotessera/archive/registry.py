"""The registry: one row per tile and year, stored as a Parquet dataset partitioned by year
and zone (hive layout ``registry.parquet/year=2024/zone=31/part-0.parquet``), so a planner
reads one (zone, year) at a time with predicate pushdown; DuckDB and pyarrow read it as is.
A single-file registry of version 1 is still read, and converted on the next save.

The column list, types and meanings live in ``registry/schema.json`` (shipped inside the
package as ``geotessera/data/registry_schema.json``); this module builds the Arrow schema
from it, so code, file and docs cannot drift apart. Never reads pixels, never touches zarr.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from geotessera.atomic import atomic_path
from geotessera.errors import ArchiveError
from geotessera.types import TileGrid, TileKey

REGISTRY_FILENAME = "registry.parquet"
_ARROW_TYPES = {
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "string": pa.string(),
    "list<float64>": pa.list_(pa.float64()),
    "timestamp[ns, UTC]": pa.timestamp("ns", tz="UTC"),
}


@cache
def schema_document() -> dict[str, Any]:
    """The registry schema document (columns with type, nullability and meaning)."""
    text = resources.files("geotessera").joinpath("data/registry_schema.json").read_text()
    return json.loads(text)


@cache
def arrow_schema() -> pa.Schema:
    cols = schema_document()["columns"]
    return pa.schema(
        [pa.field(c["name"], _ARROW_TYPES[c["type"]], nullable=c["nullable"]) for c in cols],
        metadata={"geotessera-registry-version": str(schema_document()["version"])},
    )


@dataclass(frozen=True, slots=True)
class TileRecord:
    """One registry row. Field names and order equal the schema's columns."""

    year: int
    name: str
    lon: float
    lat: float
    lon_i: int
    lat_i: int
    zone: int
    epsg: int
    pixel_size: float | None
    transform: tuple[float, ...] | None
    height: int | None
    width: int | None
    bands: int | None
    scales_ndim: int | None
    embeddings_path: str
    scales_path: str
    landmask_path: str
    embeddings_size: int | None
    scales_size: int | None
    landmask_size: int | None
    embeddings_mtime: int | None
    scales_mtime: int | None
    landmask_mtime: int | None
    problem: str | None = None
    problem_path: str | None = None
    duplicate_of: str | None = None

    @property
    def key(self) -> TileKey:
        return TileKey(lat_i=self.lat_i, lon_i=self.lon_i)

    @property
    def usable(self) -> bool:
        return self.problem is None and self.duplicate_of is None

    @property
    def issue(self) -> tuple[str, str] | None:
        """(relative path, problem) when the tile cannot be built, else None."""
        if self.problem is not None:
            return (self.problem_path or self.embeddings_path, self.problem)
        if self.duplicate_of is not None:
            return (self.embeddings_path, f"same tile and year as {self.duplicate_of}")
        return None

    @property
    def grid(self) -> TileGrid:
        """The tile's grid; only valid for usable records."""
        if self.transform is None or self.height is None or self.width is None:
            raise ValueError(f"{self.embeddings_path}: no grid ({self.problem})")
        t = self.transform
        return TileGrid(self.epsg, t[0], t[2], t[5], self.height, self.width)

    def stat_key(self) -> tuple[int | None, ...]:
        """Sizes and mtimes of the three files: a rescan reuses the row when these match."""
        return (
            self.embeddings_size, self.embeddings_mtime, self.scales_size,
            self.scales_mtime, self.landmask_size, self.landmask_mtime,
        )


def _check_fields() -> None:
    names = [f.name for f in fields(TileRecord)]
    expected = [c["name"] for c in schema_document()["columns"]]
    if names != expected:  # pragma: no cover - guarded by tests
        raise RuntimeError(f"TileRecord fields {names} differ from registry schema {expected}")


def to_table(records: list[TileRecord]) -> pa.Table:
    """Records as an Arrow table, sorted by (year, lat_i, lon_i, name)."""
    _check_fields()
    rows = sorted(records, key=lambda r: (r.year, r.lat_i, r.lon_i, r.name))
    cols = {f.name: [getattr(r, f.name) for r in rows] for f in fields(TileRecord)}
    cols["transform"] = [list(t) if t is not None else None for t in cols["transform"]]
    return pa.Table.from_pydict(cols, schema=arrow_schema())


def from_table(table: pa.Table) -> list[TileRecord]:
    table = table.select([c["name"] for c in schema_document()["columns"]]).cast(arrow_schema())
    for col in ("embeddings_mtime", "scales_mtime", "landmask_mtime"):
        # as int64 nanoseconds: pyarrow cannot make Python datetimes of ns without pandas
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, table.column(col).cast(pa.int64()))
    out = []
    for row in table.to_pylist():
        if row["transform"] is not None:
            row["transform"] = tuple(row["transform"])
        out.append(TileRecord(**row))
    return out


#: Hive partitioning of the registry dataset: ``year=YYYY/zone=ZZ/part-0.parquet``.
PARTITIONING = pa.schema([pa.field("year", pa.int16(), nullable=False),
                          pa.field("zone", pa.int16(), nullable=False)])
PART_FILE = "part-0.parquet"
#: Where ``migrate`` keeps a single-file (version 1) registry it converted.
V1_SUFFIX = ".v1"

Scope = Callable[[int, int], bool]


def _partition_file(path: Path, year: int, zone: int) -> Path:
    return path / f"year={year}" / f"zone={zone}" / PART_FILE


def save(records: list[TileRecord], path: Path, scope: Scope | None = None) -> None:
    """Write the registry as a Parquet dataset partitioned by year and zone. Each partition
    file is replaced atomically (written beside, then renamed), so a reader sees every
    partition whole. Partitions inside ``scope`` (default: all) that ``records`` no longer
    has are deleted; partitions outside it are left as they are."""
    path = Path(path)
    if path.is_file():
        migrate(path)
    groups: dict[tuple[int, int], list[TileRecord]] = {}
    path.mkdir(parents=True, exist_ok=True)
    for r in records:
        groups.setdefault((r.year, r.zone), []).append(r)
    try:
        for (year, zone), rows in groups.items():
            table = to_table(rows).drop_columns(["year", "zone"])
            with atomic_path(_partition_file(path, year, zone)) as tmp:
                pq.write_table(table, tmp, compression="zstd")
        for year, zone in partitions(path) if path.is_dir() else []:
            if (year, zone) not in groups and (scope is None or scope(year, zone)):
                _partition_file(path, year, zone).unlink()
    except OSError as e:
        raise ArchiveError(path, f"cannot write registry: {e.strerror or e}") from e


def migrate(path: Path) -> Path:
    """Convert a single-file (version 1) registry at ``path`` into the partitioned dataset at
    the same path; the old file is kept as ``path + ".v1"``. Returns the backup's path."""
    path = Path(path)
    rows = load(path)
    tmp = path.with_name(f".{path.name}.migrating")
    shutil.rmtree(tmp, ignore_errors=True)
    save(rows, tmp)
    backup = path.with_name(path.name + V1_SUFFIX)
    os.replace(path, backup)
    os.replace(tmp, path)
    return backup


def partitions(path: Path) -> list[tuple[int, int]]:
    """(year, zone) of every partition, from the directory names alone (nothing is read);
    for a single-file registry, from its year and zone columns."""
    path = Path(path)
    if path.is_file():
        t = _read_v1(path, ["year", "zone"])
        return sorted(set(zip(t.column("year").to_pylist(), t.column("zone").to_pylist())))
    if not path.is_dir():
        raise ArchiveError(path, "registry not found (run `geotessera-registry scan` first)")
    found = []
    for f in path.glob(f"year=*/zone=*/{PART_FILE}"):
        try:
            found.append((int(f.parent.parent.name[5:]), int(f.parent.name[5:])))
        except ValueError:
            continue  # not ours: a directory name that is not year=N/zone=N
    return sorted(found)


def load(path: Path, years: Iterable[int] | None = None,
         zones: Iterable[int] | None = None) -> list[TileRecord]:
    """Rows of the registry at ``path``, only of ``years`` and ``zones`` when given. A
    partitioned registry is read with predicate pushdown: only the selected partitions'
    files are opened. A missing registry is an ArchiveError."""
    path = Path(path)
    expr = _filter(years, zones)
    try:
        if path.is_file():
            return from_table(_read_v1(path, None, expr))
        if not path.is_dir():
            raise ArchiveError(path, "registry not found (run `geotessera-registry scan` first)")
        if not partitions(path):
            return []
        # the schema is given, so discovery lists the files but opens none of them
        dataset = ds.dataset(path, schema=arrow_schema(), format="parquet",
                             partitioning=ds.partitioning(PARTITIONING, flavor="hive"))
        return sorted(from_table(dataset.to_table(filter=expr)), key=_order)
    except (pa.ArrowException, KeyError, OSError) as e:
        raise ArchiveError(path, f"not a geotessera registry: {e}") from e


def _order(r: TileRecord) -> tuple[int, int, int, str]:
    return (r.year, r.lat_i, r.lon_i, r.name)


def _filter(years: Iterable[int] | None, zones: Iterable[int] | None) -> ds.Expression | None:
    expr = None
    for name, values in (("year", years), ("zone", zones)):
        if values is not None:
            term = ds.field(name).isin(sorted(set(values)))
            expr = term if expr is None else expr & term
    return expr


def _read_v1(path: Path, columns: list[str] | None, expr: ds.Expression | None = None):
    try:
        return pq.read_table(path, columns=columns, filters=expr)
    except (pa.ArrowException, KeyError, OSError) as e:
        raise ArchiveError(path, f"not a geotessera registry: {e}") from e


def as_dicts(records: list[TileRecord]) -> list[dict[str, Any]]:
    return [asdict(r) for r in records]


def schema_markdown() -> str:
    """The schema document as Markdown: the text of ``docs/registry.md``."""
    doc = schema_document()
    lines = [
        f"# Registry schema: {doc['name']} (version {doc['version']})", "",
        "<!-- Generated from registry/schema.json by `make docs`; do not edit by hand. -->", "",
        doc["description"], "",
        "| name | type | nullable | meaning |", "|---|---|---|---|",
    ]
    for c in doc["columns"]:
        cells = (f"`{c['name']}`", f"`{c['type']}`", "yes" if c["nullable"] else "no",
                 c["description"].replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
