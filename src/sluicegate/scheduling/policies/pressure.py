"""What task admission may read of request pressure: protocols, satisfied structurally.

Scheduling and request admission never import each other (SPEC, layer table). A policy that
prefers unpressured endpoints therefore reads request pressure through these small
protocols; :class:`sluicegate.requests.RequestPressureReader` (``controller.pressure``) and
its :class:`~sluicegate.requests.RequestResourcePressure` snapshots satisfy them without
knowing they exist, and so does any test double with the same members.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar, runtime_checkable

KeyT_contra = TypeVar("KeyT_contra", contravariant=True)
KeyT_co = TypeVar("KeyT_co", covariant=True)
FactsT_co = TypeVar("FactsT_co", covariant=True)


class RequestPressureFacts(Protocol):
    """The read-only facts of one request resource that decide whether it is pressured."""

    @property
    def waiters(self) -> int:
        """Calls queued for the resource."""
        ...

    @property
    def cooldown_remaining(self) -> float:
        """Seconds of rate-limit cooldown left (0 when none)."""
        ...

    @property
    def circuit(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        ...


@runtime_checkable
class RequestPressureLookup(Protocol[KeyT_contra, FactsT_co]):
    """Looks up the pressure facts of one request resource by key (``None``: never seen).

    ``controller.pressure`` of an ``AdaptiveRequestAdmissionController`` is one, with
    ``RequestResourceKey`` keys and ``RequestResourcePressure`` facts. Must not change state.
    """

    def resource(self, key: KeyT_contra, /) -> FactsT_co | None: ...


class EndpointKeys(Protocol[KeyT_co]):
    """An endpoint that stands for several request resources (all of them count).

    ``sluicegate.requests.ProviderModelKey`` is one: its ``resource_keys()`` are the endpoint's
    resource in every request domain.
    """

    def resource_keys(self) -> Iterable[KeyT_co]: ...


__all__ = ["EndpointKeys", "RequestPressureFacts", "RequestPressureLookup"]
