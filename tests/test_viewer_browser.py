"""The map page in Debian's Chromium, driven by Playwright: it reaches idle without console
errors, its screenshot shows the tile colours at known ground points (screen positions by
the Web Mercator formula, not MapLibre), click-to-inspect shows ``sample()``'s vector, stale
tile loads are cancelled when the view moves, and a PMTiles archive opens by URL.

Needs ``/usr/bin/chromium`` (``make deps-browser`` installs it)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from geotessera import sample
from geotessera.viewer.files import LocalFiles
from geotessera.viewer.pmtiles import write_pmtiles
from viewer_support import decode_png, request, running, served_stores, to_utm, world_pixel

YEAR = 2024
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run"]
#: Z is the tile zoom; MapLibre's zoom counts 512 px tiles, so the map sits at Z - 1.
W, H, Z = 900, 600, 12
#: Screen area the panel may cover (its size is checked in the tests).
PANEL = (360, 330)


@pytest.fixture(scope="module")
def stores(built, tmp_path_factory):
    return served_stores(built, tmp_path_factory)


@pytest.fixture(scope="module")
def server(stores):
    with running(stores) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make deps-browser`"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Page:
    """A page with its console errors, failed requests and the requests it made."""

    def __init__(self, browser, url: str, routes=()) -> None:
        self.page = browser.new_page(viewport={"width": W, "height": H}, device_scale_factor=1)
        self.errors, self.failed, self.requests = [], [], []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(
            (m.text, m.location.get("url", ""))))
        self.page.on("pageerror", lambda e: self.errors.append((str(e), "")))
        self.page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))
        self.page.on("request", lambda r: self.requests.append(r))
        for pattern, handler in routes:
            self.page.route(pattern, handler)
        self.page.goto(url)

    def idle(self, timeout: float = 60_000) -> None:
        self.page.wait_for_function("window.__done === true", timeout=timeout)

    def jump(self, lon: float, lat: float, zoom: int) -> None:
        """Centre the map, then wait until every tile of the new view is drawn."""
        self.page.evaluate("""([lon, lat, zoom]) => new Promise((done) => {
            const map = window.__viewer.map;
            map.once("idle", done);
            map.jumpTo({center: [lon, lat], zoom});
        })""", [lon, lat, zoom])

    def close(self) -> None:
        self.page.close()


def aligned_centre(zoom: int, lon: float, lat: float) -> tuple[float, float, float, float]:
    """A centre near (lon, lat) at a whole world pixel, so screen pixels are tile pixels;
    returns (lon, lat, world x, world y) of the screen's top-left corner's pixel edge."""
    px, py = (round(v) for v in world_pixel(zoom, lon, lat))
    n = 256 * 2**zoom
    c_lon = px / n * 360 - 180
    c_lat = math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * py / n))))
    return c_lon, c_lat, px - W / 2, py - H / 2


def tile_of(server, z: int, lon: float, lat: float, path=lambda z, x, y: None):
    """(tile pixels (4, 256, 256), row, col) of the tile pixel holding (lon, lat)."""
    wx, wy = world_pixel(z, lon, lat)
    x, y = int(wx // 256), int(wy // 256)
    status, _, body = request(server, path(z, x, y) or f"/tiles/{YEAR}/{z}/{x}/{y}.png")
    assert status == 200
    return decode_png(body), int(wy % 256), int(wx % 256)


def ground_points(server, origin):
    """A point of each zone and hemisphere in view and clear of the panel, whose tile pixel
    and its 8 neighbours have one opaque colour (so the screen pixel shows exactly that)."""
    found = []
    for sx, sy in ((-1, 1), (1, 1), (-1, -1), (1, -1)):
        for k in range(144):
            lon, lat = sx * (0.004 + 0.006 * (k % 12)), sy * (0.004 + 0.006 * (k // 12))
            x, y = screen_pixel(origin, lon, lat)
            if not (0 < x < W - 1 and 4 < y < H - 1) or (x <= PANEL[0] and y <= PANEL[1]):
                continue
            tile, r, c = tile_of(server, Z, lon, lat)
            block = tile[:, r - 1:r + 2, c - 1:c + 2].reshape(4, -1)
            if 1 <= r < 255 and 1 <= c < 255 and (block == block[:, :1]).all() and block[3, 0]:
                found.append((lon, lat, tile[:3, r, c]))
                break
    assert len(found) == 4, found
    return found


def screen_pixel(origin, lon, lat) -> tuple[int, int]:
    wx, wy = world_pixel(Z, lon, lat)
    return int(math.floor(wx - origin[0])), int(math.floor(wy - origin[1]))


def screenshot(page: Page) -> np.ndarray:
    return decode_png(page.page.screenshot())


def test_page_reaches_idle_without_console_errors(server, browser):
    page = Page(browser, server.url)
    try:
        page.idle()
        assert page.errors == []
        assert page.page.title().startswith("OK")
        state = page.page.evaluate("window.__viewer.state")
        assert state["year"] == 2025 and state["errors"] == []
        assert page.page.evaluate("window.__viewer.maplibreVersion") == "6.17.0"
        tiles = [r.url for r in page.requests if "/tiles/" in r.url]
        assert tiles and "level L" in page.page.inner_text("#status")
        assert page.page.inner_text("#tile-url") == f"{server.url}tiles/2025/{{z}}/{{x}}/{{y}}.png"
    finally:
        page.close()


def test_screenshot_pixels_match_the_tile_colours(server, browser):
    page = Page(browser, f"{server.url}?year={YEAR}")
    try:
        page.idle()
        page.page.uncheck("#outlines")
        lon, lat, *origin = aligned_centre(Z, 0.0, 0.0)
        page.jump(lon, lat, Z - 1)
        shot = screenshot(page)
        panel = page.page.eval_on_selector("#panel", "e => e.getBoundingClientRect().toJSON()")
        assert panel["right"] < PANEL[0] and panel["bottom"] < PANEL[1]
        for plon, plat, rgb in ground_points(server, origin):
            x, y = screen_pixel(origin, plon, plat)
            assert np.array_equal(shot[:3, y, x], rgb), (plon, plat, shot[:3, y, x], rgb)
        _, headers, _ = request(server, f"/tiles/{YEAR}/{Z}/{2**(Z - 1)}/{2**(Z - 1)}.png")
        assert page.page.get_attribute("#status", "data-level") == headers["x-geotessera-level"]
        assert page.errors == []
    finally:
        page.close()


def test_click_shows_the_vector_that_sample_returns(server, browser, stores):
    page = Page(browser, f"{server.url}?year={YEAR}")
    try:
        page.idle()
        lon, lat, *origin = aligned_centre(Z, 0.0, 0.0)
        page.jump(lon, lat, Z - 1)
        for plon, plat, _ in ground_points(server, origin):
            x, y = screen_pixel(origin, plon, plat)
            page.page.mouse.click(x + 0.5, y + 0.5)
            page.page.wait_for_function("([lon, lat]) => { const s = window.__viewer.state"
                                        ".inspected; return s && Math.abs(s.lon - lon) < 1e-3"
                                        " && Math.abs(s.lat - lat) < 1e-3; }", arg=[plon, plat])
            got = page.page.evaluate("window.__viewer.state.inspected")
            want = sample([(got["lon"], got["lat"])], YEAR, str(stores))[0]
            assert got["vector"] is not None
            assert got["vector"] == [float(v) for v in want]
            shown = json.loads(page.page.inner_text("#i-vector"))
            assert shown == got["vector"]
            bars = page.page.eval_on_selector_all(
                "#i-chart rect.bar", "els => els.map(e => Number(e.dataset.value))")
            assert bars == got["vector"]
            zone = math.floor((got["lon"] + 180) / 6) + 1
            e, n = to_utm(32600 + zone).transform(got["lon"], got["lat"])
            assert got["zone"] == zone
            assert abs(got["easting"] - e) < 1e-3 and abs(got["northing"] - n) < 1e-3
            assert (n < 0) == (got["lat"] < 0)
        assert page.errors == []
    finally:
        page.close()


def test_stale_tile_loads_are_cancelled_when_the_view_moves(server, browser):
    held = []

    def hold(route):  # keep the first view's tiles pending; let everything later through
        if len(held) < 1000 and not getattr(hold, "released", False):
            held.append(route)
        else:
            route.continue_()

    lon, lat, *_ = aligned_centre(Z, 0.0, 0.0)
    page = Page(browser, f"{server.url}?year={YEAR}#{Z - 1}/{lat:.6f}/{lon:.6f}",
                routes=[("**/tiles/**", hold)])
    try:
        page.page.wait_for_function("window.__viewer.state.pending >= 4", timeout=60_000)
        for _ in range(600):  # route callbacks reach Python only while Playwright is called
            if len(held) >= 4:
                break
            page.page.wait_for_timeout(50)
        first = {r.request.url for r in held}
        assert len(first) >= 4
        hold.released = True
        page.jump(40.0, 40.0, 6)  # far away: none of the first view's tiles are needed
        cancelled = {url for url, _ in page.failed} & first
        assert cancelled, page.failed
        assert page.page.evaluate("window.__viewer.state.aborted") >= len(cancelled)
        for route in held:  # whatever MapLibre did not cancel may now go on
            try:
                route.continue_()
            except PlaywrightError:
                pass
    finally:
        page.close()


def test_page_opens_a_pmtiles_archive_by_url(stores, browser, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    archive = site / f"preview_{YEAR}.pmtiles"
    write_pmtiles(str(stores), YEAR, archive, minzoom=8, maxzoom=11)
    static_only = [("**/stores.json", lambda r: r.fulfill(status=404, body="")),
                   ("**/tiles/**", lambda r: r.abort()), ("**/point*", lambda r: r.abort())]
    files = LocalFiles(site, (archive.name,))
    with running(stores, files=files) as srv:
        page = Page(browser, f"{srv.url}?pmtiles=/data/{archive.name}", routes=static_only)
        try:
            page.idle()
            page.page.uncheck("#outlines")
            lon, lat, *origin = aligned_centre(Z, 0.0, 0.0)
            page.jump(lon, lat, Z - 1)
            shot = screenshot(page)
            for plon, plat, rgb in ground_points(srv, origin):
                x, y = screen_pixel(origin, plon, plat)
                assert np.array_equal(shot[:3, y, x], rgb), (plon, plat)
            ranged = [r for r in page.requests if urlsplit(r.url).path == f"/data/{archive.name}"]
            assert ranged and all(r.headers.get("range", "").startswith("bytes=") for r in ranged)
            assert all(r.response().status == 206 for r in ranged if r.response())
            assert not [r for r in page.requests if "/tiles/" in r.url]
            assert page.page.inner_text("#tile-url") == f"pmtiles://{srv.url}data/{archive.name}"
            assert [e for e in page.errors if not e[1].endswith("/stores.json")] == []
        finally:
            page.close()
    shutil.rmtree(site)


def test_year_picker_and_false_colour_change_the_tiles(server, browser):
    page = Page(browser, f"{server.url}?year=2025")

    def requested(part: str) -> list[str]:
        for _ in range(600):  # requests reach Python while Playwright is called
            urls = [r.url for r in page.requests if part in r.url]
            if urls:
                page.page.evaluate(SETTLED)
                return urls
            page.page.wait_for_timeout(50)
        return []

    try:
        page.idle()
        page.page.select_option("#year", "2024")
        assert requested("/tiles/2024/")
        page.page.select_option("#mode", "bands")
        for box, band in (("#band-r", "3"), ("#band-g", "4"), ("#band-b", "5")):
            page.page.fill(box, band)
        page.page.click("#bands-apply")
        assert requested("/tiles/2024/") and requested("bands=3,4,5")
        assert page.page.inner_text("#tile-url").endswith("/tiles/2024/{z}/{x}/{y}.png?bands=3,4,5")
        assert page.errors == []
    finally:
        page.close()


#: Resolves once no tile is loading (at once if none is).
SETTLED = """() => new Promise((done) => {
    const map = window.__viewer.map;
    if (window.__viewer.state.pending === 0 && map.areTilesLoaded()) done();
    else map.once("idle", done);
})"""
