"""What a served SOURCE holds: its stores by year, where their files are, its STAC catalog.

A source is a stores directory, one store, or a STAC catalog (``catalog.json``), given as a
local path. Every store is opened once, through ``geotessera.read.Reader``; a store whose
build is incomplete is an error (StoreError names it), as for ``sample``.
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pystac
from pyproj import Transformer

from ..errors import SelectionError, StoreError
from ._core import Reader, Stretch, ZoneStore, find_preview_stores, year_stretch

STORE_NAME = re.compile(r"^utm(\d{2})_(\d{4})\.zarr$")
#: Points per side when an outline is projected to WGS84.
OUTLINE_POINTS = 32


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the source's files are: ``root`` (a local directory) holds every store and the
    catalog; only the ``served`` sub-trees of it (relative paths) are ever served."""

    source: str
    root: Path
    served: tuple[str, ...]
    catalog: str | None  # the catalog's path relative to root, if any
    years: tuple[int, ...]


def _is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _local(text: str) -> Path:
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def layout_of(source: str) -> Layout:
    """The layout of a local stores directory, store or catalog; StoreError if it holds no
    store, or a catalog's stores are not local."""
    if _is_url(str(source)):
        raise StoreError(source, "serving a remote source (s3://, https://) needs a location "
                                 "layer that this build does not have yet; serve a local copy")
    path = _local(str(source)).absolute()
    if path.suffix == ".json":
        return _catalog_layout(str(source), path)
    if STORE_NAME.match(path.name) and path.is_dir():
        m = STORE_NAME.match(path.name)
        return Layout(str(source), path.parent, (path.name,), None, (int(m.group(2)),))
    if not path.is_dir():
        raise StoreError(path, "no such stores directory, store or catalog")
    names = sorted(p.name for p in path.iterdir() if STORE_NAME.match(p.name) and p.is_dir())
    if not names:
        raise StoreError(path, "no zone stores (utmZZ_YYYY.zarr) in this directory")
    years = tuple(sorted({int(STORE_NAME.match(n).group(2)) for n in names}))
    cat = "stac/catalog.json" if (path / "stac" / "catalog.json").is_file() else None
    return Layout(str(source), path, (*names, *(["stac"] if cat else [])), cat, years)


def _catalog_layout(source: str, path: Path) -> Layout:
    try:
        cat = pystac.read_file(str(path))
    except (OSError, ValueError) as e:
        raise StoreError(path, f"cannot read the STAC catalog: {e}") from e
    hrefs, years = [], set()
    for item in cat.get_items(recursive=True):
        if "embeddings" in item.assets and "geotessera:year" in item.properties:
            href = item.assets["embeddings"].get_absolute_href()
            if _is_url(href):
                raise StoreError(path, f"store {href} is not local; serve a local copy")
            hrefs.append(Path(_local(href)).absolute())
            years.add(int(item.properties["geotessera:year"]))
    if not hrefs:
        raise StoreError(path, "the catalog lists no zone store")
    root = Path(os.path.commonpath([path.parent, *hrefs]))
    trees = sorted({str(p.relative_to(root)) for p in [*hrefs, path.parent]})
    return Layout(source, root, tuple(trees), str(path.relative_to(root)), tuple(sorted(years)))


class YearStores:
    """The opened stores of one year (sorted by zone) and their WGS84 bounding boxes."""

    def __init__(self, source: str, year: int) -> None:
        self.source, self.year = source, year
        self.reader = Reader(source, year)
        opened = [self.reader.zone(z) for z in sorted(self.reader.stores.hrefs)]
        self.stores: list[ZoneStore] = [zs for zs in opened if zs is not None]

    def bboxes(self) -> list[tuple[ZoneStore, tuple[float, float, float, float]]]:
        return list(zip(self.stores, self._bboxes))

    @cached_property
    def _bboxes(self) -> list[tuple[float, float, float, float]]:
        return [store_bbox(zs) for zs in self.stores]

    @cached_property
    def stretch_attrs(self) -> dict | None:
        """The year's recorded ``geotessera:stretch`` (the first store's; the preview pass
        writes the same one into every store of a year)."""
        for zs in self.stores:
            if (doc := zs.root.attrs.get("geotessera:stretch")) is not None:
                return dict(doc)
        return None

    @property
    def bands(self) -> int:
        return max(zs.meta.bands or zs.arrays(zs.meta.levels[0])[0].shape[0]
                   for zs in self.stores)


def store_bbox(zs: ZoneStore) -> tuple[float, float, float, float]:
    """(west, south, east, north) of the store's grid in degrees (densified edges); a grid
    across the antimeridian gives the whole longitude range."""
    to = Transformer.from_crs(zs.meta.epsg, 4326, always_xy=True)
    w, s, e, n = to.transform_bounds(*zs.meta.levels[0].bbox, densify_pts=OUTLINE_POINTS)
    return (-180.0, s, 180.0, n) if w > e else (w, s, e, n)


def store_outline(zs: ZoneStore) -> list[list[float]]:
    """The store grid's boundary as a closed lon/lat ring (each side densified)."""
    x0, y0, x1, y1 = zs.meta.levels[0].bbox
    t = np.linspace(0.0, 1.0, OUTLINE_POINTS, endpoint=False)
    xs = np.concatenate([x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t,
                         np.full_like(t, x0)])
    ys = np.concatenate([np.full_like(t, y1), y1 - (y1 - y0) * t, np.full_like(t, y0),
                         y0 + (y1 - y0) * t])
    lon, lat = Transformer.from_crs(zs.meta.epsg, 4326, always_xy=True).transform(xs, ys)
    ring = [[round(float(a), 6), round(float(b), 6)] for a, b in zip(lon, lat)]
    return [*ring, ring[0]]


def stretch_from_attrs(doc: dict) -> Stretch:
    """A ``Stretch`` from its ``geotessera:stretch`` attribute (the inverse of to_attrs)."""
    tup = lambda v: None if v is None else tuple(map(float, v))  # noqa: E731
    comps = doc.get("components")
    return Stretch(
        mode=doc["mode"], bands=tuple(map(int, doc["bands"])), low=tup(doc["min"]),
        high=tup(doc["max"]), sample_pixels=int(doc.get("sample_pixels", 0)),
        sample_shards=int(doc.get("sample_shards", 0)), seed=int(doc.get("seed", 0)),
        percentiles=tuple(doc.get("percentiles", (2.0, 98.0))),
        components=None if comps is None else tuple(tuple(map(float, c)) for c in comps),
        mean=tup(doc.get("mean")), explained_variance=tup(doc.get("explained_variance")),
        explained_variance_ratio=tup(doc.get("explained_variance_ratio")),
        source=str(doc.get("sample_source", "stores")))


class Stretches:
    """The stretch of a year for three bands, fitted once and kept.

    The year's recorded stretch when it is a ``bands`` stretch of exactly these bands (so
    the false colour equals the stored preview at L0); otherwise the preview pass's own
    sampler and percentiles fit one for these bands (what ``rgb --rgb-bands R,G,B`` with
    the recorded seed would record).
    """

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._fitted: dict[tuple[int, tuple[int, ...]], Stretch] = {}
        self._lock = threading.Lock()

    def get(self, ys: YearStores, bands: tuple[int, int, int]) -> Stretch:
        check_bands(bands, ys.bands)
        doc = ys.stretch_attrs or {}
        if doc.get("mode") == "bands" and tuple(doc.get("bands", ())) == tuple(bands):
            return stretch_from_attrs(doc)
        key = (ys.year, tuple(bands))
        with self._lock:  # one fit per key; other tiles of it wait for it
            if key not in self._fitted:
                self._fitted[key] = self._fit(ys, bands, int(doc.get("seed", 0)))
            return self._fitted[key]

    def _fit(self, ys: YearStores, bands: tuple[int, ...], seed: int) -> Stretch:
        paths = {str(Path(zs.meta.href).absolute()) for zs in ys.stores}
        infos = [i for d in sorted({str(Path(p).parent) for p in paths})
                 for i in find_preview_stores(Path(d), [ys.year])
                 if str(Path(i.path).absolute()) in paths]
        with ThreadPoolExecutor(self.workers) as pool:
            return year_stretch(infos, pool, mode="bands", bands=tuple(bands), seed=seed)


def check_bands(bands: tuple[int, ...], n_bands: int) -> None:
    """SelectionError unless ``bands`` are three band indices in 0..n_bands-1."""
    if len(bands) != 3 or not all(0 <= b < n_bands for b in bands):
        raise SelectionError(f"bands {','.join(map(str, bands))}: need three of "
                             f"0..{n_bands - 1}")


def stores_document(layout: Layout, years: dict[int, YearStores], tile_url: str) -> dict:
    """``/stores.json``: per year its stores (zone, ``/data/`` href, bands, levels, WGS84
    bbox and grid outline) and recorded stretch, the tile URL template and the catalog."""
    stores, stretch = [], {}
    for year, ys in sorted(years.items()):
        stretch[str(year)] = ys.stretch_attrs
        for zs, bbox in ys.bboxes():
            rel = Path(zs.meta.href).absolute().relative_to(layout.root).as_posix()
            stores.append({
                "zone": zs.meta.zone, "year": year, "epsg": zs.meta.epsg,
                "href": f"/data/{rel}", "bands": zs.meta.bands,
                "levels": [{"path": lv.path, "pixel_size": lv.pixel_size,
                            "shape": list(lv.shape)} for lv in zs.meta.levels],
                "bbox": [round(v, 6) for v in bbox], "outline": store_outline(zs)})
    return {"source": layout.source, "years": list(layout.years), "tiles": tile_url,
            "catalog": None if layout.catalog is None else f"/data/{layout.catalog}",
            "stores": stores, "stretch": stretch}
