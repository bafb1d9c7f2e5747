"""The names this package takes from the rest of geotessera, in one place.

Only ``Reader`` and ``sample`` belong to the stable API; the others are the exact rules the
viewer must share with the library (the zone-edge crack rule of ``read_region``, the preview
pass's stretch and its sampler, the atomic file writer), imported here so that a
restructure of the package has one file to rewrite.
"""

from __future__ import annotations

from ..atomic import atomic_path  # noqa: F401
from geotessera.preview.run import find_stores as find_preview_stores  # noqa: F401
from geotessera.preview.sample import year_stretch  # noqa: F401
from geotessera.read import Reader, ZoneStore, sample  # noqa: F401
from geotessera.read.seams import crack_pixels  # noqa: F401
from geotessera.preview.stretch import Stretch  # noqa: F401
from geotessera.types import Level  # noqa: F401
