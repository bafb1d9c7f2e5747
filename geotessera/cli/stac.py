"""``stac``, ``info`` and ``sample``: find, describe and read the zone stores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from geotessera.cli._output import Output, common, location, storage_option

stores_dir_arg = click.argument("stores_dir", metavar="STORES_DIR|URL")


@click.command("stac")
@stores_dir_arg
@click.option("-o", "--output", default=None, metavar="DIR|URL",
              help="Catalog directory or s3:// prefix [default: STORES_DIR/stac].")
@click.option("--href-base", default=None, metavar="URL",
              help="Where STORES_DIR is published (https://… or s3://…): asset hrefs become "
                   "absolute [default: relative hrefs].")
@click.option("--validate", is_flag=True,
              help="Validate every catalog object offline (core + extension schemas); the "
                   "catalog must be on a local disk.")
@click.option("--license", "license_", default="CC-BY-4.0", show_default=True, metavar="SPDX",
              help="Licence of the collections (an SPDX id, or 'other'); the default is the "
                   "TESSERA embeddings' own, CC BY 4.0.")
@storage_option
@common
def stac_cmd(out: Output, stores_dir: str, output: str | None, href_base: str | None,
             validate: bool, license_: str, storage_options: dict[str, str]) -> None:
    """Regenerate the STAC catalog of STORES_DIR from the stores' metadata."""
    from geotessera.catalog.stac import write_catalog
    from geotessera.catalog.validate import validate_catalog

    if href_base is not None and "://" not in href_base:
        raise click.BadParameter(f"{href_base!r} is not a URL", param_hint="--href-base")
    stores = location(stores_dir, storage_options)
    if stores.is_local and not stores.path.is_dir():
        raise click.BadParameter(f"{stores_dir}: no such directory", param_hint="STORES_DIR")
    target = None if output is None else location(output, storage_options)
    if validate and not (target or stores).is_local:
        raise click.UsageError("--validate needs a local catalog: add -o DIR")
    report = write_catalog(stores, target, href_base, license=license_)
    checked = validate_catalog(report.catalog) if validate else None
    doc = catalog_doc(report, checked)
    out.result({"status": "ok", **doc}, lambda: print_catalog(doc))


def catalog_doc(report, checked: int | None = None) -> dict[str, Any]:
    """JSON summary of a ``write_catalog`` report (shared with zarr-build)."""
    return {"catalog": str(report.catalog), "items": list(report.items),
            "written": [str(p) for p in report.written],
            "unchanged": [str(p) for p in report.unchanged],
            "removed": [str(p) for p in report.removed],
            "skipped": [{"store": s, "reason": r} for s, r in report.skipped],
            "validated": checked}


def print_catalog(doc: dict[str, Any]) -> None:
    click.echo(f"{doc['catalog']}: {len(doc['items'])} item(s); {len(doc['written'])} "
               f"file(s) written, {len(doc['unchanged'])} unchanged, "
               f"{len(doc['removed'])} removed")
    for s in doc["skipped"]:
        click.echo(f"  skipped {s['store']}: {s['reason']}")
    if doc["validated"] is not None:
        click.echo(f"validated {doc['validated']} STAC object(s) offline: all valid")


@click.command("info")
@click.argument("store", metavar="STORE|URL")
@storage_option
@common
def info_cmd(out: Output, store: str, storage_options: dict[str, str]) -> None:
    """Describe one zone STORE (a store, a store home or a URL): grid, tiles, coverage,
    levels, passes, size."""
    from geotessera.catalog.info import describe_store

    doc = describe_store(_existing(location(store, storage_options), store))
    out.result({"status": "ok", **doc}, lambda: click.echo(_info_text(doc)))


def _existing(loc, text: str):
    """A usage error for a local path that does not exist (as click.Path(exists=True))."""
    if loc.is_local and not loc.path.exists():
        raise click.BadParameter(f"{text!r} does not exist", param_hint="STORE")
    return loc


def _info_text(d: dict[str, Any]) -> str:
    cov = d["coverage"]
    bbox = cov["bbox_wgs84"]
    where = ("no valid pixels" if bbox is None else
             f"lon {bbox[0]:.4f}..{bbox[2]:.4f}, lat {bbox[1]:.4f}..{bbox[3]:.4f}")
    how = "of pixels hold data" if cov["method"] == "pixels" else "of chunks hold data"
    lines = [
        f"{Path(d['store']).name}  zone {d['zone']} (EPSG:{d['epsg']}), year {d['year']}, "
        f"{d['bands']} bands",
        f"grid      {d['shape'][0]} x {d['shape'][1]} px at {d['pixel_size']:g} m; UTM bbox "
        + ", ".join(f"{v:.0f}" for v in d["bbox_utm"]),
        f"tiles     {d['tiles']} written, {d['tiles_skipped']} skipped",
        f"coverage  {100 * cov['fraction']:.1f}% {how} (from {cov['level']}); data {where}",
        "levels    " + ", ".join(f"{lv['level']} {lv['shape'][0]}x{lv['shape'][1]} "
                                 f"@{lv['pixel_size']:g} m" for lv in d["levels"]),
        "passes    " + ", ".join(f"{k} {'done' if v else 'NOT done'}"
                                 for k, v in d["passes"].items()),
        f"size      {d['size_bytes'] / 1e6:.1f} MB in {d['objects']} objects",
        f"built     {d['build_time']} by geotessera {d['version']}",
    ]
    return "\n".join(lines)


def _degrees(limit: float):
    """A click callback: every value finite and within ±``limit`` degrees, else exit 2."""

    def check(ctx: click.Context, param: click.Parameter, values: tuple[float, ...]):
        for v in values:
            if not (math.isfinite(v) and -limit <= v <= limit):
                raise click.BadParameter(f"{v!r} is not a finite value in "
                                         f"[-{limit:g}, {limit:g}] degrees", ctx, param)
        return values

    return check


@click.command("sample")
@click.argument("source")
@click.option("--lon", type=float, multiple=True, callback=_degrees(180),
              help="Longitude in [-180, 180] (repeatable).")
@click.option("--lat", type=float, multiple=True, callback=_degrees(90),
              help="Latitude in [-90, 90] (repeatable).")
@click.option("--points", "points_file", default=None, metavar="FILE",
              help="Points from a file, - for standard input: CSV with lon/lat columns, "
                   "GeoJSON or GeoParquet (by suffix; stdin is CSV unless --points-format).")
@click.option("--points-format", type=click.Choice(["csv", "geojson", "parquet"]),
              default=None, help="Format of --points [default: from its suffix, else csv].")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="With --points: where the vectors go (- is standard output).")
@click.option("--to", "out_format", type=click.Choice(["csv", "jsonl", "parquet"]),
              default=None, help="With --points: output format [default: from the -o "
                                 "suffix, else csv].")
@click.option("--batch-size", type=click.IntRange(1), default=65_536, show_default=True,
              help="With --points: points read, sampled and written at a time.")
@click.option("--year", type=int, required=True)
@click.option("--allow-incomplete", is_flag=True, help="Read stores whose build is unfinished.")
@common
def sample_cmd(out: Output, source: str, lon: tuple[float, ...], lat: tuple[float, ...],
               points_file: str | None, points_format: str | None, output: str,
               out_format: str | None, batch_size: int, year: int,
               allow_incomplete: bool) -> None:
    """Print the dequantised vector at each --lon/--lat from SOURCE (a stores directory, a
    store, a STAC catalog or a URL). No data prints as "no data" (null in --json).

    With --points, read any number of points from a file or stdin and stream the vectors,
    one batch at a time, as CSV, JSON lines or Parquet to -o (stdout by default)."""
    if points_file is not None:
        return _sample_stream(out, source, points_file, points_format, output, out_format,
                              batch_size, year, allow_incomplete, bool(lon or lat))
    from geotessera.read.api import sample

    if not lon or len(lon) != len(lat):
        raise click.BadParameter(f"{len(lon)} --lon but {len(lat)} --lat (give pairs, or "
                                 "--points FILE)")
    values = sample(list(zip(lon, lat)), year, source, allow_incomplete=allow_incomplete)
    points = [{"lon": x, "lat": y,
               "vector": None if math.isnan(v[0]) else [float(f) for f in v]}
              for x, y, v in zip(lon, lat, values)]

    def human() -> None:
        for p in points:
            vec = "no data" if p["vector"] is None else " ".join(f"{v:.6g}" for v in p["vector"])
            click.echo(f"{p['lon']:.6f} {p['lat']:.6f}: {vec}")

    out.result({"status": "ok", "year": year, "source": source, "points": points}, human)


def _sample_stream(out: Output, source: str, points_file: str, points_format: str | None,
                   output: str, out_format: str | None, batch_size: int, year: int,
                   allow_incomplete: bool, also_pairs: bool) -> None:
    import sys

    from geotessera.read.points import guess_format, sample_file

    if also_pairs:
        raise click.UsageError("give either --points or --lon/--lat, not both")
    if out.as_json and output == "-":
        raise click.UsageError("--json with --points needs -o FILE (stdout carries the data)")
    fmt = out_format or guess_format(output, "csv")
    with (open(output, "wb") if output != "-" else _stdout_bytes(sys)) as stream:
        n = sample_file(points_file, stream, year, source, in_fmt=points_format, out_fmt=fmt,
                        batch=batch_size, allow_incomplete=allow_incomplete)
    if output != "-":
        doc = {"status": "ok", "year": year, "source": source, "points": n,
               "output": output, "format": fmt}
        out.result(doc, lambda: click.echo(f"{n} point(s) sampled into {output} ({fmt})",
                                           err=True))


def _stdout_bytes(sys):
    from contextlib import nullcontext

    return nullcontext(sys.stdout.buffer)
