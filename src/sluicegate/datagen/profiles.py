"""Run settings in layers: built-in defaults, the pipeline file, profiles, environment, flags.

Every setting of a command-line run (the :class:`~sluicegate.datagen.RunSettings` fields plus
the output directory, events, rate window, deadline and progress options) is listed once in
:data:`SETTINGS`, with its type, default and help. A value can come from five places; a later
layer wins:

======  ====================================  =============================================
rank    layer                                 written as
======  ====================================  =============================================
0       built-in default                      (the ``SETTINGS`` table)
1       the pipeline file's ``[run]`` table   ``buffer_size = 250``
2       a built-in profile (``smoke`` ...)    :data:`BUILTIN_PROFILES`
3       a profile of the pipeline file        ``[profiles.smoke]`` (extends the built-in one)
4       the environment                       ``SLUICEGATE_BUFFER_SIZE=250``
5       command-line flags                    ``--buffer-size 250``
======  ====================================  =============================================

The value ``none`` (in any layer) clears what the layers below set: the setting goes back to
its built-in default (``None`` for the optional ones: no rate window, no deadline...).

Cross-field checks run on the resolved values. When the two fields of a conflict come from
different layers, the higher layer wins and the other value is adjusted (an explicit
``--records 20`` caps an inherited ``buffer_size`` of 250; ``--rate-limit=none`` drops an
inherited ``rate_window_seconds``); the adjustment is listed in :attr:`ResolvedSettings.notes`.
When both come from the same layer, it is an error naming both fields and their sources.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec
from attrs import frozen

from .._internal.checks import did_you_mean
from ..errors import ConfigurationError
from ..requests import RequestAdmissionConfig
from .config_problems import ConfigProblem, PipelineConfigError, unknown_fix
from .settings import RunSettings
from .settings_table import (
    CLEAR,
    ENV_PREFIX,
    SETTINGS,
    check_value,
    format_value,
    is_clear,
    parse_text,
)

BUILTIN_PROFILES: Final[dict[str, dict[str, Any]]] = {
    "smoke": {
        "records": 10,
        "buffer_size": 10,
        "max_concurrent_row_groups": 1,
        "cell_max_attempts": 1,
        "salvage_rounds": 0,
        "deadline_seconds": 300.0,
        "stop_grace_seconds": 10.0,
    },
    "ci": {
        "records": 100,
        "buffer_size": 50,
        "progress": "lines",
        "deadline_seconds": 1800.0,
    },
    "nightly": {
        "max_concurrent_row_groups": 8,
        "salvage_rounds": 3,
        "progress": "lines",
        "progress_interval": 60.0,
    },
}
"""The built-in profiles: ``smoke`` (every column once, fail fast), ``ci`` (a small, bounded
run, progress as lines) and ``nightly`` (the file's records, more row groups in flight). A
profile of the same name in a pipeline file extends the built-in one. Every run records its
events unless the ``events`` setting turns them off."""

LAYER_DEFAULT: Final = 0
LAYER_FILE: Final = 1
LAYER_BUILTIN_PROFILE: Final = 2
LAYER_FILE_PROFILE: Final = 3
LAYER_ENV: Final = 4
LAYER_FLAGS: Final = 5


@frozen
class SettingSource:
    """Where a resolved value came from: the ``layer`` (a label such as ``profile 'ci'``),
    its ``rank`` (0 default ... 5 flags), and ``origin`` (``qa.toml:12``, ``--records``,
    ``SLUICEGATE_SEED``) when known. ``cleared`` when the value was reset by ``none``."""

    layer: str
    rank: int
    origin: str | None = None
    cleared: bool = False

    def __str__(self) -> str:
        if self.origin and self.rank >= LAYER_ENV:
            text = self.origin  # the flag or the variable says it all
        else:
            text = f"{self.layer} ({self.origin})" if self.origin else self.layer
        return f"cleared by {text}" if self.cleared else text


@frozen
class SettingLayer:
    """One layer of raw values (``none`` included) with where each was written."""

    label: str
    rank: int
    values: Mapping[str, Any]
    origins: Mapping[str, str] = {}


@frozen
class ResolvedSettings:
    """The resolved value of every setting, where it came from, and what was adjusted."""

    values: Mapping[str, Any]
    sources: Mapping[str, SettingSource]
    notes: tuple[str, ...] = ()
    profile: str | None = None
    adjusted: frozenset[str] = frozenset()
    """Settings a cross-field rule changed (``notes`` says how)."""

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def records(self) -> int:
        """Rows to generate."""
        value: int = self.values["records"]
        return value

    def run_options(self) -> dict[str, Any]:
        """The :class:`RunSettings` options (everything but ``records``)."""
        return {
            name: self.values[name] for name in RunSettings.__struct_fields__ if name != "records"
        }

    def run_settings(self) -> RunSettings:
        """The validated :class:`RunSettings`."""
        return RunSettings(records=self.records, **self.run_options())

    def request_config(
        self, base: RequestAdmissionConfig | None = None
    ) -> RequestAdmissionConfig | None:
        """``base`` with the rate window (``rate_limit`` per ``rate_window_seconds``) added to
        every endpoint's defaults; ``base`` itself when no rate limit is set."""
        limit = self.values["rate_limit"]
        if limit is None:
            return base
        config = base if base is not None else RequestAdmissionConfig()
        defaults = msgspec.structs.replace(
            config.defaults,
            requests_per_window=limit,
            window_seconds=self.values["rate_window_seconds"],
        )
        return msgspec.structs.replace(config, defaults=defaults)

    def rows(self) -> list[tuple[str, str, str]]:
        """``(name, value, source)`` per setting, for ``--show-config``."""
        return [
            (
                name,
                format_value(self.values[name]),
                str(self.sources[name]) + (", adjusted (below)" if name in self.adjusted else ""),
            )
            for name in SETTINGS
        ]


def check_table(
    table: Mapping[str, Any],
    *,
    where: str,
    locate: Callable[[str], tuple[str | None, int | None]] = lambda _key: (None, None),
    skip: Iterable[str] = (),
) -> tuple[dict[str, Any], list[ConfigProblem]]:
    """The valid settings of a ``[run]`` or profile table, and a problem per bad key/value.

    ``where`` prefixes field names (``run``, ``profiles.ci``); ``locate(key)`` gives the file
    and line of a key; keys in ``skip`` are left for the caller.
    """
    skipped = set(skip)
    values: dict[str, Any] = {}
    problems: list[ConfigProblem] = []
    for key, raw in table.items():
        if key in skipped:
            continue
        source, line = locate(key)
        setting = SETTINGS.get(key)
        if setting is None:
            hint = did_you_mean(key, SETTINGS)
            problems.append(
                ConfigProblem(
                    f"{where}.{key}",
                    f"unknown setting{hint}",
                    unknown_fix(hint, SETTINGS),
                    source,
                    line,
                )
            )
            continue
        try:
            values[key] = CLEAR if is_clear(raw) else check_value(setting, raw)
        except ConfigurationError as exc:
            problems.append(ConfigProblem.of(exc, field=f"{where}.{key}", source=source, line=line))
    return values, problems


def environment_layer(environ: Mapping[str, str]) -> tuple[SettingLayer, list[str]]:
    """The ``SLUICEGATE_*`` settings of ``environ`` (as text: :func:`resolve_settings` parses
    them), and the ``SLUICEGATE_*`` names it ignored because they name no setting."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    ignored: list[str] = []
    by_env = {s.env: s for s in SETTINGS.values()}
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "PROFILE":
            continue
        setting = by_env.get(key)
        if setting is None:
            ignored.append(key)
            continue
        values[setting.name] = environ[key]
        origins[setting.name] = key
    return SettingLayer("environment", LAYER_ENV, values, origins), ignored


# -- resolving ----------------------------------------------------------------------------


def resolve_settings(
    layers: Iterable[SettingLayer],
    *,
    profile: str | None = None,
    subject: str = "configuration",
) -> ResolvedSettings:
    """Merge ``layers`` over the built-in defaults (higher ``rank`` wins, ``none`` clears),
    then run the cross-field checks. Values given as text (environment, flags) are parsed.

    Raises :class:`PipelineConfigError` listing every problem: bad values, a missing
    ``records``, and conflicts between two settings of the same layer.
    """
    values: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}
    sources = {name: SettingSource("default", LAYER_DEFAULT) for name in SETTINGS}
    problems: list[ConfigProblem] = []
    for layer in sorted(layers, key=lambda item: item.rank):
        for name, raw in layer.values.items():
            setting = SETTINGS.get(name)
            origin = layer.origins.get(name)
            if setting is None:
                hint = did_you_mean(name, SETTINGS)
                problems.append(
                    ConfigProblem(
                        origin or name,
                        f"unknown setting {name!r}{hint}",
                        unknown_fix(hint, SETTINGS),
                    )
                )
                continue
            try:
                value = parse_text(setting, raw) if isinstance(raw, str) else raw
                if not is_clear(value):
                    value = check_value(setting, value)
            except ConfigurationError as exc:
                problems.append(ConfigProblem.of(exc, field=origin or name))
                continue
            if is_clear(value):
                values[name] = setting.default
                sources[name] = SettingSource(layer.label, layer.rank, origin, cleared=True)
            else:
                values[name] = value
                sources[name] = SettingSource(layer.label, layer.rank, origin)
    notes: list[str] = []
    before = dict(values)
    if values["records"] is None:
        problems.append(
            ConfigProblem(
                "records",
                "not set",
                "set records in the file's [run] table, a profile, SLUICEGATE_RECORDS or --records",
            )
        )
    problems.extend(_cross_checks(values, sources, notes))
    if problems:
        raise PipelineConfigError(problems, subject=subject)
    adjusted = frozenset(name for name in values if values[name] != before[name])
    return ResolvedSettings(values, sources, tuple(notes), profile, adjusted)


def _conflict(
    first: str, second: str, problem: str, fix: str, values: dict[str, Any], sources: Any
) -> ConfigProblem:
    def said(name: str) -> str:
        value = values[name]
        shown = "unset" if value is None else f"= {format_value(value)}"
        return f"{name} {shown} from {sources[name]}"

    return ConfigProblem(f"{first} + {second}", f"{problem} ({said(first)}; {said(second)})", fix)


def _cross_checks(
    values: dict[str, Any], sources: dict[str, SettingSource], notes: list[str]
) -> list[ConfigProblem]:
    """The checks between two settings; adjusts ``values`` where the higher layer wins."""
    problems: list[ConfigProblem] = []
    rank = {name: source.rank for name, source in sources.items()}

    window = values["rate_window_seconds"]
    if window is not None and values["rate_limit"] is None:
        if sources["rate_limit"].cleared and rank["rate_limit"] > rank["rate_window_seconds"]:
            values["rate_window_seconds"] = None
            notes.append(
                f"rate_window_seconds {window:g} dropped: rate_limit was cleared by "
                f"{sources['rate_limit'].origin or sources['rate_limit'].layer}"
            )
        else:
            problems.append(
                _conflict(
                    "rate_window_seconds",
                    "rate_limit",
                    f"a rate window of {window:g} s without a rate",
                    "set rate_limit (requests per window), or clear rate_window_seconds",
                    values,
                    sources,
                )
            )

    records, buffer = values["records"], values["buffer_size"]
    if records and buffer > records and rank["buffer_size"] > LAYER_DEFAULT:
        if rank["records"] > rank["buffer_size"]:
            values["buffer_size"] = records
            notes.append(
                f"buffer_size {buffer} capped to records {records} "
                f"(records from {sources['records']})"
            )
        else:
            problems.append(
                _conflict(
                    "buffer_size",
                    "records",
                    f"buffer_size {buffer} is larger than records {records}: one row group "
                    "would hold the whole run",
                    f"lower buffer_size to at most {records} (rows per checkpoint), or raise "
                    "records",
                    values,
                    sources,
                )
            )

    deadline, grace = values["deadline_seconds"], values["stop_grace_seconds"]
    if deadline is not None and grace >= deadline:
        if rank["deadline_seconds"] > rank["stop_grace_seconds"]:
            values["stop_grace_seconds"] = deadline / 2
            notes.append(
                f"stop_grace_seconds {grace:g} lowered to {deadline / 2:g}: half of "
                f"deadline_seconds {deadline:g} (from {sources['deadline_seconds']})"
            )
        else:
            problems.append(
                _conflict(
                    "stop_grace_seconds",
                    "deadline_seconds",
                    f"a stop grace of {grace:g} s is not shorter than the {deadline:g} s deadline",
                    "make stop_grace_seconds a fraction of deadline_seconds",
                    values,
                    sources,
                )
            )
    return problems


def profile_layers(
    name: str | None,
    file_profiles: Mapping[str, SettingLayer],
) -> list[SettingLayer]:
    """The layers of profile ``name``: the built-in one and/or the file's one (which extends
    it). Raises :class:`ConfigurationError` with a did-you-mean for an unknown name."""
    if name is None:
        return []
    layers: list[SettingLayer] = []
    if name in BUILTIN_PROFILES:
        layers.append(
            SettingLayer(
                f"profile {name!r} (built-in)", LAYER_BUILTIN_PROFILE, BUILTIN_PROFILES[name]
            )
        )
    if name in file_profiles:
        layers.append(file_profiles[name])
    if not layers:
        known = sorted({*BUILTIN_PROFILES, *file_profiles})
        raise ConfigurationError(
            "profile",
            f"unknown profile {name!r}{did_you_mean(name, known)}",
            "use one of: " + ", ".join(known),
        )
    return layers
