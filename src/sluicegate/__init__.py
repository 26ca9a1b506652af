"""sluicegate: trio-native scheduling of large fan-out workloads through explicit admission layers.

The top level holds what a pipeline or embedding author needs first. Every public name lives
in its layer's subpackage (see ``plans/architecture.md``):

- :mod:`sluicegate.scheduling` readiness, fair queue, task admission and policies, the scheduler
- :mod:`sluicegate.requests` request admission, the provider contract, the model-request executor
- :mod:`sluicegate.providers` the simulated and OpenAI-compatible providers
- :mod:`sluicegate.events` versioned events, sinks and runtime correlation
- :mod:`sluicegate.testing` the loopback emulator
- :mod:`sluicegate.errors` the error family

``_``-prefixed modules are internal.
"""

from __future__ import annotations

from . import errors, events, providers, requests, scheduling, testing
from .errors import ConfigurationError, RetryableTaskError, SluicegateError
from .events import (
    EventSink,
    InMemoryEventSink,
    JsonLinesEventSink,
    RuntimeCorrelation,
    read_events,
)
from .providers import OpenAICompatibleProvider, SimulatedProvider
from .requests import (
    AdaptiveRequestAdmissionController,
    ModelEndpoint,
    ModelRequest,
    ModelRequestError,
    ModelRequestExecutor,
    ModelResponse,
    Provider,
    ProviderError,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestAdmissionError,
    RequestResourceKey,
    RequestResourceSettings,
)
from .scheduling import (
    AsyncTaskScheduler,
    DagCompletionTracker,
    RetryPolicy,
    SchedulableTask,
    SchedulerRunResult,
    SchedulerStalledError,
    TaskAdmissionController,
    TaskGroupSpec,
    TaskOutcome,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptiveRequestAdmissionController",
    "AsyncTaskScheduler",
    "ConfigurationError",
    "DagCompletionTracker",
    "EventSink",
    "InMemoryEventSink",
    "JsonLinesEventSink",
    "ModelEndpoint",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelResponse",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderError",
    "ProviderModelKey",
    "RequestAdmissionConfig",
    "RequestAdmissionError",
    "RequestResourceKey",
    "RequestResourceSettings",
    "RetryPolicy",
    "RetryableTaskError",
    "RuntimeCorrelation",
    "SchedulableTask",
    "SchedulerRunResult",
    "SchedulerStalledError",
    "SimulatedProvider",
    "SluicegateError",
    "TaskAdmissionController",
    "TaskGroupSpec",
    "TaskOutcome",
    "__version__",
    "errors",
    "events",
    "providers",
    "read_events",
    "requests",
    "scheduling",
    "testing",
]
