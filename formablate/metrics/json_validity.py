"""JSON validity: does an output hold parseable JSON, and does it match the prompt's schema?

The schema language is the subset the eval data uses (see
:class:`formablate.data.constraints.JsonSchema`), implemented here so the harness
needs no ``jsonschema`` dependency and so an unsupported keyword is an error
instead of being silently ignored (a check that cannot fail).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from formablate.errors import HarnessError

__all__ = [
    "SchemaError",
    "SUPPORTED_KEYWORDS",
    "ANNOTATION_KEYWORDS",
    "check_schema",
    "validate_schema",
    "JsonValidity",
    "json_validity",
]

SUPPORTED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
    }
)
# Keywords that describe but never constrain; accepted and ignored.
ANNOTATION_KEYWORDS = frozenset({"$schema", "$id", "title", "description", "examples", "default", "$comment"})
_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})


class SchemaError(HarnessError, ValueError):
    """A schema uses a keyword or value outside the supported subset (a data bug, not an output failure)."""


def check_schema(schema: Any, path: str = "#") -> None:
    """Raise :class:`SchemaError` naming the location if ``schema`` leaves the supported subset."""
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: schema must be an object, found {type(schema).__name__}")
    unknown = set(schema) - SUPPORTED_KEYWORDS - ANNOTATION_KEYWORDS
    if unknown:
        raise SchemaError(
            f"{path}: unsupported keyword(s) {sorted(unknown)}; supported: {sorted(SUPPORTED_KEYWORDS)}"
        )
    types = schema.get("type")
    if types is not None:
        for t in types if isinstance(types, list) else [types]:
            if t not in _TYPES:
                raise SchemaError(f"{path}/type: type={t!r} is not one of {sorted(_TYPES)}")
    for name, sub in (schema.get("properties") or {}).items():
        check_schema(sub, f"{path}/properties/{name}")
    if "items" in schema:
        check_schema(schema["items"], f"{path}/items")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        check_schema(extra, f"{path}/additionalProperties")
    elif extra is not None and not isinstance(extra, bool):
        raise SchemaError(f"{path}/additionalProperties: expected a boolean or a schema, found {extra!r}")
    if "required" in schema and not (
        isinstance(schema["required"], list) and all(isinstance(k, str) for k in schema["required"])
    ):
        raise SchemaError(f"{path}/required: expected a list of property names, found {schema['required']!r}")
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError(f"{path}/enum: expected a list, found {schema['enum']!r}")


def _type_ok(value: Any, t: str) -> bool:
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        # JSON Schema counts 3.0 as an integer; bool is never a number.
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )
    if t == "number":
        return not isinstance(value, bool) and isinstance(value, (int, float))
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    return isinstance(value, dict)  # "object"


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def validate_schema(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` violates ``schema`` (the supported subset), as ``'$.a[0]: ...'`` strings.

    An empty list means the value matches. Call :func:`check_schema` first to reject
    unsupported schemas; here unknown keywords are not re-checked.
    """
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(_type_ok(value, t) for t in allowed):
            errors.append(f"{path}: expected type {'/'.join(allowed)}, found {type(value).__name__}")
            return errors  # the other keywords would only repeat the type error
    if "enum" in schema and not any(_json_equal(value, e) for e in schema["enum"]):
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and not _json_equal(value, schema["const"]):
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value!r} is below minimum {schema['minimum']!r}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value!r} is above maximum {schema['maximum']!r}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: string of length {len(value)} is shorter than minLength {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: string of length {len(value)} is longer than maxLength {schema['maxLength']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: {len(value)} items, fewer than minItems {schema['minItems']}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items, more than maxItems {schema['maxItems']}")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors.extend(validate_schema(item, schema["items"], f"{path}[{i}]"))
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required property {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                errors.extend(validate_schema(item, props[key], f"{path}.{key}"))
            elif extra is False:
                errors.append(f"{path}: unexpected property {key!r} (additionalProperties is false)")
            elif isinstance(extra, dict):
                errors.extend(validate_schema(item, extra, f"{path}.{key}"))
    return errors


class JsonValidity(BaseModel):
    """JSON validity of one output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parsed: bool = Field(description="A JSON value was found (whole text, fence or embedded).")
    how: str = Field(description="Where it was found: whole, fence, embedded or none.")
    bare: bool = Field(description="The whole stripped output is the JSON value (no prose, no fence).")
    schema_ok: bool | None = Field(None, description="Matches the schema; None when no schema was given.")
    errors: list[str] = Field(default_factory=list, description="Schema violations (first 10).")


def json_validity(text: str, schema: dict[str, Any] | None = None) -> JsonValidity:
    """Extract JSON from ``text`` (regex-located fence or brace, then ``json.loads``) and match ``schema``."""
    # Imported here: formablate.judges imports this package, so a top-level import would be circular.
    from formablate.judges.extract import extract_json

    value, how = extract_json(text)
    parsed = how != "none"
    schema_ok = None
    errors: list[str] = []
    if schema is not None:
        check_schema(schema)
        if parsed:
            errors = validate_schema(value, schema)
            schema_ok = not errors
        else:
            schema_ok = False
            errors = ["no JSON value found"]
    return JsonValidity(parsed=parsed, how=how, bare=how == "whole", schema_ok=schema_ok, errors=errors[:10])
