"""Providers: the simulated provider and the OpenAI-compatible HTTP provider.

The :class:`Provider` contract and its values are defined by the model-call boundary in
:mod:`sluicegate.requests` (the executor calls providers, so the contract lives with it) and
re-exported here, so provider authors find everything in one place.
"""

from __future__ import annotations

from ..requests.provider import (
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
from .faults import Fault, FaultKind, FaultRule, FaultScript, SimulatedCall
from .latency import (
    EmpiricalLatency,
    FixedLatency,
    LatencyDistribution,
    LogNormalLatency,
    UniformLatency,
)
from .openai import (
    DEFAULT_MAX_CONNECTIONS,
    LargeConnectionPoolWarning,
    OpenAICompatibleProvider,
    UnboundedConnectionPoolWarning,
)
from .rate_limit_headers import parse_duration, parse_rate_limit_headers, parse_retry_after
from .simulated import SimulatedProvider, SimulatedProviderStats

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "EmpiricalLatency",
    "Fault",
    "FaultKind",
    "FaultRule",
    "FaultScript",
    "FixedLatency",
    "LargeConnectionPoolWarning",
    "LatencyDistribution",
    "LogNormalLatency",
    "ModelRequest",
    "ModelResponse",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderFailureError",
    "ProviderRateLimitedError",
    "ProviderTimeoutError",
    "RateLimitHints",
    "SimulatedCall",
    "SimulatedProvider",
    "SimulatedProviderStats",
    "TokenUsage",
    "UnboundedConnectionPoolWarning",
    "UniformLatency",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
]
