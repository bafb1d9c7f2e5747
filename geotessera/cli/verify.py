"""``verify``: compare a store with its source tiles."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from geotessera.errors import VerifyFailed
from geotessera.build.verify import verify_store
from geotessera.cli._options import executor_options
from geotessera.cli._output import Output, common, location, storage_option
from geotessera.cli.stac import _existing
from geotessera.cluster import open_executor


@click.command("verify")
@click.argument("store", metavar="STORE|URL")
@click.option("--base-dir", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The archive the store was built from.")
@click.option("--sample", type=click.IntRange(1), default=8, show_default=True,
              help="Compare this many randomly chosen non-empty shards pixel by pixel.")
@click.option("--full", is_flag=True, help="Compare every non-empty shard.")
@click.option("--seed", type=int, default=0, show_default=True)
@executor_options
@storage_option
@common
def verify_cmd(out: Output, store: str, storage_options: dict[str, str], base_dir: Path,
               sample: int, full: bool, seed: int, workers: int | None, scheduler: str | None,
               retries: int) -> None:
    """Check STORE against the tiles under --base-dir: pixels, metadata, shard objects."""
    with open_executor(scheduler, workers) as pool:
        where = _existing(location(store, storage_options), store)
        report = verify_store(where, base_dir, pool.executor, sample=sample, full=full,
                              seed=seed, max_in_flight=pool.max_in_flight, retries=retries)
    doc = {"status": "ok", **asdict(report)}

    def human() -> None:
        click.echo(f"{report.store}: {report.shards_checked} stored shard object(s) "
                   f"index-checked (CRC32C, {report.chunks_decoded} chunk(s) decoded); "
                   f"{report.shards_compared} of {report.shards_nonempty} non-empty shard(s), "
                   f"{report.pixels_compared} pixels compared, "
                   f"{report.pixels_mismatched} mismatched, {len(report.problems)} problem(s)")
        for p in report.problems:
            click.echo(f"  {p}")

    if report.ok:
        out.result(doc, human)
        return
    if not out.as_json:
        human()
    failure = VerifyFailed(f"{report.problems[0]} ({len(report.problems)} problem(s) in all)")
    failure.json_doc = doc
    raise failure
