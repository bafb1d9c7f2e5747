"""``demo-data``: write a synthetic archive in the real layout."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.cli._output import Output, common

_D = DemoSpec()


@click.command("demo-data")
@click.argument("target", metavar="OUT", type=click.Path(file_okay=False, path_type=Path))
@click.option("--lon-min", type=float, default=_D.lon_min, show_default=True)
@click.option("--lon-max", type=float, default=_D.lon_max, show_default=True)
@click.option("--lat-min", type=float, default=_D.lat_min, show_default=True)
@click.option("--lat-max", type=float, default=_D.lat_max, show_default=True)
@click.option("--year", "years", type=int, multiple=True,
              help=f"Year (repeatable) [default: {', '.join(map(str, _D.years))}].")
@click.option("--pixel-size", type=float, default=_D.pixel_size, show_default=True,
              help="Metres; the real archive is 10.")
@click.option("--bands", type=int, default=_D.bands, show_default=True)
@click.option("--seed", type=int, default=_D.seed, show_default=True)
@click.option("--missing-fraction", type=float, default=_D.missing_fraction, show_default=True,
              help="Share of tiles left out of every year after the first.")
@common
def demo_data_cmd(out: Output, **opts) -> None:
    """Write a synthetic GeoTessera archive to OUT (two UTM zones, both hemispheres)."""
    target = opts.pop("target")
    opts["years"] = tuple(opts["years"]) or _D.years
    try:
        spec = DemoSpec(**opts)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    with out.progress() as update:
        summary = write_demo_archive(target, spec, on_progress=update)
    doc = {"status": "ok", **asdict(summary)}
    out.result(doc, lambda: click.echo(
        f"wrote {summary.files} tile-years ({summary.tiles} tiles, zones "
        f"{', '.join(map(str, summary.zones))}, years {', '.join(map(str, summary.years))}, "
        f"{summary.bytes / 1e6:.1f} MB) to {summary.base}"))
