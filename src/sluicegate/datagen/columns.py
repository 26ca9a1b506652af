"""Columns: a name, a generator, its dependencies, scheduling metadata and an optional filter.

A generator is a sync or async callable. How it is called follows its parameters:

- ``def question(topic, ctx): ...`` - every parameter except ``ctx`` and ``row`` names an
  upstream column (a dependency) and receives its value; ``ctx`` receives the
  :class:`~sluicegate.datagen.CellContext`.
- ``def make(row, ctx): ...`` - ``row`` receives a read-only :class:`~sluicegate.datagen.RowView`
  of the dependencies, which are then declared with ``depends_on=`` (or ``inputs=``).

Async generators run in the scheduler; sync ones run in a worker thread under the ``local``
resource limit (``threaded=False`` runs a cheap sync function inline instead).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec
from attrs import field, frozen

from .._internal.checks import describe
from .errors import PipelineDefinitionError
from .metadata import SchedulingMetadata
from .specs import AnyColumnSpec, CustomColumnSpec, ExpressionColumnSpec, callable_ref

RESERVED_PARAMETERS: Final = ("row", "ctx")


def _check_name(_inst: Any, _attr: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise PipelineDefinitionError(
            "Column.name",
            f"{describe(value)} is not a valid column name",
            "use an identifier (letters, digits, underscores; not starting with a digit), "
            "so templates can name it as {name}",
        )


@frozen
class CallStyle:
    """How the runner calls a generator (derived from its signature)."""

    is_async: bool
    passes_row: bool
    passes_ctx: bool
    keywords: tuple[str, ...]
    positional: bool = False  # called as generator(row, ctx): no usable signature


@frozen
class Column:
    """One column of a pipeline. Build it with :func:`column` or a column helper.

    ``depends_on`` lists the upstream columns; ``model`` is the endpoint alias the cells call
    (model columns hold one unit of that endpoint's task resource while they run);
    ``keep_if(row)`` filters rows (the row then holds this column and its dependencies);
    ``drop=True`` generates the column for downstream use but leaves it out of the output.
    ``value_type`` is the type journaled values decode into (a Struct schema, say).
    """

    name: str = field(validator=_check_name)
    generator: Callable[..., Any]
    depends_on: tuple[str, ...]
    scheduling: SchedulingMetadata
    spec: AnyColumnSpec
    call_style: CallStyle
    model: str | None = None
    keep_if: Callable[[Any], Any] | None = None
    drop: bool = False
    threaded: bool = False
    value_type: Any = None

    def describe(self) -> dict[str, Any]:
        """The column's serializable description (its spec as JSON-shaped builtins: lists, not
        tuples, so it compares equal to a description read back from a manifest)."""
        out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self.spec))
        return out


def call_style_of(generator: Callable[..., Any], *, field_name: str) -> CallStyle:
    """Read how to call ``generator`` from its signature."""
    if not callable(generator):
        raise PipelineDefinitionError(
            field_name,
            f"{describe(generator)} is not callable",
            "pass a function (or async function) of the row's values",
        )
    try:
        parameters = inspect.signature(generator).parameters
    except (TypeError, ValueError):  # builtins without a signature: generator(row, ctx)
        return CallStyle(_is_async(generator), True, True, (), positional=True)
    keywords: list[str] = []
    passes_row = passes_ctx = False
    variadic = False
    for name, parameter in parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            variadic = True
        elif name == "row":
            passes_row = True
        elif name == "ctx":
            passes_ctx = True
        elif parameter.default is parameter.empty:
            keywords.append(name)
    if variadic and not keywords and not passes_row and not passes_ctx:
        return CallStyle(_is_async(generator), True, True, (), positional=True)
    return CallStyle(_is_async(generator), passes_row, passes_ctx, tuple(keywords))


def _is_async(generator: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(generator):
        return True
    call = getattr(generator, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and inspect.iscoroutinefunction(call)


def _as_names(value: Iterable[str] | str | None, field_name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        raise PipelineDefinitionError(
            field_name,
            f"got the string {value!r}",
            f"pass a list of column names, e.g. [{value!r}]",
        )
    names = tuple(value)
    for name in names:
        if not isinstance(name, str):
            raise PipelineDefinitionError(
                field_name, f"{describe(name)} is not a column name", "pass column names as str"
            )
    return tuple(dict.fromkeys(names))


def column(
    name: str,
    generator: Callable[..., Any],
    *,
    depends_on: Iterable[str] | None = None,
    inputs: Iterable[str] | None = None,
    model: str | None = None,
    scheduling: SchedulingMetadata | None = None,
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
    threaded: bool | None = None,
) -> Column:
    """A column computed by your own ``generator`` (sync or async).

    Dependencies are the generator's parameter names (except ``row`` and ``ctx``) plus
    ``depends_on``/``inputs``. ``model`` names the endpoint alias it calls through
    ``ctx.call``; it makes the column a ``custom_model`` column unless ``scheduling`` says
    otherwise. Sync generators run in a worker thread unless ``threaded=False``.
    """
    field_name = f"column {name!r}.generator"
    style = call_style_of(generator, field_name=field_name)
    declared = _as_names(depends_on, f"column {name!r}.depends_on") + _as_names(
        inputs, f"column {name!r}.inputs"
    )
    deps = tuple(dict.fromkeys((*style.keywords, *declared)))
    if scheduling is None:
        scheduling = SchedulingMetadata(kind="custom_model" if model is not None else "local")
    if not isinstance(scheduling, SchedulingMetadata):
        raise PipelineDefinitionError(
            f"column {name!r}.scheduling",
            f"{describe(scheduling)} is not SchedulingMetadata",
            "pass SchedulingMetadata(kind=..., identity=..., weight=...)",
        )
    spec = CustomColumnSpec(
        name=name,
        depends_on=deps,
        scheduling=scheduling,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        generator=callable_ref(generator),
        model=model,
    )
    return Column(
        name=name,
        generator=generator,
        depends_on=deps,
        scheduling=scheduling,
        spec=spec,
        call_style=style,
        model=model,
        keep_if=_check_predicate(keep_if, name),
        drop=drop,
        threaded=(not style.is_async) if threaded is None else (threaded and not style.is_async),
    )


def expression(
    name: str,
    function: Callable[..., Any],
    *,
    inputs: Iterable[str] | None = None,
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
) -> Column:
    """A column computed inline by a plain, cheap function of upstream values.

    ``function``'s parameters name its inputs (``lambda question, answer: len(answer)``);
    a ``row`` parameter receives the row view of ``inputs`` instead. It runs in the event
    loop (no thread), so keep it cheap; use :func:`column` for slow work.
    """
    style = call_style_of(function, field_name=f"column {name!r}.function")
    if style.is_async:
        raise PipelineDefinitionError(
            f"column {name!r}.function",
            "an expression must be a plain (sync) function",
            "use column(...) for async generators",
        )
    deps = tuple(dict.fromkeys((*style.keywords, *_as_names(inputs, f"column {name!r}.inputs"))))
    scheduling = SchedulingMetadata(kind="local")
    spec = ExpressionColumnSpec(
        name=name,
        depends_on=deps,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        function=callable_ref(function),
    )
    return Column(
        name=name,
        generator=function,
        depends_on=deps,
        scheduling=scheduling,
        spec=spec,
        call_style=style,
        keep_if=_check_predicate(keep_if, name),
        drop=drop,
        threaded=False,
    )


def _check_predicate(
    keep_if: Callable[[Any], Any] | None, name: str
) -> Callable[[Any], Any] | None:
    if keep_if is not None and not callable(keep_if):
        raise PipelineDefinitionError(
            f"column {name!r}.keep_if",
            f"{describe(keep_if)} is not callable",
            "pass a predicate row -> bool, e.g. lambda row: len(row['answer']) > 20",
        )
    return keep_if
