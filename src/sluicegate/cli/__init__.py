"""The ``sluicegate`` command line: argument parsing and commands."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
