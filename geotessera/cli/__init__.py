"""``geotessera-registry``: a thin click CLI over the geotessera library."""

from __future__ import annotations

import click

from geotessera import __version__
from geotessera.cli.build import registry_schema_cmd, scan_cmd, zarr_build_cmd
from geotessera.cli.demo import demo_data_cmd
from geotessera.cli.h3 import h3_cmd, h3_plot_cmd
from geotessera.cli.preview import quicklook_cmd, rgb_cmd
from geotessera.cli.serve import serve_cmd, tiles_cmd
from geotessera.cli.stac import info_cmd, sample_cmd, stac_cmd
from geotessera.cli.verify import verify_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geotessera-registry")
def cli() -> None:
    """Build per-UTM-zone Zarr v3 stores from a GeoTessera embedding archive."""


for _cmd in (demo_data_cmd, scan_cmd, zarr_build_cmd, registry_schema_cmd, verify_cmd,
             rgb_cmd, quicklook_cmd, stac_cmd, info_cmd, sample_cmd, h3_cmd, h3_plot_cmd, serve_cmd, tiles_cmd):
    cli.add_command(_cmd)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geotessera-registry")
