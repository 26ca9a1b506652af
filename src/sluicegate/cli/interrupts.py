"""Ctrl-C, SIGTERM and the deadline, turned into a graceful stop and then a cancel.

- First SIGINT or SIGTERM (or the ``deadline_seconds`` budget running out): ``stop`` the run
  gracefully - no new cells; running cells get ``stop_grace_seconds`` to finish; finished row
  groups, the journal and the manifest are written.
- Second signal: ``cancel`` - running cells are cancelled now; finished work is still written.

Signals are received with ``trio.open_signal_receiver`` inside the run, so an interrupt is
never a ``KeyboardInterrupt`` traceback; the run ends with status ``interrupted`` and the
next run on the same directory resumes it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import trio

from ..datagen import RunControl

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupts:
    """Watches the signals (and the deadline) of one run and stops it (see the module doc).

    ``notice`` prints one line for each step. ``reason`` says what stopped the run
    (``SIGINT``, ``SIGTERM``, ``deadline``) and ``cancelled_cells`` how many cells were
    running when they were cancelled (``None`` if none was).
    """

    def __init__(
        self,
        control: RunControl,
        *,
        grace_seconds: float,
        notice: Callable[[str], None],
        deadline_seconds: float | None = None,
    ) -> None:
        self.control = control
        self.grace_seconds = grace_seconds
        self.deadline_seconds = deadline_seconds
        self.notice = notice
        self.reason: str | None = None
        self.stops = 0
        self.cancelled_cells: int | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the signal handlers, report started, and act on signals until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            with trio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
                if self.deadline_seconds is not None:
                    nursery.start_soon(self._deadline, self.deadline_seconds)
                task_status.started()
                async for signum in signals:
                    self._on_stop_request(signal.Signals(signum).name)

    async def _deadline(self, seconds: float) -> None:
        await trio.sleep(seconds)
        if self.stops == 0:
            self._on_stop_request("deadline")

    def _on_stop_request(self, why: str) -> None:
        self.stops += 1
        if self.stops == 1:
            self.reason = why
            self.control.stop(grace_period=self.grace_seconds)
            lead = "deadline reached" if why == "deadline" else f"{why} received"
            self.notice(
                f"{lead}: stopping - no new cells; running cells get up to "
                f"{self.grace_seconds:g} s to finish; press Ctrl-C again to cancel them now"
            )
            if self._nursery is not None:
                self._nursery.start_soon(self._grace_expires)
        elif self.stops == 2:
            self._cancel(f"{why} received again: cancelling running cells now")

    async def _grace_expires(self) -> None:
        await trio.sleep(self.grace_seconds)
        # The run cancels the cells still running now; count them for the summary.
        snapshot = self.control.snapshot()
        if snapshot is not None and snapshot.phase != "finished" and self.cancelled_cells is None:
            self.cancelled_cells = snapshot.cells_running

    def _cancel(self, message: str) -> None:
        snapshot = self.control.snapshot()
        if snapshot is not None and self.cancelled_cells is None:
            self.cancelled_cells = snapshot.cells_running
        self.control.cancel()
        self.notice(message + "; finished work is being written")
