"""AIMD arithmetic on its own: plain numbers, the clock passed in."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from sluicegate.requests.adaptive.aimd import AimdLimit
from sluicegate.requests.config import RequestResourceSettings


def test_decrease_floors_remembers_the_ceiling_and_starts_an_epoch() -> None:
    aimd = AimdLimit(90, 100)
    assert aimd.decrease(0.7) == 90
    assert (aimd.limit, aimd.ceiling, aimd.epoch) == (63, 90, 1)  # not 62 (binary 0.7)
    assert aimd.same_storm(0) and not aimd.same_storm(1)
    small = AimdLimit(1, 10)
    small.decrease(0.5)
    assert small.limit == 1  # the floor


def test_cooldown_blocks_growth_and_is_never_shortened() -> None:
    settings = RequestResourceSettings(successes_until_increase=1, ceiling_hold_rounds=0)
    aimd = AimdLimit(4, 10)
    aimd.start_cooldown(now=0.0, seconds=5.0)
    aimd.start_cooldown(now=1.0, seconds=1.0)  # would end at 2: keeps 5
    assert aimd.cooldown_remaining(3.0) == 2.0 and aimd.in_cooldown(4.9)
    aimd.on_success(4.9, settings)
    assert aimd.limit == 4
    aimd.on_success(5.0, settings)
    assert aimd.limit == 5 and aimd.max_limit == 5


def test_additive_increase_after_the_configured_streak_up_to_the_max() -> None:
    settings = RequestResourceSettings(successes_until_increase=3, increase_step=2)
    aimd = AimdLimit(7, 10)
    for _ in range(3):
        aimd.on_success(0.0, settings)
    assert aimd.limit == 9
    for _ in range(3):
        aimd.on_success(0.0, settings)
    assert aimd.limit == 10  # capped at effective_max
    aimd.on_success(0.0, settings)
    assert aimd.successes == 0


def test_cautious_zone_below_the_ceiling() -> None:
    settings = RequestResourceSettings(
        successes_until_increase=1, ceiling_hold_rounds=2.0, ceiling_hold_seconds=0.0
    )
    aimd = AimdLimit(8, 20)
    aimd.decrease(0.5)  # 4, ceiling 8
    for _ in range(3):
        aimd.on_success(0.0, settings)
    assert aimd.limit == 7  # normal growth stops one below the ceiling
    for _ in range(13):
        aimd.on_success(0.0, settings)
    assert aimd.limit == 7  # at 7 a step needs ceil(2 * 7) = 14
    aimd.on_success(0.0, settings)
    assert aimd.limit == 8
    for _ in range(16):
        aimd.on_success(0.0, settings)
    assert (aimd.limit, aimd.ceiling) == (9, None)  # held a full period: the ceiling is stale


def test_a_lower_effective_max_brings_the_limit_down() -> None:
    aimd = AimdLimit(8, 10)
    aimd.set_effective_max(5)
    assert (aimd.limit, aimd.effective_max) == (5, 5)


@given(
    st.integers(1, 10_000),
    st.floats(0.01, 0.99),
    st.lists(st.sampled_from(["ok", "429"]), max_size=200),
)
def test_limit_stays_within_one_and_the_max(start: int, factor: float, events: list[str]) -> None:
    settings = RequestResourceSettings(decrease_factor=factor, successes_until_increase=1)
    emax = max(start, 1)
    aimd = AimdLimit(start, emax)
    for event in events:
        if event == "ok":
            aimd.on_success(math.inf, settings)
        else:
            aimd.decrease(factor)
        assert 1 <= aimd.limit <= emax
        assert aimd.max_limit >= aimd.limit
