"""``geotessera-registry``: a thin click CLI over the geotessera library.

Command modules are imported only when their command runs (or its ``--help`` is asked for),
so ``geotessera-registry --help`` does not pay for zarr, numpy or rich.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import click

from geotessera.cli._output import fail_missing, missing_dependency, shared_options

#: name → (module, attribute, the one-line summary the group's --help lists; it becomes the
#: command's ``short_help``, so both always agree).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo-data": ("demo", "demo_data_cmd", "Write a small synthetic archive in the real layout."),
    "scan": ("build", "scan_cmd", "Read the archive's file headers into the registry."),
    "zarr-build": ("build", "zarr_build_cmd", "Scan, build the zone stores, preview, catalog."),
    "registry-schema": ("build", "registry_schema_cmd", "Print the registry's column schema."),
    "verify": ("verify", "verify_cmd", "Compare a built store with its source tiles."),
    "rgb": ("preview", "rgb_cmd", "The preview pass alone: rgba and overview levels."),
    "quicklook": ("preview", "quicklook_cmd", "Write one level's rgba as a PNG."),
    "mosaic": ("preview", "mosaic_cmd", "Draw a year's stores in one lon/lat map (PNG)."),
    "stac": ("stac", "stac_cmd", "Regenerate (and validate) the STAC catalog."),
    "info": ("stac", "info_cmd", "Describe one store: grid, tiles, coverage, levels, size."),
    "sample": ("stac", "sample_cmd", "Print the embedding vector at WGS 84 points."),
    "serve": ("serve", "serve_cmd", "Serve a map page, Web Mercator tiles and the stores."),
    "tiles": ("serve", "tiles_cmd", "Write a year's preview pyramid as one PMTiles archive."),
    "h3": ("h3", "h3_cmd", "Summarise a year's stores on H3 cells (area-weighted means)."),
    "h3-plot": ("h3", "h3_plot_cmd", "Draw an H3 summary as hexagons on a globe or a map."),
}

#: One worked example per command, shown at the end of its --help (paths of `make demo`).
EXAMPLES: dict[str, str] = {
    "demo-data": "geotessera-registry demo-data demo/archive",
    "scan": "geotessera-registry scan demo/archive --json",
    "zarr-build": "geotessera-registry zarr-build demo/archive -o demo/stores -j 2\n"
                  "geotessera-registry zarr-build demo/archive -o demo/stores --resume",
    "registry-schema": "geotessera-registry registry-schema > docs/registry.md",
    "verify": "geotessera-registry verify demo/stores/utm31_2024.zarr --base-dir demo/archive",
    "rgb": "geotessera-registry rgb demo/stores --mode pca",
    "quicklook": "geotessera-registry quicklook demo/stores/utm31_2024.zarr -o utm31.png",
    "mosaic": "geotessera-registry mosaic demo/stores --year 2024 -o demo/mosaic_2024.png",
    "stac": "geotessera-registry stac demo/stores --validate\n"
            "geotessera-registry stac demo/stores --href-base https://example.org/stores",
    "info": "geotessera-registry info demo/stores/utm31_2024.zarr --json",
    "sample": "geotessera-registry sample demo/stores --year 2024 --lon 0.15 --lat 0.15",
    "serve": "geotessera-registry serve demo/stores --port 8000",
    "tiles": "geotessera-registry tiles demo/stores --year 2024 -o preview_2024.pmtiles",
    "h3": "geotessera-registry h3 demo/stores --year 2024 --res 6 -o demo/h3_2024.zarr",
    "h3-plot": "geotessera-registry h3-plot demo/h3_2024.zarr -o demo/h3_2024.png",
}


def _decorate(name: str, cmd: click.Command) -> click.Command:
    cmd.short_help = COMMANDS[name][2]
    if name in EXAMPLES and not cmd.epilog:
        lines = "\n".join(f"  $ {line}" for line in EXAMPLES[name].splitlines())
        cmd.epilog = f"\b\nExample:\n{lines}"
    return cmd


def _unavailable(name: str, line: str) -> click.Command:
    """A stand-in for a command whose module needs an extra that is not installed: any
    invocation, ``--help`` included, prints ``line`` (the ``pip install`` to run) and exits 1."""
    return click.Command(
        name, callback=lambda **_: fail_missing(line), add_help_option=False,
        short_help=COMMANDS[name][2], help=f"Unavailable: {line}.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


def _print_version(ctx: click.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        import geotessera

        click.echo(f"geotessera-registry, version {geotessera.__version__}")
        ctx.exit()


class LazyGroup(click.Group):
    """A group whose commands in ``COMMANDS`` are imported on first use; its own --help
    lists them without importing any. Commands added with ``add_command`` work as usual."""

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return [*COMMANDS, *(n for n in sorted(self.commands) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, attr, _ = COMMANDS[cmd_name]
        try:
            cmd = getattr(import_module(f"geotessera.cli.{module}"), attr)
        except ModuleNotFoundError as e:  # an extra is not installed
            if (line := missing_dependency(e, cmd_name)) is None:
                raise
            return _unavailable(cmd_name, line)
        return _decorate(cmd_name, cmd)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, _, short) in COMMANDS.items()]
        rows += [(name, cmd.get_short_help_str(formatter.width - 25))
                 for name, cmd in sorted(self.commands.items()) if name not in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="\b\nExample:\n  $ geotessera-registry -q --json info "
                    "demo/stores/utm31_2024.zarr\n\n"
                    "Shell completion: see docs/cli.md (eval \"$(_GEOTESSERA_REGISTRY_COMPLETE="
                    "bash_source geotessera-registry)\").")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=lambda ctx, _p, value: _print_version(ctx, value),
              help="Show the version and exit.")
@shared_options
@click.pass_context
def cli(ctx: click.Context, quiet: bool, verbose: int, as_json: bool) -> None:
    """Build per-UTM-zone Zarr v3 stores from a GeoTessera embedding archive.

    -q, -v and --json may come before the command or after it."""
    ctx.obj = {"quiet": quiet, "verbose": verbose, "as_json": as_json}


def main(args: Any = None) -> None:
    """Console-script entry point."""
    cli(args, prog_name="geotessera-registry")
