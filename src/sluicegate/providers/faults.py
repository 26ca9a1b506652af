"""Scripted faults for the simulated provider: "calls 10-12 fail with 500", "the 3rd call to
model X times out", "call 7 is rate limited for 4 s".

A :class:`Fault` says what happens to a call; a :class:`FaultRule` says which calls get it
(by 1-based arrival number, overall or counting only one model's calls). A script is a
sequence of rules (the first rule that matches a call wins) or a callable that receives a
:class:`SimulatedCall` and returns a :class:`Fault` or ``None``. Rules are msgspec Structs, so
an emulator config holding them can be read from and written to JSON/TOML.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal, TypeAlias

import msgspec
from attrs import frozen

from .._internal.checks import describe, did_you_mean, is_number
from ..errors import ConfigurationError
from ..requests.provider import ModelRequest

__all__ = ["Fault", "FaultKind", "FaultRule", "FaultScript", "SimulatedCall"]

FaultKind: TypeAlias = Literal["failure", "timeout", "rate_limited"]

_KINDS: Final = ("failure", "timeout", "rate_limited")

# Statuses with a kind of their own: a 429 is a rate limit, 408/504 are timeouts.
_OWN_KIND: Final = {429: "rate_limited", 408: "timeout", 504: "timeout"}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Fault(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What happens to a call. Build one with :meth:`failure`, :meth:`timeout` or
    :meth:`rate_limited`; validated at construction.

    - ``failure``: the call is admitted, takes its latency, then fails with ``status``
      (default 500): a 5xx is a retryable :class:`ProviderFailureError`, a 4xx (not 408 or
      429) a non-retryable one.
    - ``timeout``: the call is admitted and hangs ``hang_seconds`` (``None``: the provider's
      ``timeout_seconds``), then raises :class:`ProviderTimeoutError` (the emulator answers
      504).
    - ``rate_limited``: the call is refused at once (after the provider's
      ``rejection_latency_seconds``, without taking a slot) with a 429 whose ``retry_after``
      is ``retry_after`` seconds (``None``: no hint).
    """

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    hang_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigurationError(
                "Fault.kind",
                f"got {describe(self.kind)}{did_you_mean(str(self.kind), _KINDS)}",
                "use 'failure', 'timeout' or 'rate_limited'",
            )
        self._check_status()
        for name, value, applies_to in (
            ("retry_after", self.retry_after, "rate_limited"),
            ("hang_seconds", self.hang_seconds, "timeout"),
        ):
            if value is None:
                continue
            if self.kind != applies_to:
                raise ConfigurationError(
                    f"Fault.{name}",
                    f"is set on a {self.kind!r} fault",
                    f"set {name} only on {applies_to!r} faults",
                )
            least_ok = value > 0 if name == "hang_seconds" else value >= 0
            if not (is_number(value) and math.isfinite(value) and least_ok):
                bound = "> 0" if name == "hang_seconds" else ">= 0"
                raise ConfigurationError(
                    f"Fault.{name}", f"got {describe(value)}", f"use finite seconds {bound}"
                )

    def _check_status(self) -> None:
        status = self.status
        if status is None:
            return
        if self.kind != "failure":
            raise ConfigurationError(
                "Fault.status",
                f"is set on a {self.kind!r} fault",
                "set status only on 'failure' faults",
            )
        if not _is_int(status) or not 400 <= status <= 599:
            raise ConfigurationError(
                "Fault.status", f"got {describe(status)}", "use an HTTP status in 400..599"
            )
        if status in _OWN_KIND:
            raise ConfigurationError(
                "Fault.status",
                f"{status} has a fault kind of its own",
                f"use Fault.{_OWN_KIND[status]}() instead",
            )

    @classmethod
    def failure(cls, status: int = 500) -> Fault:
        """Admitted, then fails with ``status`` (5xx retryable, 4xx not)."""
        return cls(kind="failure", status=status)

    @classmethod
    def timeout(cls, hang_seconds: float | None = None) -> Fault:
        """Admitted, then hangs (``None``: the provider's ``timeout_seconds``) and times out."""
        return cls(kind="timeout", hang_seconds=hang_seconds)

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Fault:
        """Refused at once with a 429 carrying ``retry_after`` seconds."""
        return cls(kind="rate_limited", retry_after=retry_after)

    @property
    def failure_status(self) -> int:
        """The status of a ``failure`` fault (500 unless set)."""
        return 500 if self.status is None else self.status


@frozen
class SimulatedCall:
    """One arrival at a simulated provider, as a fault script sees it.

    ``number`` counts every arrival from 1; ``model_number`` counts arrivals for ``model_id``
    from 1.
    """

    number: int
    model_number: int
    model_id: str
    request: ModelRequest


class FaultRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Calls ``first_call`` to ``last_call`` (inclusive, 1-based; ``None``: just
    ``first_call``) get ``fault``. With ``model`` set, only calls to that model id count
    (``first_call=3, model="x"`` is the third call to ``x``)."""

    fault: Fault
    first_call: int
    last_call: int | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fault, Fault):
            raise ConfigurationError(
                "FaultRule.fault",
                f"got {describe(self.fault)}",
                "use Fault.failure(), Fault.timeout() or Fault.rate_limited()",
            )
        if not _is_int(self.first_call) or self.first_call < 1:
            raise ConfigurationError(
                "FaultRule.first_call",
                f"got {describe(self.first_call)}",
                "use a call number >= 1 (calls are counted from 1)",
            )
        last = self.last_call
        if last is not None and (not _is_int(last) or last < self.first_call):
            raise ConfigurationError(
                "FaultRule.last_call",
                f"got {describe(last)}",
                f"use a call number >= first_call ({self.first_call}), or None",
            )
        if self.model is not None and (not isinstance(self.model, str) or not self.model):
            raise ConfigurationError(
                "FaultRule.model", f"got {describe(self.model)}", "use a model id, or None"
            )

    def matches(self, call: SimulatedCall) -> bool:
        """Whether this rule applies to ``call``."""
        if self.model is not None and call.model_id != self.model:
            return False
        number = call.number if self.model is None else call.model_number
        last = self.first_call if self.last_call is None else self.last_call
        return self.first_call <= number <= last


FaultScript: TypeAlias = Sequence[FaultRule] | Callable[[SimulatedCall], "Fault | None"]
"""Rules (the first match wins) or a callable deciding each call's fault."""


def check_fault_script(field: str, script: Any) -> tuple[FaultRule, ...] | Callable[..., Any]:
    """``script`` validated (a sequence is returned as a tuple), or :class:`ConfigurationError`
    naming ``field``."""
    if callable(script) and not isinstance(script, (tuple, list)):
        return script  # type: ignore[no-any-return]
    if isinstance(script, (str, bytes)) or not isinstance(script, (tuple, list)):
        raise ConfigurationError(
            field,
            f"got {describe(script)}",
            "use a tuple of FaultRule, or a callable (SimulatedCall) -> Fault | None",
        )
    for index, rule in enumerate(script):
        if not isinstance(rule, FaultRule):
            raise ConfigurationError(
                f"{field}[{index}]",
                f"got {describe(rule)}",
                "use FaultRule(first_call=..., fault=Fault.failure())",
            )
    return tuple(script)


def scripted_fault(
    script: tuple[FaultRule, ...] | Callable[[SimulatedCall], Fault | None],
    call: SimulatedCall,
    field: str,
) -> Fault | None:
    """The fault ``script`` gives ``call`` (a callable's answer is checked)."""
    if isinstance(script, tuple):
        for rule in script:
            if rule.matches(call):
                return rule.fault
        return None
    fault = script(call)
    if fault is not None and not isinstance(fault, Fault):
        raise ConfigurationError(
            field,
            f"the fault script returned {describe(fault)} for call {call.number}",
            "return a Fault (Fault.failure(), Fault.timeout(), Fault.rate_limited()) or None",
        )
    return fault
