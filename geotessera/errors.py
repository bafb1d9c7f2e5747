"""Exception and warning types of the geotessera library.

Every message names *where* (a file, a zone, a shard) and *what* went wrong, so the CLI can
print it as the one line a user sees. Nothing here imports from the rest of the package.
"""

from __future__ import annotations

import pickle


class GeoTesseraError(Exception):
    """Base class of every error the library raises on purpose.

    Every subclass pickles and unpickles to an equal message, so an error raised in a worker
    process or on a dask worker reaches the parent intact (tested for every class).
    """

    def __reduce__(self):  # rebuild from the constructor's own arguments
        return (type(self), getattr(self, "_args", self.args))


class _WhereError(GeoTesseraError):
    """An error about one place: ``path`` (a file, store or URL) and the ``problem``."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        self._args = (self.path, problem)
        super().__init__(f"{self.path}: {problem}")


class ArchiveError(_WhereError):
    """A file of the input archive is missing, unreadable or inconsistent."""


class TileProblemsError(GeoTesseraError):
    """The scan found problems in tiles selected for a build; nothing was written."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        self._args = (problems,)
        first_path, first_problem = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first_path}: {first_problem}{more}")


class NoTilesError(GeoTesseraError):
    """The selection (base dir, years, zones) contains no tiles at all."""


class ShardWriteError(GeoTesseraError):
    """A shard task failed (on its last of ``attempts``); the store it was writing is
    incomplete."""

    def __init__(self, store: object, shard: tuple[int, int], cause: BaseException,
                 attempts: int = 1) -> None:
        self.store = str(store)
        self.shard = tuple(shard)
        self.cause = portable(cause)
        self.attempts = attempts
        self._args = (self.store, self.shard, self.cause, attempts)
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{self.store}: shard {self.shard} failed{tries}: {cause}")


class StoreError(_WhereError):
    """A zone store is missing, unreadable or not what the library wrote."""


class GridError(GeoTesseraError, ValueError):
    """Tiles that must share one zone grid disagree (zone, pixel size, band count)."""


class SelectionError(GeoTesseraError, ValueError):
    """A zone or year selection string cannot be parsed."""


class CodecError(GeoTesseraError, ValueError):
    """A codec name (``zarr-build --codec``) cannot be parsed or is not one the tool writes."""


class NoStoresError(GeoTesseraError):
    """The output directory holds no complete zone store of the selection."""


class CatalogValidationError(_WhereError):
    """A STAC object fails validation against the core or a declared extension schema."""

    @property
    def where(self) -> str:
        return self.path


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No zarr group at the path or URL (as opposed to a store that is there but unusable)."""


class LockedError(StoreError):
    """Another live process is building the same store."""


class LocationError(_WhereError, ValueError):
    """A path or URL cannot be used: bad scheme, a name that would leave its parent, a write
    to a read-only location."""


class LocationNotFoundError(LocationError, FileNotFoundError):
    """No object or file at the location."""


class PointsError(_WhereError, ValueError):
    """A points file (CSV, GeoJSON, GeoParquet) cannot be read as lon/lat points."""


class VerifyFailed(GeoTesseraError):
    """verify found problems (already listed in its report)."""


class TaskFailed(GeoTesseraError):
    """A task raised on each of its ``attempts``: ``task`` is the input that failed, ``cause``
    the (portable) error of the last attempt."""

    def __init__(self, task: object, cause: BaseException, attempts: int = 1) -> None:
        self.task = task
        self.cause = portable(cause)
        self.attempts = attempts
        self._args = (task, self.cause, attempts)
        super().__init__(f"{cause}")


class ClusterError(_WhereError):
    """The dask.distributed cluster cannot run the job: the extra is not installed, the
    scheduler cannot be reached, it has no workers, or they run another version."""


def portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a pickle round trip, else a RuntimeError with its type and message
    (so a foreign exception from a worker never breaks the pool that reports it)."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # any failure to pickle: keep the text, lose nothing the user sees
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc
