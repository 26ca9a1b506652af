"""The values task admission hands out: leases, denials, frozen views and block summaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

import msgspec

from .task import SchedulableTask, SchedulerResourceKey

DenialReason = Literal["no_capacity", "group_capped", "borrow_debt", "shutdown", "policy_denied"]


DENIAL_REASONS: Final[tuple[DenialReason, ...]] = (
    "no_capacity",
    "group_capped",
    "borrow_debt",
    "shutdown",
    "policy_denied",
)


class PeerSkip(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a policy held a task back in favour of a peer group (a typed ``policy_denied``).

    ``peer_group`` is the group whose head the controller would admit instead, right now;
    ``endpoint`` and ``signal`` say what made the held-back task's endpoint pressured (for
    :class:`~sluicegate.scheduling.RequestPressureAdvisoryPolicy`: ``str()`` of the endpoint
    key and one of ``waiters``, ``cooldown``, ``circuit_open``, ``custom``).
    """

    peer_group: str
    endpoint: str | None = None
    signal: str | None = None

    def describe(self) -> str:
        """One human-readable line (for ``detail``; never parsed)."""
        text = f"skipped for peer group {self.peer_group!r}"
        if self.endpoint is not None:
            text += f": endpoint {self.endpoint} is pressured ({self.signal})"
        return text


class TaskAdmissionLease(msgspec.Struct, frozen=True, gc=False):
    """Permission for one task to run, holding ``resources`` until released.

    ``generation`` identifies the controller that issued it; a lease from another
    controller is diagnosed as ``wrong_generation`` on release.
    """

    lease_id: int
    item: SchedulableTask
    resources: Mapping[SchedulerResourceKey, int]
    acquired_at: float
    generation: int


class TaskAdmissionView(msgspec.Struct, frozen=True, kw_only=True):
    """Frozen facts about task admission at one instant (cheap: O(resources + holders))."""

    generation: int
    policy: str
    limits: dict[str, int]
    in_use: dict[str, int]
    active_leases: int
    in_use_by_group: dict[str, dict[str, int]]
    policy_state: dict[str, int]
    acquired_total: int
    released_total: int
    release_diagnostics: dict[str, int]
    shutting_down: bool = False


class TaskAdmissionDenied(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Why a task may not run now. ``available_after`` is a time hint, when one exists.

    ``skip`` is set when a policy held the task back in favour of a named peer group.
    """

    item: SchedulableTask
    reason: DenialReason
    resource: str | None = None
    available_after: float | None = None
    detail: str | None = None
    skip: PeerSkip | None = None


TaskAdmissionDecision = TaskAdmissionLease | TaskAdmissionDenied


class TaskAdmissionBlockSummary(msgspec.Struct, frozen=True, kw_only=True):
    """Why queued work is not being admitted: counts of denial reasons over group heads."""

    queued: int
    candidates_checked: int
    dominant_reasons: list[tuple[str, int]]
    blocked_groups: dict[str, str]
    available_after: float | None
