"""Timed wake-ups: dispatch an endpoint when time alone makes one of its waiters admissible.

Ramp steps, a paused cooldown ending, a circuit turning half-open and a rate window freeing
room admit waiters without any release. After a dispatch leaves such waiters blocked, the
controller asks :meth:`AdmissionTimer.arm` for the earliest instant; one trio system task per
controller per trio run sleeps in a cancel scope whose deadline only ever moves earlier, and
when it fires it dispatches the endpoints that asked (they re-arm if still blocked).

The system task is started lazily in the running trio run the first time a timed wait is
needed (a controller may outlive one ``trio.run`` and be used in the next). It ends with
:meth:`close`. An instant already passed is never armed: that would spin without time
advancing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from trio.lowlevel import Task


_INF: Final = math.inf


E = TypeVar("E")


class AdmissionTimer(Generic[E]):
    """One timer task per trio run that calls ``on_fire(due, now)`` at the armed instant."""

    __slots__ = ("_closed", "_deadline", "_due", "_on_fire", "_root", "_scope", "wakeups")

    def __init__(self, on_fire: Callable[[list[E], float], None]) -> None:
        self._on_fire = on_fire
        self._deadline = _INF
        self._scope: trio.CancelScope | None = None
        self._root: Task | None = None
        self._due: set[E] = set()
        self._closed = False
        self.wakeups = 0  # diagnostics: how often the timer fired

    def arm(self, target: E, at: float, now: float) -> None:
        """Dispatch ``target`` at ``at`` (or earlier if something else is due first)."""
        if at <= now:
            # Never re-arm at an instant that has already passed: that would spin the timer
            # without letting time advance. Every "next change" is strictly later by
            # construction; this is a guard against float rounding, not a mechanism.
            at = now + 1e-6
        self._due.add(target)
        root = trio.lowlevel.current_root_task()
        if self._root is not root or self._scope is None:
            # First timed wait in this trio run (or the last run's timer died with its run).
            self._root = root
            self._deadline = at
            self._scope = trio.CancelScope(deadline=at)
            trio.lowlevel.spawn_system_task(
                self._loop, self._scope, name="sluicegate-request-admission-timer"
            )
        elif at < self._deadline:
            self._deadline = at
            self._scope.deadline = at

    def close(self) -> None:
        """Stop for good (the controller shut down)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def _loop(self, scope: trio.CancelScope) -> None:
        try:
            while not self._closed:
                with scope:
                    await trio.sleep_forever()
                if self._closed:
                    break
                now = trio.current_time()
                self.wakeups += 1
                self._deadline = _INF
                scope = trio.CancelScope(deadline=_INF)
                self._scope = scope
                due = list(self._due)
                self._due.clear()
                self._on_fire(due, now)  # re-arms (and re-adds targets) if still blocked
        finally:
            if self._scope is scope:
                self._scope = None
                self._deadline = _INF
