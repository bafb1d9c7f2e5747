"""The year mosaic as a map (PNG): title, lon/lat graticule, colour legend and scale bar.

The raster of ``mosaic.compose_year`` is shown one raster pixel per image pixel, so a
lon/lat point's pixel in the PNG is known exactly (``MosaicMap.pixel``). The legend states
what the colours are, from the store attribute ``geotessera:stretch``: the three bands (or
principal components, with their share of the variance) shown as red, green and blue and the
values that map to 0 and 255. The scale bar is measured along the central latitude (where
pixels are square); in plate carrée the east–west scale elsewhere differs by the ratio of
the cosines of the latitudes. Drawn with matplotlib's object API and the Agg canvas (no
pyplot, no display); matplotlib comes with the ``plot`` extra and is imported on first use.
"""

from __future__ import annotations

import dataclasses
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geotessera.atomic import atomic_path
from geotessera.maps.mosaic import YearMosaic, compose_year, metres_per_degree_lon
from geotessera.read.sources import Source

#: Figure margins in pixels around the map: left (latitude labels), right, top (title) and
#: bottom (longitude labels, legend, scale bar, notes).
LEFT, RIGHT, TOP, BOTTOM = 84, 28, 84, 226
DPI = 100
#: Shown where no store has data (water, or outside every store).
BACKGROUND = "#e3e8ee"
GRID = "#5a6570"
CHANNELS = ("red", "green", "blue")
INSTALL = "pip install '.[plot]' (in the geotessera checkout)"


def _matplotlib() -> tuple[Any, Any]:
    """(Figure, FigureCanvasAgg); a ModuleNotFoundError with the pip line when absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"matplotlib is not installed, and the year mosaic needs "
                                  f"it: {INSTALL}", name="matplotlib") from e
    return Figure, FigureCanvasAgg


@dataclass(frozen=True)
class MosaicMap:
    """A drawn year mosaic. ``map_px`` is the map's (left, top, right, bottom) edges in
    pixels of the ``size_px`` (width, height) image; ``bounds`` (west, south, east, north)
    are the map's edges in degrees; ``scale_km`` long the scale bar is ``scale_px`` pixels."""

    path: str | None
    year: int
    zones: tuple[int, ...]
    levels: dict[int, str]
    size_px: tuple[int, int]
    map_px: tuple[int, int, int, int]
    bounds: tuple[float, float, float, float]
    scale_km: float
    scale_px: float
    scale_lat: float
    legend: tuple[str, ...]
    #: The graticule: longitudes and latitudes of its labelled lines.
    graticule: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())

    def pixel(self, lon: float, lat: float) -> tuple[float, float]:
        """(column, row) of a lon/lat point in the image, fractional (pixel centres at .5)."""
        (w, s, e, n), (left, top, right, bottom) = self.bounds, self.map_px
        return (left + (lon - w) / (e - w) * (right - left),
                top + (n - lat) / (n - s) * (bottom - top))


# --- labels -----------------------------------------------------------------------------------


def degree_label(value: float, axis: str, decimals: int) -> str:
    """``0.15°E``, ``0.2°S``, ``0°``: a longitude (``axis`` "lon") or latitude in degrees."""
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return f"{0:.{decimals}f}°"
    hemi = ("E" if value > 0 else "W") if axis == "lon" else ("N" if value > 0 else "S")
    return f"{text}°{hemi}"


def _decimals(ticks: np.ndarray) -> int:
    for d in range(7):
        if np.allclose(np.round(ticks, d), ticks, atol=1e-9):
            return d
    return 7


def graticule_ticks(lo: float, hi: float, count: int) -> np.ndarray:
    """About ``count`` round tick values inside [lo, hi]: 1, 2, 2.5 or 5 × 10ⁿ apart, the
    step nearest (in ratio) to (hi − lo) / count."""
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10)), key=lambda v: abs(math.log(v / raw)))
    ticks = np.arange(math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9) + 1) * step
    return np.round(ticks, 10)


def nice_length(km: float) -> float:
    """The largest 1, 2 or 5 × 10ⁿ at most ``km`` (km > 0)."""
    mag = 10 ** math.floor(math.log10(km))
    return float(max(m * mag for m in (1, 2, 5) if m * mag <= km * (1 + 1e-9)))


def _num(v: float) -> str:
    return f"{v:.4g}"


def _ordinal(p: float) -> str:
    n = f"{p:g}"
    if not float(p).is_integer():
        return f"{n}th"
    k = int(p)
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{n}{suffix}"


def legend_lines(stretch: dict[str, Any]) -> tuple[str, tuple[str, ...], str]:
    """(heading, one line per channel, note) of the colour legend of ``geotessera:stretch``:
    which band or component each channel shows and the values mapped to 0 and 255."""
    lo, hi = stretch["min"], stretch["max"]
    p = stretch.get("percentiles", [2.0, 98.0])
    pct = f"from its {_ordinal(p[0])} (→ 0) to its {_ordinal(p[1])} percentile (→ 255)"
    if stretch["mode"] == "pca":
        ratio = stretch.get("explained_variance_ratio") or [0.0, 0.0, 0.0]
        heading = (f"Colour: principal components 1–3 of {len(stretch['bands'])} bands as "
                   f"red, green, blue, each stretched linearly {pct}")
        lines = tuple(f"{c} = PC{i + 1} ({100 * ratio[i]:.1f}% of variance): "
                      f"{_num(lo[i])} … {_num(hi[i])}" for i, c in enumerate(CHANNELS))
    else:
        heading = (f"Colour: dequantised bands {', '.join(map(str, stretch['bands']))} as "
                   f"red, green, blue, each stretched linearly {pct}")
        lines = tuple(f"{c} = band {b}: {_num(lo[i])} … {_num(hi[i])}"
                      for i, (c, b) in enumerate(zip(CHANNELS, stretch["bands"])))
    note = (f"Background: water or no data. Stretch fitted on {stretch.get('sample_pixels', 0):,}"
            f" sampled pixels of {stretch.get('sample_shards', 0)} "
            f"{'tiles' if stretch.get('sample_source') == 'tiles' else 'shards'} (seed "
            f"{stretch.get('seed', 0)}).")
    return heading, lines, note


# --- the figure --------------------------------------------------------------------------------


def _wrap(text: str, width_px: float, fontsize: float) -> str:
    """``text`` broken into lines of about ``width_px`` at ``fontsize`` points (an average
    character taken as 0.6 em)."""
    chars = max(20, int(width_px / (0.6 * fontsize * DPI / 72)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False))


def _frac(fig_w: int, fig_h: int, left: float, bottom: float, w: float, h: float):
    return (left / fig_w, bottom / fig_h, w / fig_w, h / fig_h)


def _graticule(ax: Any, mosaic: YearMosaic, map_w: int, map_h: int
               ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    w, s, e, n = mosaic.bounds
    found = []
    for axis, lo, hi, count, set_ticks in (("lon", w, e, max(3, map_w // 100), ax.set_xticks),
                                           ("lat", s, n, max(3, map_h // 100), ax.set_yticks)):
        ticks = graticule_ticks(lo, hi, count)
        d = _decimals(ticks)
        set_ticks(ticks, labels=[degree_label(t, axis, d) for t in ticks])
        found.append(tuple(float(t) for t in ticks))
    ax.tick_params(labelsize=8, direction="out", top=True, right=True)
    ax.set_axisbelow(False)
    ax.grid(True, color=GRID, lw=0.5, alpha=0.55)
    return found[0], found[1]


def _ramps(fig: Any, stretch: dict[str, Any], lines: tuple[str, ...], left: int, width: int,
           y: int, size: tuple[int, int]) -> None:
    gap = 24
    ramp_w = min(320, (width - 2 * gap) // 3)
    for i, line in enumerate(lines):
        cax = fig.add_axes(_frac(*size, left + i * (ramp_w + gap), y, ramp_w, 12))
        ramp = np.zeros((1, 256, 3))
        ramp[0, :, i] = np.linspace(0, 1, 256)
        lo, hi = stretch["min"][i], stretch["max"][i]
        cax.imshow(ramp, aspect="auto", extent=(lo, hi, 0, 1))
        cax.set_yticks([])
        cax.set_xticks([lo, hi], labels=[_num(lo), _num(hi)])
        for label, ha in zip(cax.get_xticklabels(), ("left", "right")):
            label.set_horizontalalignment(ha)
        cax.tick_params(labelsize=7, length=2, pad=1)
        fits = len(line) * 0.6 * 8 * DPI / 72 <= ramp_w
        cax.set_title(line if fits else line.replace(": ", ":\n", 1), fontsize=8, pad=3)


def _scale_bar(fig: Any, mosaic: YearMosaic, map_w: int, left: int, y: int,
               size: tuple[int, int]) -> tuple[float, float]:
    """A bar about a quarter of the map wide, in km along the central latitude."""
    lat = mosaic.centre_lat
    m_per_px = mosaic.pixel_deg[0] * metres_per_degree_lon(lat)
    km = nice_length(map_w * m_per_px / 4000)
    px = km * 1000 / m_per_px
    sax = fig.add_axes(_frac(*size, left, y, px, 8))
    sax.set_xlim(0, km)
    sax.set_ylim(0, 1)
    for i in range(4):
        sax.axvspan(i * km / 4, (i + 1) * km / 4, color="black" if i % 2 == 0 else "white")
    for side in ("top", "right", "left"):
        sax.spines[side].set_visible(True)
    sax.set_yticks([])
    sax.set_xticks([0, km / 2, km], labels=["0", f"{km / 2:g}", f"{km:g} km"])
    sax.tick_params(labelsize=8, length=2, pad=2)
    sax.set_title(f"scale along {degree_label(lat, 'lat', 2)}", fontsize=8, loc="left", pad=3)
    return km, px


def draw_mosaic(mosaic: YearMosaic, width_px: int) -> tuple[Any, MosaicMap]:
    """A matplotlib Figure of ``mosaic`` ``width_px`` wide (not saved) and what it shows."""
    Figure, FigureCanvasAgg = _matplotlib()
    map_h, map_w = mosaic.shape
    fig_w, fig_h = width_px, TOP + map_h + BOTTOM
    size = (fig_w, fig_h)
    left = LEFT + (fig_w - LEFT - RIGHT - map_w) // 2
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes(_frac(*size, left, BOTTOM, map_w, map_h))
    ax.set_facecolor(BACKGROUND)
    w, s, e, n = mosaic.bounds
    ax.imshow(np.moveaxis(mosaic.rgba, 0, -1), extent=(w, e, s, n), interpolation="nearest",
              aspect="auto", zorder=0)
    ax.set_xlim(w, e)
    ax.set_ylim(s, n)
    graticule = _graticule(ax, mosaic, map_w, map_h)
    parts = {p.zone: p for p in mosaic.parts}
    zones = ", ".join(str(z) for z in sorted(parts))
    fig.text(0.5, 1 - 22 / fig_h, f"GeoTessera embeddings {mosaic.year} · UTM zone"
             f"{'s' if len(parts) > 1 else ''} {zones}", ha="center", va="center",
             fontsize=13, weight="bold")
    by_level: dict[tuple[str, float], list[str]] = {}
    for z, p in sorted(parts.items()):
        by_level.setdefault((p.level.path, p.level.pixel_size), []).append(str(z))
    levels = "; ".join(f"{path} ({size:g} m) of zone{'s' if len(zs) > 1 else ''} {', '.join(zs)}"
                       for (path, size), zs in by_level.items())
    fig.text(0.5, 1 - 38 / fig_h, _wrap(
        f"WGS 84 longitude/latitude (plate carrée), pixels square at "
        f"{degree_label(mosaic.centre_lat, 'lat', 2)} · preview level {levels}", fig_w - 40,
        8.5), ha="center", va="top", fontsize=8.5)
    heading, lines, note = legend_lines(mosaic.stretch)
    inner = fig_w - LEFT - RIGHT
    fig.text(LEFT / fig_w, 156 / fig_h, _wrap(heading, inner, 8.5), fontsize=8.5, va="bottom")
    _ramps(fig, mosaic.stretch, lines, LEFT, inner, 110, size)
    km, px = _scale_bar(fig, mosaic, map_w, LEFT, 62, size)
    fig.text(LEFT / fig_w, 8 / fig_h, _wrap(note, inner, 8), fontsize=8, va="bottom")
    result = MosaicMap(None, mosaic.year, tuple(sorted(parts)),
                       {z: p.level.path for z, p in sorted(parts.items())}, size,
                       (left, TOP, left + map_w, TOP + map_h), mosaic.bounds, km, px,
                       mosaic.centre_lat, (heading, *lines, note), graticule)
    return fig, result


def map_box(width_px: int) -> tuple[int, int]:
    """The largest map (width, height) in pixels in a figure ``width_px`` wide: the width
    between the margins, and at most 1.25 × that in height."""
    inner = width_px - LEFT - RIGHT
    return inner, int(1.25 * inner)


def write_year_mosaic(source: Source, year: int, output: Path | str, *,
                      width_px: int = 1200) -> MosaicMap:
    """Draw every store of ``year`` in ``source`` as one map and write it to ``output``
    (PNG, atomically). ``width_px`` is the image width; the height follows the data's
    extent. Raises StoreError (see ``compose_year``) and ValueError for a width below 400."""
    if width_px < 400:
        raise ValueError(f"width_px must be at least 400, got {width_px}")
    _matplotlib()  # fail before reading any store
    mosaic = compose_year(source, year, max_width=map_box(width_px)[0],
                          max_height=map_box(width_px)[1])
    fig, result = draw_mosaic(mosaic, width_px)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    with atomic_path(Path(output)) as tmp:
        tmp.write_bytes(buf.getvalue())
    return dataclasses.replace(result, path=str(output))


__all__ = ["BACKGROUND", "MosaicMap", "degree_label", "draw_mosaic", "graticule_ticks",
           "legend_lines", "map_box", "nice_length", "write_year_mosaic"]
