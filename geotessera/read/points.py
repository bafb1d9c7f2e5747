"""Point files in, sampled vectors out, streamed in batches so that any number of points
runs in bounded memory (one batch of points and vectors at a time).

Inputs: CSV with ``lon``/``lat`` (or ``longitude``/``latitude``, ``x``/``y``) columns,
GeoJSON (a FeatureCollection of Points; parsed whole, as JSON must be), GeoParquet (WKB
points in its geometry column, read one row group batch at a time) or Parquet with lon/lat
columns. Outputs: CSV (``lon,lat,e0…``; empty cells for no data), JSON lines
(``{"lon", "lat", "vector"}``, null for no data) or Parquet (``lon``, ``lat``,
``embedding`` list<float32>, null for no data). ``-`` is standard input or output.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from geotessera.errors import PointsError
from geotessera.read.aliases import Source

BATCH = 65_536
IN_FORMATS = ("csv", "geojson", "parquet")
OUT_FORMATS = ("csv", "jsonl", "parquet")
_LON, _LAT = ("lon", "longitude", "x", "lng"), ("lat", "latitude", "y")
_SUFFIX = {".csv": "csv", ".geojson": "geojson", ".json": "geojson", ".parquet": "parquet",
           ".geoparquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def guess_format(name: str, default: str) -> str:
    """The format of a file from its suffix; ``default`` for ``-`` or an unknown suffix."""
    return _SUFFIX.get(Path(name).suffix.lower(), default) if name != "-" else default


@contextmanager
def _open_in(name: str):
    if name == "-":
        yield sys.stdin.buffer
    else:
        try:
            with open(name, "rb") as f:
                yield f
        except FileNotFoundError as e:
            raise PointsError(name, "no such file") from e


def read_points(name: str, fmt: str | None = None, batch: int = BATCH
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(lon, lat) float64 batches of at most ``batch`` points from a file or ``-``."""
    fmt = fmt or guess_format(name, "csv")
    with _open_in(name) as f:
        if fmt == "csv":
            yield from _csv(name, f, batch)
        elif fmt == "geojson":
            yield from _geojson(name, f, batch)
        elif fmt == "parquet":
            yield from _parquet(name, f, batch)
        else:
            raise PointsError(name, f"unknown points format {fmt!r} (one of {IN_FORMATS})")


def _column(name: str, header: list[str], choices: tuple[str, ...]) -> int:
    low = [h.strip().lower() for h in header]
    for c in choices:
        if c in low:
            return low.index(c)
    raise PointsError(name, f"no {choices[0]} column (looked for {', '.join(choices)}; "
                            f"header: {', '.join(header)})")


def _csv(name: str, f: BinaryIO, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    rows = csv.reader(io.TextIOWrapper(f, encoding="utf-8-sig", newline=""))
    header = next(rows, None)
    if header is None:
        raise PointsError(name, "empty file (expected a header with lon and lat)")
    ix, iy = _column(name, header, _LON), _column(name, header, _LAT)
    lon, lat = [], []
    for line, row in enumerate(rows, start=2):
        try:
            lon.append(float(row[ix]))
            lat.append(float(row[iy]))
        except (ValueError, IndexError) as e:
            raise PointsError(name, f"line {line}: not a lon/lat number pair: {row!r}") from e
        if len(lon) == batch:
            yield np.array(lon), np.array(lat)
            lon, lat = [], []
    if lon:
        yield np.array(lon), np.array(lat)


def _geojson(name: str, f: BinaryIO, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    try:
        doc = json.load(f)
        feats = doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        xy = np.array([ft["geometry"]["coordinates"][:2] for ft in feats], dtype=np.float64)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise PointsError(name, f"not a GeoJSON FeatureCollection of Points: {e}") from e
    for i in range(0, len(xy), batch):
        yield xy[i:i + batch, 0].copy(), xy[i:i + batch, 1].copy()


def _parquet(name: str, f: BinaryIO, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    import pyarrow.parquet as pq
    import shapely

    try:
        pf = pq.ParquetFile(f)
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        raise PointsError(name, f"not a Parquet file: {e}") from e
    names = pf.schema_arrow.names
    geo = json.loads((pf.schema_arrow.metadata or {}).get(b"geo", b"{}"))
    gcol = geo.get("primary_column")
    if gcol is None:
        cols = [names[_column(name, names, _LON)], names[_column(name, names, _LAT)]]
    for rb in pf.iter_batches(batch_size=batch, columns=[gcol] if gcol else cols):
        if gcol is None:
            yield (rb.column(0).to_numpy(zero_copy_only=False).astype(np.float64),
                   rb.column(1).to_numpy(zero_copy_only=False).astype(np.float64))
            continue
        pts = shapely.from_wkb(rb.column(0).to_numpy(zero_copy_only=False))
        if not (shapely.get_type_id(pts) == 0).all():
            raise PointsError(name, f"geometry column {gcol!r} holds non-Point geometries")
        yield shapely.get_x(pts), shapely.get_y(pts)


# --- writing -----------------------------------------------------------------------------------


class SampleWriter:
    """Writes (lon, lat, vectors) batches as CSV, JSON lines or Parquet to a binary stream."""

    def __init__(self, out: BinaryIO, fmt: str, bands: int) -> None:
        if fmt not in OUT_FORMATS:
            raise ValueError(f"unknown output format {fmt!r} (one of {OUT_FORMATS})")
        self.out, self.fmt, self.bands = out, fmt, bands
        self._pq: Any = None  # a pyarrow ParquetWriter, opened on the first batch
        if fmt == "csv":
            self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
            self._text.write(",".join(["lon", "lat", *(f"e{i}" for i in range(bands))]) + "\n")

    def write(self, lon: np.ndarray, lat: np.ndarray, values: np.ndarray) -> None:
        have = ~np.isnan(values[:, 0])
        if self.fmt == "parquet":
            return self._parquet(lon, lat, values, have)
        lines = []
        for x, y, v, ok in zip(lon.tolist(), lat.tolist(), values, have.tolist()):
            vec = [float(f"{f:.7g}") for f in v.tolist()] if ok else None
            if self.fmt == "csv":
                cells = [f"{f:.7g}" for f in v.tolist()] if ok else [""] * self.bands
                lines.append(",".join([repr(x), repr(y), *cells]))
            else:
                lines.append(json.dumps({"lon": x, "lat": y, "vector": vec}))
        data = "\n".join(lines) + "\n"
        (self._text.write(data) if self.fmt == "csv" else self.out.write(data.encode()))

    def _parquet(self, lon, lat, values, have) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(values[have].ravel(), pa.float32())
        offsets = np.zeros(len(lon) + 1, np.int32)
        offsets[1:] = np.cumsum(np.where(have, self.bands, 0))
        emb = pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~have))
        table = pa.table({"lon": lon, "lat": lat, "embedding": emb})
        if self._pq is None:
            self._pq = pq.ParquetWriter(self.out, table.schema)
        self._pq.write_table(table)

    def close(self) -> None:
        if self._pq is not None:
            self._pq.close()
        if self.fmt == "csv":
            self._text.flush()
            self._text.detach()
        self.out.flush()


def sample_file(points: str, out: BinaryIO, year: int, source: Source, *,
                in_fmt: str | None = None, out_fmt: str = "csv", batch: int = BATCH,
                allow_incomplete: bool = False) -> int:
    """Sample every point of a point file and stream the vectors out, in bounded memory.

    At most ``batch`` points and their vectors are in memory at a time (GeoJSON input is
    parsed whole, as JSON must be).

    Parameters
    ----------
    points : str
        A CSV (``lon``/``lat`` columns or their aliases), GeoJSON, GeoParquet or Parquet
        file, or ``-`` for standard input.
    out : BinaryIO
        Where the vectors go (a binary stream).
    year : int
        The year whose stores to read.
    source : Source
        As for ``sample``.
    in_fmt : {"csv", "geojson", "parquet"}, optional
        The input format; default from the file's suffix (CSV for ``-``).
    out_fmt : {"csv", "jsonl", "parquet"}, default "csv"
        CSV (``lon,lat,e0…``, empty cells for no data), JSON lines (``null`` vector for no
        data) or Parquet (``embedding`` list<float32>, null for no data).
    batch : int, default 65536
        Points per batch.
    allow_incomplete : bool, default False
        Read stores whose build did not complete.

    Returns
    -------
    int
        The number of points sampled (and rows written).

    Raises
    ------
    PointsError
        The point file is missing or malformed (its name and the problem).
    StoreError
        As for ``sample``.
    ModuleNotFoundError
        Parquet input or output without pyarrow (GeoParquet also needs shapely).
    """
    from geotessera.read.reader import Reader

    reader = Reader(source, year, allow_incomplete=allow_incomplete)
    writer, n = None, 0
    for lon, lat in read_points(points, in_fmt, batch):
        values = reader.sample(np.column_stack([lon, lat]))
        writer = writer or SampleWriter(out, out_fmt, values.shape[1])
        writer.write(lon, lat, values)
        n += len(lon)
    if writer is None:  # no points: still a valid, empty output
        writer = SampleWriter(out, out_fmt, reader.bands())
    writer.close()
    return n
