"""Deterministic JSON documents that match a JSON schema: structured output for simulations.

A real OpenAI-compatible server given ``response_format={"type": "json_schema", ...}``
constrains its answer to the schema. :func:`json_schema_of` finds such a schema in a
request's ``extra``, and :func:`instance_of` builds a document that satisfies it, drawn from a
seeded ``random.Random`` so the same request always gets the same answer. It covers what
msgspec's :func:`msgspec.json.schema` and typical hand-written schemas use: objects with
``properties``/``required``/``additionalProperties``, arrays (``items``, ``minItems``,
``maxItems``), strings (``enum``, ``const``, ``minLength``, ``maxLength``, ``format``
date/date-time/uuid), integers and numbers (``minimum``/``maximum`` and their exclusive
forms, ``multipleOf`` for integers), booleans, null, ``anyOf``/``oneOf`` (the first non-null
branch), ``allOf`` (merged) and local ``$ref`` (``#/$defs/...``). Anything else yields a
string, which a validating reader then rejects: the simulation shows what a model would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["instance_of", "json_schema_of"]

_MAX_DEPTH: Final = 16
_WORDS: Final = (
    "alpha", "bravo", "delta", "echo", "harbor", "lumen", "meadow", "nova", "orbit", "prairie",
    "quartz", "river", "summit", "tundra", "vertex", "willow",
)  # fmt: skip


def json_schema_of(extra: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The JSON schema a request asks its answer to follow, if it asks for one.

    Recognizes OpenAI's ``response_format={"type": "json_schema", "json_schema": {"schema":
    ...}}`` and vLLM's ``guided_json``; ``{"type": "json_object"}`` yields an empty schema
    (any object).
    """
    if not extra:
        return None
    guided = extra.get("guided_json")
    if isinstance(guided, Mapping):
        return guided
    fmt = extra.get("response_format")
    if not isinstance(fmt, Mapping):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    if fmt.get("type") != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, Mapping) else None
    return schema if isinstance(schema, Mapping) else None


def instance_of(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A document satisfying ``schema``, drawn from ``rng`` (deterministic for a seeded rng)."""
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return _Builder(defs if isinstance(defs, Mapping) else {}, rng).build(schema, 0)


class _Builder:
    def __init__(self, defs: Mapping[str, Any], rng: random.Random) -> None:
        self.defs = defs
        self.rng = rng

    def build(self, schema: Any, depth: int) -> Any:
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return None
        schema = self._resolved(schema)
        if "const" in schema:
            return schema["const"]
        enum = schema.get("enum")
        if isinstance(enum, list) and enum:
            return enum[self.rng.randrange(len(enum))]
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                usable = [b for b in branches if not _is_null(self._resolved(b))] or branches
                return self.build(usable[0], depth + 1)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            merged: dict[str, Any] = {}
            for part in all_of:
                if isinstance(part, Mapping):
                    merged.update(self._resolved(part))
            return self.build(merged, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None and "properties" in schema:
            kind = "object"
        builder = getattr(self, f"_{kind}", None) if isinstance(kind, str) else None
        return builder(schema, depth) if builder is not None else self._string(schema, depth)

    def _resolved(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = schema.get("$ref")
        for _ in range(_MAX_DEPTH):
            if not isinstance(ref, str):
                return schema
            name = ref.rsplit("/", 1)[-1]
            target = self.defs.get(name)
            if not isinstance(target, Mapping):
                return {}
            schema = target
            ref = schema.get("$ref")
        return schema

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        out: dict[str, Any] = {}
        if isinstance(properties, Mapping):
            for name, sub in properties.items():
                out[str(name)] = self.build(sub, depth + 1)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        low = _int(schema.get("minItems"), 1)
        high = max(low, _int(schema.get("maxItems"), low + 2))
        count = self.rng.randint(low, min(high, low + 4))
        items = schema.get("items", {})
        return [self.build(items, depth + 1) for _ in range(count)]

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        fmt = schema.get("format")
        if fmt == "date":
            return f"2026-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}"
        if fmt == "date-time":
            return f"2026-{self.rng.randint(1, 12):02d}-{self.rng.randint(1, 28):02d}T12:00:00Z"
        if fmt == "uuid":
            return "%08x-%04x-4%03x-8%03x-%012x" % (  # noqa: UP031 - fixed-width hex fields
                self.rng.getrandbits(32),
                self.rng.getrandbits(16),
                self.rng.getrandbits(12),
                self.rng.getrandbits(12),
                self.rng.getrandbits(48),
            )
        low = _int(schema.get("minLength"), 0)
        high = _int(schema.get("maxLength"), max(low, 40))
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(1, 4))]
        text = " ".join(words)
        while len(text) < low:
            text += " " + self.rng.choice(_WORDS)
        return text[:high] if high >= low else text

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        low, high = _bounds(schema, integer=True)
        value = self.rng.randint(int(low), int(high))
        step = schema.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            value = max(int(low), (value // step) * step)
            if value < low:
                value += step
        return value

    def _number(self, schema: Mapping[str, Any], depth: int) -> float:
        low, high = _bounds(schema, integer=False)
        return round(self.rng.uniform(low, high), 3)

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return self.rng.random() < 0.5

    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None


def _is_null(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "null"


def _int(value: object, default: int) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else default  # type: ignore[return-value]


def _bounds(schema: Mapping[str, Any], *, integer: bool) -> tuple[float, float]:
    def number(key: str) -> float | None:
        value = schema.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None  # type: ignore[arg-type]

    low = number("minimum")
    high = number("maximum")
    step = 1.0 if integer else 1e-3
    exclusive_low, exclusive_high = number("exclusiveMinimum"), number("exclusiveMaximum")
    if exclusive_low is not None:
        low = exclusive_low + step if low is None else max(low, exclusive_low + step)
    if exclusive_high is not None:
        high = exclusive_high - step if high is None else min(high, exclusive_high - step)
    if low is None:
        low = 0.0 if high is None else high - 100.0
    if high is None:
        high = low + 100.0
    if integer:
        low, high = float(math.ceil(low)), float(math.floor(high))
    return (low, high) if low <= high else (low, low)
