"""Shared CLI plumbing: output modes, progress bars, error lines and exit codes.

Results go to stdout (``--json`` prints exactly one JSON document); progress and logs go to
stderr. Exit status: 0 success, 1 a data/build failure (one line names the file and the
problem), 2 a usage error, 3 an unexpected internal error, 130 interrupted (Ctrl-C). A reader
that closes the pipe early (``| head -1``) ends the command quietly with status 0.

rich is imported on first use, so ``--help`` stays fast. Without rich (it comes with the
``build``, ``viewer`` and ``h3`` extras, not with the core or ``read``) the same lines go to
stderr plain, without progress bars.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import click

from geotessera.errors import GeoTesseraError

log = logging.getLogger("geotessera")

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 2, 3, 130


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


#: The rich markup the CLI's own messages use, removed when printing without rich.
_MARKUP = re.compile(r"\[/?(?:bold|red|yellow|green|dim)(?: (?:bold|red|yellow|green|dim))*\]"
                     r"|\[/\]")


class _PlainConsole:
    """What the CLI uses of rich's ``Console``, as plain lines on stderr (no rich)."""

    def print(self, *objects: Any, markup: bool = True, **_: Any) -> None:
        text = " ".join(str(o) for o in objects)
        print(_MARKUP.sub("", text) if markup else text, file=sys.stderr, flush=True)

    def print_exception(self, **_: Any) -> None:
        traceback.print_exc(file=sys.stderr)


@functools.cache
def stderr_console() -> Any:
    """The rich console on stderr, created on first use (importing rich costs ~0.1 s); a
    plain one when rich is not installed."""
    if not _have_rich():
        return _PlainConsole()
    from rich.console import Console

    return Console(stderr=True)


class _StderrConsole:
    """``err.print(...)`` etc. on ``stderr_console()``, without importing rich up front."""

    def __getattr__(self, name: str) -> Any:
        return getattr(stderr_console(), name)


err = _StderrConsole()


class Output:
    """How a command talks: quiet, verbose, JSON. Built once from the shared options."""

    def __init__(self, quiet: bool, verbose: int, as_json: bool) -> None:
        self.quiet, self.verbose, self.as_json = quiet, verbose, as_json
        level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
        # Other libraries (botocore, rasterio, distributed, ...) speak at WARNING unless -vv:
        # their INFO lines ("Found credentials in environment variables") are not ours.
        others = logging.DEBUG if verbose > 1 else logging.WARNING
        if _have_rich():
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(console=stderr_console(), show_path=False,
                                                   show_time=False)
            fmt = "%(message)s"
        else:
            handler, fmt = logging.StreamHandler(sys.stderr), "%(levelname)s %(message)s"
        logging.basicConfig(level=others, format=fmt, force=True, handlers=[handler])
        log.setLevel(level)

    @contextmanager
    def progress(self):
        """A progress sink taking ``geotessera.parallel.Progress`` events; draws nothing when
        quiet or JSON, or without rich."""
        if not _have_rich():
            yield lambda event: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=stderr_console(),
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


def render_table(table: Any, tty: bool | None = None) -> str:
    """A rich ``Table`` as text: boxed on a terminal, plain space-aligned columns (no box
    characters, title on its own line) when stdout is a pipe or a file."""
    from rich.console import Console

    if not (sys.stdout.isatty() if tty is None else tty):
        table.box, table.show_edge = None, False
    with open(os.devnull, "w") as sink:
        console = Console(width=120, record=True, file=sink, color_system=None)
        console.print(table)
    return console.export_text().rstrip()


#: The shared options, accepted both before the subcommand (on the group) and after it.
SHARED_OPTIONS = (
    click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no bars."),
    click.option("-v", "--verbose", count=True, help="More detail (repeatable)."),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout."),
)


def shared_options(fn: Callable) -> Callable:
    for option in reversed(SHARED_OPTIONS):
        fn = option(fn)
    return fn


def _merged(quiet: bool, verbose: int, as_json: bool) -> Output:
    """The command's own -q/-v/--json combined with those given before the subcommand."""
    ctx = click.get_current_context(silent=True)
    top = (ctx.find_root().obj if ctx is not None else None) or {}
    return Output(quiet or top.get("quiet", False), verbose + top.get("verbose", 0),
                  as_json or top.get("as_json", False))


def common(fn: Callable) -> Callable:
    """Shared -q/-v/--json options; turns library errors into one line and an exit code,
    Ctrl-C into status 130 (with a ``--resume`` hint where the command has that option),
    and a closed stdout pipe into a quiet exit 0."""

    @shared_options
    @functools.wraps(fn)
    def wrapper(quiet: bool, verbose: int, as_json: bool, **kwargs: Any) -> None:
        out = _merged(quiet, verbose, as_json)
        try:
            fn(out, **kwargs)
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_pipe_exit()
        except KeyboardInterrupt:
            _interrupted(out, "resume" in kwargs)
        except (GeoTesseraError, OSError) as e:
            _fail(out, e, EXIT_FAILURE)
        except click.exceptions.ClickException:
            raise
        except Exception as e:  # noqa: BLE001 - the one catch-all: report and exit non-zero
            ctx = click.get_current_context(silent=True)
            line = (missing_dependency(e, ctx.info_name if ctx else None)
                    if isinstance(e, ImportError) else None)
            if line is not None:
                _fail(out, RuntimeError(line), EXIT_FAILURE)
            if out.verbose:
                err.print_exception()
            _fail(out, e, EXIT_INTERNAL, prefix="internal error: ")

    return wrapper


#: The extras (pyproject.toml) that install each optional top-level module; the first is
#: named unless the command's own extra is one of them.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "xarray": ("read",), "dask": ("read",), "pystac": ("read", "build", "viewer"),
    "pyarrow": ("parquet", "build"), "shapely": ("build", "parquet", "plot"),
    "rasterio": ("build",), "affine": ("build",), "jsonschema": ("build",),
    "rich": ("build", "viewer", "h3"), "morecantile": ("viewer",), "pmtiles": ("viewer",),
    "distributed": ("distributed",), "h3": ("h3", "plot"), "matplotlib": ("plot",),
    "rioxarray": ("rio",), "numba": ("build",),
}

#: The extras each command needs beyond the core, in the order to name them. A command not
#: listed needs the core only (or says so itself through PROVIDERS).
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("demo-data", "scan", "zarr-build", "registry-schema", "verify", "rgb",
                     "quicklook", "stac", "info"), ("build",)),
    "sample": ("read", "parquet"), "serve": ("viewer",), "tiles": ("viewer",), "h3": ("h3",),
    "h3-plot": ("plot",), "mosaic": ("build", "plot"),
}


def install_line(extra: str) -> str:
    """How to install an extra: from the checkout (PyPI's ``geotessera`` is another project)."""
    return f"pip install '.[{extra}]' (in the geotessera checkout)"


def missing_dependency(e: ImportError, command: str | None = None) -> str | None:
    """The one error line for a missing optional dependency, with the ``pip install`` to run
    (from the repository checkout, as README.md installs the package): the extra of
    ``command`` that provides the module, else the first extra that does, else the module
    itself. None when ``e`` is not about a missing module."""
    if not isinstance(e, ModuleNotFoundError):
        return str(e) if "pip install" in str(e) else None
    top = (e.name or "").split(".")[0]
    if not top or top == "geotessera":
        return None
    providers = PROVIDERS.get(top, ())
    mine = [x for x in COMMAND_EXTRAS.get(command or "", ()) if x in providers]
    extra = (mine or list(providers) or [None])[0]
    how = install_line(extra) if extra else f"pip install {top}"
    return f"{top} is not installed, and this command needs it: {how}"


def fail_missing(line: str) -> None:
    """Report a missing dependency as a command's failure: one error line, exit 1."""
    _fail(_merged(False, 0, False), RuntimeError(line), EXIT_FAILURE)


def _quiet_pipe_exit() -> None:
    """The reader went away (``| head``): point stdout at /dev/null so the interpreter's
    final flush cannot fail again, and exit 0 without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


def _interrupted(out: Output, can_resume: bool) -> None:
    hint = "; rerun with --resume to continue where it stopped" if can_resume else ""
    if out.as_json:
        click.echo(json.dumps({"status": "interrupted", "exit_code": EXIT_INTERRUPTED}))
    err.print(f"interrupted{hint}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(EXIT_INTERRUPTED)


def _fail(out: Output, e: BaseException, code: int, prefix: str = "") -> None:
    line = f"{prefix}{_describe(e)}"
    if out.as_json:  # still exactly one JSON document, with the report when there is one
        doc = {**getattr(e, "json_doc", {}), "status": "error", "error": line, "exit_code": code}
        if hasattr(e, "problems"):
            doc["problems"] = [{"path": p, "problem": m} for p, m in e.problems]
        click.echo(json.dumps(doc, indent=2, default=str))
    err.print(f"[bold red]error:[/] {_escape(line)}", markup=True, highlight=False,
              soft_wrap=True)
    if out.verbose and hasattr(e, "problems"):
        for path, problem in e.problems:
            err.print(f"  {path}: {problem}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


def _escape(text: str) -> str:
    """``text`` shown as it is inside rich markup (a ``'.[build]'`` is not a style tag)."""
    if not _have_rich():
        return text
    from rich.markup import escape

    return escape(text)


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.filename:
        return f"{e.filename}: {e.strerror or e}"
    return str(e)
