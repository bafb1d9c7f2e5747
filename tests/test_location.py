"""``store/location.py``: reads of a local location that does not exist create nothing."""

from __future__ import annotations

import pytest

from geotessera.errors import LocationNotFoundError
from geotessera.store.location import Location


def test_reads_of_a_missing_local_location_find_nothing_and_create_nothing(tmp_path):
    where = tmp_path / "no" / "such.zarr"
    loc = Location.parse(where)
    assert loc.size("zarr.json") is None and loc.head("zarr.json") is None
    assert loc.read_meta("zarr.json") is None
    assert list(loc.keys()) == [] and list(loc.entries()) == [] and loc.dirs() == []
    with pytest.raises(LocationNotFoundError, match="zarr.json"):
        loc.read("zarr.json")
    with pytest.raises(LocationNotFoundError):
        loc.read_range("zarr.json", 0, 4)
    loc.delete("zarr.json")  # deleting what is not there is not an error, nor a creation
    assert loc.delete_tree() == 0
    assert not (tmp_path / "no").exists()


def test_a_write_creates_the_local_location(tmp_path):
    loc = Location.parse(tmp_path / "new" / "store.zarr")
    assert loc.size("a/b.json") is None  # a read first: nothing made, nothing cached wrongly
    loc.write("a/b.json", b"{}")
    assert (tmp_path / "new" / "store.zarr" / "a" / "b.json").read_bytes() == b"{}"
    assert loc.read("a/b.json") == b"{}" and loc.dirs() == ["a"]
    assert Location.parse(tmp_path / "other").write_new("x", b"1")
    assert (tmp_path / "other" / "x").read_bytes() == b"1"
