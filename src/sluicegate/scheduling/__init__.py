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
from .slow_start import (
    BatchStrategy,
    FailureClassifier,
    SlowStartBatch,
    SlowStartFailure,
    SlowStartFailureKind,
    SlowStartOutcome,
    SlowStartResult,
    classify_failure,
    slow_start,
)
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
    "BatchStrategy",
    "BoundedBorrowPolicy",
    "CompletionTracker",
    "DagCompletionTracker",
    "EndpointKeys",
    "FailureClassifier",
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
    "SlowStartBatch",
    "SlowStartFailure",
    "SlowStartFailureKind",
    "SlowStartOutcome",
    "SlowStartResult",
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
    "classify_failure",
    "default_is_retryable",
    "slow_start",
]
