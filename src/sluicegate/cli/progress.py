"""The terminal progress view of a run: a live rich panel, or plain lines for logs.

:class:`TerminalProgress` is a :class:`~sluicegate.datagen.ProgressReporter` (it keeps the
last checkpoint and the terminal result) plus one trio task, :meth:`TerminalProgress.run`,
that reads :meth:`RunControl.snapshot` at a bounded rate and draws:

- ``panel``: a rich ``Live`` panel with auto refresh *off*: each frame is rendered by the
  task itself, so no thread ever touches the run's state and the cost is one snapshot and one
  render per frame (``refresh_per_second``, 4 by default);
- ``lines``: one plain line every ``line_interval`` seconds (CI logs, files, pipes);
- ``off``: nothing.

Cancel the task when the run ends (the command does it): it draws a last frame and stops.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Literal, TextIO, TypeAlias

import trio
from rich.console import Console
from rich.live import Live

from .meter import DEFAULT_RATE_WINDOW, ProgressFigures, ProgressMeter
from .panel import render_line, render_panel

if TYPE_CHECKING:
    from ..datagen import CheckpointProgress, RunControl, RunResult

ViewMode: TypeAlias = Literal["panel", "lines", "off"]


class TerminalProgress:
    """A progress reporter that draws a live panel or plain lines (see the module docstring).

    ``console`` draws the panel (default: a rich console on stdout); ``stream`` receives the
    plain lines (default: stdout). Everything runs in the caller's trio run; none of the
    methods is a checkpoint except :meth:`run`.
    """

    def __init__(
        self,
        mode: ViewMode,
        *,
        title: str = "sluicegate",
        console: Console | None = None,
        stream: TextIO | None = None,
        refresh_per_second: float = 4.0,
        line_interval: float = 10.0,
        rate_window: float = DEFAULT_RATE_WINDOW,
    ) -> None:
        if mode not in ("panel", "lines", "off"):
            raise ValueError(f"mode must be 'panel', 'lines' or 'off', got {mode!r}")
        if not refresh_per_second > 0 or not line_interval > 0:
            raise ValueError("refresh_per_second and line_interval must be > 0")
        self.mode: ViewMode = mode
        self.title = title
        self.console = console if console is not None else Console(file=sys.stdout)
        self.stream = stream
        self.refresh_per_second = refresh_per_second
        self.line_interval = line_interval
        self.meter = ProgressMeter(rate_window)
        self.frames = 0
        self.last: ProgressFigures | None = None
        self.checkpoint_progress: CheckpointProgress | None = None
        self.result: RunResult | None = None
        self._live: Live | None = None

    # -- ProgressReporter ----------------------------------------------------------------

    def checkpoint(self, progress: CheckpointProgress) -> None:
        """Remember the last written row group (the next frame shows it)."""
        self.checkpoint_progress = progress

    def finished(self, result: RunResult) -> None:
        """Remember the terminal result."""
        self.result = result

    # -- drawing ---------------------------------------------------------------------------

    def notice(self, message: str) -> None:
        """Print one line above the panel (or between the plain lines)."""
        if self.mode == "panel" and self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=self.stream or sys.stdout, flush=True)

    def sample(self, control: RunControl) -> ProgressFigures | None:
        """Take a snapshot into the meter (no drawing); ``None`` before the run starts."""
        snapshot = control.snapshot()
        if snapshot is None:
            return None
        self.last = self.meter.update(snapshot, trio.current_time())
        return self.last

    def draw(self, control: RunControl) -> ProgressFigures | None:
        """Take a snapshot and draw one frame (or one line); ``None`` before the run starts."""
        figures = self.sample(control)
        if figures is None:
            return None
        self.frames += 1
        if self.mode == "panel" and self._live is not None:
            self._live.update(render_panel(figures, self.title), refresh=True)
        elif self.mode == "lines":
            print(render_line(figures), file=self.stream or sys.stdout, flush=True)
        return figures

    async def run(
        self,
        control: RunControl,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Draw until cancelled, then draw the last frame (panel) and stop.

        Lines mode samples a snapshot every second (so the first line already has rates)
        and prints every ``line_interval`` seconds.
        """
        if self.mode == "off":
            task_status.started()
            await trio.sleep_forever()
        panel = self.mode == "panel"
        tick = 1 / self.refresh_per_second if panel else min(1.0, self.line_interval)
        with self._display():
            task_status.started()
            self.sample(control)
            next_line = trio.current_time() + self.line_interval
            try:
                while True:
                    await trio.sleep(tick)
                    if panel:
                        self.draw(control)
                    elif trio.current_time() >= next_line - 1e-9:
                        next_line += self.line_interval
                        self.draw(control)
                    else:
                        self.sample(control)
            finally:
                if panel:
                    self.draw(control)  # the final state stays on screen

    def _display(self) -> AbstractContextManager[object]:
        if self.mode != "panel":
            return nullcontext()
        # auto_refresh=False: no refresh thread; the redraws are ours. No stdout redirection
        # either: notices go through the live console, so nothing else is patched.
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
            transient=False,
        )
        return self._live


def choose_mode(setting: str, console: Console) -> ViewMode:
    """``auto`` -> ``panel`` when the console writes to a real, interactive terminal, ``lines``
    otherwise (CI, files, pipes: also when ``FORCE_COLOR`` makes rich colour a log); other
    values as given."""
    if setting == "auto":
        isatty = getattr(console.file, "isatty", None)
        try:
            tty = bool(isatty()) if isatty is not None else False
        except ValueError:  # a closed file
            tty = False
        return "panel" if tty and console.is_interactive else "lines"
    if setting in ("panel", "lines", "off"):
        return setting  # type: ignore[return-value]
    raise ValueError(f"unknown progress mode {setting!r}")
