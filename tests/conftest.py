"""Shared fixtures: small synthetic archives at coarse pixel sizes, and builds of them."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from geotessera.build.run import build_stores
from geotessera.archive.demo import DemoSpec, write_demo_archive
from geotessera.parallel import process_pool
from geotessera.archive.scan import scan_archive
from geotessera.types import BloscZstd, StoreLayout, parse_codec

#: Small shards so that tiles straddle many shard edges; the default codecs (embeddings
#: blosc-zstd:2:bitshuffle, scales and rgba zstd:3). Tests of another codec say which.
TEST_LAYOUT = StoreLayout(shard_px=64, chunk_px=16, scales_chunk_px=32)
#: Two zones (30, 31), both hemispheres, two years with tiles missing in the second.
TEST_SPEC = DemoSpec(pixel_size=160.0, bands=8, years=(2024, 2025), missing_fraction=0.2)
#: High latitude at a zone edge: meridian convergence makes neighbouring rasters overlap by
#: several pixels, so the overlap rule is really exercised.
NORTH_SPEC = DemoSpec(lon_min=-0.2, lon_max=0.2, lat_min=60.0, lat_max=60.3, pixel_size=60.0,
                      bands=8, years=(2024, 2025), missing_fraction=0.2, seed=3)


def _aws_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


#: The AWS variables the session started with (before any fixture, session ones included).
_AWS_AT_START = _aws_environment()


@pytest.fixture(scope="module", autouse=True)
def aws_environment_restored():
    """Each test module, its fixtures included (a session fixture set up for it too), leaves
    the AWS environment as the session found it: fake keys or an endpoint left behind change
    what every later test's S3 client, GDAL read or CLI run does (and botocore logs where it
    found the keys)."""
    yield
    before, after = _AWS_AT_START, _aws_environment()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"this test module left AWS variables changed: {changed}"


def archive_fixtures(spec: DemoSpec, dirname: str, copy_name: str = "base"):
    """Two fixtures for a test module: ``pristine``, the archive of ``spec`` written once per
    module, and ``copy_name``, a private copy per test that the test may damage."""

    @pytest.fixture(scope="module", name="pristine")
    def _pristine(tmp_path_factory) -> Path:
        base = tmp_path_factory.mktemp(dirname)
        write_demo_archive(base, spec)
        return base

    @pytest.fixture(name=copy_name)
    def _copy(pristine, tmp_path) -> Path:
        dst = tmp_path / "archive"
        shutil.copytree(pristine, dst)
        return dst

    return _pristine, _copy


def zarr_compressor(codec: str, chunk: tuple[int, ...]):
    """zarr's compressor for a ``--codec`` name on int8 chunks of shape ``chunk``, configured
    as ``store.zone`` configures the embeddings'."""
    from zarr.codecs import BloscCodec, ZstdCodec

    from geotessera.store.shardio import blosc_blocksize

    choice = parse_codec(codec)
    if isinstance(choice, BloscZstd):
        return BloscCodec(typesize=1, cname="zstd", clevel=choice.clevel,
                          shuffle=choice.shuffle, blocksize=blosc_blocksize(chunk))
    return None if choice is None else ZstdCodec(level=choice)


def scan(base: Path, bands: int = TEST_SPEC.bands):
    with ThreadPoolExecutor(4) as pool:
        return scan_archive(base, pool, expected_bands=bands)


def build(base: Path, out: Path, workers: int = 1, records=None, layout=TEST_LAYOUT, **kw):
    """Build every store of ``base`` into ``out`` with a spawn process pool."""
    records = scan(base).records if records is None else records
    with process_pool(workers) as pool:
        return build_stores(base, out, records, pool, layout=layout,
                            max_in_flight=workers + 1, **kw)


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("archive")
    write_demo_archive(base, TEST_SPEC)
    return base


@pytest.fixture(scope="session")
def built(archive, tmp_path_factory) -> Path:
    """The stores of ``archive`` built with two workers."""
    out = tmp_path_factory.mktemp("stores")
    build(archive, out, workers=2)
    return out


@pytest.fixture(scope="session")
def north_archive(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("north")
    write_demo_archive(base, NORTH_SPEC)
    return base


@pytest.fixture(scope="session")
def north_built(north_archive, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("north_stores")
    build(north_archive, out, workers=2)
    return out
