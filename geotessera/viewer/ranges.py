"""HTTP byte ranges (RFC 9110 §14): one ``Range`` header against a file size. Pure.

Written here rather than taken from a library: the stdlib server ignores ``Range``, and
the one small PyPI range server rejects suffix ranges (``bytes=-N``), which zarr-python and
obstore send for a shard's index (notes: ecosystem.md §3.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class RangeNotSatisfiable(ValueError):
    """The range lies wholly beyond the end of the file (answer 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` … ``stop - 1`` of a file of ``size`` bytes."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range a ``Range`` header asks of a file of ``size`` bytes, or None for the whole
    file (no header, a malformed one, or several ranges: a server may ignore those).

    ``a-b`` gives a…min(b, size-1); ``a-`` gives a…size-1; ``-n`` gives the last min(n, size)
    bytes. Raises RangeNotSatisfiable when ``a >= size``, for ``-0``, and for any range of
    an empty file.
    """
    if header is None or "," in header:
        return None
    m = _SPEC.match(header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes=-{n} of {size} bytes")
        return ByteRange(max(size - n, 0), size, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"bytes={start}- of {size} bytes")
    stop = size if last == "" else min(int(last) + 1, size)
    return ByteRange(start, stop, size)
