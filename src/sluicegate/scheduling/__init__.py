"""Scheduling: readiness, ready ordering, task admission and the scheduler that drives them."""

from __future__ import annotations

from .._internal.leases import ReleaseReason, ReleaseResult
from .admission import TaskAdmissionController
from .leases import (
    TaskAdmissionBlockSummary,
    TaskAdmissionDecision,
    TaskAdmissionDenied,
    TaskAdmissionLease,
    TaskAdmissionView,
)
from .policies import (
    BoundedBorrowPolicy,
    PolicyStateDelta,
    RequestPressureAdvisoryPolicy,
    StrictFairPolicy,
    TaskAdmissionPolicy,
    TaskAdmissionPolicyDecision,
    TaskAdmissionUsage,
)
from .queue import FairTaskQueue, QueueSelection, QueueSnapshot, QueueView
from .readiness import CompletionTracker, DagCompletionTracker, TaskOutcome
from .retry import RetryPolicy
from .scheduler import (
    AsyncTaskScheduler,
    SchedulerRunResult,
    SchedulerStalledError,
    TaskRunOutcome,
    TaskStatus,
)
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
    SchedulableTask,
    SchedulerResourceKey,
    SchedulerResourceRequest,
    TaskGroupSpec,
)

__all__ = [
    "DEFAULT_RESOURCE",
    "DEFAULT_RESOURCE_REQUEST",
    "AsyncTaskScheduler",
    "BatchStrategy",
    "BoundedBorrowPolicy",
    "CompletionTracker",
    "DagCompletionTracker",
    "FailureClassifier",
    "FairTaskQueue",
    "PolicyStateDelta",
    "QueueSelection",
    "QueueSnapshot",
    "QueueView",
    "ReleaseReason",
    "ReleaseResult",
    "RequestPressureAdvisoryPolicy",
    "RetryPolicy",
    "SchedulableTask",
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
    "classify_failure",
    "slow_start",
]
