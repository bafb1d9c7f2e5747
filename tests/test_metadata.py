"""Store metadata: conventions validate against the vendored v0.1 schemas, encodings agree."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from pyproj import CRS

SCHEMAS = resources.files("geotessera").joinpath("data/schemas")


def _schema(name: str) -> dict:
    return json.loads(SCHEMAS.joinpath(name).read_text())


def _node(store: Path, path: str = "") -> dict:
    return json.loads((store / path / "zarr.json").read_text())


@pytest.fixture(scope="module")
def store(built) -> Path:
    return built / "utm31_2024.zarr"


def test_root_is_a_valid_multiscales_proj_spatial_group(store):
    root = _node(store)
    for name in ("multiscales-v0.1.json", "proj-v0.1.json", "spatial-v0.1.json"):
        jsonschema.validate(root, _schema(name))
    layout = root["attributes"]["multiscales"]["layout"]
    assert layout[0]["asset"] == "L0"
    assert layout[0]["spatial:transform"] == _node(store, "L0")["attributes"]["spatial:transform"]
    assert "spatial:registration" not in root["attributes"]  # see conventions.md §2.2


@pytest.mark.parametrize("path", ["L0", "L0/embeddings", "L0/scales"])
def test_levels_and_arrays_validate(store, path):
    node = _node(store, path)
    for name in ("proj-v0.1.json", "spatial-v0.1.json"):
        jsonschema.validate(node, _schema(name))
    attrs = node["attributes"]
    assert not {"proj:epsg", "proj:transform", "proj:bbox", "proj:shape"} & attrs.keys()


def test_a_broken_node_fails_validation(store):
    node = _node(store, "L0/scales")
    node["attributes"]["spatial:transform"] = [1, 2]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(node, _schema("spatial-v0.1.json"))


def test_every_array_has_dimension_names(store):
    for meta in store.rglob("zarr.json"):
        node = json.loads(meta.read_text())
        if node["node_type"] == "array":
            assert "dimension_names" in node, meta


def test_cf_fallback_agrees_with_the_conventions(store):
    level = _node(store, "L0")["attributes"]
    ref = _node(store, "L0/spatial_ref")["attributes"]
    a, b, c, d, e, f = level["spatial:transform"]
    assert [float(v) for v in ref["GeoTransform"].split()] == [c, a, b, f, d, e]
    assert CRS.from_wkt(ref["crs_wkt"]) == CRS.from_user_input(level["proj:code"])
    assert ref["crs_wkt"] == level["proj:wkt2"]
    h, w = level["spatial:shape"]
    assert level["spatial:bbox"] == [c, f + e * h, c + a * w, f]
    for arr in ("embeddings", "scales"):
        assert _node(store, f"L0/{arr}")["attributes"]["grid_mapping"] == "spatial_ref"


def test_provenance_and_consolidated_metadata(store):
    root = _node(store)
    attrs = root["attributes"]
    assert attrs["geotessera:zone"] == 31 and attrs["geotessera:year"] == 2024
    assert attrs["geotessera:build_complete"] is True
    assert attrs["geotessera:tiles_written"] == len(attrs["geotessera:tiles"]) > 0
    assert attrs["geoemb:quantization"]["scale"]["array_name"] == "scales"
    consolidated = root["consolidated_metadata"]["metadata"]
    assert {"L0", "L0/embeddings", "L0/scales", "L0/x", "L0/y"} <= consolidated.keys()
    assert consolidated["L0/scales"]["attributes"] == _node(store, "L0/scales")["attributes"]
