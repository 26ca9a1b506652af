"""The event sinks of a command-line run: an events file, OpenTelemetry, or both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..events import (
    EventSink,
    EventSinkStats,
    FanOutEventSink,
    JsonLinesEventSink,
    run_events_path,
)


class LazyJsonLinesEventSink:
    """A :class:`JsonLinesEventSink` opened at the first event.

    A run opens its directory (``--fresh`` deletes the old run's files there) before the first
    event, so a file in the run directory must not be opened earlier.
    """

    def __init__(self, path: Path, *, append: bool) -> None:
        self.path = path
        self.append = append
        self._sink: JsonLinesEventSink | None = None

    def emit(self, event: Any) -> None:
        """Forward ``event``, opening the file first if needed."""
        if self._sink is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = JsonLinesEventSink(self.path, append=self.append)
        self._sink.emit(event)

    def flush(self, *, fsync: bool = False) -> None:
        """Write what is buffered."""
        if self._sink is not None:
            self._sink.flush(fsync=fsync)

    def close(self) -> None:
        """Flush and close the file (if it was opened)."""
        if self._sink is not None:
            self._sink.close()

    @property
    def stats(self) -> EventSinkStats | None:
        """What the file's sink did (``None``: no event came, the file was never opened)."""
        return self._sink.stats if self._sink is not None else None


def check_events_file(path: Path) -> None:
    """Refuse an ``--events FILE`` that cannot be written, before the run: a directory, a
    file where a folder should be, or a folder this user may not write in. (Otherwise every
    event is lost, and the run only warns.)"""
    if path.is_dir():
        raise ConfigurationError(
            "--events",
            f"{path} is a directory",
            f"name a file, e.g. {path / 'events.jsonl.gz'}, or leave --events out to record "
            "RUN_DIR/events.jsonl.gz",
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the file's folders are created at the first event
    if not folder.is_dir():
        raise ConfigurationError(
            "--events", f"{folder} is not a directory", "name a file in a directory"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(
            "--events",
            f"cannot write in {folder} (permission denied)",
            "name a file in a directory you can write to",
        )


def event_sinks(
    events: bool | str,
    *,
    output_dir: str,
    fresh: bool,
    extra: EventSink | None,
) -> tuple[EventSink | bool, list[LazyJsonLinesEventSink]]:
    """What to pass as ``Pipeline.arun(events=...)`` and the files to close afterwards.

    ``events`` is the setting (``True``: ``RUN_DIR/events.jsonl.gz``; a path; ``False``);
    ``extra`` is another sink (OpenTelemetry) that receives every event too.
    """
    if events is False and extra is None:
        return False, []
    if events is True and extra is None:
        return True, []  # the run owns its events file
    files: list[LazyJsonLinesEventSink] = []
    if events is not False:
        path = run_events_path(output_dir) if events is True else Path(str(events))
        if events is not True:
            check_events_file(path)
        files.append(LazyJsonLinesEventSink(path, append=not fresh))
    sinks: list[EventSink] = [*files, *([extra] if extra is not None else [])]
    return (sinks[0] if len(sinks) == 1 else FanOutEventSink(sinks)), files
