"""``h3`` and ``h3-plot``: an equal-area H3 summary of a year's stores, and a map of it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import click

from ..parallel import default_workers, process_pool
from ._output import Output, common


@contextlib.contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[Executor]:
    """A spawn process pool of ``workers``, or the executor of a dask.distributed cluster."""
    if scheduler is None:
        with process_pool(workers) as pool:
            yield pool
        return
    try:
        from distributed import Client
    except ImportError as e:
        raise click.UsageError("--scheduler needs dask.distributed: pip install "
                               "'.[distributed]' (in the geotessera checkout)") from e
    client = Client(scheduler)
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


@click.command("h3")
@click.argument("source")
@click.option("--year", type=int, required=True)
@click.option("--res", type=click.IntRange(0, 15), required=True, help="H3 resolution.")
@click.option("--level", type=click.IntRange(0), default=None,
              help="Store level to summarise (0 = finest) [default: the coarsest whose pixel "
                   "edge is at most a tenth of the mean H3 edge at --res].")
@click.option("-o", "--output", required=True, metavar="OUT.zarr", help="Summary store.")
@click.option("-j", "--workers", type=click.IntRange(1, 256), default=None,
              help="Worker processes [default: usable CPUs].")
@click.option("--scheduler", default=None, envvar="DASK_SCHEDULER_ADDRESS", metavar="ADDRESS",
              help="Run the tasks on this dask.distributed scheduler instead of local "
                   "processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing H3 summary at OUT.")
@click.option("--allow-incomplete", is_flag=True, help="Read stores whose build is unfinished.")
@common
def h3_cmd(out: Output, source: str, year: int, res: int, level: int | None, output: str,
           workers: int | None, scheduler: str | None, overwrite: bool,
           allow_incomplete: bool) -> None:
    """Summarise the YEAR stores of SOURCE (a stores directory, store, STAC catalog or URL)
    on H3 cells at resolution RES: area-weighted mean vector, valid area, valid fraction and
    pixel count per cell, written as Zarr v3 (xdggs convention)."""
    from geotessera.store.h3 import check_output, write_summary
    from ..dggs.summary import summarise

    check_output(output, overwrite)
    workers = workers or default_workers()
    t0 = time.perf_counter()
    with out.progress() as update, _executor(workers, scheduler) as pool:
        summary = summarise(source, year, res, pool, level=level, max_in_flight=workers + 1,
                            allow_incomplete=allow_incomplete,
                            on_progress=update)
    write_summary(summary, output, overwrite=overwrite)
    seconds = time.perf_counter() - t0
    doc = _summary_doc(summary, output, seconds)
    doc.update(workers=None if scheduler else workers, scheduler=scheduler)
    out.result(doc, lambda: click.echo(
        f"wrote {doc['cells']} H3 cells (resolution {res}, level {doc['level']}) from "
        f"{len(doc['stores'])} store(s), {doc['pixels']} pixels, "
        f"{doc['valid_area_m2'] / 1e6:.1f} km² valid, to {output} in {seconds:.1f} s"))


def _summary_doc(summary, output: str, seconds: float) -> dict[str, Any]:
    p = summary.provenance
    return {"status": "ok", "output": str(output), "year": summary.year, "res": summary.res,
            "level": p["level"], "stores": p["stores"], "cells": int(summary.cells.size),
            "pixels": int(summary.pixel_count.sum()),
            "valid_area_m2": float(summary.valid_area.sum()), "seconds": round(seconds, 3),
            "cells_per_second": round(summary.cells.size / seconds, 1) if seconds else None}


def _parse_centre(ctx, param, value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        lon, lat = (float(v) for v in value.split(","))
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not LON,LAT") from e
    if not (-180 <= lon <= 360 and -90 <= lat <= 90):
        raise click.BadParameter(f"{value!r}: longitude or latitude out of range")
    return lon, lat


@click.command("h3-plot")
@click.argument("summary")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="MAP.png")
@click.option("--band", type=click.IntRange(0), default=None,
              help="Colour by this band [default: three principal components as RGB].")
@click.option("--projection", type=click.Choice(["globe", "equal-area"]), default="globe",
              show_default=True, help="Orthographic globe or Equal Earth world map.")
@click.option("--extent", type=click.Choice(["world", "data"]), default="world",
              show_default=True, help="The whole globe/map, or zoomed to the cells.")
@click.option("--centre", callback=_parse_centre, default=None, metavar="LON,LAT",
              help="View centre of the globe (centre longitude of the map) [default: the "
                   "cells' centroid; longitude 0 for the map].")
@click.option("--width", type=click.IntRange(200, 8000), default=1600, show_default=True,
              help="Image width in pixels.")
@common
def h3_plot_cmd(out: Output, summary: str, output: Path, band: int | None, projection: str,
                extent: str, centre: tuple[float, float] | None, width: int) -> None:
    """Draw the H3 SUMMARY store's cells as hexagons on a globe or world map (PNG)."""
    from ..dggs.plot import plot_summary
    from geotessera.store.h3 import read_summary

    s = read_summary(summary)
    if band is not None and band >= s.bands:
        raise click.BadParameter(f"{summary} has {s.bands} bands (0..{s.bands - 1})",
                                 param_hint="--band")
    r = plot_summary(s, output, band=band, projection=projection, extent=extent,
                     centre=centre, width_px=width)
    colour = {k: v for k, v in r.colour.items() if k not in ("components", "mean")}
    doc = {"status": "ok", "summary": summary, "output": r.path, "projection": r.projection,
           "definition": r.definition, "centre": list(r.centre), "limits": list(r.limits),
           "axes_px": list(r.axes_px), "size_px": list(r.size_px), "cells": r.cells,
           "cells_drawn": r.cells_drawn, "colour": colour}
    out.result(doc, lambda: click.echo(
        f"drew {r.cells_drawn} of {r.cells} cells ({projection}, {extent}) to {r.path}"))
