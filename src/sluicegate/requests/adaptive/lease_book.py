"""The controller's record of live leases: issue ids, take leases back, diagnose bad releases.

Lease ids are issued monotonically, so "issued and not live" means released: duplicate
detection needs no memory of released ids. Ids of grants the controller reclaimed itself
(a waiter cancelled in the instant of its grant) are remembered, bounded, so a late release
of one is reported as stale rather than as a duplicate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from ..admission import RequestAdmissionLease

if TYPE_CHECKING:
    from ..admission import RequestAdmissionItem
    from ..rate_window import RateWindowReservation
    from .state import ResourceState


# How many reclaimed lease ids are remembered to diagnose a late release as stale.
_RECLAIMED_REMEMBERED: Final = 4096


Held: TypeAlias = "tuple[RequestAdmissionLease, ResourceState, RateWindowReservation | None]"


BadRelease: TypeAlias = Literal["duplicate", "stale_lease", "wrong_generation", "unknown_lease"]


class LeaseBook:
    """Live leases by id (with their resource and rate-window entry)."""

    __slots__ = ("_live", "_reclaimed", "generation", "issued")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.issued = 0  # the last lease id handed out
        self._live: dict[int, Held] = {}
        self._reclaimed: dict[int, None] = {}  # insertion-ordered set, bounded

    def issue(
        self,
        r: ResourceState,
        item: RequestAdmissionItem,
        now: float,
        tokens: int,
        waited: float,
        entry: RateWindowReservation | None,
        probe: bool,
    ) -> RequestAdmissionLease:
        """A new live lease on ``r`` (with its rate-window entry), at ``r``'s limit and epoch."""
        self.issued = lease_id = self.issued + 1
        aimd = r.aimd
        lease = RequestAdmissionLease(
            lease_id, item, now, self.generation, tokens, aimd.limit, waited, aimd.epoch, probe
        )
        self._live[lease_id] = (lease, r, entry)
        return lease

    def take(self, lease: RequestAdmissionLease) -> Held | BadRelease:
        """The live record of ``lease`` (removed from the book), or why it is not live."""
        if lease.generation != self.generation:
            return "wrong_generation"
        lease_id = lease.lease_id
        held = self._live.pop(lease_id, None)
        if held is None:
            if lease_id in self._reclaimed:
                return "stale_lease"
            if 0 < lease_id <= self.issued:
                return "duplicate"
            return "unknown_lease"
        if held[0] is not lease and held[0] != lease:
            self._live[lease_id] = held  # a forged copy must not free the real lease
            return "stale_lease"
        return held

    def reclaim(self, lease: RequestAdmissionLease) -> Held:
        """Take back a grant the controller itself withdraws; its id is remembered as stale."""
        reclaimed = self._reclaimed
        reclaimed[lease.lease_id] = None
        if len(reclaimed) > _RECLAIMED_REMEMBERED:  # remember the newest ids only
            del reclaimed[next(iter(reclaimed))]
        return self._live.pop(lease.lease_id)

    def __len__(self) -> int:
        return len(self._live)
