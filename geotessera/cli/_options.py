"""Options shared by every command that runs tasks: where they run and how often to retry."""

from __future__ import annotations

from collections.abc import Callable

import click

from geotessera.parallel import DEFAULT_RETRIES

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


def executor_options(fn: Callable) -> Callable:
    """``-j/--workers``, ``--scheduler`` and ``--retries``; pass the first two to
    ``geotessera.cluster.open_executor`` and the last to the library call."""
    for option in reversed([
        click.option("-j", "--workers", type=click.IntRange(1), default=None,
                     help="Local worker processes [default: usable CPUs]; with --scheduler, "
                          "tasks kept in flight [default: 2 per cluster thread]."),
        click.option("--scheduler", metavar="ADDRESS", envvar=SCHEDULER_ENV, default=None,
                     help="Run the tasks on this dask.distributed scheduler, e.g. "
                          f"tcp://host:8786 [default: ${SCHEDULER_ENV}; unset: a local "
                          "process pool]. Needs pip install '.[distributed]'."),
        click.option("--retries", type=click.IntRange(0, 100), default=DEFAULT_RETRIES,
                     show_default=True,
                     help="Run a task that raised again, up to this many times, before the "
                          "command fails naming it."),
    ]):
        fn = option(fn)
    return fn
