"""``rgb``, ``quicklook`` and ``mosaic``: colour previews, overview pyramids, PNG quicklooks
of one store and the map of a year's stores.

``run_preview`` and ``rgb_options`` are shared with ``zarr-build`` (``--no-rgb``/``--rgb-only``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import click

from geotessera.build.plan import parse_zones
from geotessera.errors import SelectionError
from geotessera.cluster import open_executor
from geotessera.pipeline import PreviewOptions, zarr_build
from geotessera.preview.run import PreviewReport
from geotessera.preview.stretch import MODES
from geotessera.preview.quicklook import DEFAULT_SIZE, write_quicklook
from geotessera.cli._options import executor_options
from geotessera.cli._output import Output, common, location, storage_option


def _parse_bands(ctx, param, value: str) -> tuple[int, ...]:
    try:
        bands = tuple(int(v) for v in value.split(","))
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a list like 0,1,2") from e
    if len(bands) != 3 or min(bands) < 0:
        raise click.BadParameter(f"{value!r}: need three band numbers >= 0")
    return bands


def rgb_options(fn: Callable) -> Callable:
    """``--mode``, ``--rgb-bands``, ``--rgb-seed`` and ``--rgb-force`` (shared with zarr-build)."""
    for option in reversed([
        click.option("--mode", type=click.Choice(MODES), default="bands", show_default=True,
                     help="Colour from three bands, or from the first three principal "
                          "components of all bands."),
        click.option("--rgb-bands", default="0,1,2", show_default=True, callback=_parse_bands,
                     help="Bands shown as red, green, blue (mode bands)."),
        click.option("--rgb-seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Seed of the stretch sample."),
        click.option("--rgb-force", is_flag=True,
                     help="Redo stores whose preview is complete with the same stretch."),
    ]):
        fn = option(fn)
    return fn


def preview_doc(report: PreviewReport) -> dict[str, Any]:
    """The JSON-able summary of a preview pass (stretches by year, levels per store)."""
    return {
        "stretches": {str(y): s.to_attrs() for y, s in report.stretches.items()},
        "sample_seconds": {str(y): round(t, 3) for y, t in report.sample_seconds.items()},
        "stores": [{
            "store": r.store, "zone": r.zone, "year": r.year, "up_to_date": r.up_to_date,
            "seconds": round(r.seconds, 3),
            "levels": [{"level": lv.level, "shape": list(lv.shape), "shards": lv.shards,
                        "valid_pixels": lv.valid_pixels, "seconds": round(lv.seconds, 3),
                        "in_build": lv.in_build}
                       for lv in r.levels],
        } for r in report.stores],
    }


def print_preview(doc: dict[str, Any]) -> None:
    """Human summary of ``preview_doc``: one line per year and per store."""
    for year, s in doc["stretches"].items():
        lo = ", ".join(f"{v:.3g}" for v in s["min"])
        hi = ", ".join(f"{v:.3g}" for v in s["max"])
        click.echo(f"{year}: {s['mode']} stretch min [{lo}] max [{hi}] from "
                   f"{s['sample_pixels']} pixels of {s['sample_shards']} "
                   f"{'tiles' if s.get('sample_source') == 'tiles' else 'shards'}")
    for r in doc["stores"]:
        name = Path(r["store"]).name
        if r["up_to_date"]:
            click.echo(f"{name}: up to date")
            continue
        levels = " ".join(f"L{lv['level']}:" + ("in build" if lv["in_build"] else
                                                 f"{lv['seconds']:.1f}s") for lv in r["levels"])
        click.echo(f"{name}: {len(r['levels'])} levels in {r['seconds']:.1f} s ({levels})")


def _zones(text: str | None) -> frozenset[int] | None:
    try:
        return parse_zones(text)
    except SelectionError as e:
        raise click.BadParameter(str(e), param_hint="--zones") from e


@click.command("rgb")
@click.argument("output_dir", metavar="OUTPUT_DIR|URL")
@storage_option
@click.option("--year", "years", type=int, multiple=True,
              help="Year to preview (repeatable) [default: all].")
@click.option("--zones", default=None, help="Zones: 30, 30,31 or 29-34 [default: all].")
@executor_options
@rgb_options
@common
def rgb_cmd(out: Output, output_dir: str, storage_options: dict[str, str], years,
            zones: str | None, workers: int | None, scheduler: str | None, retries: int,
            **opts: Any) -> None:
    """Colour preview (L0/rgba) and overview levels for the stores in OUTPUT_DIR.

    One stretch per year, fitted across all of that year's stores.
    """
    zone_set = _zones(zones)
    where = location(output_dir, storage_options)
    if where.is_local and not where.path.is_dir():
        raise click.BadParameter(f"{output_dir!r} is not a directory", param_hint="OUTPUT_DIR")
    opts = PreviewOptions(opts["mode"], opts["rgb_bands"], opts["rgb_seed"], opts["rgb_force"])
    with out.progress() as update, open_executor(scheduler, workers) as pool:
        report = zarr_build(Path(), where, pool.executor, years=years, zones=zone_set,
                            preview=opts, catalog=False, build=False,
                            max_in_flight=pool.max_in_flight, retries=retries,
                            on_progress=update).preview
    doc = preview_doc(report)
    out.result({"status": "ok", **doc}, lambda: print_preview(doc))


@click.command("quicklook")
@click.argument("store", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PNG file to write.")
@click.option("--level", type=click.IntRange(0), default=None,
              help="Level to draw [default: the finest that fits --size].")
@click.option("--size", type=click.IntRange(1), default=DEFAULT_SIZE, show_default=True,
              help="Longest side in pixels that the chosen level must fit.")
@common
def quicklook_cmd(out: Output, store: Path, output: Path, level: int | None, size: int) -> None:
    """Write a PNG of one level's RGBA preview of STORE."""
    res = write_quicklook(store, output, level=level, size=size)
    doc = {"status": "ok", "store": str(store), "output": str(res.path), "level": res.level,
           "height": res.shape[0], "width": res.shape[1], "pixel_size": res.pixel_size,
           "crop": [res.window.row0, res.window.row1, res.window.col0, res.window.col1]}
    out.result(doc, lambda: click.echo(
        f"{res.path}: L{res.level}, {res.shape[1]}x{res.shape[0]} px at {res.pixel_size:g} m"))


@click.command("mosaic")
@click.argument("source", metavar="SOURCE")
@click.option("--year", type=int, required=True, help="Year whose stores to draw.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="MAP.png", help="PNG file to write.")
@click.option("--width", type=click.IntRange(400, 8000), default=1200, show_default=True,
              help="Image width in pixels; the height follows the data's extent.")
@common
def mosaic_cmd(out: Output, source: str, year: int, output: Path, width: int) -> None:
    """Draw every store of YEAR in SOURCE (a stores directory, a store or a STAC catalog) in
    one WGS 84 longitude/latitude map, cropped to the data, with a colour legend, a graticule
    and a scale bar (PNG; needs matplotlib, the plot extra)."""
    from geotessera.maps import write_year_mosaic

    r = write_year_mosaic(source, year, output, width_px=width)
    doc = {"status": "ok", "source": source, "output": r.path, "year": r.year,
           "zones": list(r.zones), "levels": {str(z): lv for z, lv in r.levels.items()},
           "width": r.size_px[0], "height": r.size_px[1], "map_px": list(r.map_px),
           "bounds": list(r.bounds), "scale_km": r.scale_km, "legend": list(r.legend)}
    w, s, e, n = r.bounds
    out.result(doc, lambda: click.echo(
        f"{r.path}: {r.size_px[0]}x{r.size_px[1]} px, {r.year}, zones "
        f"{', '.join(map(str, r.zones))} ({', '.join(r.levels.values())}); lon {w:.3f}..{e:.3f}, "
        f"lat {s:.3f}..{n:.3f}"))
