"""The rows x columns completion tracker: readiness per cell, row groups, ordering windows.

:class:`CellTracker` implements :class:`~sluicegate.scheduling.CompletionTracker`. Its
invariants:

- A cell becomes ready as soon as the cells of *its own row* that it depends on are done; no
  cell ever waits for a whole column.
- Ready cells wait in one heap per *lane* (the scheduler resource they hold: one per endpoint,
  one for threads, one for inline/async local work). A lane releases cells to the scheduler
  only while fewer than ``window`` of its cells are released and not yet completed, so the
  scheduler's FIFO queue never holds more than a few cells, cells bound for a saturated
  endpoint never take the slots another endpoint could use, and the order of release is the
  tracker's: oldest row group first, then the column with the longest expected remaining path
  (:mod:`.ordering`), then the lowest row.
- A retryable failure defers the cell (``retry`` outcome) until it has used ``max_attempts``
  attempts; then it is parked. When nothing of its row group is ready, deferred or running any
  more, parked cells get a salvage round (fresh attempts), each cell at most
  ``salvage_rounds`` times; after that their rows fail. A non-retryable failure (``drop``)
  fails its row at once; a row whose ``keep_if`` is false is filtered. Either way the row's
  remaining cells never run.
- A cell's *executions* are numbered over the whole run, never reset: a salvage round
  refreshes the attempt budget but not the count, and every release hands the scheduler the
  count so far (``SchedulableTask.prior_attempts``), so the scheduler's attempt (its events),
  the cell's ``task_execution_id`` and ``ctx.attempt`` are one number, unique per cell and
  run, across salvage rounds and scheduler segments.
- Row groups are admitted up to ``max_row_groups`` at once, in order, as
  :class:`RowGroupPlanner` asks for them; a finished group is handed to the hooks (written,
  then its memory released). With a :class:`~sluicegate.scheduling.SlowStartWindow`, the
  limit is its width (1, 2, 4, ... up to ``max_row_groups``): a group it watches is *probing*
  until its first row passes or is filtered in this run (journal rows prove nothing about
  this run), the health the window grows on. The runner reports failures (it knows kinds).

Nothing here knows about trio tasks, files or providers: the runner implements
:class:`TrackerHooks`. Every operation costs O(1) or O(log n) per cell touched.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Protocol

from .._internal.clock import now as _now
from ..scheduling import (
    SchedulableTask,
    SchedulerResourceRequest,
    SlowStartWindow,
    TaskGroupSpec,
    TaskOutcome,
)
from .ordering import CriticalPathEstimator
from .rowgroups import (
    DEAD,
    DEFERRED,
    DONE,
    PARKED,
    PENDING,
    READY,
    ROW_ABANDONED,
    ROW_ACTIVE,
    ROW_DONE,
    ROW_FAILED,
    ROW_FILTERED,
    RUNNING,
    RowGroupPlanner,
    RowGroupState,
)

_BACKLOG_POLL = 0.005  # seconds; re-check admission while finished groups wait to be written


class TrackerHooks(Protocol):
    """What the tracker asks of the runner (journal, output, events, counters)."""

    def prefill(
        self, group: int
    ) -> tuple[Mapping[int, object], Mapping[int, tuple[int, str, str]]]:
        """Journaled cells of ``group`` (cell offset -> value) and resolved rows
        (row offset -> (row state, category, reason))."""
        ...

    def group_admitted(self, state: RowGroupState) -> None: ...

    def group_finished(self, state: RowGroupState, writes: list[tuple[int, int | None]]) -> None:
        """``state`` finished; ``writes`` says which groups (maybe held earlier) to write."""
        ...

    def group_abandoned(self, index: int) -> None: ...

    def row_resolved(
        self, state: RowGroupState, row: int, status: int, reason: str, cell: int
    ) -> str:
        """Row offset ``row`` failed or was filtered (``status``) because of ``cell``; returns
        the row's failure category (kept with the row)."""
        ...

    def salvage(self, state: RowGroupState, cells: int) -> None: ...

    def backlog(self) -> int:
        """Finished groups not yet written (they still hold memory)."""
        ...


class Lane:
    """Ready cells bound for one scheduler resource, released through a bounded window.

    One heap of row indices per column of the lane; the tracker picks the column to release
    from at each step (oldest row group first, then column rank), so a change of ranks costs
    nothing.
    """

    __slots__ = (
        "columns",
        "heaps",
        "max_outstanding",
        "name",
        "outstanding",
        "resources",
        "window",
    )

    def __init__(self, name: str, window: int, resources: SchedulerResourceRequest) -> None:
        self.name = name
        self.window = window
        self.resources = resources
        self.columns: list[int] = []
        self.heaps: list[list[int]] = []
        self.outstanding = 0
        self.max_outstanding = 0

    @property
    def ready(self) -> int:
        """Cells waiting in the heaps (stale entries of dropped rows included)."""
        return sum(len(h) for h in self.heaps)


class CellTracker:
    """Readiness of every cell of the admitted row groups (see the module docstring)."""

    def __init__(
        self,
        *,
        deps: Sequence[Sequence[int]],
        order: Sequence[int],
        is_model: Sequence[bool],
        lane_of: Sequence[int],
        groups: Sequence[TaskGroupSpec],
        lanes: Sequence[Lane],
        planner: RowGroupPlanner,
        hooks: TrackerHooks,
        max_attempts: int,
        salvage_rounds: int,
        salvage_delay: float,
        max_row_groups: int,
        window: SlowStartWindow[int] | None = None,
    ) -> None:
        columns = len(deps)
        self.columns = columns
        self._deps = [tuple(d) for d in deps]
        dependents: list[list[int]] = [[] for _ in range(columns)]
        for column, upstream in enumerate(self._deps):
            for dep in upstream:
                dependents[dep].append(column)
        self._dependents = [tuple(d) for d in dependents]
        self._dep_counts = bytes(len(d) for d in self._deps)
        self._lane_of = tuple(lane_of)
        self._col_group = tuple(groups)
        self.lanes = tuple(lanes)
        # column -> (its lane, the position of its heap in that lane)
        self._heap_of: list[list[int]] = []
        for column, lane_index in enumerate(self._lane_of):
            lane = self.lanes[lane_index]
            lane.columns.append(column)
            lane.heaps.append([])
            self._heap_of.append(lane.heaps[-1])
        self.planner = planner
        self._hooks = hooks
        self._buffer = planner.buffer_size
        self.estimator = CriticalPathEstimator(self._dependents, is_model, order)
        self.groups: dict[int, RowGroupState] = {}
        self._deferred: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._filtered: dict[int, str] = {}
        self._pending: list[SchedulableTask] = []
        self._max_attempts = max_attempts
        self._salvage_rounds = salvage_rounds
        self._salvage_delay = salvage_delay
        self._earlier_rounds: dict[int, int] = {}
        """Cell -> its executions in earlier salvage rounds (only salvaged cells; dropped
        with their row group)."""
        self.max_row_groups = max_row_groups
        self.window = window
        self.stopping = False
        self.column_done = [0] * columns
        self._column_journaled = [0] * columns  # of column_done: restored from a journal
        self.max_groups_in_flight = 0
        self.max_ready: dict[str, int] = {}
        """Lane -> most ready cells seen waiting (sampled as row groups are admitted)."""

    # -- CompletionTracker ----------------------------------------------------------------

    def ready_frontier(self) -> list[SchedulableTask]:
        """Release ready cells, lane by lane, up to each lane's window."""
        if self._pending:
            return self._pending
        if self.stopping:
            return []
        if self._deferred:
            self._promote_due(_now())
        self._admit_groups()
        out: list[SchedulableTask] = []
        for lane in self.lanes:
            if lane.outstanding < lane.window:
                self._release(lane, out)
        self._pending = out
        return out

    def _release(self, lane: Lane, out: list[SchedulableTask]) -> None:
        """Move ready cells of ``lane`` to ``out`` until its window is full: the oldest row
        group first, then the column with the longest expected remaining path, then the
        lowest row."""
        columns = self.columns
        buffer = self._buffer
        rank = self.estimator.rank
        groups = self.groups
        col_group = self._col_group
        resources = lane.resources
        heaps = lane.heaps
        lane_columns = lane.columns
        heappop = heapq.heappop
        earlier_rounds = self._earlier_rounds
        if len(heaps) == 1:
            single: list[int] | None = heaps[0]
        else:
            single = None
        while lane.outstanding < lane.window:
            if single is not None:
                if not single:
                    break
                best = 0
            else:
                best = -1
                best_key = 0
                for position, heap in enumerate(heaps):
                    if heap:
                        # (row group, rank) as one integer: cheaper than a tuple per candidate
                        key = (heap[0] // buffer) * columns + rank[lane_columns[position]]
                        if best < 0 or key < best_key:
                            best, best_key = position, key
                if best < 0:
                    break
            row = heappop(heaps[best])
            column = lane_columns[best]
            group = groups.get(row // buffer)
            if group is None:
                continue
            index = (row - group.start) * columns + column
            if group.state[index] != READY:
                continue  # its row was dropped after the cell became ready
            group.state[index] = RUNNING
            attempts = group.unmet[index] + 1  # a running cell reuses unmet as attempts
            group.unmet[index] = attempts if attempts < 255 else 255  # cell_max_attempts <= 100
            cell = row * columns + column
            # Executions before this one, over the whole run (the scheduler continues from it).
            prior = attempts - 1
            if group.salvaged:
                prior += earlier_rounds.get(cell, 0)
            lane.outstanding += 1
            out.append(SchedulableTask(cell, None, col_group[column], resources, prior))
        if lane.outstanding > lane.max_outstanding:
            lane.max_outstanding = lane.outstanding

    def mark_enqueued(self, task_ids: Iterable[Hashable]) -> None:
        self._pending = []

    def mark_complete(self, task: SchedulableTask, outcome: TaskOutcome) -> Sequence[Hashable]:
        """Record how a released cell ended. Never returns downstream ids: cells downstream of
        a failure were never released, so the scheduler has nothing to account for."""
        cell: int = task.task_id
        row, column = divmod(cell, self.columns)
        group = self.groups.get(row // self._buffer)
        self.lanes[self._lane_of[column]].outstanding -= 1
        if group is None:
            return ()
        offset = row - group.start
        index = offset * self.columns + column
        group.live -= 1
        if group.row_state[offset] != ROW_ACTIVE:
            # Its row was resolved (or its group abandoned) while it ran: whatever it returned,
            # the cell is over; a retry would only redo work nobody needs.
            group.state[index] = DEAD
            self._filtered.pop(cell, None)
            self._after_change(group)
            return ()
        kind = outcome.kind
        if kind == "success":
            self._succeeded(group, offset, column, index, cell)
        elif kind == "retry":
            if group.unmet[index] < self._max_attempts:
                self._defer(group, index, cell, outcome.delay)
            else:
                group.state[index] = PARKED
                group.parked[index] = outcome.reason or "retryable failure"
        else:
            self._filtered.pop(cell, None)
            group.state[index] = DEAD
            self._resolve_row(group, offset, ROW_FAILED, outcome.reason or "failed", cell)
        self._after_change(group)
        return ()

    @property
    def is_finished(self) -> bool:
        """Every needed row group is finished (or a stop was requested) and nothing runs."""
        if any(lane.outstanding for lane in self.lanes):
            return False
        if self.stopping:
            return True
        return not self.groups and self.planner.done

    def next_ready_at(self) -> float | None:
        """When a deferred cell becomes ready (or when to re-check a blocked admission)."""
        at = self._deferred[0][0] if self._deferred else None
        if (
            not self.stopping
            and len(self.groups) < self.row_group_limit
            and self._hooks.backlog() > 0
            and self.planner.wants_more()
        ):
            poll = _now() + _BACKLOG_POLL
            at = poll if at is None else min(at, poll)
        return at

    # -- called by the worker --------------------------------------------------------------

    def cell_input(self, cell: int) -> tuple[list[object], int, int]:
        """``(values of the row, row group index, attempt in this salvage round)`` for a
        running cell (the round's attempt paces the backoff; the execution number over the run
        is its task's ``prior_attempts + 1``)."""
        row, column = divmod(cell, self.columns)
        group = self.groups[row // self._buffer]
        base = (row - group.start) * self.columns
        return group.values[base : base + self.columns], group.index, group.unmet[base + column]

    def record(self, cell: int, value: object, filtered: str | None = None) -> bool:
        """Store a running cell's value (before the scheduler reports success); ``filtered``
        is the reason when the row's ``keep_if`` said no. False when the value is not needed
        any more (its row was resolved or its group abandoned)."""
        row, column = divmod(cell, self.columns)
        group = self.groups.get(row // self._buffer)
        if group is None:
            return False
        offset = row - group.start
        if group.row_state[offset] != ROW_ACTIVE:
            return False
        group.values[offset * self.columns + column] = value
        if filtered is not None:
            self._filtered[cell] = filtered
        return True

    def observe(self, column: int, seconds: float) -> None:
        """Fold a cell's duration into the critical-path estimate (the ranks follow)."""
        self.estimator.observe(column, seconds)

    def column_succeeded(self, column: int) -> int:
        """Cells of ``column`` that succeeded in this run (journaled ones not counted)."""
        return self.column_done[column] - self._column_journaled[column]

    @property
    def row_group_limit(self) -> int:
        """Row groups that may be in memory now: ``max_row_groups``, or less while the
        slow-start window ramps (0 once it halted)."""
        window = self.window
        if window is None:
            return self.max_row_groups
        return min(self.max_row_groups, window.limit)

    def stop(self) -> None:
        """Release nothing more and admit no row group (a graceful stop)."""
        self.stopping = True
        self._pending = []

    # -- internals -------------------------------------------------------------------------

    def _push(self, group: RowGroupState, offset: int, column: int) -> None:
        group.state[offset * self.columns + column] = READY
        group.live += 1
        heapq.heappush(self._heap_of[column], group.start + offset)

    def _succeeded(
        self, group: RowGroupState, offset: int, column: int, index: int, cell: int
    ) -> None:
        group.state[index] = DONE
        self.column_done[column] += 1
        reason = self._filtered.pop(cell, None)
        if reason is not None:
            self._resolve_row(group, offset, ROW_FILTERED, reason, cell)
            return
        self._cell_done(group, offset, column)

    def _cell_done(self, group: RowGroupState, offset: int, column: int) -> None:
        columns = self.columns
        base = offset * columns
        state = group.state
        unmet = group.unmet
        for child in self._dependents[column]:
            index = base + child
            left = unmet[index] - 1
            unmet[index] = left
            if left == 0 and state[index] == PENDING:
                self._push(group, offset, child)
        left = group.row_left[offset] - 1
        group.row_left[offset] = left
        if left == 0 and group.row_state[offset] == ROW_ACTIVE:
            group.row_state[offset] = ROW_DONE
            group.resolved += 1
            if group.probing:
                self._probed(group, True)

    def _probed(self, group: RowGroupState, healthy: bool) -> None:
        """A probing group's first row passed or was filtered (``healthy``), or the group
        leaves without one (journal rows only, abandoned)."""
        group.probing = False
        if self.window is not None:
            (self.window.healthy if healthy else self.window.left)(group.index)

    def _defer(self, group: RowGroupState, index: int, cell: int, delay: float) -> None:
        group.live += 1
        if delay <= 0:
            offset, column = divmod(index, self.columns)
            group.live -= 1  # _push counts it
            self._push(group, offset, column)
            return
        group.state[index] = DEFERRED
        heapq.heappush(self._deferred, (_now() + delay, next(self._seq), cell))

    def _promote_due(self, now: float) -> None:
        deferred = self._deferred
        columns = self.columns
        while deferred and deferred[0][0] <= now:
            _, _, cell = heapq.heappop(deferred)
            row, column = divmod(cell, columns)
            group = self.groups.get(row // self._buffer)
            if group is None:
                continue
            offset = row - group.start
            if group.state[offset * columns + column] == DEFERRED:
                group.live -= 1  # _push counts it again
                self._push(group, offset, column)

    def _resolve_row(
        self, group: RowGroupState, offset: int, status: int, reason: str, cell: int
    ) -> None:
        if group.row_state[offset] != ROW_ACTIVE:
            return
        group.row_state[offset] = status
        group.resolved += 1
        if status == ROW_FILTERED and group.probing:
            self._probed(group, True)  # keep_if said no: every cell the row needed worked
        base = offset * self.columns
        state = group.state
        for index in range(base, base + self.columns):
            current = state[index]
            if current in (READY, DEFERRED):
                group.live -= 1
                state[index] = DEAD
            elif current in (PENDING, PARKED):
                group.parked.pop(index, None)
                state[index] = DEAD
            # a RUNNING cell keeps its state until it completes (mark_complete resolves it)
        category = self._hooks.row_resolved(group, offset, status, reason, cell)
        group.reasons[offset] = (category, reason)

    def _after_change(self, group: RowGroupState) -> None:
        if group.live:
            return
        if group.parked and group.resolved < group.size:
            self._salvage(group)
            if group.live:
                return
        if group.finished:
            self._finish(group)

    def _salvage(self, group: RowGroupState) -> None:
        """A salvage round: every parked cell with salvage budget left gets fresh attempts
        after the salvage delay; a parked cell without budget fails its row."""
        parked = sorted(group.parked.items())
        group.parked.clear()
        at = _now() + self._salvage_delay
        salvaged = 0
        for index, reason in parked:
            used = group.salvaged.get(index, 0)
            if used < self._salvage_rounds:
                group.salvaged[index] = used + 1
                cell = group.start * self.columns + index
                # Fresh attempts, but the executions keep their numbers.
                earlier = self._earlier_rounds
                earlier[cell] = earlier.get(cell, 0) + group.unmet[index]
                group.unmet[index] = 0
                group.state[index] = DEFERRED
                group.live += 1
                heapq.heappush(self._deferred, (at, next(self._seq), cell))
                salvaged += 1
                continue
            group.state[index] = DEAD
            self._resolve_row(
                group,
                index // self.columns,
                ROW_FAILED,
                f"retries exhausted after {used} salvage round(s): {reason}",
                group.start * self.columns + index,
            )
        if salvaged:
            group.salvage_rounds += 1
            self._hooks.salvage(group, salvaged)

    def _forget(self, group: RowGroupState) -> None:
        """``group`` leaves memory: drop its cells' execution counts of earlier rounds."""
        del self.groups[group.index]
        if group.salvaged:
            base = group.start * self.columns
            for index in group.salvaged:
                self._earlier_rounds.pop(base + index, None)

    def _finish(self, group: RowGroupState) -> None:
        self._forget(group)
        if group.probing:
            self._probed(group, False)
        if group.index in self.planner.in_flight:
            writes = self.planner.finish(group.index, len(group.passing_rows()))
            self._hooks.group_finished(group, writes)
        else:
            self._hooks.group_abandoned(group.index)
        for index in self.planner.abandoned():
            self._abandon(index)

    def _abandon(self, index: int) -> None:
        """The output no longer needs group ``index`` (exact mode): stop its work."""
        group = self.groups.get(index)
        if group is None:
            return
        self.planner.finish_abandoned(index)
        if group.probing:
            self._probed(group, False)
        state = group.state
        for cell_index in range(len(state)):
            if state[cell_index] in (READY, DEFERRED):
                group.live -= 1
                state[cell_index] = DEAD
            elif state[cell_index] in (PENDING, PARKED):
                state[cell_index] = DEAD
        group.parked.clear()
        row_state = group.row_state
        for offset in range(group.size):
            if row_state[offset] == ROW_ACTIVE:
                row_state[offset] = ROW_ABANDONED
        group.resolved = group.size
        if group.live == 0:
            self._forget(group)
            self._hooks.group_abandoned(index)

    def _admit_groups(self) -> None:
        planner = self.planner
        window = self.window
        while (
            len(self.groups) + self._hooks.backlog() < self.row_group_limit and planner.wants_more()
        ):
            index = planner.admit()
            start, size = planner.group_range(index)
            group = RowGroupState(index, start, size, self.columns)
            self.groups[index] = group
            if window is not None:
                group.probing = window.admitted(index)
            if len(self.groups) > self.max_groups_in_flight:
                self.max_groups_in_flight = len(self.groups)
            self._fill(group)
            for lane in self.lanes:
                waiting = lane.ready
                if waiting > self.max_ready.get(lane.name, 0):
                    self.max_ready[lane.name] = waiting
            self._hooks.group_admitted(group)
            if group.finished:
                self._finish(group)

    def _fill(self, group: RowGroupState) -> None:
        """Set up a new group: journaled cells and rows first, then the ready frontier."""
        columns = self.columns
        cells, rows = self._hooks.prefill(group.index)
        state = group.state
        unmet = group.unmet
        counts = self._dep_counts
        for offset in range(group.size):
            unmet[offset * columns : (offset + 1) * columns] = counts
        for index, value in cells.items():
            group.values[index] = value
            state[index] = DONE
            self.column_done[index % columns] += 1
            self._column_journaled[index % columns] += 1
        for offset, (status, category, reason) in rows.items():
            group.row_state[offset] = status
            group.reasons[offset] = (category, reason)
            group.resolved += 1
            for index in range(offset * columns, (offset + 1) * columns):
                if state[index] != DONE:
                    state[index] = DEAD
        for index in cells:
            offset, column = divmod(index, columns)
            if group.row_state[offset] == ROW_ACTIVE:
                self._cell_done_quiet(group, offset, column)
        row_state = group.row_state
        for offset in range(group.size):
            if row_state[offset] != ROW_ACTIVE:
                continue
            base = offset * columns
            for column in range(columns):
                if state[base + column] == PENDING and unmet[base + column] == 0:
                    self._push(group, offset, column)

    def _cell_done_quiet(self, group: RowGroupState, offset: int, column: int) -> None:
        """A journaled cell: count it for its dependents and its row, push nothing yet."""
        base = offset * self.columns
        for child in self._dependents[column]:
            group.unmet[base + child] -= 1
        left = group.row_left[offset] - 1
        group.row_left[offset] = left
        if left == 0:
            group.row_state[offset] = ROW_DONE
            group.resolved += 1
