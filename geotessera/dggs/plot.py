"""Draw an H3 summary as hexagons on an orthographic globe or an Equal Earth world map (PNG).

Colour: one band (``band``) through the viridis colour map, stretched between its 2nd and
98th percentiles over the cells; or, by default, the first three principal components of
the cells' mean vectors as red, green and blue (``pca_colours``). A legend says which. No
basemap is drawn (nothing is downloaded): the sphere or map outline and a 30° graticule.
matplotlib and shapely come with the ``plot`` extra; the Agg backend is used (no display).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import Proj

from .shapes import (
    R_H3,
    cell_ring,
    centroid,
    equal_area_definition,
    equal_area_pieces,
    globe_definition,
    globe_pieces,
)
from .summary import H3Summary

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
except ImportError:  # the optional `plot` extra is not installed
    plt = None

PROJECTIONS = ("globe", "equal-area")
EXTENTS = ("world", "data")
PERCENTILES = (2.0, 98.0)
BACKGROUND = "#f2f2ee"
SEA = "#dfe7ee"
GRID = "#b9c4cf"
CMAP = "viridis"


@dataclass(frozen=True)
class PlotResult:
    """What was drawn and where: enough to find any lon/lat in the PNG's pixels.

    ``definition`` is the PROJ string of the map (``equal-area``: longitudes relative to
    ``centre[0]``); ``limits`` are (xmin, xmax, ymin, ymax) in its metres, shown in the image
    box ``axes_px`` = (left, top, right, bottom) pixels of the ``size_px`` (width, height)
    image."""

    path: str
    projection: str
    definition: str
    centre: tuple[float, float]
    limits: tuple[float, float, float, float]
    axes_px: tuple[float, float, float, float]
    size_px: tuple[int, int]
    cells: int
    cells_drawn: int
    colour: dict[str, Any] = field(default_factory=dict)

    def pixel(self, lon: float, lat: float) -> tuple[float, float]:
        """(column, row) in the image of a lon/lat point (independent of how cells were cut)."""
        lon_arg = ((lon - self.centre[0] + 180) % 360 - 180 if self.projection == "equal-area"
                   else lon)
        x, y = Proj(self.definition)(lon_arg, lat)
        (x0, x1, y0, y1), (left, top, right, bottom) = self.limits, self.axes_px
        return (left + (x - x0) / (x1 - x0) * (right - left),
                top + (y1 - y) / (y1 - y0) * (bottom - top))


# --- colours -------------------------------------------------------------------------------------


def _stretch(v: np.ndarray) -> tuple[float, float]:
    lo, hi = (float(p) for p in np.percentile(v, PERCENTILES)) if v.size else (0.0, 1.0)
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def band_colours(values: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """(n, 4) RGBA from viridis over [vmin, vmax] = the 2nd/98th percentiles, clipped."""
    vmin, vmax = _stretch(values)
    cmap = matplotlib.colormaps[CMAP]
    return cmap(np.clip((values - vmin) / (vmax - vmin), 0, 1)), {
        "mode": "band", "cmap": CMAP, "vmin": vmin, "vmax": vmax}


def pca_colours(mean: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """(n, 4) RGBA: channel c is principal component c+1 of the cells' mean vectors
    (unweighted, centred; each axis signed so its largest-magnitude coefficient is positive),
    stretched between its 2nd and 98th percentiles and clipped to [0, 1]."""
    x = np.asarray(mean, np.float64)
    centred = x - x.mean(axis=0) if len(x) else x
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = np.zeros((3, x.shape[1]))
    k = min(3, vt.shape[0])
    axes[:k] = vt[:k] * np.sign(vt[:k][np.arange(k), np.abs(vt[:k]).argmax(axis=1)])[:, None]
    scores = centred @ axes.T
    limits = [_stretch(scores[:, c]) for c in range(3)]
    rgb = np.column_stack([np.clip((scores[:, c] - lo) / (hi - lo), 0, 1)
                           for c, (lo, hi) in enumerate(limits)])
    var = np.zeros(3)
    var[:k] = s[:k] ** 2
    total = float((s ** 2).sum())
    return np.column_stack([rgb, np.ones(len(x))]), {
        "mode": "pca", "components": axes.tolist(), "mean": x.mean(axis=0).tolist()
        if len(x) else [], "limits": [list(lim) for lim in limits],
        "explained_variance_ratio": (var / total if total else var).tolist()}


# --- geometry ------------------------------------------------------------------------------------


def _pieces(summary: H3Summary, projection: str, centre: tuple[float, float]):
    """(polygons, index of the cell of each polygon)."""
    polys, owner = [], []
    for i, cell in enumerate(summary.cells.tolist()):
        lon, lat = cell_ring(cell, summary.res)
        parts = (equal_area_pieces(lon, lat, centre[0]) if projection == "equal-area"
                 else globe_pieces(lon, lat, *centre))
        polys += parts
        owner += [i] * len(parts)
    return polys, np.array(owner, int)


def _outline(projection: str, centre: tuple[float, float]) -> np.ndarray:
    if projection == "globe":
        t = np.linspace(0, 2 * np.pi, 721)
        return np.column_stack([R_H3 * np.cos(t), R_H3 * np.sin(t)])
    lat = np.linspace(-90, 90, 361)
    lon = np.r_[np.full(361, -180 + 1e-9), np.full(361, 180 - 1e-9), -180 + 1e-9]
    x, y = Proj(equal_area_definition())(lon, np.r_[lat, lat[::-1], -90])
    return np.column_stack([x, y])


def _graticule(projection: str, centre: tuple[float, float]) -> list[np.ndarray]:
    lines = []
    t = np.linspace(-90, 90, 181)
    for lon in range(-180, 180, 30):
        lines.append((np.full(t.size, float(lon)), t))
    s = np.linspace(-180, 180, 361)
    for lat in range(-60, 90, 30):
        lines.append((s, np.full(s.size, float(lat))))
    out = []
    for lon, lat in lines:
        if projection == "globe":
            with np.errstate(all="ignore"):
                x, y = Proj(globe_definition(*centre))(lon, lat, errcheck=False)
            xy = np.column_stack([x, y])
            xy[~np.isfinite(xy).all(axis=1)] = np.nan
        else:
            rel = (lon - centre[0] + 180) % 360 - 180
            x, y = Proj(equal_area_definition())(rel, lat)
            xy = np.column_stack([x, y])
            jump = np.abs(np.diff(rel)) > 180
            xy = np.insert(xy, np.flatnonzero(jump) + 1, np.nan, axis=0)
        out.append(xy)
    return out


def _limits(polys: list[np.ndarray], outline: np.ndarray, extent: str
            ) -> tuple[float, float, float, float]:
    pts = np.concatenate(polys) if extent == "data" and polys else outline
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    pad = 0.04 * max(x1 - x0, y1 - y0, 1.0)
    return (x0 - pad, x1 + pad, y0 - pad, y1 + pad)


def _edge_width(polys: list[np.ndarray], limits: tuple[float, float, float, float],
                width_px: int) -> float:
    """Hexagon outlines (0.3 pt) only where cells are drawn at least 8 pixels wide, so tiny
    cells are not hidden under their own edges."""
    if not polys:
        return 0.0
    size = np.median([np.ptp(p[:, 0]) for p in polys])
    return 0.3 if size / (limits[1] - limits[0]) * width_px >= 8 else 0.0


# --- the figure ----------------------------------------------------------------------------------


def _legend(fig, colour: dict[str, Any], band: int | None) -> None:
    if colour["mode"] == "band":
        cax = fig.add_axes((0.25, 0.07, 0.5, 0.025))
        norm = matplotlib.colors.Normalize(colour["vmin"], colour["vmax"])
        fig.colorbar(matplotlib.cm.ScalarMappable(norm, CMAP), cax=cax, orientation="horizontal",
                     label=f"mean of band {band} (2nd–98th percentile stretch)")
        return
    for c, (name, cm) in enumerate((("red", "Reds"), ("green", "Greens"), ("blue", "Blues"))):
        cax = fig.add_axes((0.08 + 0.3 * c, 0.07, 0.24, 0.022))
        lo, hi = colour["limits"][c]
        ramp = np.zeros((1, 256, 3))
        ramp[0, :, c] = np.linspace(0, 1, 256)
        cax.imshow(ramp, aspect="auto", extent=(lo, hi, 0, 1))
        cax.set_yticks([])
        ratio = colour["explained_variance_ratio"][c]
        cax.set_xlabel(f"{name} = PC{c + 1} ({100 * ratio:.0f}% of variance)", fontsize=8)
        cax.tick_params(labelsize=7)


def plot_summary(summary: H3Summary, out: str | Path, *, band: int | None = None,
                 projection: str = "globe", extent: str = "world",
                 centre: tuple[float, float] | None = None, width_px: int = 1600
                 ) -> PlotResult:
    """Write a PNG of ``summary``'s cells at ``out``; see the module for colours.

    ``centre`` is the view centre (lon, lat) of the globe, or the centre longitude of the
    world map; by default the area-weighted centroid of the cells (longitude 0 for the map).
    ``extent`` ``data`` zooms to the cells. Raises ValueError for a band out of range."""
    if plt is None:
        raise ImportError("matplotlib is not installed: pip install '.[plot]' "
                          "(in the geotessera checkout)")
    if projection not in PROJECTIONS or extent not in EXTENTS:
        raise ValueError(f"projection must be one of {PROJECTIONS} and extent one of "
                         f"{EXTENTS}; got {projection!r}, {extent!r}")
    if band is not None and not 0 <= band < summary.bands:
        raise ValueError(f"band {band} not in 0..{summary.bands - 1}")
    centre = _centre(summary, projection, centre)
    colours, info = (pca_colours(summary.mean) if band is None
                     else band_colours(summary.mean[:, band]))
    polys, owner = _pieces(summary, projection, centre)
    outline = _outline(projection, centre)
    limits = _limits(polys, outline, extent)
    dpi = 100
    fig = plt.figure(figsize=(width_px / dpi, 0.68 * width_px / dpi), dpi=dpi,
                     facecolor=BACKGROUND)
    ax = fig.add_axes((0.02, 0.16, 0.96, 0.76))
    ax.set_axis_off()
    ax.fill(outline[:, 0], outline[:, 1], color=SEA, zorder=0)
    for line in _graticule(projection, centre):
        ax.plot(line[:, 0], line[:, 1], color=GRID, lw=0.5, zorder=1)
    ax.add_collection(PolyCollection(polys, facecolors=colours[owner] if len(owner) else "none",
                                     edgecolors=(0, 0, 0, 0.35),
                                     linewidths=_edge_width(polys, limits, width_px), zorder=2))
    ax.plot(outline[:, 0], outline[:, 1], color="#7d8a96", lw=0.8, zorder=3)
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_aspect("equal", adjustable="box")
    what = "PCA of the mean vectors" if band is None else f"band {band}"
    ax.set_title(f"H3 resolution {summary.res} · {summary.year} · {summary.cells.size} cells · "
                 f"{what} · {'globe' if projection == 'globe' else 'Equal Earth'}", fontsize=11)
    _legend(fig, info, band)
    fig.canvas.draw()
    bb = ax.get_window_extent()
    size = fig.canvas.get_width_height()
    fig.savefig(str(out), dpi=dpi, facecolor=BACKGROUND)
    plt.close(fig)
    definition = globe_definition(*centre) if projection == "globe" else equal_area_definition()
    return PlotResult(str(out), projection, definition, centre, limits,
                      (bb.x0, size[1] - bb.y1, bb.x1, size[1] - bb.y0), size,
                      int(summary.cells.size), len(set(owner.tolist())), info)


def _centre(summary: H3Summary, projection: str, centre: tuple[float, float] | None
            ) -> tuple[float, float]:
    if centre is not None:
        return (float(centre[0]), float(centre[1]))
    if projection == "equal-area":
        return (0.0, 0.0)
    if not summary.cells.size:
        return (0.0, 0.0)
    import h3

    lat, lon = np.array([h3.api.basic_int.cell_to_latlng(c) for c in summary.cells.tolist()]).T
    return centroid(lon, lat, summary.valid_area)


__all__ = ["PlotResult", "band_colours", "pca_colours", "plot_summary"]
