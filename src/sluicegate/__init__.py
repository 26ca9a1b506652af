"""sluicegate: trio-native scheduling of large fan-out workloads through explicit admission layers.

The public API is what this module exports; the ``_``-prefixed modules are internal.
"""

from __future__ import annotations

from ._correlation import (
    RuntimeCorrelation,
    correlation_scope,
    current_correlation,
    set_correlation,
)
from ._errors import (
    ConfigurationError,
    DependencyCycleError,
    DuplicateTaskError,
    EventDecodeError,
    RetryableTaskError,
    SchedulerClosedError,
    SluicegateError,
    TaskGraphError,
    TaskStateError,
    UnknownDependencyError,
    UnknownResourceError,
)
from ._events import (
    SCHEMA_VERSION,
    EventEmitter,
    EventSink,
    FanOutEventSink,
    InMemoryEventSink,
    JsonLinesEventSink,
    NullEventSink,
    RequestEvent,
    RequestEventKind,
    SchedulerEvent,
    SchedulerEventKind,
    read_events,
)
from ._leases import ReleaseReason, ReleaseResult
from ._providers import (
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)
from ._request_identity import REQUEST_DOMAINS, ProviderModelKey, RequestDomain, RequestResourceKey
from ._task import (
    DEFAULT_RESOURCE,
    DEFAULT_RESOURCE_REQUEST,
    SchedulableTask,
    SchedulerResourceKey,
    SchedulerResourceRequest,
    TaskGroupSpec,
)

# --- core engine (readiness, queue, task admission, scheduler) ---
from ._queue import FairTaskQueue, QueueSelection, QueueSnapshot, QueueView
from ._readiness import CompletionTracker, DagCompletionTracker, TaskOutcome
from ._scheduler import (
    AsyncTaskScheduler,
    RetryPolicy,
    SchedulerRunResult,
    SchedulerStalledError,
    TaskRunOutcome,
    TaskStatus,
)
from ._task_admission import (
    BoundedBorrowPolicy,
    PolicyStateDelta,
    StrictFairPolicy,
    TaskAdmissionBlockSummary,
    TaskAdmissionController,
    TaskAdmissionDecision,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
    TaskAdmissionView,
)

# --- request admission (controller, config, rate windows, executor) ---
from ._model_requests import ModelRequestError, ModelRequestExecutor, ModelRequestStats
from ._rate_window import RateWindow, RateWindowReservation
from ._request_admission import (
    AdaptiveRequestAdmissionController,
    RequestAdmissionController,
    RequestAdmissionDecision,
    RequestAdmissionDenied,
    RequestAdmissionError,
    RequestAdmissionItem,
    RequestAdmissionLease,
    RequestEndpointPressure,
    RequestPressureReader,
    RequestPressureSnapshot,
    RequestPressureSource,
    RequestReleaseOutcome,
    RequestResourcePressure,
)
from ._request_config import (
    RequestAdmissionConfig,
    RequestResourceOverride,
    RequestResourceSettings,
)
from ._request_identity import (
    ModelEndpoint,
    ProviderCapContribution,
    ProviderCapPlan,
    RequestResourceResolver,
)

# --- providers (simulated, HTTP, emulator) ---
# The emulator is the public submodule ``sluicegate.emulator``; importing it here would make
# ``python -m sluicegate.emulator`` warn about a module already in sys.modules.
from ._http_provider import (
    OpenAICompatibleProvider,
    parse_duration,
    parse_rate_limit_headers,
    parse_retry_after,
)
from ._simulated_provider import SimulatedProvider, SimulatedProviderStats

# --- advisory task admission policy (reads request pressure, read-only) ---
from ._advisory_policy import RequestPressureAdvisoryPolicy

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_RESOURCE",
    "DEFAULT_RESOURCE_REQUEST",
    "REQUEST_DOMAINS",
    "SCHEMA_VERSION",
    "AdaptiveRequestAdmissionController",
    "AsyncTaskScheduler",
    "BoundedBorrowPolicy",
    "CompletionTracker",
    "ConfigurationError",
    "DagCompletionTracker",
    "DependencyCycleError",
    "DuplicateTaskError",
    "EventDecodeError",
    "EventEmitter",
    "EventSink",
    "FairTaskQueue",
    "FanOutEventSink",
    "InMemoryEventSink",
    "JsonLinesEventSink",
    "ModelEndpoint",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelRequestStats",
    "ModelResponse",
    "NullEventSink",
    "OpenAICompatibleProvider",
    "PolicyStateDelta",
    "Provider",
    "ProviderCapContribution",
    "ProviderCapPlan",
    "ProviderError",
    "ProviderFailureError",
    "ProviderModelKey",
    "ProviderRateLimitedError",
    "ProviderTimeoutError",
    "QueueSelection",
    "QueueSnapshot",
    "QueueView",
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
    "RequestDomain",
    "RequestEndpointPressure",
    "RequestEvent",
    "RequestEventKind",
    "RequestPressureAdvisoryPolicy",
    "RequestPressureReader",
    "RequestPressureSnapshot",
    "RequestPressureSource",
    "RequestReleaseOutcome",
    "RequestResourceKey",
    "RequestResourceOverride",
    "RequestResourcePressure",
    "RequestResourceResolver",
    "RequestResourceSettings",
    "RetryPolicy",
    "RetryableTaskError",
    "RuntimeCorrelation",
    "SchedulableTask",
    "SchedulerClosedError",
    "SchedulerEvent",
    "SchedulerEventKind",
    "SchedulerResourceKey",
    "SchedulerResourceRequest",
    "SchedulerRunResult",
    "SchedulerStalledError",
    "SimulatedProvider",
    "SimulatedProviderStats",
    "SluicegateError",
    "StrictFairPolicy",
    "TaskAdmissionBlockSummary",
    "TaskAdmissionController",
    "TaskAdmissionDecision",
    "TaskAdmissionDenied",
    "TaskAdmissionLease",
    "TaskAdmissionPolicy",
    "TaskAdmissionPolicyDecision",
    "TaskAdmissionUsage",
    "TaskAdmissionView",
    "TaskGraphError",
    "TaskGroupSpec",
    "TaskOutcome",
    "TaskRunOutcome",
    "TaskStateError",
    "TaskStatus",
    "TokenUsage",
    "UnknownDependencyError",
    "UnknownResourceError",
    "__version__",
    "correlation_scope",
    "current_correlation",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "read_events",
    "set_correlation",
]
