"""Critical-path-aware ordering of ready cells.

Every column gets an expected duration (an exponentially weighted mean of its observed cell
durations; before the first observation, 1 for model columns and a small value for local ones)
and an expected remaining path: its own duration plus the longest remaining path of the
columns that depend on it. Columns are ranked by that path, longest first (ties by declaration
order); the tracker releases a lane's ready cells in rank order, so a long chain starts before
short independent work. Ranks are recomputed every few observations, not per cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

_MODEL_PRIOR: Final = 1.0


_LOCAL_PRIOR: Final = 0.01


_ALPHA: Final = 0.2


_RERANK_EVERY: Final = 32


class CriticalPathEstimator:
    """Per-column duration estimates and the resulting column ranks (0 = most urgent)."""

    __slots__ = ("_dependents", "_estimate", "_order", "_since", "observed", "rank", "remaining")

    def __init__(
        self, dependents: Sequence[Sequence[int]], is_model: Sequence[bool], order: Sequence[int]
    ) -> None:
        self._dependents = [tuple(d) for d in dependents]
        self._order = tuple(order)  # topological order
        self._estimate = [_MODEL_PRIOR if m else _LOCAL_PRIOR for m in is_model]
        self.observed = [0] * len(is_model)
        self._since = 0
        self.remaining: list[float] = [0.0] * len(is_model)
        self.rank: list[int] = list(range(len(is_model)))
        self._rerank()

    def observe(self, column: int, seconds: float) -> bool:
        """Fold one cell duration in; returns True when the ranks changed."""
        if self.observed[column] == 0:
            self._estimate[column] = seconds
            first = True
        else:
            self._estimate[column] += _ALPHA * (seconds - self._estimate[column])
            first = False
        self.observed[column] += 1
        self._since += 1
        if first or self._since >= _RERANK_EVERY:
            self._since = 0
            return self._rerank()
        return False

    def estimate(self, column: int) -> float:
        """The expected duration of one cell of ``column``, in seconds."""
        return self._estimate[column]

    def _rerank(self) -> bool:
        remaining = self.remaining
        for column in reversed(self._order):
            longest = 0.0
            for child in self._dependents[column]:
                if remaining[child] > longest:
                    longest = remaining[child]
            remaining[column] = self._estimate[column] + longest
        by_path = sorted(range(len(remaining)), key=lambda c: (-remaining[c], c))
        rank = [0] * len(remaining)
        for position, column in enumerate(by_path):
            rank[column] = position
        changed = rank != self.rank
        self.rank = rank
        return changed
