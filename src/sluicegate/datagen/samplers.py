"""Sampler columns: seeded draws from categories, a uniform or a normal distribution.

A sampler cell runs inline (no thread, no model call). Its value depends only on the run seed,
the row index and the column name, so it is the same in every run with that seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen

from .._internal.checks import describe, is_number
from .columns import CallStyle, Column
from .context import CellContext
from .errors import PipelineDefinitionError
from .metadata import SchedulingMetadata
from .specs import SamplerColumnSpec, callable_ref

_CTX_ONLY = CallStyle(is_async=False, passes_row=False, passes_ctx=True, keywords=())


@frozen
class _CategoryDraw:
    values: tuple[Any, ...]
    cumulative: tuple[float, ...] | None

    def __call__(self, ctx: CellContext) -> Any:
        if self.cumulative is None:
            return self.values[ctx.rng.randrange(len(self.values))]
        return ctx.rng.choices(self.values, cum_weights=self.cumulative, k=1)[0]


@frozen
class _UniformDraw:
    low: float
    high: float
    integer: bool

    def __call__(self, ctx: CellContext) -> float | int:
        if self.integer:
            return ctx.rng.randint(int(self.low), int(self.high))
        return ctx.rng.uniform(self.low, self.high)


@frozen
class _NormalDraw:
    mean: float
    stddev: float
    integer: bool

    def __call__(self, ctx: CellContext) -> float | int:
        value = ctx.rng.gauss(self.mean, self.stddev)
        return round(value) if self.integer else value


def _pair(name: str, label: str, value: object) -> tuple[float, float]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(is_number(v) and math.isfinite(v) for v in value)
    ):
        raise PipelineDefinitionError(
            f"sampler {name!r}.{label}",
            f"got {describe(value)}",
            f"pass two finite numbers, e.g. {label}=(0, 1)",
        )
    return float(value[0]), float(value[1])


def sampler(
    name: str,
    categories: Sequence[Any] | Mapping[Any, float] | None = None,
    *,
    weights: Sequence[float] | None = None,
    uniform: tuple[float, float] | None = None,
    normal: tuple[float, float] | None = None,
    integer: bool = False,
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
) -> Column:
    """A seeded sampler column. Give exactly one of:

    - ``categories``: a list of values (uniform choice, or ``weights``), or a mapping
      value -> weight;
    - ``uniform=(low, high)``: a float in ``[low, high]`` (an int with ``integer=True``,
      both ends included);
    - ``normal=(mean, stddev)``: a normal draw (rounded with ``integer=True``).
    """
    given = [
        k
        for k, v in (("categories", categories), ("uniform", uniform), ("normal", normal))
        if v is not None
    ]
    if len(given) != 1:
        raise PipelineDefinitionError(
            f"sampler {name!r}",
            "needs exactly one of categories, uniform or normal"
            + (f" (got {', '.join(given)})" if given else ""),
            "e.g. sampler('topic', ['science', 'history']) or sampler('age', uniform=(18, 65))",
        )
    draw: Callable[[CellContext], Any]
    spec_fields: dict[str, Any] = {"integer": integer}
    if categories is not None:
        values, weight_list = _categories(name, categories, weights)
        cumulative = None
        if weight_list is not None:
            cumulative = tuple(itertools.accumulate(weight_list))
        draw = _CategoryDraw(values, cumulative)
        spec_fields.update(categories=values, weights=weight_list)
    else:
        draw = _numeric(name, uniform, normal, integer, spec_fields)
    if weights is not None and categories is None:
        raise PipelineDefinitionError(
            f"sampler {name!r}.weights", "weights need categories", "drop weights"
        )
    spec = SamplerColumnSpec(
        name=name,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        **spec_fields,
    )
    return Column(
        name=name,
        generator=draw,
        depends_on=(),
        scheduling=SchedulingMetadata(kind="local"),
        spec=spec,
        call_style=_CTX_ONLY,
        keep_if=keep_if,
        drop=drop,
        threaded=False,
    )


def _numeric(
    name: str,
    uniform: tuple[float, float] | None,
    normal: tuple[float, float] | None,
    integer: bool,
    spec_fields: dict[str, Any],
) -> Callable[[CellContext], Any]:
    """The draw of a ``uniform`` or ``normal`` sampler (validated; recorded in ``spec_fields``)."""
    if uniform is not None:
        low, high = _pair(name, "uniform", uniform)
        if low > high:
            raise PipelineDefinitionError(
                f"sampler {name!r}.uniform", f"low {low} is above high {high}", "swap them"
            )
        if integer and (low != int(low) or high != int(high)):
            raise PipelineDefinitionError(
                f"sampler {name!r}.uniform",
                f"integer=True needs whole-number bounds, got {uniform!r}",
                "use integer bounds such as (1, 5)",
            )
        spec_fields["uniform"] = (low, high)
        return _UniformDraw(low, high, integer)
    mean, stddev = _pair(name, "normal", normal)
    if stddev < 0:
        raise PipelineDefinitionError(
            f"sampler {name!r}.normal", f"stddev {stddev} is negative", "use a stddev >= 0"
        )
    spec_fields["normal"] = (mean, stddev)
    return _NormalDraw(mean, stddev, integer)


def _categories(
    name: str, categories: Sequence[Any] | Mapping[Any, float], weights: Sequence[float] | None
) -> tuple[tuple[Any, ...], tuple[float, ...] | None]:
    field = f"sampler {name!r}.categories"
    if isinstance(categories, Mapping):
        if weights is not None:
            raise PipelineDefinitionError(
                f"sampler {name!r}.weights",
                "given together with a categories mapping, which already holds the weights",
                "drop weights, or pass categories as a list",
            )
        values = tuple(categories)
        weights = tuple(categories.values())
    elif isinstance(categories, (str, bytes)) or not isinstance(categories, Sequence):
        raise PipelineDefinitionError(
            field, f"got {describe(categories)}", "pass a list of values, e.g. ['a', 'b']"
        )
    else:
        values = tuple(categories)
    if not values:
        raise PipelineDefinitionError(field, "is empty", "give at least one category")
    if weights is None:
        return values, None
    weight_list = tuple(weights)
    if len(weight_list) != len(values):
        raise PipelineDefinitionError(
            f"sampler {name!r}.weights",
            f"has {len(weight_list)} weights for {len(values)} categories",
            "give one weight per category",
        )
    for w in weight_list:
        if not (is_number(w) and math.isfinite(w) and w >= 0):
            raise PipelineDefinitionError(
                f"sampler {name!r}.weights", f"weight {w!r} is invalid", "use finite numbers >= 0"
            )
    if sum(weight_list) <= 0:
        raise PipelineDefinitionError(
            f"sampler {name!r}.weights", "all weights are zero", "give at least one positive weight"
        )
    return values, tuple(float(w) for w in weight_list)
