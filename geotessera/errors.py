"""Exception and warning types of the geotessera library.

Every message names *where* (a file, a zone, a shard) and *what* went wrong, so the CLI can
print it as the one line a user sees. Nothing here imports from the rest of the package.
"""

from __future__ import annotations


class GeoTesseraError(Exception):
    """Base class of every error the library raises on purpose."""


class ArchiveError(GeoTesseraError):
    """A file of the input archive is missing, unreadable or inconsistent."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TileProblemsError(GeoTesseraError):
    """The scan found problems in tiles selected for a build; nothing was written."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        first_path, first_problem = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        super().__init__(f"{first_path}: {first_problem}{more}")


class NoTilesError(GeoTesseraError):
    """The selection (base dir, years, zones) contains no tiles at all."""


class ShardWriteError(GeoTesseraError):
    """A shard task failed; the store it was writing is incomplete."""

    def __init__(self, store: object, shard: tuple[int, int], cause: BaseException) -> None:
        self.store = str(store)
        self.shard = shard
        self.cause = cause
        super().__init__(f"{self.store}: shard {shard} failed: {cause}")


class StoreError(GeoTesseraError):
    """A zone store is missing, unreadable or not what the library wrote."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class GridError(GeoTesseraError, ValueError):
    """Tiles that must share one zone grid disagree (zone, pixel size, band count)."""


class SelectionError(GeoTesseraError, ValueError):
    """A zone or year selection string cannot be parsed."""


class NoStoresError(GeoTesseraError):
    """The output directory holds no complete zone store of the selection."""


class CatalogValidationError(GeoTesseraError):
    """A STAC object fails validation against the core or a declared extension schema."""

    def __init__(self, where: object, problem: str) -> None:
        self.where = str(where)
        self.problem = problem
        super().__init__(f"{self.where}: {problem}")


class StoreNotFoundError(StoreError, FileNotFoundError):
    """No zarr group at the path or URL (as opposed to a store that is there but unusable)."""
