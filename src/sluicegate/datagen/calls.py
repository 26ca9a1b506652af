"""Model calls of cells: the executor, one attempt at a time, with the retries done here.

The executor would retry a failed call itself, sleeping between attempts while the cell keeps
its task slot - a slot of an endpoint lane that is exactly as large as the endpoint's cap, so
every such pause would leave one of the endpoint's requests unused. :class:`CellCalls` asks the
executor for one attempt at a time and sleeps between attempts itself, widening the calling
cell's lane by one for the length of the pause: the tracker releases another cell into the
endpoint meanwhile. The lane shrinks back after the pause (no cell is revoked; the lane just
releases nothing until it is below its size again).

Retried: what the executor reports as :class:`~sluicegate.requests.ModelRequestError` (rate
limits, retryable provider failures, timeouts), with exponential backoff and +/-10% jitter,
never sooner than a provider's ``retry_after``. Everything else propagates at once.

All attempts of one call are one logical model request: each call after the first passes
back the request id the failed one's :class:`~sluicegate.requests.ModelRequestError` carries
(set only while events are on, so a run without a sink pays nothing for it), the executor is
told which attempt each is (numbers continue 1, 2, 3 across the pauses) and whether a failure
will be retried here, so its ``model_request_completed`` reports ``will_retry`` as it is: a
retried 429 is not a failed request, to the OpenTelemetry bridge and the runtime view alike.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Final

import trio

from ..requests import ModelRequest, ModelRequestError, ModelRequestExecutor, ModelResponse
from .tracker import Lane

_JITTER: Final = 0.1


class CellCalls:
    """The run's :class:`~sluicegate.datagen.context.ModelCaller` (see the module docstring)."""

    def __init__(
        self,
        executor: ModelRequestExecutor,
        request_groups: Mapping[str, str],
        *,
        max_attempts: int,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        seed: int = 0,
        wake: Callable[[], None],
    ) -> None:
        self._executor = executor
        self._groups = request_groups
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._random = random.Random(seed)
        self._wake = wake
        self.retries = 0

    async def call(
        self, model: str, request: ModelRequest, holder: object | None = None
    ) -> ModelResponse:
        """One model request, retried as described above. ``holder`` is the calling cell's
        lane (widened while the cell pauses), or ``None``."""
        group = self._groups.get(model, model)
        delay = self._backoff
        calls = 0
        attempt = 1  # the executor's attempt number: continues across our calls
        request_id = None  # one logical request in events: the first call's id, passed on
        while True:
            calls += 1
            try:
                return await self._executor.execute(
                    model,
                    request,
                    request_group=group,
                    attempt=attempt,
                    will_retry=calls < self._max_attempts,
                    request_id=request_id,
                )
            except ModelRequestError as exc:
                if calls >= self._max_attempts:
                    raise
                hint = exc.outcome.retry_after_seconds
                attempt = exc.attempts + 1
                request_id = exc.request_id
            pause = min(self._max_backoff, delay) * (
                1.0 + _JITTER * (2.0 * self._random.random() - 1.0)
            )
            if hint is not None and math.isfinite(hint):
                pause = max(pause, hint)
            delay *= 2
            self.retries += 1
            await self._pause(pause, holder)

    async def _pause(self, seconds: float, holder: object | None) -> None:
        lane = holder if isinstance(holder, Lane) else None
        if lane is not None:
            lane.window += 1
            self._wake()  # the dispatch loop can release another cell into the endpoint now
        try:
            await trio.sleep(seconds)
        finally:
            if lane is not None:
                lane.window -= 1
