"""The record's JSON Schema (`kb schema`), with a knowledge base's vocabulary as enums, for editors."""

from __future__ import annotations

from typing import Any

from .records import SCHEMA_VERSION, Study
from .vocab import Vocabulary, load_vocabulary


def json_schema(vocab: Vocabulary | None = None) -> dict:
    """The record's JSON Schema, with this knowledge base's vocabulary as enums."""
    vocab = vocab or load_vocabulary()
    schema = Study.model_json_schema(mode="validation")

    def fill(node: Any) -> None:
        if isinstance(node, dict):
            cat = node.pop("x-vocabulary", None)
            if cat:
                node["enum"] = vocab.terms(cat)
                node["description"] = (node.get("description", "") + f" (vocabulary: {cat})").strip()
            for v in node.values():
                fill(v)
        elif isinstance(node, list):
            for v in node:
                fill(v)

    fill(schema)
    # Shorthands accepted on input: a condition or a source may be a plain string.
    defs = schema.get("$defs", {})
    props = schema["properties"]
    props["conditions"]["items"] = {"anyOf": [{"$ref": "#/$defs/Condition"},
                                              {"type": "string", "enum": vocab.terms("condition")}]}
    props["sources"]["items"] = {"anyOf": [{"$ref": "#/$defs/Source"},
                                           {"type": "string", "pattern": r"^https?://\S+$"}]}
    src = defs["Outcome"]["properties"]["source"]  # an outcome's source may be one string (a URL or a locator)
    src["anyOf"].insert(0, {"type": "string"})
    dose = defs["Intervention"]["properties"]["dose_mg_per_kg"]
    dose["anyOf"].insert(0, dict(dose["anyOf"][0]["items"]))  # a single dose may be written as a number
    for name in ("pmid", "volume", "issue", "pages"):
        _allow_integer(props[name])
    for name in ("Retraction",):
        if name in defs:
            _allow_integer(defs[name]["properties"]["date"])
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "kb study record"
    schema["x-kb-schema-version"] = SCHEMA_VERSION
    return schema


def _allow_integer(prop: dict) -> None:
    for alt in prop.get("anyOf", []):
        if alt.get("type") == "string":
            alt["type"] = ["string", "integer"]
