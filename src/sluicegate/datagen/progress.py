"""Run control and progress: the hooks the CLI's panel and signal handling build on.

- :class:`ProgressReporter`: ``checkpoint`` after every written row group, then exactly one
  ``finished`` with the :class:`~sluicegate.datagen.RunResult` (also when the run fails or is
  interrupted).
- :class:`RunControl`: hand one to ``Pipeline.arun(control=...)``; from another task call
  :meth:`RunControl.stop` (graceful), :meth:`RunControl.cancel` (now) or poll
  :meth:`RunControl.snapshot` (cheap: counters only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from .._internal.checks import is_number
from ..errors import ConfigurationError
from ..requests import AdaptiveRequestAdmissionController, ProviderModelKey

if TYPE_CHECKING:
    from .result import RunResult
    from .tracker import Lane

RunPhase: TypeAlias = Literal["starting", "running", "stopping", "finished"]


class CheckpointProgress(msgspec.Struct, frozen=True, kw_only=True):
    """Sent after each row group is written. Counts cover the whole run directory."""

    run_id: str
    row_group: int
    rows_written: int
    rows_target: int
    rows_generated: int
    rows_passed: int
    rows_filtered: int
    rows_failed: int
    elapsed_seconds: float


class EndpointSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """One concrete endpoint right now: calls in flight and waiting, the adaptive limit, the
    static cap, and rate limits (429s) seen so far.

    ``requests`` counts the call attempts finished so far (a rate over two snapshots is the
    endpoint's requests per second), ``failures`` those that failed for another reason than
    a rate limit; ``cooldown_seconds`` is the longest cooldown still running on one of its
    resources and ``circuit`` the worst circuit-breaker state (``closed``, ``half_open``,
    ``open``).
    """

    endpoint: str
    aliases: tuple[str, ...]
    in_flight: int
    waiters: int
    limit: int | None
    static_cap: int
    rate_limited: int
    cells_running: int
    requests: int = 0
    failures: int = 0
    cooldown_seconds: float = 0.0
    circuit: str = "closed"


class RunSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A cheap live view of a run for progress panels."""

    run_id: str
    phase: RunPhase
    elapsed_seconds: float
    rows_target: int
    rows_done: int
    rows_written: int
    rows_failed: int
    rows_filtered: int
    row_groups_in_flight: int
    cells_running: int
    columns_done: dict[str, int]
    endpoints: tuple[EndpointSnapshot, ...]
    failures: dict[str, int]


def endpoint_snapshots(
    controller: AdaptiveRequestAdmissionController,
    static_caps: Mapping[ProviderModelKey, int],
    lanes: Iterable[Lane],
) -> tuple[EndpointSnapshot, ...]:
    """One :class:`EndpointSnapshot` per concrete endpoint (one pressure read each)."""
    running = {lane.name: lane.outstanding for lane in lanes}
    out = []
    for key, cap in static_caps.items():
        pressure = controller.endpoint_pressure(key)
        resources = [
            r
            for r in (
                controller.resource_pressure(k) for k in (pressure.resources if pressure else ())
            )
            if r is not None
        ]
        out.append(
            EndpointSnapshot(
                endpoint=str(key),
                aliases=pressure.aliases if pressure else (),
                in_flight=pressure.in_flight if pressure else 0,
                waiters=pressure.waiters if pressure else 0,
                limit=max((r.limit for r in resources), default=None),
                static_cap=cap,
                rate_limited=sum(r.rate_limits for r in resources),
                cells_running=running.get(f"endpoint:{key}", 0),
                requests=sum(r.released for r in resources),
                failures=sum(r.failures for r in resources),
                cooldown_seconds=max((r.cooldown_remaining for r in resources), default=0.0),
                circuit=_worst_circuit(r.circuit for r in resources),
            )
        )
    return tuple(out)


def _worst_circuit(states: Iterable[str]) -> str:
    seen = set(states)
    return next((s for s in ("open", "half_open") if s in seen), "closed")


@runtime_checkable
class ProgressReporter(Protocol):
    """Receives per-checkpoint progress and one terminal report. Must not block."""

    def checkpoint(self, progress: CheckpointProgress) -> None: ...

    def finished(self, result: RunResult) -> None: ...


class _Attached(Protocol):
    def request_stop(self, grace_period: float | None, reason: str | None) -> None: ...

    def request_cancel(self) -> None: ...

    def snapshot(self) -> RunSnapshot: ...


class RunControl:
    """Stops, cancels and observes one run from another task of the same trio run.

    Before the run starts, :meth:`stop` and :meth:`cancel` are remembered and applied when it
    does. None of the methods is a checkpoint.
    """

    def __init__(self) -> None:
        self._run: _Attached | None = None
        self._stop: tuple[float | None] | None = None
        self._cancel = False

    def stop(self, grace_period: float | None = None) -> None:
        """Stop gracefully: admit nothing new, let running cells finish (for at most
        ``grace_period`` seconds, then cancel them), write every finished row group, flush the
        journal and the manifest. The result's status is ``interrupted``."""
        if grace_period is not None and not (is_number(grace_period) and grace_period >= 0):
            raise ConfigurationError(
                "RunControl.stop.grace_period",
                f"got {grace_period!r}",
                "pass seconds >= 0, or None to let running cells finish",
            )
        if self._run is not None:
            self._run.request_stop(grace_period, None)
        else:
            self._stop = (grace_period,)

    def cancel(self) -> None:
        """Cancel running cells now; finished row groups, the journal of finished cells and
        the manifest are still written. The result's status is ``interrupted``."""
        if self._run is not None:
            self._run.request_cancel()
        else:
            self._cancel = True

    def snapshot(self) -> RunSnapshot | None:
        """The run's live snapshot, or ``None`` before it started."""
        return None if self._run is None else self._run.snapshot()

    def bind(self, run: _Attached) -> None:
        """Attach to a starting run (``Pipeline.arun`` does this); applies an earlier
        :meth:`stop` or :meth:`cancel`."""
        if self._run is not None:
            raise ConfigurationError(
                "control", "this RunControl is already attached to a run", "use one per run"
            )
        self._run = run
        if self._cancel:
            run.request_cancel()
        elif self._stop is not None:
            run.request_stop(self._stop[0], None)
