"""Every setting of a command-line run: its type, built-in default and help, and how one value
is checked (typed, from TOML) or parsed (text, from the environment and flags).

:data:`SETTINGS` lists the :class:`~sluicegate.datagen.RunSettings` fields plus the output
directory, events, rate window, deadline, progress and OpenTelemetry options. The layering of
values (defaults, the file, profiles, the environment, flags) is :mod:`.profiles`.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal, TypeAlias

from attrs import frozen

from .._internal.checks import describe, did_you_mean, is_number
from ..errors import ConfigurationError
from .output import OUTPUT_FORMATS
from .settings import RunSettings

SettingKind: TypeAlias = Literal["int", "float", "bool", "choice", "str", "events"]

CLEAR: Final = "none"
"""The value that clears an inherited setting (case-insensitive in strings)."""

ENV_PREFIX: Final = "SLUICEGATE_"

PROGRESS_MODES: Final = ("auto", "panel", "lines", "off")
OTEL_MODES: Final = ("console", "otlp")


@frozen
class Setting:
    """One setting: its ``kind``, built-in ``default``, ``help``; ``optional`` ones accept
    ``None`` (unset); ``minimum`` bounds numbers; ``choices`` lists a ``choice``'s values."""

    name: str
    kind: SettingKind
    default: Any
    help: str
    optional: bool = False
    minimum: float | None = None
    minimum_open: bool = False
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        """The environment variable (``SLUICEGATE_BUFFER_SIZE``)."""
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        """The command-line flag (``--buffer-size``)."""
        return "--" + self.name.replace("_", "-")


_RUN_DEFAULTS: Final = {
    name: getattr(RunSettings(records=0), name) for name in RunSettings.__struct_fields__
}


def _run(name: str, kind: SettingKind, help: str, **more: Any) -> Setting:
    default = None if name == "records" else _RUN_DEFAULTS[name]
    return Setting(name, kind, default, help, **more)


SETTINGS: Final[dict[str, Setting]] = {
    s.name: s
    for s in (
        _run("records", "int", "rows to generate (with exact: rows that must pass)", minimum=0),
        _run("exact", "bool", "write exactly `records` passing rows, generating more as needed"),
        _run("max_attempts_factor", "float", "with exact: generate at most this many x records"),
        _run("seed", "int", "the run seed (samplers, ctx.rng, the simulated provider)"),
        _run("buffer_size", "int", "rows per row group (one checkpointed file each)", minimum=1),
        _run("max_concurrent_row_groups", "int", "row groups in memory at once", minimum=1),
        _run(
            "row_group_slow_start",
            "bool",
            "admit row groups 1, 2, 4, ... as the first pass; stop early if they fail",
        ),
        _run("task_capacity", "int", "cells running at once (default: derived)", optional=True),
        _run("local_threads", "int", "sync generators running in threads at once", minimum=1),
        _run("local_concurrency", "int", "inline and async local cells at once", minimum=1),
        _run("output_format", "choice", "file format of the row groups", choices=OUTPUT_FORMATS),
        _run("cell_max_attempts", "int", "attempts of a cell failing retryably", minimum=1),
        _run("cell_backoff_seconds", "float", "backoff before a cell's second attempt"),
        _run("request_max_attempts", "int", "attempts of one model call inside a cell"),
        _run("request_backoff_seconds", "float", "backoff before a model call's second attempt"),
        _run("salvage_rounds", "int", "extra rounds for cells that used their attempts"),
        _run("salvage_delay_seconds", "float", "pause before a salvage round"),
        _run("error_rate_window", "int", "cell attempts the error rate is measured over"),
        _run("error_rate_threshold", "float", "stop early when this share of them failed"),
        _run("journal_flush_seconds", "float", "longest a finished cell waits for the journal"),
        _run("stop_grace_seconds", "float", "how long running cells may finish after a stop"),
        Setting(
            "output_dir",
            "str",
            None,
            "the run directory (default: runs/<pipeline>[-<profile>])",
            optional=True,
        ),
        Setting(
            "events",
            "events",
            True,
            "record scheduler and request events for sluicegate report: true "
            "(RUN_DIR/events.jsonl.gz), false, or a file path (.gz: compressed)",
        ),
        Setting(
            "rate_limit",
            "int",
            None,
            "requests per rate window, per endpoint (a producer-side quota)",
            optional=True,
            minimum=1,
        ),
        Setting(
            "rate_window_seconds",
            "float",
            None,
            "length of the rate window (needs rate_limit; default 60)",
            optional=True,
            minimum=0,
            minimum_open=True,
        ),
        Setting(
            "deadline_seconds",
            "float",
            None,
            "wall-clock budget: then stop gracefully (status interrupted; run again to resume)",
            optional=True,
            minimum=0,
            minimum_open=True,
        ),
        Setting(
            "progress",
            "choice",
            "auto",
            "auto (a live panel on a terminal, plain lines otherwise), panel, lines or off",
            choices=PROGRESS_MODES,
        ),
        Setting(
            "progress_interval",
            "float",
            10.0,
            "seconds between plain progress lines",
            minimum=0,
            minimum_open=True,
        ),
        Setting(
            "otel",
            "choice",
            None,
            "export spans and metrics with the OpenTelemetry SDK: console or otlp",
            optional=True,
            choices=OTEL_MODES,
        ),
    )
}
"""Every setting of a command-line run, by name."""


def format_value(value: Any) -> str:
    """A setting's value as the user would write it (``-`` for unset)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_clear(value: Any) -> bool:
    """Whether ``value`` is the ``none`` marker."""
    return isinstance(value, str) and value.strip().lower() == CLEAR


# -- checking single values ---------------------------------------------------------------


def _bad(name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(name, f"got {describe(value)}", f"use {expected}, or 'none'")


def check_value(setting: Setting, value: Any) -> Any:
    """``value`` (typed, e.g. from TOML) validated for ``setting``; raises
    :class:`ConfigurationError` naming the setting."""
    name = setting.name
    if value is None:
        if setting.optional:
            return None
        raise _bad(name, value, f"a {setting.kind}")
    kind = setting.kind
    if kind == "events":
        if isinstance(value, bool) or (isinstance(value, str) and value.strip()):
            return value
        raise _bad(name, value, "true, false or a file path")
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(name, value, "true or false")
        return value
    if kind in ("choice", "str"):
        if not isinstance(value, str) or not value:
            raise _bad(name, value, "a string")
        if kind == "choice" and value not in setting.choices:
            raise ConfigurationError(
                name,
                f"unknown value {value!r}{did_you_mean(value, setting.choices)}",
                "use one of: " + ", ".join(setting.choices),
            )
        return value
    if kind == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise _bad(name, value, "an integer")
    if kind == "float":
        if not (is_number(value) and math.isfinite(value)):
            raise _bad(name, value, "a finite number")
        value = float(value)
    if setting.minimum is not None:
        low = setting.minimum
        if value < low or (setting.minimum_open and value == low):
            bound = f"> {low:g}" if setting.minimum_open else f">= {low:g}"
            raise ConfigurationError(name, f"got {value!r}", f"use a number {bound}")
    if name in RunSettings.__struct_fields__:
        # RunSettings owns its rules (ranges, the attempts cap...): ask it about this field.
        options = {} if name == "records" else {name: value}
        RunSettings(records=value if name == "records" else 1, **options)
    return value


def parse_text(setting: Setting, text: str) -> Any:
    """A value written as text (environment, flags) converted for ``setting`` and checked;
    ``none`` passes through as the clear marker."""
    if is_clear(text):
        return CLEAR
    word = text.strip()
    kind = setting.kind
    value: Any = word
    if kind in ("bool", "events"):
        lowered = word.lower()
        if lowered in ("true", "yes", "on", "1"):
            value = True
        elif lowered in ("false", "no", "off", "0"):
            value = False
        elif kind == "bool":
            raise _bad(setting.name, text, "true or false")
    elif kind == "int":
        try:
            value = int(word)
        except ValueError:
            raise _bad(setting.name, text, "an integer") from None
    elif kind == "float":
        try:
            value = float(word)
        except ValueError:
            raise _bad(setting.name, text, "a number") from None
    return check_value(setting, value)
