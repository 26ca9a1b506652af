"""Latency distributions for the simulated provider and the emulator.

Each distribution is a small frozen value (a msgspec Struct, so an emulator config holding one
can be written to and read from JSON/TOML; the ``kind`` tag tells them apart) that maps one
uniform draw ``u`` in ``[0, 1)`` to a latency in seconds through its quantile function. One
draw per call keeps a seeded run reproducible whatever distribution is chosen: the n-th call
of a provider always gets the n-th draw of its seed.

================================  ==========================================================
``FixedLatency(seconds)``         every call takes ``seconds``
``UniformLatency(low, high)``     uniform in ``[low, high)``
``LogNormalLatency(median,        long-tailed like real model servers: ``median *
sigma, max_seconds=None)``        exp(sigma * z)`` for a standard normal ``z``, optionally
                                  capped at ``max_seconds``
``EmpiricalLatency(samples)``     one of the observed ``samples`` (seconds), each as likely
================================  ==========================================================
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any, Final, TypeAlias

import msgspec

from .._internal.checks import describe, is_number
from ..errors import ConfigurationError

__all__ = [
    "EmpiricalLatency",
    "FixedLatency",
    "LatencyDistribution",
    "LogNormalLatency",
    "UniformLatency",
]

_STANDARD_NORMAL: Final = NormalDist()


# inv_cdf needs 0 < u < 1; a draw of exactly 0.0 (possible from random.random) is nudged in.
_SMALLEST_U: Final = 1e-12


def _seconds(owner: str, name: str, value: object, *, positive: bool = False) -> None:
    ok = is_number(value) and math.isfinite(value)  # type: ignore[arg-type]
    ok = ok and (value > 0 if positive else value >= 0)  # type: ignore[operator]
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{owner}.{name}",
            f"got {describe(value)}",
            f"use a finite number of seconds {bound} (an int or a float, not a bool)",
        )


class FixedLatency(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="fixed"):
    """Every call takes ``seconds`` (finite, >= 0)."""

    seconds: float

    def __post_init__(self) -> None:
        _seconds("FixedLatency", "seconds", self.seconds)

    def quantile(self, u: float) -> float:
        """The latency for the uniform draw ``u`` in ``[0, 1)``."""
        return float(self.seconds)


class UniformLatency(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="uniform"):
    """Uniform in ``[low, high)`` seconds (finite, ``0 <= low <= high``)."""

    low: float
    high: float

    def __post_init__(self) -> None:
        _seconds("UniformLatency", "low", self.low)
        _seconds("UniformLatency", "high", self.high)
        if self.high < self.low:
            raise ConfigurationError(
                "UniformLatency.high",
                f"{self.high} is below low ({self.low})",
                "use high >= low",
            )

    def quantile(self, u: float) -> float:
        """The latency for the uniform draw ``u`` in ``[0, 1)``."""
        return self.low + u * (self.high - self.low)


class LogNormalLatency(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="lognormal"
):
    """Log-normal: ``median * exp(sigma * z)``, ``z`` standard normal; the shape of real model
    servers' latencies (most calls near the median, a long slow tail).

    ``median`` (finite seconds > 0) is the 50th percentile; ``sigma`` (finite, >= 0) the
    spread: the 99th percentile is ``median * exp(2.326 * sigma)`` (sigma 0.5: 3.2 x the
    median). ``max_seconds`` (finite, >= median, or ``None``) caps the tail.
    """

    median: float
    sigma: float
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        _seconds("LogNormalLatency", "median", self.median, positive=True)
        sigma = self.sigma
        if not (is_number(sigma) and math.isfinite(sigma) and sigma >= 0):
            raise ConfigurationError(
                "LogNormalLatency.sigma",
                f"got {describe(sigma)}",
                "use a finite number >= 0 (0.5 is a typical spread; 0 means always the median)",
            )
        if self.max_seconds is not None:
            _seconds("LogNormalLatency", "max_seconds", self.max_seconds)
            if self.max_seconds < self.median:
                raise ConfigurationError(
                    "LogNormalLatency.max_seconds",
                    f"{self.max_seconds} is below the median ({self.median})",
                    "use a cap >= median, or None for no cap",
                )

    def quantile(self, u: float) -> float:
        """The latency for the uniform draw ``u`` in ``[0, 1)``."""
        z = _STANDARD_NORMAL.inv_cdf(min(max(u, _SMALLEST_U), 1.0 - _SMALLEST_U))
        seconds = self.median * math.exp(self.sigma * z)
        return seconds if self.max_seconds is None else min(seconds, self.max_seconds)


class EmpiricalLatency(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="empirical"
):
    """One of the observed ``samples`` (seconds), each equally likely: replay a measured
    endpoint. ``samples`` is a non-empty sequence of finite numbers >= 0, kept as a sorted
    tuple (the order of observations carries no meaning; sorted, ``quantile`` is monotone)."""

    samples: tuple[float, ...]

    def __post_init__(self) -> None:
        samples: Any = self.samples
        if isinstance(samples, (str, bytes)) or not isinstance(samples, (tuple, list)):
            raise ConfigurationError(
                "EmpiricalLatency.samples",
                f"got {describe(samples)}",
                "use a non-empty tuple of latencies in seconds, e.g. (0.21, 0.25, 0.9)",
            )
        if not samples:
            raise ConfigurationError(
                "EmpiricalLatency.samples", "is empty", "give at least one latency in seconds"
            )
        for index, value in enumerate(samples):
            _seconds("EmpiricalLatency", f"samples[{index}]", value)
        msgspec.structs.force_setattr(self, "samples", tuple(sorted(samples)))

    def quantile(self, u: float) -> float:
        """The latency for the uniform draw ``u`` in ``[0, 1)``."""
        samples = self.samples
        return float(samples[min(int(u * len(samples)), len(samples) - 1)])


LatencyDistribution: TypeAlias = FixedLatency | UniformLatency | LogNormalLatency | EmpiricalLatency
"""Any of the latency distributions (a tagged union: ``{"kind": "lognormal", ...}``)."""


LATENCY_DISTRIBUTIONS: Final = (FixedLatency, UniformLatency, LogNormalLatency, EmpiricalLatency)
