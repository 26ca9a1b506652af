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
from .strict import StrictFairPolicy

__all__ = [
    "BoundedBorrowPolicy",
    "EndpointOf",
    "PolicyStateDelta",
    "RequestEndpoint",
    "RequestPressureAdvisoryPolicy",
    "StrictFairPolicy",
    "TaskAdmissionPolicy",
    "TaskAdmissionPolicyDecision",
    "TaskAdmissionUsage",
]
