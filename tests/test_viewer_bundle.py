"""The committed page bundle (geotessera/viewer/static/) is what web/ builds today, and it is
the MapLibre and PMTiles versions the lock file pins; the wheel ships it."""

from __future__ import annotations

import json
import subprocess

from viewer_support import REPO, WEB, npm_ci

STATIC = REPO / "geotessera" / "viewer" / "static"
FILES = {"app.js", "app.css", "index.html", "maplibre-gl-worker.mjs"}


def test_committed_bundle_equals_a_fresh_build(tmp_path):
    npm_ci()
    out = subprocess.run(["node", "build.mjs", str(tmp_path)], cwd=WEB, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert {p.name for p in tmp_path.iterdir()} == FILES
    assert {p.name for p in STATIC.iterdir()} == FILES
    for name in sorted(FILES):
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"{name} differs from a fresh build: run `make web` and commit "
            "geotessera/viewer/static/")


def test_bundle_names_the_locked_versions():
    lock = json.loads((WEB / "package-lock.json").read_text())["packages"]
    maplibre = lock["node_modules/maplibre-gl"]["version"]
    pmtiles = lock["node_modules/pmtiles"]["version"]
    html = (STATIC / "index.html").read_text()
    assert f"maplibre-gl {maplibre}, pmtiles {pmtiles}" in html
    assert f"maplibre-gl-js/blob/v{maplibre}/" in (STATIC / "app.js").read_text()
    assert f"v{maplibre}" in (STATIC / "maplibre-gl-worker.mjs").read_text()[:400]
