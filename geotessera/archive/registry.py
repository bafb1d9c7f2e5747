"""The registry: one row per tile and year, stored as Parquet.

The column list, types and meanings live in ``registry/schema.json`` (shipped inside the
package as ``geotessera/data/registry_schema.json``); this module builds the Arrow schema
from it, so code, file and docs cannot drift apart. Never reads pixels, never touches zarr.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
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


def save(records: list[TileRecord], path: Path) -> None:
    """Write the registry atomically (temporary file in the same directory, then rename)."""
    table = to_table(records)
    try:
        with atomic_path(Path(path)) as tmp:
            pq.write_table(table, tmp, compression="zstd")
    except OSError as e:
        raise ArchiveError(path, f"cannot write registry: {e.strerror or e}") from e


def load(path: Path) -> list[TileRecord]:
    """Read a registry written by ``save``; a missing file is an ArchiveError."""
    path = Path(path)
    if not path.exists():
        raise ArchiveError(path, "registry not found (run `geotessera-registry scan` first)")
    try:
        return from_table(pq.read_table(path))
    except (pa.ArrowException, KeyError) as e:
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
