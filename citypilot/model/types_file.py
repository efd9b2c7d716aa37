"""Extra entity types declared in a file (TOML ``[[type]]`` tables or a JSON list)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from citypilot.model.errors import BadRequestData
from citypilot.model.types import EntityType, entity_type_from_json


def load_types_file(path: Path) -> list[EntityType]:
    """Read and check every type in the file; BadRequestData naming the file and field."""
    text = path.read_bytes()
    try:
        docs = (
            tomllib.loads(text.decode()).get("type", [])
            if path.suffix == ".toml"
            else (json.loads(text))
        )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequestData(f"{path}: cannot read types file: {exc}", str(path)) from None
    if not isinstance(docs, list):
        raise BadRequestData(f"{path}: expected a list of types", str(path))
    return [entity_type_from_json(doc, f"{path.name}[{i}]") for i, doc in enumerate(docs)]
