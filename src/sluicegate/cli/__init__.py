"""The ``sluicegate`` command line, and the terminal progress views it is built on.

:func:`main` is the entry point (``sluicegate`` / ``python -m sluicegate``). The progress
views work for any :class:`~sluicegate.datagen.RunControl`: :class:`TerminalProgress` is a
:class:`~sluicegate.datagen.ProgressReporter` plus a trio task drawing a live rich panel (or
plain lines) from run snapshots; :class:`ProgressMeter` turns snapshots into rates and an
ETA; :func:`render_panel` and :func:`render_line` draw one frame.
"""

from __future__ import annotations

from .exit_codes import EXIT_EMPTY, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_SUCCESS, EXIT_USAGE
from .main import main
from .meter import ColumnFigures, EndpointFigures, ProgressFigures, ProgressMeter
from .panel import render_line, render_panel
from .progress import TerminalProgress

__all__ = [
    "EXIT_EMPTY",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_SUCCESS",
    "EXIT_USAGE",
    "ColumnFigures",
    "EndpointFigures",
    "ProgressFigures",
    "ProgressMeter",
    "TerminalProgress",
    "main",
    "render_line",
    "render_panel",
]
