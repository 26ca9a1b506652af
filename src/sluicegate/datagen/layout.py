"""Which scheduler resources, lanes and fairness groups a pipeline's cells use.

- A model cell (a ``model`` or ``custom_model`` column naming an endpoint alias) holds one unit
  of its *concrete endpoint's* resource plus one unit of the shared ``submission`` resource.
  The endpoint's lane releases as many cells as the endpoint's static cap (aliases of one
  endpoint share it), plus one for each cell pausing between two attempts of a model call
  (:mod:`.calls`); the resource, twice the cap, is only a ceiling. Cells waiting on one endpoint
  therefore never take the task slots another endpoint could use, and a retry's backoff does
  not leave the endpoint idle.
- A sync generator running in a worker thread holds one unit of ``threads``
  (``local_threads``) plus ``submission``.
- Inline and async local cells hold ``submission`` only; their lane releases at most
  ``local_concurrency`` at a time.

``submission`` defaults to the sum of the lanes' limits (twice the cap for an endpoint lane, the
window for the others), so by default it never binds.
Each column's fairness group comes from its :class:`SchedulingMetadata`, with the endpoint as
the default identity of model columns (every column calling one endpoint shares a group).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import TypeVar

import attrs
import trio

from ..scheduling import TaskGroupSpec
from .cells import ColumnRuntime
from .endpoints import RequestStack
from .pipeline import Pipeline
from .settings import RunSettings
from .tracker import Lane

_V = TypeVar("_V")


@attrs.frozen
class ColumnLayout:
    """Lanes, task-admission limits and per-column lane, group and runtime of one run."""

    lanes: tuple[Lane, ...]
    limits: dict[str, int]
    lane_of: tuple[int, ...]
    groups: tuple[TaskGroupSpec, ...]
    runtimes: tuple[ColumnRuntime, ...]

    def group_resources(self) -> dict[str, dict[str, int]]:
        """Fairness group key -> the scheduler resources one of its cells holds, for the
        run's events (a report checks ready-idle gaps against the limits with it, so no
        per-cell event has to carry them). A group whose columns sit on lanes holding
        different resources has no one answer and is left out."""
        return self._by_group(lambda lane: dict(lane.resources))

    def group_lanes(self) -> dict[str, str]:
        """Fairness group key -> the lane its cells are released through, for the run's
        events (with :meth:`lane_windows`, a report tells a full lane from work still to
        come: a lane's waiting cells are in the tracker, not the scheduler's queue). A group
        on several lanes is left out."""
        return self._by_group(lambda lane: lane.name)

    def lane_windows(self) -> dict[str, int]:
        """Each lane's window: how many of its cells run at once at most."""
        return {lane.name: lane.window for lane in self.lanes}

    def _by_group(self, value_of: Callable[[Lane], _V]) -> dict[str, _V]:
        out: dict[str, _V] = {}
        mixed: set[str] = set()
        for group, lane in zip(self.groups, self.lane_of, strict=True):
            value = value_of(self.lanes[lane])
            if out.setdefault(group.key, value) != value:
                mixed.add(group.key)
        for key in mixed:
            del out[key]
        return out


def plan_layout(
    pipeline: Pipeline, stack: RequestStack, settings: RunSettings, *, io_inline: bool
) -> ColumnLayout:
    """Lay the pipeline's columns out on lanes and scheduler resources (see the module doc).

    ``io_inline`` (virtual time) runs sync generators inline instead of in threads.
    """
    lanes: dict[str, Lane] = {}
    limits: dict[str, int] = {}
    lane_of: list[int] = []
    groups: list[TaskGroupSpec] = []
    runtimes: list[ColumnRuntime] = []
    thread_limiter = trio.CapacityLimiter(settings.local_threads)
    for index, column in enumerate(pipeline.columns):
        identity: tuple[str | int, ...] = (column.name,)
        threaded = column.threaded and not io_inline
        if column.model is not None and column.scheduling.kind != "local":
            key = stack.endpoint_of_alias[column.model]
            name, window = f"endpoint:{key}", stack.static_caps[key]
            identity = (key.provider, key.model_id)
        elif threaded:
            name, window = "threads", settings.local_threads
        else:
            name, window = "local", settings.local_concurrency
        if name not in lanes:
            resources = {"submission": 1} if name == "local" else {"submission": 1, name: 1}
            lanes[name] = Lane(name, window, MappingProxyType(resources))
            if name.startswith("endpoint:"):
                # The lane (cap, plus one per cell pausing between call attempts, see
                # calls.py) decides; the resource is the hard ceiling above it.
                limits[name] = 2 * window
            elif name != "local":
                limits[name] = window
        lane_of.append(list(lanes).index(name))
        meta = column.scheduling
        groups.append(TaskGroupSpec(meta.group_key(identity), meta.weight))
        runtimes.append(
            ColumnRuntime(
                column,
                index,
                pipeline.index,
                identity_hash=meta.identity_hash(identity),
                threaded=threaded,
                limiter=thread_limiter,
            )
        )
    lane_list = list(lanes.values())
    for runtime, index in zip(runtimes, lane_of, strict=True):
        runtime.lane = lane_list[index]
    limits["submission"] = settings.task_capacity or sum(
        limits.get(lane.name, lane.window) for lane in lanes.values()
    )
    return ColumnLayout(
        lanes=tuple(lanes.values()),
        limits=limits,
        lane_of=tuple(lane_of),
        groups=tuple(groups),
        runtimes=tuple(runtimes),
    )
