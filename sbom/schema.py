"""CycloneDX 1.6 JSON schema validation in linear time: the schema compiled once into Python checks.

jsonschema's Draft7Validator compares every pair of elements for `uniqueItems`
(quadratic in the SBOM's big arrays) and walks the schema generically for every
instance (~350 µs per package component). Here each subschema becomes a closure,
`$ref`s are resolved once, and `uniqueItems` hashes a canonical form of each item
(jsonschema's equality: `1 == 1.0`, `true != 1`). Formats are checked by
jsonschema's own format checker. When the compiled check finds a document
invalid, jsonschema (with the same hashing `uniqueItems`) names the reason.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

# See sbom/output.py: the IRI grammar costs 1-3 s of import for formats these documents do not use.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

from cyclonedx.schema import SchemaVersion  # noqa: E402
from cyclonedx.validation.json import JsonStrictValidator  # noqa: E402
from jsonschema import validators  # noqa: E402
from jsonschema._utils import equal  # noqa: E402
from jsonschema.exceptions import ValidationError  # noqa: E402
from referencing.jsonschema import DRAFT7  # noqa: E402

Check = Callable[[Any], bool]
Tick = Callable[[], None]
# Keywords that only annotate (Draft 7 and CycloneDX's own).
ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "examples",
        "default",
        "$comment",
        "meta:enum",
        "$schema",
        "$id",
        "deprecated",
        "definitions",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
    }
)


class Unsupported(ValueError):
    """The schema uses a keyword this compiler does not implement (jsonschema then validates alone)."""


def _fingerprint(value: Any) -> Any:
    """A hashable key that equal JSON values (by jsonschema's `equal`) always share.

    Objects: their keys and their string, boolean and null members (numbers and
    nested values left out, so `1` and `1.0` cannot tell equal objects apart);
    arrays: their length. Values that share a key are then compared in full.
    """
    if isinstance(value, dict):
        return (
            frozenset(value),
            frozenset((k, v) for k, v in value.items() if v is None or isinstance(v, str | bool)),
        )
    if isinstance(value, list):
        return ("array", len(value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)
    return value  # str, None


def first_repeat(items: Iterable[Any]) -> int | None:
    """The index of the first item equal to an earlier one, or None (hashing, not all pairs)."""
    seen: dict[Any, list[Any]] = {}
    for index, item in enumerate(items):
        same_key = seen.setdefault(_fingerprint(item), [])
        if any(equal(item, other) for other in same_key):
            return index
        same_key.append(item)
    return None


def unique(items: Iterable[Any]) -> bool:
    """No two items equal."""
    return first_repeat(items) is None


def _unique_items(validator: Any, wanted: bool, instance: Any, schema: Any) -> Iterable[ValidationError]:
    """jsonschema's `uniqueItems` keyword, by hashing."""
    if wanted and validator.is_type(instance, "array"):
        repeat = first_repeat(instance)
        if repeat is not None:
            yield ValidationError(f"item {repeat} repeats an earlier item: {_short(instance[repeat])}")


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "…"


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "integer":
        return not isinstance(value, bool) and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        )
    if name == "number":
        return not isinstance(value, bool) and isinstance(value, int | float)
    raise Unsupported(f"type {name!r}")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _all(checks: list[Check]) -> Check:
    if not checks:
        return lambda _: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)

    def check(value: Any) -> bool:
        return all(c(value) for c in checks)

    return check


_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: _is_type(v, "integer"),
    "number": _number,
}


class Compiled:
    """A schema compiled into one check; `tick` is called after each item of the root's `components`."""

    def __init__(self, validator: Any) -> None:
        self.format_checker = validator.format_checker
        self.tick: Tick | None = None
        self._refs: dict[int, Check] = {}
        components = validator.schema.get("properties", {}).get("components", {})
        self._counted = components.get("items") if isinstance(components, dict) else None
        self.check = self._compile(validator.schema, validator._resolver)

    def _compile(self, schema: Any, resolver: Any) -> Check:
        if schema is True or schema == {}:
            return lambda _: True
        if schema is False:
            return lambda _: False
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        if "$id" in schema:
            resolver = resolver.in_subresource(DRAFT7.create_resource(schema))
        if "$ref" in schema:  # Draft 7: the siblings of $ref are ignored
            return self._ref(schema["$ref"], resolver)
        checks = [self._keyword(k, v, schema, resolver) for k, v in schema.items() if k not in ANNOTATIONS]
        checks = [c for c in checks if c is not None]
        check = _all(checks)
        if schema is self._counted:
            inner = check

            def check(value: Any) -> bool:
                ok = inner(value)
                if self.tick is not None:
                    self.tick()
                return ok

        return check

    def _ref(self, ref: str, resolver: Any) -> Check:
        resolved = resolver.lookup(ref)
        key = id(resolved.contents)
        if key not in self._refs:
            target: list[Check] = []
            self._refs[key] = lambda value: target[0](value)  # recursive schemas: bound below
            target.append(self._compile(resolved.contents, resolved.resolver))
        return self._refs[key]

    def _keyword(self, key: str, value: Any, schema: dict[str, Any], resolver: Any) -> Check | None:
        c = self._compile
        if key == "type":
            names = [value] if isinstance(value, str) else list(value)
            for name in names:
                _is_type(None, name)  # Unsupported for an unknown type name
            if len(names) == 1:
                return _TYPES[names[0]]
            return lambda v: any(_is_type(v, n) for n in names)
        if key == "properties":
            return self._object(schema, resolver)
        if key in ("additionalProperties", "required") and "properties" not in schema:
            return self._object(schema, resolver)
        if key in ("additionalProperties", "required", "additionalItems"):
            return None  # part of the properties/items check
        if key == "patternProperties":
            raise Unsupported(key)
        if key == "items":
            return self._items(schema, resolver)
        if key == "minItems":
            return lambda v: not isinstance(v, list) or len(v) >= value
        if key == "maxItems":
            return lambda v: not isinstance(v, list) or len(v) <= value
        if key == "uniqueItems":
            return (lambda v: not isinstance(v, list) or unique(v)) if value else None
        if key == "enum":
            strings = frozenset(e for e in value if isinstance(e, str))
            others = [e for e in value if not isinstance(e, str)]
            return lambda v: v in strings if isinstance(v, str) else any(equal(v, e) for e in others)
        if key == "const":
            return lambda v: equal(v, value)
        if key == "format":
            checker = self.format_checker
            return None if checker is None else lambda v: checker.conforms(v, value)
        if key == "pattern":
            search = re.compile(value).search
            return lambda v: not isinstance(v, str) or search(v) is not None
        if key == "minLength":
            return lambda v: not isinstance(v, str) or len(v) >= value
        if key == "maxLength":
            return lambda v: not isinstance(v, str) or len(v) <= value
        if key == "minimum":
            return lambda v: not _number(v) or v >= value
        if key == "maximum":
            return lambda v: not _number(v) or v <= value
        if key == "exclusiveMinimum":
            return lambda v: not _number(v) or v > value
        if key == "exclusiveMaximum":
            return lambda v: not _number(v) or v < value
        if key == "allOf":
            return _all([c(s, resolver) for s in value])
        if key == "anyOf":
            options = [c(s, resolver) for s in value]
            return lambda v: any(o(v) for o in options)
        if key == "oneOf":
            options = [c(s, resolver) for s in value]
            return lambda v: sum(1 for o in options if o(v)) == 1
        if key == "not":
            negated = c(value, resolver)
            return lambda v: not negated(v)
        if key == "if":
            condition = c(value, resolver)
            then = c(schema.get("then", True), resolver)
            otherwise = c(schema.get("else", True), resolver)
            return lambda v: then(v) if condition(v) else otherwise(v)
        if key in ("then", "else"):
            return None  # part of the `if` check
        raise Unsupported(key)

    def _object(self, schema: dict[str, Any], resolver: Any) -> Check:
        properties = {k: self._compile(s, resolver) for k, s in schema.get("properties", {}).items()}
        extra_schema = schema.get("additionalProperties", True)
        closed = extra_schema is False
        extra = None if extra_schema is True or closed else self._compile(extra_schema, resolver)
        required = list(schema.get("required", ()))

        def check(value: Any) -> bool:
            if not isinstance(value, dict):
                return True
            for name in required:
                if name not in value:
                    return False
            for name, item in value.items():
                known = properties.get(name)
                if known is not None:
                    if not known(item):
                        return False
                elif closed or (extra is not None and not extra(item)):
                    return False
            return True

        return check

    def _items(self, schema: dict[str, Any], resolver: Any) -> Check:
        items = schema["items"]
        if isinstance(items, list):
            positional = [self._compile(s, resolver) for s in items]
            rest = self._compile(schema.get("additionalItems", True), resolver)

            def check_tuple(value: Any) -> bool:
                if not isinstance(value, list):
                    return True
                return all(
                    (positional[n] if n < len(positional) else rest)(item) for n, item in enumerate(value)
                )

            return check_tuple
        each = self._compile(items, resolver)

        def check(value: Any) -> bool:
            if isinstance(value, list):
                for item in value:
                    if not each(item):
                        return False
            return True

        return check


@cache
def _jsonschema() -> Any:
    """cyclonedx-python-lib's strict 1.6 validator, with `uniqueItems` by hashing."""
    base = JsonStrictValidator(SchemaVersion.V1_6)._validator
    linear = validators.extend(type(base), {"uniqueItems": _unique_items})
    return linear(base.schema, registry=base._registry, format_checker=base.format_checker)


@cache
def compiled() -> Compiled | None:
    """The compiled 1.6 schema (None if it uses a keyword not compiled here)."""
    try:
        return Compiled(_jsonschema())
    except Unsupported:
        return None


def validate(doc: Any, tick: Tick | None = None) -> str | None:
    """None if `doc` is a valid CycloneDX 1.6 document, else the schema's reason.

    `tick` is called after each top-level component is checked.
    """
    check = compiled()
    if check is not None:
        check.tick = tick
        try:
            if check.check(doc):
                return None
        finally:
            check.tick = None
    error = next(iter(_jsonschema().iter_errors(doc)), None)
    return None if error is None else f"{error.json_path}: {_short_message(error.message)}"


def _short_message(message: str, limit: int = 500) -> str:
    return message if len(message) <= limit else message[:limit] + "…"


def validate_text(text: str) -> str | None:
    """`validate` for a serialised document."""
    return validate(json.loads(text))
