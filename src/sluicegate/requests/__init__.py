"""Request admission: may this concrete provider call go out now? And the model-call boundary.

Endpoint identity and aliases, configuration, rate windows, the adaptive (AIMD) controller,
pressure snapshots, the :class:`Provider` contract and the :class:`ModelRequestExecutor`.
This layer knows nothing of the scheduler or of task types.
"""

from __future__ import annotations

from .._internal.leases import ReleaseReason, ReleaseResult
from .adaptive import AdaptiveRequestAdmissionController, RequestPressureReader
from .admission import (
    MAX_WEIGHT,
    MIN_WEIGHT,
    REQUEST_OUTCOME_KINDS,
    RequestAdmissionController,
    RequestAdmissionDecision,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestDenialReason,
    RequestOutcomeKind,
    RequestReleaseOutcome,
)
from .config import RequestAdmissionConfig, RequestResourceOverride, RequestResourceSettings
from .executor import ModelRequestError, ModelRequestExecutor, ModelRequestStats
from .identity import (
    REQUEST_DOMAINS,
    ModelEndpoint,
    ProviderCapContribution,
    ProviderCapPlan,
    ProviderModelKey,
    RequestDomain,
    RequestResourceKey,
    RequestResourceResolver,
)
from .pressure import (
    RequestEndpointPressure,
    RequestPressureSnapshot,
    RequestPressureSource,
    RequestResourcePressure,
)
from .provider import (
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderConnectionError,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)
from .rate_window import RateWindow, RateWindowReservation

__all__ = [
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "REQUEST_DOMAINS",
    "REQUEST_OUTCOME_KINDS",
    "AdaptiveRequestAdmissionController",
    "ModelEndpoint",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelRequestStats",
    "ModelResponse",
    "Provider",
    "ProviderCapContribution",
    "ProviderCapPlan",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderFailureError",
    "ProviderModelKey",
    "ProviderRateLimitedError",
    "ProviderTimeoutError",
    "RateLimitHints",
    "RateWindow",
    "RateWindowReservation",
    "ReleaseReason",
    "ReleaseResult",
    "RequestAdmissionConfig",
    "RequestAdmissionController",
    "RequestAdmissionDecision",
    "RequestAdmissionDenied",
    "RequestAdmissionError",
    "RequestAdmissionItem",
    "RequestAdmissionLease",
    "RequestDenialReason",
    "RequestDomain",
    "RequestEndpointPressure",
    "RequestOutcomeKind",
    "RequestPressureReader",
    "RequestPressureSnapshot",
    "RequestPressureSource",
    "RequestReleaseOutcome",
    "RequestResourceKey",
    "RequestResourceOverride",
    "RequestResourcePressure",
    "RequestResourceResolver",
    "RequestResourceSettings",
    "TokenUsage",
]
