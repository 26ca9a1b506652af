"""Configuration problems collected, not raised one at a time.

A pipeline file or a layered configuration can be wrong in several places at once; a user
fixing them one run at a time wastes an afternoon. The loaders collect every
:class:`ConfigProblem` (its dotted field, the file and line when known, the problem and the
fix) and raise one :class:`PipelineConfigError` listing them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

from ..errors import ConfigurationError


@frozen
class ConfigProblem:
    """One problem: ``field`` is a dotted path (``columns[1].prompt``, ``profiles.ci.records``),
    ``source``/``line`` say where it was written when that is known."""

    field: str
    problem: str
    fix: str
    source: str | None = None
    line: int | None = None

    @property
    def location(self) -> str:
        """``file:line`` (or just the file), or ``""``."""
        if self.source is None:
            return ""
        return f"{self.source}:{self.line}" if self.line is not None else self.source

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        return f"{where}{self.field}: {self.problem}. Fix: {self.fix}"

    @classmethod
    def of(
        cls,
        error: ConfigurationError,
        *,
        field: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> ConfigProblem:
        """A problem from a raised :class:`ConfigurationError` (optionally renaming its field)."""
        return cls(field or error.field, error.problem, error.fix, source, line)


class PipelineConfigError(ConfigurationError):
    """A pipeline file or a configuration has one or more problems; ``problems`` lists them all.

    ``str(error)`` is one line per problem. ``field``/``problem``/``fix`` are the first one's,
    so code catching :class:`ConfigurationError` still gets a useful single answer.
    """

    def __init__(self, problems: Iterable[ConfigProblem], *, subject: str = "configuration"):
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("PipelineConfigError needs at least one problem")
        self.subject = subject
        first = self.problems[0]
        super().__init__(first.field, first.problem, first.fix)

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{count} problem{'s' if count > 1 else ''} in {self.subject}:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


def unknown_fix(hint: str, known: Iterable[str]) -> str:
    """The fix for an unknown key: the did-you-mean's name when there is one (``hint`` is
    :func:`~sluicegate._internal.checks.did_you_mean`'s suffix), else every known name."""
    if hint:
        return "rename it to " + hint.split("'")[1]
    return "remove it; known keys: " + ", ".join(known)
