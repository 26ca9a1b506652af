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
    "BoundedBorrowPolicy",
    "CompletionTracker",
    "DagCompletionTracker",
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
]
