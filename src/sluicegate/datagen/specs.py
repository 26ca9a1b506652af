"""Serializable descriptions of columns and pipelines (msgspec): what a TOML file will hold.

Every column helper records its settings here; generators, schemas and predicates are named by
``module:qualname`` references. The descriptions are what the run manifest stores and compares
(the pipeline fingerprint), so a resumed run can say exactly what changed.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import ConfigurationError
from .metadata import SchedulingMetadata


class ColumnSpec(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", omit_defaults=True):
    """Fields every column has. ``kind`` (the tag) says which helper built it."""

    name: str
    depends_on: tuple[str, ...] = ()
    scheduling: SchedulingMetadata | None = None
    keep_if: str | None = None
    drop: bool = False


class CustomColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="custom"):
    """A user generator, by reference; ``model`` is the endpoint alias its cells mostly call."""

    generator: str
    model: str | None = None


class SamplerColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="sampler"):
    """A seeded sampler: ``categories`` (with optional ``weights``), ``uniform`` or ``normal``."""

    categories: tuple[Any, ...] | None = None
    weights: tuple[float, ...] | None = None
    uniform: tuple[float, float] | None = None
    normal: tuple[float, float] | None = None
    integer: bool = False


class LLMTextColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="llm_text"):
    """Text from a model: a prompt template, the endpoint alias and sampling settings."""

    prompt: str
    model: str
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None


class LLMStructuredColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="llm_structured"):
    """A model answer decoded into ``schema`` (a msgspec Struct, by reference)."""

    prompt: str
    model: str
    schema: str
    schema_digest: str
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    max_invalid_retries: int = 2
    response_format: str = "json_schema"


class JudgeColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="judge"):
    """A model judging upstream values; with ``scores`` the verdict is structured."""

    prompt: str
    model: str
    scores: dict[str, str] | None = None
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    max_invalid_retries: int = 2
    response_format: str = "json_schema"


class ExpressionColumnSpec(ColumnSpec, frozen=True, kw_only=True, tag="expression"):
    """A plain function of upstream values, by reference."""

    function: str


AnyColumnSpec = (
    CustomColumnSpec
    | SamplerColumnSpec
    | LLMTextColumnSpec
    | LLMStructuredColumnSpec
    | JudgeColumnSpec
    | ExpressionColumnSpec
)


def callable_ref(obj: Callable[..., Any] | type) -> str:
    """``module:qualname`` of a function, class or callable object (for humans and TOML)."""
    target: Any = obj
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(obj)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}:{qualname}"


def resolve_ref(ref: str, *, field: str) -> Any:
    """Import the object a ``module:qualname`` reference names."""
    module_name, _, qualname = ref.partition(":")
    if not module_name or not qualname or "<" in qualname:
        raise ConfigurationError(
            field,
            f"{ref!r} is not an importable reference",
            "name a module-level function or class as 'package.module:name'",
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            field, f"cannot import {module_name!r} ({exc})", "check the module name"
        ) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(
                field, f"{module_name!r} has no {qualname!r}", "check the name after the colon"
            ) from None
    return target


def code_digest(obj: Any) -> str:
    """A short digest of a callable's code: its source when available, else its bytecode.

    Closure variables are not part of it (their values may not be reproducible), so two
    closures of one function with different captured values have the same digest.
    """
    target = obj
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(obj)
    try:
        text = inspect.getsource(target).encode()
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        text = (
            code.co_code + repr(code.co_consts).encode()
            if code is not None
            else repr(target).encode()
        )
    return hashlib.blake2b(text, digest_size=8).hexdigest()
