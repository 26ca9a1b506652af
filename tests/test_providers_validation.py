"""Every public constructor in providers/ and the emulator validates at the boundary.

Property: for any value of any field, construction either keeps a value inside the documented
range, or raises ConfigurationError naming exactly that field. Never another exception type,
never a silently changed value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluicegate import ConfigurationError, SimulatedProvider
from sluicegate.testing import EmulatorConfig


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def non_negative(v: object) -> bool:
    return _number(v) and v >= 0  # type: ignore[operator]


def positive(v: object) -> bool:
    return _number(v) and v > 0  # type: ignore[operator]


def probability(v: object) -> bool:
    return _number(v) and 0 <= v <= 1  # type: ignore[operator]


def jitter(v: object) -> bool:
    return _number(v) and 0 <= v < 1  # type: ignore[operator]


def optional(check: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda v: v is None or check(v)


def positive_int(v: object) -> bool:
    return _integer(v) and v >= 1  # type: ignore[operator]


SIMULATED_FIELDS: dict[str, Callable[[object], bool]] = {
    "seed": _integer,
    "latency_seconds": non_negative,
    "latency_jitter": jitter,
    "capacity": optional(positive_int),
    "requests_per_minute": optional(positive_int),
    "tokens_per_minute": optional(positive_int),
    "failure_status": lambda v: _integer(v) and 500 <= v <= 599,  # type: ignore[operator]
    "retry_after_seconds": optional(non_negative),
    "rejection_latency_seconds": non_negative,
    "failure_rate": probability,
    "timeout_rate": probability,
    "timeout_seconds": positive,
    "completion_tokens": positive_int,
    "embedding_dimensions": positive_int,
    "publish_rate_limit_hints": lambda v: isinstance(v, bool),
    "name": lambda v: isinstance(v, str) and bool(v.strip()),
}


EMULATOR_FIELDS: dict[str, Callable[[object], bool]] = {
    **{k: v for k, v in SIMULATED_FIELDS.items() if k not in ("name", "publish_rate_limit_hints")},
    "port": lambda v: _integer(v) and 0 <= v <= 65535,  # type: ignore[operator]
    "idle_timeout_seconds": positive,
    "max_body_bytes": positive_int,
}


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**4), 10**5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(0, 1),
    st.text(max_size=4),
    st.lists(st.integers(), max_size=2),
)


def _check(build: Callable[..., Any], prefix: str, name: str, value: object, ok: bool) -> None:
    try:
        built = build(**{name: value})
    except ConfigurationError as exc:
        assert exc.field == f"{prefix}.{name}", exc
        assert not ok, f"{name}={value!r} is valid but was refused: {exc}"
        return
    assert ok, f"{name}={value!r} was accepted"
    kept = getattr(built, name)
    assert kept == value or (kept != kept and value != value)  # never silently changed


@settings(max_examples=400)
@given(name=st.sampled_from(sorted(SIMULATED_FIELDS)), value=anything)
def test_simulated_provider_fields(name: str, value: object) -> None:
    _check(SimulatedProvider, "SimulatedProvider", name, value, SIMULATED_FIELDS[name](value))


@settings(max_examples=400)
@given(name=st.sampled_from(sorted(EMULATOR_FIELDS)), value=anything)
def test_emulator_config_fields(name: str, value: object) -> None:
    _check(EmulatorConfig, "EmulatorConfig", name, value, EMULATOR_FIELDS[name](value))


@pytest.mark.parametrize("models", ["gpt", ("a", ""), ("a", 3), {"a": 1}])
def test_emulator_models_must_be_model_ids(models: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        EmulatorConfig(models=models)  # type: ignore[arg-type]
    assert caught.value.field == "EmulatorConfig.models"


def test_emulator_models_list_is_kept_as_a_tuple() -> None:
    assert EmulatorConfig(models=["a", "b"]).models == ("a", "b")  # type: ignore[arg-type]
