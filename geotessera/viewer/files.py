"""Read-only access to the files the server publishes under ``/data/``.

The server reads files only through the small ``DataFiles`` interface (``stat`` and
``read`` by relative path), so another backend (an object store through a location layer)
can be plugged in without touching the HTTP code. ``LocalFiles`` is the local-directory
backend.

Guarantees of ``LocalFiles``: a path is served only if it is a regular file whose real path
(symlinks resolved) lies inside one of the ``served`` sub-trees of the root; ``..``, ``.``,
empty and hidden components (``.name``, e.g. a build's ``.partial`` staging store) are
refused; directories are never listed. Refusal and absence look the same (``None``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A served file: its size in bytes, modification time (s) and an entity tag."""

    size: int
    mtime: float
    etag: str


class DataFiles(Protocol):
    """Files of a served tree, by ``/``-separated relative path (already URL-decoded)."""

    def stat(self, rel: str) -> FileInfo | None:
        """The file's info, or None if it is absent, not a regular file, or not served."""

    def read(self, rel: str, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` … ``stop - 1`` of a file ``stat`` accepted, in pieces."""


def clean_parts(rel: str) -> tuple[str, ...] | None:
    """The components of a relative path, or None if any is empty, ``.``, ``..``, hidden,
    or holds a backslash or NUL (so no spelling of a parent directory gets through)."""
    parts = tuple(rel.split("/"))
    for p in parts:
        if p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\x00" in p:
            return None
    return parts


class LocalFiles:
    """``DataFiles`` over a local directory, limited to its ``served`` sub-trees."""

    def __init__(self, root: Path, served: tuple[str, ...]) -> None:
        self.root = Path(root).resolve()
        self.trees = tuple(self.root.joinpath(*s.split("/")).resolve() for s in served)

    def _path(self, rel: str) -> Path | None:
        parts = clean_parts(rel)
        if parts is None:
            return None
        try:
            real = self.root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        inside = any(real == t or real.is_relative_to(t) for t in self.trees)
        return real if inside and real.is_relative_to(self.root) and real.is_file() else None

    def stat(self, rel: str) -> FileInfo | None:
        path = self._path(rel)
        if path is None:
            return None
        st = path.stat()
        return FileInfo(st.st_size, st.st_mtime, f'"{st.st_size:x}-{st.st_mtime_ns:x}"')

    def read(self, rel: str, start: int, stop: int) -> Iterator[bytes]:
        path = self._path(rel)
        if path is None:
            raise FileNotFoundError(rel)
        with open(path, "rb") as f:
            f.seek(start)
            left = stop - start
            while left > 0:
                piece = f.read(min(READ_CHUNK, left))
                if not piece:
                    raise OSError(f"{path}: file shrank while it was being served")
                left -= len(piece)
                yield piece

    def __repr__(self) -> str:
        return f"LocalFiles({str(self.root)!r}, {len(self.trees)} tree(s))"


def list_static(folder: Path) -> dict[str, Path]:
    """name → path of the regular files directly in ``folder`` (the page bundle)."""
    return {e.name: Path(e.path) for e in os.scandir(folder)
            if e.is_file() and not e.name.startswith(".")}
