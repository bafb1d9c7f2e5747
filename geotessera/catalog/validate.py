"""Offline validation of STAC objects against pystac's core schemas and our vendored
extension schemas: nothing is ever fetched, an unknown schema URI is an error."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # noqa: F401  (pystac's validator needs it; a core dependency)
import pyproj
import pystac
from pystac.validation import JsonSchemaSTACValidator

from geotessera.errors import CatalogValidationError

SCHEMA_DIR = Path(__file__).parent.parent / "data" / "schemas"


# --- offline validation ------------------------------------------------------------------------


class _OfflineValidator(JsonSchemaSTACValidator):
    """pystac's JSON-schema validator that never fetches: unknown schema URIs are errors."""

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise CatalogValidationError(schema_uri, "schema not vendored (validation is offline)")
        return self.schema_cache[schema_uri]


@cache
def _vendored_schemas() -> dict[str, dict[str, Any]]:
    """Our extension schemas, plus the PROJJSON schema that PROJ ships inside pyproj (the
    datacube schema's ``reference_system`` is a oneOf that resolves it)."""
    files = sorted(SCHEMA_DIR.glob("*.json"))
    files += [p for p in [Path(pyproj.datadir.get_data_dir()) / "projjson.schema.json"]
              if p.exists()]
    docs = (json.loads(p.read_text()) for p in files)
    return {d["$id"].rstrip("#"): d for d in docs}  # zarr v1.1.0's $id ends in "#"


def offline_validator() -> JsonSchemaSTACValidator:
    """A validator seeded with pystac's core schemas and geotessera's vendored extensions."""
    v = _OfflineValidator()
    v.schema_cache.update(_vendored_schemas())
    return v


def _deepest(errors: list) -> Any:
    """The error deepest in the document, looking inside oneOf/anyOf branches."""
    flat, todo = [], list(errors)
    while todo:
        err = todo.pop()
        flat.append(err)
        todo += err.context or []
    return max(flat, key=lambda err: len(err.absolute_path), default=None)


def validate_dict(doc: dict, href: str = "", validator: JsonSchemaSTACValidator | None = None
                  ) -> None:
    """Validate one STAC object (core and declared extensions); raise CatalogValidationError."""
    v = validator or offline_validator()
    kind = pystac.serialization.identify_stac_object(doc).object_type
    try:
        v.validate(doc, kind, doc["stac_version"], list(doc.get("stac_extensions", [])), href)
    except pystac.STACValidationError as e:
        schema = str(e).splitlines()[0].rpartition(" against schema at ")[2]
        best = _deepest(e.source or [])
        where = "/".join(map(str, best.absolute_path)) if best else ""
        problem = f"{best.message[:200]} at {where or '/'}" if best else str(e)
        raise CatalogValidationError(href or doc.get("id"), f"{problem} ({schema})") from e


def validate_catalog(catalog: Path) -> int:
    """Validate every object reachable from ``catalog`` through child/item links, offline.

    Parameters
    ----------
    catalog : Path
        The root ``catalog.json``.

    Returns
    -------
    int
        How many objects were validated.

    Raises
    ------
    CatalogValidationError
        The first object that is unreadable or fails its schemas (core, projection,
        datacube, zarr), with its path.
    """
    v, seen, todo = offline_validator(), set(), [Path(catalog).resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CatalogValidationError(path, f"unreadable: {e}") from e
        validate_dict(doc, str(path), v)
        todo += [(path.parent / link["href"]).resolve() for link in doc.get("links", [])
                 if link["rel"] in ("child", "item") and "://" not in link["href"]]
    return len(seen)
