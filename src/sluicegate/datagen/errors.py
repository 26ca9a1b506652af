"""Typed errors of the data-generation front end. Each names the field or column and the fix."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigurationError, SluicegateError


class SchedulingMetadataError(ConfigurationError):
    """A column's :class:`~sluicegate.datagen.SchedulingMetadata` is invalid."""


class PipelineDefinitionError(ConfigurationError):
    """The pipeline cannot be built: a duplicate name, an unknown dependency, a cycle, a
    template placeholder that names no upstream column, an unknown endpoint alias."""


class PipelineChangedError(SluicegateError):
    """The run directory belongs to a run of a different pipeline (or other run settings).

    ``changes`` lists what differs, one human-readable line each.
    """

    def __init__(self, output_dir: str, changes: Sequence[str]) -> None:
        self.output_dir = output_dir
        self.changes = tuple(changes)
        listed = "; ".join(self.changes)
        super().__init__(
            f"{output_dir}: the run there was started with a different pipeline or settings "
            f"({listed}). Fix: use another output_dir, pass overwrite=True to start over, or "
            "force=True to keep the completed row groups and resume anyway"
        )


class RunDirectoryError(SluicegateError):
    """The run directory cannot be used (unreadable manifest, corrupt journal line...)."""

    def __init__(self, path: str, problem: str, fix: str) -> None:
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class CellGenerationError(SluicegateError):
    """Raised inside a generator to drop its row with a reason (never retried)."""


class StructuredOutputError(SluicegateError):
    """A model's answer did not decode into the column's schema after every allowed attempt.

    ``column`` names the column, ``attempts`` how many answers were tried and ``problem`` the
    last decoding or validation error.
    """

    def __init__(self, column: str, attempts: int, problem: str) -> None:
        self.column = column
        self.attempts = attempts
        self.problem = problem
        super().__init__(
            f"column {column!r}: no valid structured output after {attempts} answer(s); last "
            f"problem: {problem}. Fix: make the prompt ask for exactly this JSON, simplify the "
            "schema, or raise max_invalid_retries"
        )
