"""``store.meta``: which node documents ``open_checked`` reads and compares with the
consolidated metadata (every node, or only those a caller names), and that a path listed in
the consolidated metadata never leads a read outside the store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from geotessera.errors import StoreError
from geotessera.store import meta
from geotessera.store.location import Location

NAME = "utm31_2024.zarr"


@pytest.fixture
def store(built, tmp_path) -> Path:
    """A writable copy of one store of ``built`` (the published link followed)."""
    shutil.copytree(built / NAME, tmp_path / NAME)
    return tmp_path / NAME


def _garble(p: Path) -> None:
    p.write_bytes(b"\xff not json")


def test_every_node_or_only_those_named_are_checked(store):
    every = meta.open_checked(store)
    assert every.checked == set(meta.node_documents(every.doc)) > set(meta.FINEST_ARRAYS)
    _garble(store / "L0/x/zarr.json")
    named = meta.open_checked(store, meta.FINEST_ARRAYS)
    assert named.checked == set(meta.FINEST_ARRAYS)
    assert named.group()["L0/embeddings"].shape == every.group()["L0/embeddings"].shape
    with pytest.raises(StoreError, match="L0/x/zarr.json: damaged metadata"):
        meta.open_checked(store)


def test_a_named_node_is_refused_when_its_document_is_damaged(store):
    _garble(store / "L0/scales/zarr.json")
    with pytest.raises(StoreError, match="L0/scales/zarr.json: damaged metadata"):
        meta.open_checked(store, meta.FINEST_ARRAYS)
    doc = json.loads((store / "zarr.json").read_text())
    entries = meta.node_documents(doc)
    meta.check_nodes(Location.parse(store), entries, ["L0/embeddings"])  # undamaged: passes
    with pytest.raises(StoreError, match="L0/scales/zarr.json"):
        meta.check_nodes(Location.parse(store), entries, ["L0/embeddings", "L0/scales"])


def test_a_named_node_the_consolidated_metadata_lacks_is_not_checked(store):
    opened = meta.open_checked(store, ["L9/embeddings", "L0/scales"])
    assert opened.checked == {"L0/scales"}


def test_a_consolidated_path_leaving_the_store_is_refused_not_read(store):
    """An entry ``../outside`` whose document, beside the store, equals it: read, it would
    pass; it is refused by its name."""
    root = json.loads((store / "zarr.json").read_text())
    entry = root["consolidated_metadata"]["metadata"]["L0/x"]
    root["consolidated_metadata"]["metadata"]["../outside"] = entry
    (store / "zarr.json").write_text(json.dumps(root))
    (store.parent / "outside").mkdir()
    (store.parent / "outside" / "zarr.json").write_text(json.dumps(entry))
    with pytest.raises(StoreError, match="not a plain relative name"):
        meta.open_root(store)
    with pytest.raises(StoreError, match="not a plain relative name"):
        meta.check_nodes(Location.parse(store), meta.node_documents(root), ["../outside"])


@pytest.mark.parametrize("name", ["utm30_2024.zarr", "utm31_2024.zarr", "utm31_2025.zarr"])
def test_meta_from_the_documents_equals_meta_from_zarr(built, name):
    """``meta_of`` reads no zarr group: it must parse what ``read_meta`` does from it."""
    opened = meta.open_checked(built / name, meta.FINEST_ARRAYS)
    got = meta.meta_of(opened, name)
    assert got == meta.read_meta(opened.group(), name)
    assert [v.name for v in got.variables] == ["embeddings", "scales"]
    assert got.consolidated and got.levels[0].path == "L0"


def test_meta_without_consolidated_metadata_comes_from_zarr(store):
    root = json.loads((store / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(root))
    opened = meta.open_checked(store, meta.FINEST_ARRAYS)
    assert opened.checked == set()  # nothing to compare: zarr reads each node's own file
    got = meta.meta_of(opened, NAME)
    assert not got.consolidated and [v.name for v in got.variables] == ["embeddings", "scales"]
