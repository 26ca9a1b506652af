"""Typed errors. Every error names the offending field or id and says how to fix it."""

from __future__ import annotations

from collections.abc import Hashable, Sequence


class SluicegateError(Exception):
    """Base class of every error raised by sluicegate."""


class ConfigurationError(SluicegateError, ValueError):
    """A configuration value is invalid.

    ``field`` names the offending field (dotted path), ``fix`` says what to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. Fix: {fix}")


class UnknownResourceError(ConfigurationError):
    """A task or call asked for a resource the controller does not know."""

    def __init__(self, field: str, resource: Hashable, known: Sequence[Hashable]) -> None:
        self.resource = resource
        known_text = ", ".join(repr(k) for k in known) or "none"
        super().__init__(
            field,
            f"unknown resource {resource!r}",
            f"declare it in the controller limits (known resources: {known_text})",
        )


class TaskGraphError(SluicegateError, ValueError):
    """The task graph handed to a completion tracker is malformed."""


class DuplicateTaskError(TaskGraphError):
    """Two tasks share one task id."""

    def __init__(self, task_id: Hashable) -> None:
        self.task_id = task_id
        super().__init__(
            f"task {task_id!r} is defined twice. Fix: give every task a unique task_id"
        )


class UnknownDependencyError(TaskGraphError):
    """A task depends on a task id that is not in the graph."""

    def __init__(self, task_id: Hashable, missing: Sequence[Hashable]) -> None:
        self.task_id = task_id
        self.missing = tuple(missing)
        names = ", ".join(repr(m) for m in self.missing)
        super().__init__(
            f"task {task_id!r} depends on unknown task(s) {names}. "
            "Fix: add the missing task(s) before sealing the graph, or remove the dependency"
        )


class DependencyCycleError(TaskGraphError):
    """The dependencies form a cycle; ``cycle`` lists the task ids around it."""

    def __init__(self, cycle: Sequence[Hashable]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(repr(t) for t in (*self.cycle, self.cycle[0]))
        super().__init__(f"dependency cycle: {path}. Fix: remove one of these dependencies")


class TaskStateError(SluicegateError, RuntimeError):
    """A tracker was told something impossible (e.g. completing an unknown task)."""

    def __init__(self, task_id: Hashable, problem: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id!r}: {problem}")


class RetryableTaskError(SluicegateError):
    """Raise from a worker to ask for a retry of the task.

    ``retry_after`` (seconds) overrides the scheduler's backoff for this attempt.
    """

    def __init__(self, message: str = "retryable failure", *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class SchedulerClosedError(SluicegateError, RuntimeError):
    """The scheduler was already run or shut down."""


class EventDecodeError(SluicegateError, ValueError):
    """A line of an event file could not be decoded (names the file, line and cause)."""

    def __init__(self, path: str, line: int, problem: str, fix: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {problem}. Fix: {fix}")


class NoEventsError(EventDecodeError):
    """An event file holds no whole event (empty, or only a torn first write): there is no
    run in it to report on."""

    def __init__(self, path: str, torn_bytes: int) -> None:
        problem = "holds no events"
        if torn_bytes:
            problem += (
                f" (only {torn_bytes} bytes of a first write that was cut short: the process "
                "was killed before its first events reached the file)"
            )
        fix = (
            "run the pipeline again (a resumed run appends to this file and repairs its end), "
            "or pass another run's events"
        )
        self.path = path
        self.line = 0
        self.torn_bytes = torn_bytes
        SluicegateError.__init__(self, f"{path}: {problem}. Fix: {fix}")


class EventSchemaVersionError(EventDecodeError):
    """An event file was written with another event ``schema_version`` than this sluicegate
    reads (``found`` and ``expected``): its event kinds mean other things."""

    def __init__(self, path: str, line: int, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        if found > expected:
            problem = f"schema_version {found} is newer than this sluicegate reads ({expected})"
            fix = "read the file with the sluicegate version that wrote it, or upgrade"
        else:
            problem = (
                f"schema_version {found} is older than this sluicegate reads (2 to "
                f"{expected}): schema 2 folded same-instant events into one, so the old kinds "
                "cannot be read as the new ones"
            )
            fix = (
                "read the file with the sluicegate version that wrote it (0.1.x before "
                "schema 2), or re-run the pipeline to record current events"
            )
        super().__init__(path, line, problem, fix)
