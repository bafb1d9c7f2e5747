"""Every exception type of geotessera.errors survives a pickle round trip intact."""

from __future__ import annotations

import inspect
import pickle

import pytest

from geotessera import errors

#: A value for each constructor parameter name used in errors.py.
VALUES = {
    "path": "/archive/global_0.1_degree_tiff_all/grid_0.15_0.05.tiff",
    "problem": "cannot read landmask window: truncated",
    "problems": [("a/grid_0.15_0.05.npy", "truncated"), ("b/x_scales.npy", "dtype float64")],
    "store": "/out/utm31_2024.zarr",
    "shard": (1, 2),
    "cause": errors.ArchiveError("/archive/x.npy", "changed since the scan"),
    "task": ("a task", 3),
    "attempts": 3,
    "address": "tcp://127.0.0.1:8786",
}
CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass)
           if issubclass(c, BaseException) and c.__module__ == errors.__name__]


def make(cls: type[BaseException]) -> BaseException:
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self"]
    if any(p.kind is p.VAR_POSITIONAL for p in params):  # plain Exception(*args)
        return cls("zone 31 year 2024: tiles disagree on band count [4, 8]")
    return cls(*(VALUES[p.name] for p in params))


def _plain(v):
    """Exceptions compare by identity: compare them by type and text (also inside tuples)."""
    if isinstance(v, BaseException):
        return (type(v), str(v), _state(v))
    if isinstance(v, tuple | list):
        return type(v)(_plain(x) for x in v)
    return v


def _state(e: BaseException) -> dict:
    return {k: _plain(v) for k, v in vars(e).items()}


def test_the_module_defines_the_classes_we_expect():
    names = {c.__name__ for c in CLASSES}
    assert {"ArchiveError", "StoreError", "TaskFailed", "ShardWriteError",
            "TileProblemsError", "LocationError"} <= names


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trip_keeps_type_message_and_attributes(cls):
    e = make(cls)
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert str(back) == str(e) and str(back)
    assert _state(back) == _state(e)
