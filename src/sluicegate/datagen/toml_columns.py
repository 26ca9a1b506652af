"""Columns of a pipeline file: one ``[[columns]]`` table -> the column helper it names.

``kind`` picks the helper (:func:`sampler`, :func:`llm_text`, :func:`llm_structured`,
:func:`judge`, :func:`expression`, or :func:`column` for ``custom``); the other keys are the
helper's arguments, with generators, schemas and filters as ``module:function`` references.
Each key's type is checked first, so one table can report several problems; then the helper
runs its own checks. :func:`check_pipeline_shape` checks what needs every column at once
(unique names, dependencies, cycles, endpoint aliases) without stopping at the first problem.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from .._internal.checks import describe, did_you_mean, is_number
from ..errors import ConfigurationError
from .columns import Column, column, expression
from .config_problems import unknown_fix
from .llm_columns import judge, llm_structured, llm_text
from .metadata import SchedulingMetadata
from .samplers import sampler
from .specs import resolve_ref

PathParts = tuple[str | int, ...]


class ProblemSink(Protocol):
    """Where problems go (the loader's collector)."""

    def add(self, path: PathParts, problem: str, fix: str) -> None: ...

    def error(self, path: PathParts, exc: ConfigurationError, key: str = "") -> None: ...

    def unknown(self, path: PathParts, key: str, known: tuple[str, ...]) -> None: ...


_COMMON: Final = ("name", "kind", "keep_if", "drop")
_PROMPTED: Final = ("prompt", "model", "system", "max_tokens", "temperature", "weight")
KIND_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "sampler": ("categories", "weights", "uniform", "normal", "integer"),
    "llm_text": _PROMPTED,
    "llm_structured": (*_PROMPTED, "schema", "max_invalid_retries", "response_format"),
    "judge": (*_PROMPTED, "scores", "max_invalid_retries", "response_format"),
    "expression": ("function", "inputs"),
    "custom": ("generator", "depends_on", "inputs", "model", "scheduling", "threaded"),
}
"""The keys each column kind accepts besides ``name``, ``kind``, ``keep_if`` and ``drop``."""

COLUMN_KINDS: Final = tuple(KIND_KEYS)

_REFERENCES: Final = ("keep_if", "schema", "function", "generator")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_numbers(v: Any) -> bool:
    return isinstance(v, list) and all(is_number(x) for x in v)


_TYPES: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    **{k: ((lambda v: isinstance(v, str) and bool(v)), "a non-empty string") for k in (
        "name", "kind", "prompt", "model", "system", "response_format", *_REFERENCES)},
    "max_tokens": (_is_int, "an integer"),
    "max_invalid_retries": (_is_int, "an integer"),
    "temperature": (is_number, "a number"),
    "weight": (is_number, "a number"),
    "drop": ((lambda v: isinstance(v, bool)), "true or false"),
    "integer": ((lambda v: isinstance(v, bool)), "true or false"),
    "threaded": ((lambda v: isinstance(v, bool)), "true or false"),
    "depends_on": (_is_str_list, "a list of column names"),
    "inputs": (_is_str_list, "a list of column names"),
    "weights": (_is_numbers, "a list of numbers"),
    "uniform": ((lambda v: _is_numbers(v) and len(v) == 2), "two numbers, [low, high]"),
    "normal": ((lambda v: _is_numbers(v) and len(v) == 2), "two numbers, [mean, stddev]"),
    "categories": ((lambda v: isinstance(v, (list, dict)) and bool(v)), "a list or a table"),
    "scores": ((lambda v: isinstance(v, dict)), "a table criterion -> description"),
    "scheduling": ((lambda v: isinstance(v, dict)), "a table {kind, identity, weight}"),
}  # fmt: skip


def _owner(key: str) -> str:
    owners = [kind for kind, keys in KIND_KEYS.items() if key in keys]
    return f" (a key of kind {', '.join(repr(o) for o in owners)})" if owners else ""


def build_column(index: int, table: dict[str, Any], problems: ProblemSink) -> Column | None:
    """The column of ``[[columns]]`` number ``index``, or ``None`` after recording why not."""
    path: PathParts = ("columns", index)
    name, kind = table.get("name"), table.get("kind")
    if not isinstance(name, str) or not name:
        problems.add((*path, "name"), f"got {describe(name)}", 'name the column: name = "..."')
        return None
    if kind not in KIND_KEYS:
        problem = "missing" if kind is None else f"unknown kind {kind!r}"
        hint = did_you_mean(str(kind), COLUMN_KINDS) if kind is not None else ""
        fix = (
            f"use {hint.split(' ')[-1][:-2]}" if hint else "use one of: " + ", ".join(COLUMN_KINDS)
        )
        problems.add((*path, "kind"), problem + hint, fix)
        return None
    known = (*_COMMON, *KIND_KEYS[kind])
    arguments: dict[str, Any] = {}
    ok = True
    for key, value in table.items():
        if key not in known:
            hint = did_you_mean(key, known)
            problems.add(
                (*path, key),
                f"unknown key for {'an' if kind[0] in 'aeiou' else 'a'} {kind} column"
                f"{hint or _owner(key)}",
                unknown_fix(hint, known),
            )
            ok = False
            continue
        check, expected = _TYPES[key]
        if not check(value):
            problems.add((*path, key), f"got {describe(value)}", f"use {expected}")
            ok = False
            continue
        if key in _REFERENCES:
            try:
                value = resolve_ref(value, field=key)
            except ConfigurationError as exc:
                problems.error(path, exc, key=key)
                ok = False
                continue
        arguments[key] = value
    if not ok:
        return None
    try:
        return _HELPERS[kind](name, arguments)
    except ConfigurationError as exc:
        problems.error(path, exc)
        return None
    except TypeError as exc:  # a missing required argument
        problems.add(path, f"cannot build the {kind} column ({exc})", "see the column's keys")
        return None


def _common(args: dict[str, Any]) -> dict[str, Any]:
    return {k: args[k] for k in ("keep_if", "drop") if k in args}


def _pick(args: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: args[k] for k in keys if k in args}


def _required(args: dict[str, Any], kind: str, *keys: str) -> None:
    missing = [k for k in keys if k not in args]
    if missing:
        raise ConfigurationError(
            missing[0], f"a {kind} column needs {missing[0]!r}", f"add {missing[0]} = ..."
        )


def _sampler(name: str, args: dict[str, Any]) -> Column:
    return sampler(name, **_pick(args, KIND_KEYS["sampler"]), **_common(args))


def _prompted(helper: Callable[..., Column], kind: str, extra: Sequence[str] = ()) -> Any:
    def build(name: str, args: dict[str, Any]) -> Column:
        _required(args, kind, "prompt", "model", *extra)
        return helper(name, **_pick(args, KIND_KEYS[kind]), **_common(args))

    return build


def _expression(name: str, args: dict[str, Any]) -> Column:
    _required(args, "expression", "function")
    return expression(name, **_pick(args, KIND_KEYS["expression"]), **_common(args))


def _custom(name: str, args: dict[str, Any]) -> Column:
    _required(args, "custom", "generator")
    options = _pick(args, ("depends_on", "inputs", "model", "threaded"))
    if "scheduling" in args:
        options["scheduling"] = _scheduling(args["scheduling"])
    return column(name, args["generator"], **options, **_common(args))


def _scheduling(table: dict[str, Any]) -> SchedulingMetadata:
    """The metadata as written (an int weight stays an int, as in Python: same fingerprint)."""
    known = SchedulingMetadata.__struct_fields__
    for key in table:
        if key not in known:
            hint = did_you_mean(key, known)
            raise ConfigurationError(
                f"scheduling.{key}", f"unknown key{hint}", unknown_fix(hint, known)
            )
    values = dict(table)
    if isinstance(values.get("identity"), list):
        values["identity"] = tuple(values["identity"])
    try:
        return SchedulingMetadata(**values)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"scheduling.{exc.field.rsplit('.', 1)[-1]}", exc.problem, exc.fix
        ) from None


_HELPERS: Final[dict[str, Callable[[str, dict[str, Any]], Column]]] = {
    "sampler": _sampler,
    "llm_text": _prompted(llm_text, "llm_text"),
    "llm_structured": _prompted(llm_structured, "llm_structured", ("schema",)),
    "judge": _prompted(judge, "judge"),
    "expression": _expression,
    "custom": _custom,
}


def check_pipeline_shape(
    columns: Sequence[tuple[int, Column]],
    aliases: set[str] | None,
    problems: ProblemSink,
    *,
    all_names: set[str] | None = None,
) -> None:
    """Every check that needs all columns: duplicate names, dependencies naming no column,
    endpoint aliases not declared (``aliases`` is ``None`` when the file declares no
    endpoints: every alias is then simulated) and dependency cycles."""
    seen: dict[str, int] = {}
    for index, col in columns:
        if col.name in seen:
            problems.add(
                ("columns", index, "name"),
                f"{col.name!r} is already the name of columns[{seen[col.name]}]",
                "give every column a unique name",
            )
        seen.setdefault(col.name, index)
    names = set(seen)
    # Names of columns that could not be built still count, so one mistake is reported once.
    known = names | (all_names or set())
    for index, col in columns:
        in_prompt = hasattr(col.spec, "prompt")
        for dep in col.depends_on:
            if dep in known:
                continue
            if in_prompt:
                problems.add(
                    ("columns", index, "prompt"),
                    f"placeholder {{{dep}}} names no column{did_you_mean(dep, known)}",
                    "declare that column, fix the name, or double literal braces ({{ }})",
                )
            else:
                problems.add(
                    ("columns", index, "depends_on"),
                    f"{col.name!r} reads {dep!r}, which names no column{did_you_mean(dep, known)}",
                    "declare that column or fix the name (a generator's parameters are "
                    "dependencies too)",
                )
        if aliases is not None and col.model is not None and col.model not in aliases:
            problems.add(
                ("columns", index, "model"),
                f"unknown endpoint alias {col.model!r}{did_you_mean(col.model, aliases)}",
                f"declare [endpoints.{col.model}] or use one of: "
                + (", ".join(sorted(aliases)) or "none declared"),
            )
    cycle = _cycle({c.name: [d for d in c.depends_on if d in names] for _, c in columns})
    if cycle:
        problems.add(
            ("columns", seen[cycle[0]], "depends_on"),
            "dependency cycle: " + " -> ".join(cycle),
            "remove one of these dependencies",
        )


def _cycle(deps: dict[str, list[str]]) -> list[str]:
    """One dependency cycle as a path of names (first == last), or ``[]``."""
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        stack.append(name)
        for dep in deps.get(name, ()):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[name] = 2
        return []

    for name in deps:
        if name not in state and (found := visit(name)):
            return found
    return []
