"""Turn the generator's values schema into the chart's values.schema.json.

The generator knows each value's type, default and description only. Validation the chart relies
on comes from schema-constraints.json, applied by three deterministic rules:

1. A ``number`` whose default is a whole number becomes an ``integer`` (YAML says 2, JavaScript
   only knows numbers); a constraint entry may set ``"type": "number"`` back.
2. Each constraint entry ``{"paths": [...], "set": {...}}`` updates every node whose dotted path
   matches one of the shell-style patterns (``*`` crosses dots): keys in ``set`` replace the
   node's keys, ``null`` deletes one. A pattern without wildcards that names no node creates it
   (for values the generator leaves out, like maps whose keys contain dots). A pattern that
   matches nothing is an error, so a renamed value cannot silently lose its constraints.
3. Every object with ``properties`` and no ``additionalProperties`` becomes closed: values.yaml
   lists every key, so an unknown key is a typo and fails the install instead of being ignored.

usage: augment_schema.py GENERATED_SCHEMA CONSTRAINTS OUTPUT
"""

from __future__ import annotations

import json
import sys
from fnmatch import fnmatchcase


def nodes(schema: dict, prefix: str = ""):
    """(dotted path, node) of every property below ``schema``, parents first."""
    for key, node in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path, node
        yield from nodes(node, path + ".")


def integers(schema: dict) -> None:
    for _, node in nodes(schema):
        default = node.get("default")
        if node.get("type") == "number" and isinstance(default, int | float) and float(default).is_integer():
            node["type"] = "integer"


def create(schema: dict, path: str) -> dict:
    *parents, leaf = path.split(".")
    node = schema
    for key in parents:
        node = node.get("properties", {}).get(key)
        if node is None:
            raise SystemExit(f"schema-constraints.json: {path}: parent {key!r} is not in the schema")
    return node.setdefault("properties", {}).setdefault(leaf, {})


def apply(schema: dict, entries: list[dict]) -> None:
    for entry in entries:
        for pattern in entry["paths"]:
            hits = [node for path, node in nodes(schema) if fnmatchcase(path, pattern)]
            if not hits and not any(c in pattern for c in "*?["):
                hits = [create(schema, pattern)]
            if not hits:
                raise SystemExit(f"schema-constraints.json: pattern {pattern!r} matches no value")
            for node in hits:
                for key, value in entry["set"].items():
                    if value is None:
                        node.pop(key, None)
                    else:
                        node[key] = json.loads(json.dumps(value))  # a copy per node


def close(node: dict) -> None:
    if "properties" in node:
        node.setdefault("additionalProperties", False)
        for child in node["properties"].values():
            close(child)
    if isinstance(node.get("items"), dict):
        close(node["items"])


def main(generated: str, constraints: str, output: str) -> None:
    with open(generated) as f:
        schema = json.load(f)
    with open(constraints) as f:
        extra = json.load(f)
    integers(schema)
    apply(schema, extra["constraints"])
    schema = {**extra["root"], **{k: v for k, v in schema.items() if k not in extra["root"]}}
    close(schema)
    with open(output, "w") as f:
        json.dump(schema, f, indent=2, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
