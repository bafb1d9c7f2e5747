"""Shared CLI plumbing: output modes, progress bars, error lines and exit codes.

Results go to stdout (``--json`` prints exactly one JSON document); progress and logs go to
stderr. Exit status: 0 success, 1 a data/build failure (one line names the file and the
problem), 2 a usage error, 3 an unexpected internal error.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from geotessera.errors import GeoTesseraError

log = logging.getLogger("geotessera")
err = Console(stderr=True)

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERNAL = 1, 2, 3


class Output:
    """How a command talks: quiet, verbose, JSON. Built once from the shared options."""

    def __init__(self, quiet: bool, verbose: int, as_json: bool) -> None:
        self.quiet, self.verbose, self.as_json = quiet, verbose, as_json
        level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
        logging.basicConfig(level=level, format="%(message)s", force=True,
                            handlers=[RichHandler(console=err, show_path=False, show_time=False)])

    @contextmanager
    def progress(self):
        """A progress sink taking ``geotessera.parallel.Progress`` events; draws nothing when
        quiet or JSON."""
        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                        disable=self.quiet or self.as_json)
        tasks: dict[str, Any] = {}

        def update(event) -> None:
            if event.label not in tasks:
                tasks[event.label] = bars.add_task(event.label, total=event.total)
            bars.update(tasks[event.label], completed=event.done, total=event.total)

        with bars:
            yield update

    def result(self, doc: dict[str, Any], human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(doc, indent=2, default=str))
        else:
            human()


def _parse_storage_options(ctx, param, values) -> dict[str, str]:
    opts = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--storage-option")
        opts[key.strip()] = value
    return opts


#: The one ``--storage-option KEY=VALUE`` (repeatable): obstore options that override the
#: standard AWS environment for every ``s3://`` location of the command.
storage_option = click.option(
    "--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
    callback=_parse_storage_options,
    help="Object-store option overriding the AWS_* environment, e.g. endpoint=URL, "
         "region=R, allow_http=true (repeatable).")


def location(text: str, options: dict[str, str] | None = None):
    """A ``Location`` for a CLI argument (a path or URL); a usage error when unusable."""
    from geotessera.errors import LocationError
    from geotessera.store.location import Location

    try:
        return Location.parse(text, options or None)
    except LocationError as e:
        raise click.BadParameter(str(e)) from e


def common(fn: Callable) -> Callable:
    """Shared -q/-v/--json options; turns library errors into one line and an exit code."""

    @click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no bars.")
    @click.option("-v", "--verbose", count=True, help="More detail (repeatable).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
    @functools.wraps(fn)
    def wrapper(quiet: bool, verbose: int, as_json: bool, **kwargs: Any) -> None:
        out = Output(quiet, verbose, as_json)
        try:
            fn(out, **kwargs)
        except (GeoTesseraError, OSError) as e:
            _fail(out, e, EXIT_FAILURE)
        except click.exceptions.ClickException:
            raise
        except Exception as e:  # noqa: BLE001 - the one catch-all: report and exit non-zero
            if out.verbose:
                err.print_exception()
            _fail(out, e, EXIT_INTERNAL, prefix="internal error: ")

    return wrapper


def _fail(out: Output, e: BaseException, code: int, prefix: str = "") -> None:
    line = f"{prefix}{_describe(e)}"
    if out.as_json:  # still exactly one JSON document, with the report when there is one
        doc = {**getattr(e, "json_doc", {}), "status": "error", "error": line, "exit_code": code}
        if hasattr(e, "problems"):
            doc["problems"] = [{"path": p, "problem": m} for p, m in e.problems]
        click.echo(json.dumps(doc, indent=2, default=str))
    err.print(f"[bold red]error:[/] {line}", markup=True, highlight=False, soft_wrap=True)
    if out.verbose and hasattr(e, "problems"):
        for path, problem in e.problems:
            err.print(f"  {path}: {problem}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)
