"""``scan`` and ``zarr-build``: registry and zone stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from geotessera.build.plan import parse_zones
from geotessera.build.run import BuildReport
from geotessera.errors import CodecError, LocationError, SelectionError
from geotessera.cluster import open_executor
from geotessera.archive.registry import REGISTRY_FILENAME, schema_document, schema_markdown
from geotessera.archive.scan import ScanResult
from geotessera.types import N_BANDS, StoreLayout, check_shard_memory
from geotessera.pipeline import PreviewOptions, default_registry, scan, zarr_build
from geotessera.cli._options import executor_options
from geotessera.store.location import Location
from geotessera.cli._output import Output, common, err, location, render_table, storage_option
from geotessera.cli.preview import preview_doc, print_preview, rgb_options
from geotessera.cli.stac import catalog_doc, print_catalog

_DEFAULT = StoreLayout()


def _registry_path(base: str, registry: Path | None) -> Path:
    try:
        return default_registry(base, registry)
    except LocationError as e:
        raise click.UsageError(f"{e.path}: a remote BASE_DIR needs --registry PATH "
                               "(a local registry file)") from e


class ArchiveRoot(click.ParamType):
    """BASE_DIR: an existing local directory, or an ``s3://``/``http(s)://`` URL."""

    name = "base_dir"

    def convert(self, value, param, ctx):
        text = str(value)
        try:
            loc = Location.parse(text)
        except LocationError as e:
            self.fail(str(e), param, ctx)
        if loc.is_local and not loc.path.is_dir():
            self.fail(f"directory {text!r} does not exist", param, ctx)
        return str(loc.path) if loc.is_local and "://" in text else text


def _report_ignored(out: Output, result: ScanResult, base: Path) -> None:
    if result.ignored:
        err.print(f"ignored {len(result.ignored)} unparsable name(s) under {base}"
                  + ("" if out.verbose else " (-v lists them)"), highlight=False)
        if out.verbose:
            for name in result.ignored:
                err.print(f"  ignored: {name}", markup=False, highlight=False)


def _scan_doc(result: ScanResult, path: Path) -> dict[str, Any]:
    return {
        "registry": str(path), "rows": len(result.records), "reread": result.reread,
        "reused": result.reused, "ignored": list(result.ignored),
        "problems": [{"path": p, "problem": m} for p, m in result.problems],
    }


base_arg = click.argument("base_dir", type=ArchiveRoot())
registry_opt = click.option(
    "--registry", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help=f"Registry file [default: BASE_DIR/{REGISTRY_FILENAME}].")
year_opt = click.option("--year", "years", type=int, multiple=True,
                        help="Year to include (repeatable) [default: all].")
bands_opt = click.option("--bands", type=click.IntRange(1, 4096), default=N_BANDS,
                         show_default=True, help="Expected embedding dimensions.")


@click.command("scan")
@base_arg
@registry_opt
@year_opt
@bands_opt
@common
def scan_cmd(out: Output, base_dir: str, registry: Path | None, years, bands: int) -> None:
    """Scan BASE_DIR (a directory, s3:// or https:// URL) into the registry (headers only;
    incremental)."""
    path = _registry_path(base_dir, registry)
    with out.progress() as update:
        result = scan(base_dir, path, years=years, expected_bands=bands, on_progress=update)
    _report_ignored(out, result, base_dir)
    doc = _scan_doc(result, path)

    def human() -> None:
        click.echo(f"{doc['rows']} tile-year rows in {doc['registry']} "
                   f"({doc['reread']} read, {doc['reused']} unchanged, "
                   f"{len(doc['problems'])} with problems)")
        for p in doc["problems"]:
            click.echo(f"  problem: {p['path']}: {p['problem']}")

    out.result({"status": "ok", **doc}, human)


def _layout(shard_px: int, chunk_px: int, scales_chunk_px: int, zstd_level: int,
            pixel_major: bool, codec: str | None = None, bands: int = N_BANDS) -> StoreLayout:
    try:
        check_shard_memory(shard_px, bands)
        layout = StoreLayout(shard_px, chunk_px, scales_chunk_px, zstd_level, pixel_major)
    except ValueError as e:
        raise click.BadParameter(str(e)) from e
    try:
        return layout if codec is None else layout.with_codec(codec)
    except CodecError as e:
        raise click.BadParameter(str(e), param_hint="--codec") from e


@click.command("zarr-build")
@base_arg
@click.option("-o", "--output-dir", required=True, metavar="DIR|URL",
              help="Where the stores go: a directory, file://… or s3://bucket/prefix.")
@storage_option
@year_opt
@click.option("--zones", default=None, help="Zones: 30, 30,31 or 29-34 [default: all].")
@executor_options
@click.option("--dry-run", is_flag=True,
              help="Print the plan per zone and year; write no store (the scan still "
                   "updates the registry).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted build from its journal; finished shards are kept.")
@click.option("--skip-bad", is_flag=True,
              help="Build without tiles that have problems (recorded in the store) instead of "
                   "refusing to start.")
@click.option("--no-rgb", is_flag=True, help="Skip the preview pass (rgba and overviews).")
@click.option("--rgb-only", is_flag=True,
              help="Only run the preview pass on the stores already in --output-dir.")
@click.option("--no-stac", is_flag=True, help="Skip regenerating the STAC catalog.")
@rgb_options
@registry_opt
@bands_opt
@click.option("--shard-px", type=int, default=_DEFAULT.shard_px, show_default=True,
              help="Shard edge in pixels (one shard = one write task).")
@click.option("--chunk-px", type=int, default=_DEFAULT.chunk_px, show_default=True,
              help="Inner chunk edge of embeddings.")
@click.option("--scales-chunk-px", type=int, default=_DEFAULT.scales_chunk_px,
              show_default=True, help="Chunk edge of scales (not sharded; chunks nest in "
                                      "shard footprints).")
@click.option("--zstd-level", type=int, default=_DEFAULT.zstd_level, show_default=True,
              help="zstd compression level of scales and rgba (the embeddings are zstd "
                   "only with --codec zstd:N, whose N then sets every array's level); 0 is "
                   "zstd's default (3), not off.")
@click.option("--codec", default=None, metavar="none|zstd:N|blosc-zstd:N[:SHUFFLE]",
              help="Compression of the embeddings: blosc-zstd:N[:bitshuffle|shuffle|"
                   "noshuffle] (N in 1..9, default bitshuffle), scales and rgba keeping zstd "
                   "at --zstd-level; or none, or zstd at level N (0..22), of every data array "
                   "(overrides --zstd-level; zstd:3 is the layout before blosc became the "
                   f"default) [default: {_DEFAULT.codec}].")
@click.option("--pixel-major/--band-major", default=_DEFAULT.pixel_major, show_default=True,
              help="Encode embedding chunks pixel-major (transpose codec) or band-major.")
@common
def zarr_build_cmd(out: Output, base_dir: str, output_dir: str, storage_options: dict[str, str],
                   years, zones: str | None, workers: int | None, scheduler: str | None,
                   retries: int, dry_run: bool, resume: bool, skip_bad: bool,
                   no_rgb: bool, rgb_only: bool, no_stac: bool, registry: Path | None,
                   bands: int, **opts: Any) -> None:
    """Build one Zarr v3 store per UTM zone and year from BASE_DIR, then the preview pass
    (rgba, overviews) and the STAC catalog."""
    rgb_opts = {k: opts.pop(k) for k in ("mode", "rgb_bands", "rgb_seed", "rgb_force")}
    layout = _layout(**opts, bands=bands)
    if rgb_only and (no_rgb or dry_run):
        raise click.UsageError("--rgb-only cannot be combined with --no-rgb or --dry-run")
    try:
        zone_set = parse_zones(zones)
    except SelectionError as e:
        raise click.BadParameter(str(e), param_hint="--zones") from e
    where = location(output_dir, storage_options)
    preview = None if (no_rgb or dry_run) else PreviewOptions(
        rgb_opts["mode"], rgb_opts["rgb_bands"], rgb_opts["rgb_seed"], rgb_opts["rgb_force"])
    if not rgb_only:
        registry = _registry_path(base_dir, registry)
    with out.progress() as update, open_executor(scheduler, workers) as pool:
        report = zarr_build(
            base_dir, where, pool.executor, years=years, zones=zone_set, layout=layout,
            registry=registry, expected_bands=bands, dry_run=dry_run, resume=resume,
            skip_bad=skip_bad, preview=preview, catalog=not (dry_run or no_stac),
            build=not rgb_only, max_in_flight=pool.max_in_flight, retries=retries,
            on_progress=update)
    doc: dict[str, Any] = {"status": "ok", "dry_run": dry_run, "workers": pool.slots,
                           "scheduler": pool.scheduler}
    if report.build is not None:
        _report_ignored(out, report.scan, base_dir)
        doc.update(_build_doc(report.build, report.scan, report.registry))
    if report.preview is not None:
        doc["preview"] = preview_doc(report.preview)
    if report.catalog is not None:
        doc["stac"] = catalog_doc(report.catalog)
    out.result(doc, lambda: _print_build(doc))


def _print_build(doc: dict[str, Any]) -> None:
    if "stores" in doc:
        _print_plans(doc["stores"], doc["dry_run"], doc["skipped_tiles"])
    if "preview" in doc:
        print_preview(doc["preview"])
    if "stac" in doc:
        print_catalog(doc["stac"])


def _build_doc(report: BuildReport, scan: ScanResult, registry: Path) -> dict[str, Any]:
    plans = [dict(p) for p in report.summaries]
    results = {r.name: r for r in report.results}
    for doc in plans:
        r = results.get(doc["store"])
        if r is not None:
            doc.update(path=r.store, version=r.version, rewritten_shards=r.rewritten,
                       shards_written=r.shards, resumed_shards=r.resumed_shards,
                       shards_with_data=r.shards_with_data, valid_pixels=r.valid_pixels,
                       bytes_in=r.bytes_in, seconds=round(r.seconds, 3), retries=r.retries,
                       tiles_without_data=r.tiles_without_data)
            for name in r.tiles_without_data:
                err.print(f"warning: {name}: scales are NaN or inf at every pixel the tile "
                          f"owns in {doc['store']}", markup=False, highlight=False)
    skipped = [{"path": r.issue[0], "problem": r.issue[1]} for r in report.skipped if r.issue]
    return {"stores": plans, "skipped_tiles": skipped, "scan": _scan_doc(scan, registry)}


def _print_plans(plans: list[dict[str, Any]], dry_run: bool, skipped) -> None:
    table = Table(title="zarr-build plan (dry run)" if dry_run else "zarr-build")
    cols = ["store", "EPSG", "tiles", "grid px", "grid km", "shards", "raw MiB"]
    if not dry_run:
        cols += ["written", "seconds"]
    for col in cols:
        table.add_column(col, justify="left" if col == "store" else "right")
    for p in plans:
        row = [p["store"], str(p["epsg"]), str(p["tiles"]), f"{p['height_px']}x{p['width_px']}",
               f"{p['height_km']:.1f}x{p['width_km']:.1f}",
               f"{p['shards_nonempty']} of {p['shards_total']}",
               f"{p['bytes_to_write'] / 2**20:.1f}"]
        if not dry_run:
            row += [str(p.get("shards_written", "-")), f"{p.get('seconds', 0):.1f}"]
        table.add_row(*row)
    click.echo(_render(table))
    for s in skipped:
        click.echo(f"skipped: {s['path']}: {s['problem']}")


def _render(table: Table) -> str:
    return render_table(table)  # boxed on a terminal, plain columns on a pipe


@click.command("registry-schema")
@common
def registry_schema_cmd(out: Output) -> None:
    """Print the registry schema as Markdown (the text of docs/registry.md); --json prints
    the schema document itself."""
    out.result(schema_document(), lambda: click.echo(schema_markdown(), nl=False))
