"""sluicegate: trio-native scheduling of large fan-out workloads through explicit admission layers.

The top level holds what a pipeline or embedding author needs first. Every public name lives
in its layer's subpackage (see ``plans/architecture.md``):

- :mod:`sluicegate.datagen` pipelines of columns, run cell by cell into a crash-safe directory
- :mod:`sluicegate.scheduling` readiness, fair queue, task admission and policies, the scheduler
- :mod:`sluicegate.requests` request admission, the provider contract, the model-request executor
- :mod:`sluicegate.providers` the simulated and OpenAI-compatible providers
- :mod:`sluicegate.events` versioned events, sinks and runtime correlation
- :mod:`sluicegate.testing` the loopback emulator and virtual-time runs
- :mod:`sluicegate.errors` the error family

``_``-prefixed modules are internal.
"""

from __future__ import annotations

from . import datagen, errors, events, providers, requests, scheduling, testing
from .datagen import (
    CellContext,
    Endpoint,
    Pipeline,
    RunControl,
    RunResult,
    SchedulingMetadata,
    column,
    expression,
    judge,
    llm_structured,
    llm_text,
    sampler,
)
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
    "CellContext",
    "ConfigurationError",
    "DagCompletionTracker",
    "Endpoint",
    "EventSink",
    "InMemoryEventSink",
    "JsonLinesEventSink",
    "ModelEndpoint",
    "ModelRequest",
    "ModelRequestError",
    "ModelRequestExecutor",
    "ModelResponse",
    "OpenAICompatibleProvider",
    "Pipeline",
    "Provider",
    "ProviderError",
    "ProviderModelKey",
    "RequestAdmissionConfig",
    "RequestAdmissionError",
    "RequestResourceKey",
    "RequestResourceSettings",
    "RetryPolicy",
    "RetryableTaskError",
    "RunControl",
    "RunResult",
    "RuntimeCorrelation",
    "SchedulableTask",
    "SchedulerRunResult",
    "SchedulerStalledError",
    "SchedulingMetadata",
    "SimulatedProvider",
    "SluicegateError",
    "TaskAdmissionController",
    "TaskGroupSpec",
    "TaskOutcome",
    "__version__",
    "column",
    "datagen",
    "errors",
    "events",
    "expression",
    "judge",
    "llm_structured",
    "llm_text",
    "providers",
    "read_events",
    "requests",
    "sampler",
    "scheduling",
    "testing",
]
