"""Scheduling: readiness, ready ordering, task admission and the scheduler that drives them."""

from __future__ import annotations

from .._internal.leases import ReleaseReason, ReleaseResult
from .admission import TaskAdmissionController
from .leases import (
    PeerSkip,
    TaskAdmissionBlockSummary,
    TaskAdmissionDecision,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from .outcomes import (
    SchedulerInterrupted,
    SchedulerRunResult,
    SchedulerStalledError,
    TaskRunOutcome,
    TaskStatus,
)
from .policies import (
    BoundedBorrowPolicy,
    EndpointKeys,
    PolicyStateDelta,
    RequestPressureAdvisoryPolicy,
    RequestPressureFacts,
    RequestPressureLookup,
    StrictFairPolicy,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
)
from .queue import FairTaskQueue, QueueSelection, QueueSnapshot, QueueView
from .readiness import CompletionTracker, DagCompletionTracker, TaskOutcome
from .retry import RetryPolicy, default_is_retryable
from .scheduler import AsyncTaskScheduler, Worker
from .task import (
    DEFAULT_RESOURCE,
    DEFAULT_RESOURCE_REQUEST,
    MAX_GROUP_WEIGHT,
    MIN_GROUP_WEIGHT,
    PayloadT,
    SchedulableTask,
    SchedulerResourceKey,
    SchedulerResourceRequest,
    TaskGroupSpec,
)

__all__ = [
    "DEFAULT_RESOURCE",
    "DEFAULT_RESOURCE_REQUEST",
    "MAX_GROUP_WEIGHT",
    "MIN_GROUP_WEIGHT",
    "AsyncTaskScheduler",
    "BoundedBorrowPolicy",
    "CompletionTracker",
    "DagCompletionTracker",
    "EndpointKeys",
    "FairTaskQueue",
    "PayloadT",
    "PeerSkip",
    "PolicyStateDelta",
    "QueueSelection",
    "QueueSnapshot",
    "QueueView",
    "ReleaseReason",
    "ReleaseResult",
    "RequestPressureAdvisoryPolicy",
    "RequestPressureFacts",
    "RequestPressureLookup",
    "RetryPolicy",
    "SchedulableTask",
    "SchedulerInterrupted",
    "SchedulerResourceKey",
    "SchedulerResourceRequest",
    "SchedulerRunResult",
    "SchedulerStalledError",
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
    "TaskGroupSpec",
    "TaskOutcome",
    "TaskRunOutcome",
    "TaskStatus",
    "Worker",
    "default_is_retryable",
]
