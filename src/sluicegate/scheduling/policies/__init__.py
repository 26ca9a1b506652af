"""Task admission policies: the protocol, its typed decisions, and the built-in policies."""

from __future__ import annotations

from .advisory import EndpointOf, RequestEndpoint, RequestPressureAdvisoryPolicy
from .base import (
    PolicyStateDelta,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
)
from .borrow import BoundedBorrowPolicy
from .pressure import EndpointKeys, RequestPressureFacts, RequestPressureLookup
from .strict import StrictFairPolicy

__all__ = [
    "BoundedBorrowPolicy",
    "EndpointKeys",
    "EndpointOf",
    "PolicyStateDelta",
    "RequestEndpoint",
    "RequestPressureAdvisoryPolicy",
    "RequestPressureFacts",
    "RequestPressureLookup",
    "StrictFairPolicy",
    "TaskAdmissionPolicy",
    "TaskAdmissionPolicyDecision",
    "TaskAdmissionUsage",
]
