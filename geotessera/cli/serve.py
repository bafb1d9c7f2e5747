"""``serve`` and ``tiles``: look at the stores in a browser, or publish a PMTiles archive."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import click

from ._output import Output, common, log

source_arg = click.argument("source")


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def _workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


@click.command("serve")
@source_arg
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback is reachable by others.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port; 0 picks a free one.")
@click.option("--no-browser", is_flag=True, help="Do not open the page in a browser.")
@click.option("-j", "--workers", type=click.IntRange(1, 64), default=None,
              help="Tile rendering threads [default: usable CPUs, at most 8].")
@click.option("--cache-mb", type=click.IntRange(0), default=64, show_default=True,
              help="Memory for rendered tiles (least recently used dropped first).")
@common
def serve_cmd(out: Output, source: str, host: str, port: int, no_browser: bool,
              workers: int | None, cache_mb: int) -> None:
    """Serve SOURCE (a stores directory, a store or a STAC catalog) on a map page.

    Prints the page's URL on stdout, then serves until interrupted: the page (/), Web
    Mercator tiles (/tiles/{year}/{z}/{x}/{y}.png), point vectors (/point), the stores'
    own files with byte ranges (/data/...), /stores.json and the STAC catalog.
    """
    from ..viewer.server import ViewerServer, open_viewer

    viewer = open_viewer(source, workers=workers or _workers(), cache_bytes=cache_mb * 2**20)
    if not is_loopback(host):
        log.warning("listening on %s: anyone who can reach this address can read the stores "
                    "and every file under /data/", host)
    try:
        server = ViewerServer(viewer, host, port)
    except OSError as e:
        viewer.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}")
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:  # from here on, Ctrl-C (SIGINT) or SIGTERM is the normal way to stop: exit 0
        url = server.url
        out.result({"status": "ok", "url": url, "host": host,
                    "port": server.server_address[1], "source": source,
                    "years": list(viewer.layout.years)}, lambda: click.echo(url))
        sys.stdout.flush()
        if not out.quiet:
            log.info("serving %s (years %s) at %s; Ctrl-C stops", source,
                     ", ".join(map(str, viewer.layout.years)), url)
        if not no_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@click.command("tiles")
@source_arg
@click.option("--year", type=int, required=True, help="Year whose preview to write.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="PMTiles file to write (e.g. preview_2024.pmtiles).")
@click.option("--minzoom", type=click.IntRange(0, 24), default=None,
              help="Coarsest zoom [default: 0].")
@click.option("--maxzoom", type=click.IntRange(0, 24), default=None,
              help="Finest zoom [default: the zoom matching the finest pixel size].")
@click.option("-j", "--workers", type=click.IntRange(1, 64), default=None,
              help="Rendering threads [default: usable CPUs, at most 8].")
@common
def tiles_cmd(out: Output, source: str, year: int, output: Path, minzoom: int | None,
              maxzoom: int | None, workers: int | None) -> None:
    """Write the year's preview of SOURCE as one PMTiles archive (PNG tiles, Web Mercator)
    that a MapLibre page reads from any static URL by range requests."""
    from ..viewer.pmtiles import write_pmtiles

    if minzoom is not None and maxzoom is not None and minzoom > maxzoom:
        raise click.BadParameter(f"--minzoom {minzoom} > --maxzoom {maxzoom}")
    with out.progress() as update:
        rep = write_pmtiles(source, year, output, minzoom=minzoom, maxzoom=maxzoom,
                            workers=workers or _workers(), on_progress=update)
    doc = {"status": "ok", "output": str(rep.path), "year": rep.year, "minzoom": rep.minzoom,
           "maxzoom": rep.maxzoom, "tiles": rep.tiles, "empty_tiles": rep.empty,
           "bytes": rep.bytes, "bounds": list(rep.bounds)}
    out.result(doc, lambda: click.echo(
        f"{rep.path}: {rep.tiles} tiles at zooms {rep.minzoom}..{rep.maxzoom} "
        f"({rep.empty} without data left out), {rep.bytes / 1e6:.1f} MB"))
