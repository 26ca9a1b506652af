"""Test support users may import in their own tests: the loopback OpenAI-compatible emulator
and virtual-time runs (:mod:`sluicegate.testing.virtual_time`).

``python -m sluicegate.testing.emulator`` serves the emulator from a shell.
"""

from __future__ import annotations

from ._emulator import Emulator, EmulatorConfig, EmulatorStats, serve_emulator
from .virtual_time import deterministic_scheduling, run_virtual, virtual_clock

__all__ = [
    "Emulator",
    "EmulatorConfig",
    "EmulatorStats",
    "deterministic_scheduling",
    "run_virtual",
    "serve_emulator",
    "virtual_clock",
]
