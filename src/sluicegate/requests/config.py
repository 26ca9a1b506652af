"""Request-admission configuration: AIMD, cooldown, rate-window and circuit-breaker settings.

``RequestAdmissionConfig`` holds one set of defaults plus per-resource overrides. Everything is
validated at construction (and when decoded from a dict or TOML), so a bad value never reaches
the controller; errors are :class:`ConfigurationError` naming the dotted field and the fix.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from .._internal.checks import did_you_mean
from ..errors import ConfigurationError
from .identity import REQUEST_DOMAINS, RequestDomain, RequestResourceKey, RequestResourceResolver

CooldownAdmission: TypeAlias = Literal["within_limit", "paused"]


"""What admission does during a cooldown.

``within_limit`` keeps admitting up to the decreased limit (right for endpoints whose 429s
mean "too many concurrent calls"); ``paused`` admits nothing new until the cooldown ends
(right for quota endpoints that refuse every call until their window resets).
"""


class RequestResourceSettings(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """AIMD, queueing, rate-window and circuit-breaker settings of one request resource.

    The limit lives in ``[1, effective_max]`` where ``effective_max = min(static cap, clamp)``.

    - ``initial_limit``: starting limit (``None``: slow start, or ``effective_max`` when
      ``slow_start`` is off). An explicit starting limit is used as given, with AIMD from there.
    - ``slow_start`` / ``slow_start_initial_limit``: with no ``initial_limit`` and no startup
      ramp, start at ``slow_start_initial_limit`` and add one per success (the limit doubles
      per round trip while calls fill it) until the first rate limit or ``effective_max``;
      then AIMD. Growth waits while fewer than half the limit's calls are in flight, so a
      trickle of calls never talks the limit up to a cap the endpoint cannot carry.
    - ``clamp``: optional per-resource ceiling below the endpoint's aggregate static cap.
    - ``cooldown_seconds``: cooldown after a rate limit without a provider ``retry_after``.
    - ``decrease_factor``: on a rate limit ``limit = max(1, floor(limit * decrease_factor))``.
    - ``increase_step`` / ``successes_until_increase``: additive increase after that many
      successes outside cooldown.
    - ``startup_ramp_seconds``: ramp linearly from 1 to ``initial_limit`` over this time
      (0 disables the ramp; a rate limit aborts it).
    - ``ceiling_hold_rounds``: once the limit is back just below the last rate-limit ceiling,
      each further step needs ``ceiling_hold_rounds * limit`` successes (about that many
      round trips at the current level). 0 disables this cautious zone.
    - ``ceiling_hold_seconds``: and at least this long between two steps in the cautious zone
      (endpoints with short calls would otherwise be probed several times a second).
    - ``coalesce_rate_limits``: a 429 for a call admitted before the last decrease is part of
      the same storm and does not decrease again.
    - ``cooldown_admission``: see :data:`CooldownAdmission`.
    - ``queue_timeout_seconds``: default queue-wait timeout of ``acquire`` (``None``: no limit).
    - ``max_waiters``: bound on queued waiters per resource (``None``: unbounded).
    - ``requests_per_window`` / ``tokens_per_window`` / ``window_seconds``: an optional
      sliding rate window (published RPM/TPM quotas); ``window_seconds`` defaults to 60.
    - ``circuit_breaker_threshold``: consecutive 429s at limit 1 that open the circuit
      (``None`` disables the breaker); ``circuit_open_seconds`` is the first open period,
      multiplied by ``circuit_backoff_multiplier`` on every reopen up to
      ``circuit_max_open_seconds``; after ``circuit_max_reopens`` reopenings without a success
      the circuit stays open (``None``: keep probing forever).
    """

    initial_limit: int | None = None
    slow_start: bool = True
    slow_start_initial_limit: int = 4
    clamp: int | None = None
    cooldown_seconds: float = 5.0
    decrease_factor: float = 0.75
    increase_step: int = 1
    successes_until_increase: int = 5
    startup_ramp_seconds: float = 0.0
    ceiling_hold_rounds: float = 10.0
    ceiling_hold_seconds: float = 10.0
    coalesce_rate_limits: bool = True
    cooldown_admission: CooldownAdmission = "within_limit"
    queue_timeout_seconds: float | None = None
    max_waiters: int | None = None
    requests_per_window: int | None = None
    tokens_per_window: int | None = None
    window_seconds: float | None = None
    circuit_breaker_threshold: int | None = 5
    circuit_open_seconds: float = 30.0
    circuit_backoff_multiplier: float = 2.0
    circuit_max_open_seconds: float = 300.0
    circuit_max_reopens: int | None = None

    def __post_init__(self) -> None:
        _validate_settings(self)

    @property
    def has_rate_window(self) -> bool:
        """Whether a requests or tokens window is configured."""
        return self.requests_per_window is not None or self.tokens_per_window is not None

    @property
    def effective_window_seconds(self) -> float:
        """The window length (60 s unless configured)."""
        return 60.0 if self.window_seconds is None else self.window_seconds


SETTINGS_FIELDS: Final[tuple[str, ...]] = RequestResourceSettings.__struct_fields__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require_int(field: str, value: object, minimum: int, fix: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        raise ConfigurationError(field, f"must be an integer >= {minimum}, got {value!r}", fix)


def _require_bool(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(field, f"must be true or false, got {value!r}", "use a bool")


def _require_number(
    field: str, value: object, *, low: float, low_open: bool, fix: str, optional: bool = False
) -> None:
    if value is None and optional:
        return
    bad = not _is_number(value) or (value <= low if low_open else value < low)  # type: ignore[operator]
    if bad:
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigurationError(field, f"must be a finite number {bound}, got {value!r}", fix)


def _int_check(minimum: int, fix: str, *, optional: bool) -> Callable[[str, object], None]:
    def check(field: str, value: object) -> None:
        _require_int(field, value, minimum, fix, optional=optional)

    return check


def _number_check(
    low: float, fix: str, *, low_open: bool = False, optional: bool = False
) -> Callable[[str, object], None]:
    def check(field: str, value: object) -> None:
        _require_number(field, value, low=low, low_open=low_open, fix=fix, optional=optional)

    return check


def _check_decrease_factor(field: str, f: object) -> None:
    if not _is_number(f) or not 0.0 < f < 1.0:  # type: ignore[operator]
        raise ConfigurationError(
            field,
            f"must be strictly between 0 and 1, got {f!r}",
            "use e.g. 0.5 (halve on a rate limit) or 0.75 (cut by a quarter)",
        )


def _check_cooldown_admission(field: str, value: object) -> None:
    if value not in ("within_limit", "paused"):
        raise ConfigurationError(
            field,
            f"unknown mode {value!r}" + did_you_mean(str(value), ("within_limit", "paused")),
            "use 'within_limit' or 'paused'",
        )


# One check per setting: a value is validated on its own (an override's values too, at
# construction); the checks between settings run once the values are merged.
_FIELD_CHECKS: Final[dict[str, Callable[[str, object], None]]] = {
    "initial_limit": _int_check(1, "use a starting limit of at least 1 or omit it", optional=True),
    "slow_start": _require_bool,
    "slow_start_initial_limit": _int_check(
        1, "start slow start at 1 or more calls (4 is a good default)", optional=False
    ),
    "clamp": _int_check(1, "use a clamp of at least 1 or omit it", optional=True),
    "cooldown_seconds": _number_check(0.0, "use a cooldown of 0 seconds or more"),
    "decrease_factor": _check_decrease_factor,
    "increase_step": _int_check(1, "use a step of at least 1", optional=False),
    "successes_until_increase": _int_check(
        1, "use at least 1 success per additive increase", optional=False
    ),
    "startup_ramp_seconds": _number_check(
        0.0, "use 0 (no ramp) or a positive ramp length in seconds"
    ),
    "ceiling_hold_rounds": _number_check(
        0.0, "use 0 (no cautious zone) or a positive number of round trips"
    ),
    "ceiling_hold_seconds": _number_check(
        0.0, "use 0 (rounds only) or a number of seconds between probes of the ceiling"
    ),
    "coalesce_rate_limits": _require_bool,
    "cooldown_admission": _check_cooldown_admission,
    "queue_timeout_seconds": _number_check(
        0.0,
        "use a timeout of 0 seconds or more, or omit it to wait without limit",
        optional=True,
    ),
    "max_waiters": _int_check(0, "use 0 or more queued waiters, or omit it", optional=True),
    "requests_per_window": _int_check(
        1, "allow at least 1 request per window or omit it", optional=True
    ),
    "tokens_per_window": _int_check(
        1, "allow at least 1 token per window or omit it", optional=True
    ),
    "window_seconds": _number_check(
        0.0, "use a window longer than 0 seconds", low_open=True, optional=True
    ),
    "circuit_breaker_threshold": _int_check(
        1,
        "open after at least 1 consecutive rate limit at limit 1, or omit it to disable",
        optional=True,
    ),
    "circuit_open_seconds": _number_check(
        0.0, "use an open period longer than 0 seconds", low_open=True
    ),
    "circuit_backoff_multiplier": _number_check(1.0, "use a multiplier of at least 1"),
    "circuit_max_open_seconds": _number_check(
        0.0, "use a maximum open period longer than 0 seconds", low_open=True
    ),
    "circuit_max_reopens": _int_check(
        0, "use 0 or more reopenings, or omit it to keep probing", optional=True
    ),
}


def validate_setting(field: str, value: object) -> None:
    """Raise :class:`ConfigurationError` if ``value`` is not valid for setting ``field``."""
    _FIELD_CHECKS[field](field, value)


def _validate_settings(s: RequestResourceSettings) -> None:
    for name in SETTINGS_FIELDS:
        validate_setting(name, getattr(s, name))
    if s.window_seconds is not None and not s.has_rate_window:
        raise ConfigurationError(
            "window_seconds",
            "a rate window needs a rate",
            "set requests_per_window and/or tokens_per_window, or drop window_seconds",
        )
    if s.circuit_max_open_seconds < s.circuit_open_seconds:
        raise ConfigurationError(
            "circuit_max_open_seconds",
            f"{s.circuit_max_open_seconds!r} is below circuit_open_seconds "
            f"{s.circuit_open_seconds!r}",
            "make circuit_max_open_seconds at least circuit_open_seconds",
        )


class RequestResourceOverride(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Settings for the resources one selector matches; unset fields inherit the defaults.

    Select by model ``alias`` or by ``provider`` (optionally with ``model_id``); ``domain``
    narrows either to one request domain. More specific selectors win: provider only, then
    provider + model or alias, then the same with a domain; later entries win ties.
    """

    alias: str | None = None
    provider: str | None = None
    model_id: str | None = None
    domain: RequestDomain | None = None

    initial_limit: int | UnsetType | None = UNSET
    slow_start: bool | UnsetType = UNSET
    slow_start_initial_limit: int | UnsetType = UNSET
    clamp: int | UnsetType | None = UNSET
    cooldown_seconds: float | UnsetType = UNSET
    decrease_factor: float | UnsetType = UNSET
    increase_step: int | UnsetType = UNSET
    successes_until_increase: int | UnsetType = UNSET
    startup_ramp_seconds: float | UnsetType = UNSET
    ceiling_hold_rounds: float | UnsetType = UNSET
    ceiling_hold_seconds: float | UnsetType = UNSET
    coalesce_rate_limits: bool | UnsetType = UNSET
    cooldown_admission: CooldownAdmission | UnsetType = UNSET
    queue_timeout_seconds: float | UnsetType | None = UNSET
    max_waiters: int | UnsetType | None = UNSET
    requests_per_window: int | UnsetType | None = UNSET
    tokens_per_window: int | UnsetType | None = UNSET
    window_seconds: float | UnsetType | None = UNSET
    circuit_breaker_threshold: int | UnsetType | None = UNSET
    circuit_open_seconds: float | UnsetType = UNSET
    circuit_backoff_multiplier: float | UnsetType = UNSET
    circuit_max_open_seconds: float | UnsetType = UNSET
    circuit_max_reopens: int | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        for name in ("alias", "provider", "model_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(
                    name,
                    f"must be a non-empty string, got {value!r}",
                    f"name the {name} to select, as a string",
                )
        for name, value in self.values().items():
            validate_setting(name, value)
        if (self.alias is None) == (self.provider is None):
            raise ConfigurationError(
                "selector",
                "an override needs exactly one of alias or provider",
                "set alias = '<model alias>' or provider = '<provider>' (plus optional model_id)",
            )
        if self.alias is not None and self.model_id is not None:
            raise ConfigurationError(
                "model_id",
                "model_id only narrows a provider selector, not an alias",
                "drop model_id, or select by provider + model_id instead of alias",
            )
        if self.domain is not None and (
            not isinstance(self.domain, str) or self.domain not in REQUEST_DOMAINS
        ):
            raise ConfigurationError(
                "domain",
                f"unknown request domain {self.domain!r}"
                + did_you_mean(str(self.domain), REQUEST_DOMAINS),
                "use one of: " + ", ".join(REQUEST_DOMAINS),
            )

    def values(self) -> dict[str, Any]:
        """The settings fields this override sets."""
        out: dict[str, Any] = {}
        for name in SETTINGS_FIELDS:
            value = getattr(self, name)
            if value is not UNSET:
                out[name] = value
        return out

    @property
    def specificity(self) -> int:
        base = 0 if self.alias is None and self.model_id is None else 1
        return base * 2 + (self.domain is not None)

    def describe(self) -> str:
        if self.alias is not None:
            text = f"alias={self.alias!r}"
        else:
            text = f"provider={self.provider!r}"
            if self.model_id is not None:
                text += f", model_id={self.model_id!r}"
        if self.domain is not None:
            text += f", domain={self.domain!r}"
        return text


class RequestAdmissionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Request-admission settings: ``defaults`` plus per-resource ``resources`` overrides.

    Decode from a mapping (``from_dict``) or TOML (``from_toml``); unknown keys are rejected
    with a did-you-mean. Every override is merged with the defaults and validated up front.
    """

    defaults: RequestResourceSettings = RequestResourceSettings()
    resources: tuple[RequestResourceOverride, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.defaults, RequestResourceSettings):
            raise ConfigurationError(
                "defaults",
                f"must be a RequestResourceSettings, got {type(self.defaults).__name__}",
                "pass RequestResourceSettings(...), or decode a mapping with "
                "RequestAdmissionConfig.from_dict",
            )
        resources = self.resources
        if isinstance(resources, list):
            resources = tuple(resources)
            msgspec.structs.force_setattr(self, "resources", resources)
        if not isinstance(resources, tuple):
            raise ConfigurationError(
                "resources",
                f"must be a list of RequestResourceOverride, got {type(resources).__name__}",
                "pass a list or tuple of RequestResourceOverride(...)",
            )
        for index, override in enumerate(resources):
            if not isinstance(override, RequestResourceOverride):
                raise ConfigurationError(
                    f"resources[{index}]",
                    f"must be a RequestResourceOverride, got {type(override).__name__}",
                    "pass RequestResourceOverride(provider=..., ...) or decode with from_dict",
                )
            try:
                msgspec.structs.replace(self.defaults, **override.values())
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"resources[{index}].{exc.field}", exc.problem, exc.fix
                ) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RequestAdmissionConfig:
        """Decode and validate a plain mapping (e.g. a parsed TOML table).

        Keys are checked against the structs' fields (unknown ones are rejected with a
        did-you-mean), then every value goes through the same validation as a Python
        construction, so an error always names the dotted field (``resources[1].clamp``).
        """
        _check_keys("", data, cls)
        fields: dict[str, Any] = {}
        if "defaults" in data:
            fields["defaults"] = _build("defaults", data["defaults"], RequestResourceSettings)
        if "resources" in data:
            entries = data["resources"]
            if not isinstance(entries, (list, tuple)):
                raise ConfigurationError(
                    "resources",
                    f"must be a list of tables, got {type(entries).__name__}",
                    "write [[resources]] tables (TOML) or a list of mappings",
                )
            fields["resources"] = tuple(
                _build(f"resources[{index}]", entry, RequestResourceOverride)
                for index, entry in enumerate(entries)
            )
        return _prefixed("", lambda: cls(**fields))

    @classmethod
    def from_toml(cls, text: str, *, table: str | None = None) -> RequestAdmissionConfig:
        """Decode TOML text; ``table`` picks a dotted sub-table such as ``"request_admission"``."""
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError("toml", str(exc), "fix the TOML syntax") from None
        if table:
            for part in table.split("."):
                if not isinstance(data, dict) or part not in data:
                    known = list(data) if isinstance(data, dict) else []
                    raise ConfigurationError(
                        table,
                        f"table {part!r} is missing{did_you_mean(part, known)}",
                        f"add a [{table}] table",
                    )
                data = data[part]
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain builtins (overrides keep only the fields they set)."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result

    def matching_overrides(
        self, key: RequestResourceKey, resolver: RequestResourceResolver | None = None
    ) -> list[RequestResourceOverride]:
        """The overrides that apply to ``key``, least specific first."""
        matches: list[tuple[int, int, RequestResourceOverride]] = []
        for index, override in enumerate(self.resources):
            if override.domain is not None and override.domain != key.domain:
                continue
            if override.alias is not None:
                if resolver is None:
                    continue
                if resolver.resolve_endpoint(override.alias) != key.provider_model:
                    continue
            else:
                assert override.provider is not None
                provider = override.provider
                if resolver is not None:
                    provider = resolver.canonical_provider(provider)
                if provider != key.provider:
                    continue
                if override.model_id is not None and override.model_id != key.model_id:
                    continue
            matches.append((override.specificity, index, override))
        matches.sort(key=lambda m: (m[0], m[1]))
        return [m[2] for m in matches]

    def settings_for(
        self, key: RequestResourceKey, resolver: RequestResourceResolver | None = None
    ) -> RequestResourceSettings:
        """The merged settings of one resource (defaults, then matching overrides)."""
        overrides = self.matching_overrides(key, resolver)
        if not overrides:
            return self.defaults
        merged: dict[str, Any] = {}
        for override in overrides:
            merged.update(override.values())
        return msgspec.structs.replace(self.defaults, **merged)

    def check_selectors(self, resolver: RequestResourceResolver) -> None:
        """Raise :class:`ConfigurationError` for an override naming an undeclared endpoint."""
        for index, override in enumerate(self.resources):
            try:
                if override.alias is not None:
                    resolver.resolve_endpoint(override.alias)
                else:
                    assert override.provider is not None
                    if override.model_id is None:
                        resolver.canonical_provider(override.provider)
                    else:
                        resolver.resolve_endpoint(override.model_id, provider=override.provider)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"resources[{index}].{exc.field}", exc.problem, exc.fix
                ) from None


def _check_keys(prefix: str, data: object, struct: type[msgspec.Struct]) -> None:
    """``data`` must be a mapping whose keys are fields of ``struct`` (did-you-mean if not)."""
    known = struct.__struct_fields__
    where = prefix or "config"
    if not isinstance(data, Mapping):
        raise ConfigurationError(
            where,
            f"must be a table (mapping), got {type(data).__name__}",
            "use a table with keys among: " + ", ".join(known),
        )
    for name in data:
        if not isinstance(name, str) or name not in known:
            field = f"{prefix}.{name}" if prefix else str(name)
            raise ConfigurationError(
                field,
                f"unknown key {name!r}{did_you_mean(str(name), known)}",
                "remove it; known keys: " + ", ".join(known),
            )


_S = TypeVar("_S", bound=msgspec.Struct)


def _build(prefix: str, data: object, struct: type[_S]) -> _S:
    """One struct from a mapping; errors are re-raised with ``prefix`` in the field path."""
    if isinstance(data, struct):
        return data
    _check_keys(prefix, data, struct)
    assert isinstance(data, Mapping)
    return _prefixed(prefix, lambda: struct(**data))


def _prefixed(prefix: str, build: Callable[[], _S]) -> _S:
    try:
        return build()
    except ConfigurationError as exc:
        if not prefix:
            raise
        raise ConfigurationError(f"{prefix}.{exc.field}", exc.problem, exc.fix) from None
