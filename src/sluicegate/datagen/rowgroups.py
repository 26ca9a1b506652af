"""Row groups: the memory windows of a run, and which of them make up the output.

A row group holds ``buffer_size`` consecutive rows (the last one of a fixed-size run may be
shorter). :class:`RowGroupState` is the per-cell state of one admitted group;
:class:`RowGroupPlanner` decides which group to admit next and which finished groups are
written, and how many of their passing rows.

Without ``exact``, the output is every passing row of rows ``0 .. records - 1``. With
``exact``, it is the first ``records`` passing rows in row order: a finished group is written
at once when even the most optimistic count of earlier passing rows leaves room for all of its
own, else it waits until every earlier group has finished and is written truncated (or not at
all). Both rules depend only on row indices, so the output does not depend on timing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

# Cell states (one byte per cell).
PENDING: Final = 0  # waiting for dependencies
READY: Final = 1  # in a lane heap
DEFERRED: Final = 2  # waiting for a retry time
RUNNING: Final = 3  # released to the scheduler
DONE: Final = 4
DEAD: Final = 5  # its row was dropped or filtered
PARKED: Final = 6  # retries exhausted; waits for a salvage round

# Row states.
ROW_ACTIVE: Final = 0
ROW_DONE: Final = 1
ROW_FILTERED: Final = 2
ROW_FAILED: Final = 3
ROW_ABANDONED: Final = 4  # its group is not needed any more (exact mode)


class RowGroupState:
    """Cells of one admitted row group: values, states, unmet dependency counts, row states.

    Cells are indexed ``(row - start) * columns + column``. ``unmet`` holds a pending cell's
    count of unfinished dependencies; once the cell is ready it is 0, and from its first
    release on it counts the cell's attempts (one byte either way). ``live`` counts cells that are
    ready, deferred or running (the group is finished when every row is resolved and ``live``
    is 0); ``parked`` holds cells waiting for a salvage round with their last failure, and
    ``salvaged`` how many rounds each cell has had. ``probing`` is true while row-group slow
    start waits for the group's first passing row (see :class:`CellTracker`).
    """

    __slots__ = (
        "columns",
        "index",
        "live",
        "parked",
        "probing",
        "reasons",
        "resolved",
        "row_left",
        "row_state",
        "salvage_rounds",
        "salvaged",
        "size",
        "start",
        "state",
        "unmet",
        "values",
    )

    def __init__(self, index: int, start: int, size: int, columns: int) -> None:
        self.index = index
        self.start = start
        self.size = size
        self.columns = columns
        cells = size * columns
        self.values: list[object] = [None] * cells
        self.state = bytearray(cells)
        self.unmet = bytearray(cells)
        self.row_left = [columns] * size
        self.row_state = bytearray(size)
        # row offset -> (category, reason) of a dropped or filtered row
        self.reasons: dict[int, tuple[str, str]] = {}
        self.resolved = 0
        self.live = 0
        self.parked: dict[int, str] = {}  # cell offset -> last failure
        self.salvage_rounds = 0  # rounds held for this group (for events)
        self.salvaged: dict[int, int] = {}  # cell offset -> salvage rounds it has used
        self.probing = False

    @property
    def finished(self) -> bool:
        return self.resolved == self.size and self.live == 0

    def passing_rows(self) -> list[int]:
        """Offsets of the rows that passed, in row order."""
        state = self.row_state
        return [r for r in range(self.size) if state[r] == ROW_DONE]


class RowGroupPlanner:
    """Which row groups to admit and which finished groups to write (see the module doc)."""

    __slots__ = (
        "_done",
        "_finished",
        "_held",
        "_in_flight",
        "_next",
        "_passed",
        "_written",
        "buffer_size",
        "exact",
        "group_count",
        "max_rows",
        "records",
    )

    def __init__(
        self,
        records: int,
        buffer_size: int,
        *,
        exact: bool,
        max_attempts_factor: float,
        completed: Mapping[int, int] | None = None,
    ) -> None:
        self.records = records
        self.buffer_size = buffer_size
        self.exact = exact
        self.max_rows = math.ceil(records * max_attempts_factor) if exact else records
        self.group_count = math.ceil(self.max_rows / buffer_size) if self.max_rows else 0
        # finished group -> its passing rows (groups written by an earlier run included)
        self._passed: dict[int, int] = dict(completed or {})
        self._finished: set[int] = set(self._passed)
        self._written: set[int] = set(self._passed)
        self._held: dict[int, int] = {}  # finished, waiting for earlier groups: passing rows
        self._in_flight: set[int] = set()
        self._next = 0
        self._done = False

    def group_range(self, index: int) -> tuple[int, int]:
        """``(start, size)`` of group ``index``."""
        start = index * self.buffer_size
        return start, min(self.buffer_size, self.max_rows - start)

    # -- admission -----------------------------------------------------------------------

    def wants_more(self) -> bool:
        """Whether another row group should be admitted now (ignoring the concurrency limit)."""
        while self._next < self.group_count and self._next in self._finished:
            self._next += 1
        if self._next >= self.group_count:
            return False
        if self.exact and self.done:
            return False
        if not self.exact:
            return True
        if not self._in_flight:
            return True  # nothing running: admitting is the only way forward
        return self._expected_passing() < self.records

    def admit(self) -> int:
        """The next group to admit (call only when :meth:`wants_more`)."""
        index = self._next
        self._next += 1
        self._in_flight.add(index)
        return index

    def _expected_passing(self) -> float:
        generated = sum(self.group_range(g)[1] for g in self._finished)
        passed = sum(self._passed.values())
        rate = passed / generated if generated else 1.0
        in_flight = sum(self.group_range(g)[1] for g in self._in_flight)
        return passed + rate * in_flight

    # -- output --------------------------------------------------------------------------

    def finish(self, index: int, passing: int) -> list[tuple[int, int | None]]:
        """Record a finished group; return ``(group, limit)`` pairs now to write, in order.

        ``limit`` is ``None`` for every passing row, or how many of the first passing rows
        to write (0: the group is not part of the output).
        """
        self._in_flight.discard(index)
        self._finished.add(index)
        self._passed[index] = passing
        if not self.exact:
            self._written.add(index)
            return [(index, None)]
        self._held[index] = passing
        return self._release_held()

    def _release_held(self) -> list[tuple[int, int | None]]:
        out: list[tuple[int, int | None]] = []
        for index in sorted(self._held):
            optimistic = 0  # passing rows before `index`, counting unfinished groups as full
            exact_before = True
            for g in range(index):
                if g in self._finished:
                    optimistic += self._passed[g]
                else:
                    optimistic += self.group_range(g)[1]
                    exact_before = False
            passing = self._held[index]
            if optimistic + passing <= self.records:
                out.append((index, None))
            elif exact_before:
                out.append((index, max(0, self.records - optimistic)))
            else:
                continue
            del self._held[index]
            self._written.add(index)
        return out

    def finish_abandoned(self, index: int) -> None:
        """Forget group ``index``: it was admitted but the output does not need it."""
        self._in_flight.discard(index)

    def abandoned(self) -> list[int]:
        """Groups in flight that the output can no longer need (exact mode, once done)."""
        return sorted(self._in_flight) if self.exact and self.done else []

    @property
    def done(self) -> bool:
        """No group left to admit: the output is decided (groups in flight may be abandoned)."""
        if not self._done:
            self._done = self._compute_done()  # once true it stays true
        return self._done

    def _compute_done(self) -> bool:
        if not self.exact:
            return len(self._finished) >= self.group_count
        total = 0
        for g in range(self.group_count):
            if g not in self._finished:
                return False
            total += self._passed[g]
            if total >= self.records:
                return True
        return True

    @property
    def in_flight(self) -> frozenset[int]:
        return frozenset(self._in_flight)

    @property
    def rows_passed(self) -> int:
        """Passing rows in the output so far (truncation of the exact mode applied)."""
        total = 0
        for g in sorted(self._written):
            total += self._passed[g]
        return min(total, self.records) if self.exact else total
