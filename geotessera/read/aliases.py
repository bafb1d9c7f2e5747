"""The types of the read API's parameters (PEP 695 aliases: evaluated only by type checkers,
so naming ``pystac`` here imports nothing at run time)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pyproj import CRS

from geotessera.store.location import Location

if TYPE_CHECKING:
    import pystac

#: WGS84 (lon, lat) points: one ``(lon, lat)`` pair, a sequence of pairs, or an ``(n, 2)``
#: array (anything ``numpy.asarray`` turns into one).
type Points = tuple[float, float] | Sequence[Sequence[float]] | np.ndarray[Any, Any]

#: A WGS84 box ``(west, south, east, north)`` in degrees, west < east (no antimeridian).
type BBox = tuple[float, float, float, float]

#: A CRS as ``pyproj.CRS.from_user_input`` takes it: ``"EPSG:32631"``, ``32631``, WKT, a
#: PROJ string or a ``pyproj.CRS``.
type CRSLike = str | int | CRS

#: Where a year's stores are: a stores directory (path or ``file://``, ``s3://``,
#: ``https://`` URL), one store, a STAC catalog or collection (its JSON's path or URL, or a
#: ``pystac.Catalog``), or a ``Location``.
type Source = str | os.PathLike[str] | Location | pystac.Catalog
