"""Test support users may import in their own tests: the loopback OpenAI-compatible emulator.

``python -m sluicegate.testing.emulator`` serves it from a shell.
"""

from __future__ import annotations

from ._emulator import Emulator, EmulatorConfig, EmulatorStats, serve_emulator

__all__ = ["Emulator", "EmulatorConfig", "EmulatorStats", "serve_emulator"]
