"""A deterministic, in-process model endpoint: the embedded default provider.

``SimulatedProvider`` plays the part of a real endpoint for tests, benchmarks and dry runs.
It has a hidden true concurrency capacity and/or a hidden requests-per-minute quota; a call
beyond either is answered with :class:`ProviderRateLimitedError` carrying ``retry_after``,
exactly what request admission (AIMD) must learn to stay under. Latency, failures and
timeouts are drawn from a ``random.Random(seed)`` once per call, in arrival order, so a run
is reproducible; the *content* and token usage of an answer depend only on the seed and the
request, never on timing, so generated data is identical however calls interleave.

Time comes only from ``trio.sleep`` and ``trio.current_time()``: under
``trio.testing.MockClock`` every latency, window and retry-after is virtual.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import deque
from typing import Any

import attrs
import msgspec
import trio
from attrs import define, field

from ..errors import ConfigurationError
from ..requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)

_WINDOW_SECONDS = 60.0


_CHARS_PER_TOKEN = 4


# Chat formats add a few framing tokens per message (role markers); mimic it so prompt
# usage is never zero for an empty message.
_TOKENS_PER_MESSAGE = 4


class SimulatedProviderStats(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A snapshot of what a :class:`SimulatedProvider` has seen so far.

    ``calls`` counts every arrival. Each finished call is counted once in exactly one of
    ``successes``, ``rate_limited``, ``failures``, ``timeouts`` or ``cancelled``.
    ``in_flight`` counts admitted calls that hold a slot of the hidden capacity right now
    (rejected calls never hold a slot); ``max_in_flight`` is its peak, which never exceeds
    ``capacity`` unless the capacity was lowered at runtime below the calls already running.
    """

    calls: int = 0
    successes: int = 0
    rate_limited: int = 0
    failures: int = 0
    timeouts: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


def _config_error(name: str, value: object, fix: str) -> ConfigurationError:
    return ConfigurationError(f"SimulatedProvider.{name}", f"invalid value {value!r}", fix)


def _check_name(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _config_error(attr.name, value, "use a non-empty string")


def _check_bool(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise _config_error(attr.name, value, "use True or False")


def _check_seed(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _config_error(attr.name, value, "use an integer seed")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_non_negative(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or value < 0:  # type: ignore[operator]
        raise _config_error(attr.name, value, "use a finite number of seconds >= 0")


def _check_positive(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or value <= 0:  # type: ignore[operator]
        raise _config_error(attr.name, value, "use a finite number of seconds > 0")


def _check_optional_non_negative(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _check_non_negative(_inst, attr, value)


def _check_fraction(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or not 0 <= value <= 1:  # type: ignore[operator]
        raise _config_error(attr.name, value, "use a probability between 0 and 1")


def _check_jitter(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not _is_number(value) or not 0 <= value < 1:  # type: ignore[operator]
        raise _config_error(
            attr.name, value, "use a fraction in [0, 1) (0.2 means latency varies by +/-20%)"
        )


def _check_limit(name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _config_error(name, value, "use an integer >= 1, or None for no limit")


def _check_optional_limit(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    _check_limit(attr.name, value)


def _check_positive_int(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _config_error(attr.name, value, "use an integer >= 1")


@define(kw_only=True, eq=False)
class SimulatedProvider:
    """A deterministic stand-in for a model endpoint (implements :class:`Provider`).

    Knobs (all keyword-only, validated with :class:`ConfigurationError` naming the field):

    - ``latency_seconds`` / ``latency_jitter``: each admitted call takes
      ``latency_seconds * (1 + u * latency_jitter)`` with ``u`` uniform in ``[-1, 1)``.
    - ``capacity``: hidden true maximum of calls in flight. A call arriving while
      ``capacity`` calls run is answered, after ``rejection_latency_seconds``, with
      :class:`ProviderRateLimitedError` (``retry_after=retry_after_seconds``).
    - ``requests_per_minute``: hidden sliding 60-second quota of admitted calls. A call beyond
      it is answered with a 429 whose ``retry_after`` is the time until the window frees a slot.
    - ``failure_rate``: probability that an admitted call fails after its latency with
      :class:`ProviderFailureError` (status 500, retryable).
    - ``timeout_rate``: probability that an admitted call hangs ``timeout_seconds`` and then
      raises :class:`ProviderTimeoutError`. A ``request.timeout`` shorter than the call's
      duration also ends it with :class:`ProviderTimeoutError` at that timeout.
    - ``completion_tokens``: typical completion length; actual usage is deterministic per
      request, in ``[ceil(n / 2), n]`` with ``n = min(completion_tokens, max_tokens)``.
    - ``embedding_dimensions``: length of the deterministic unit vectors for embeddings.
    - ``publish_rate_limit_hints``: attach :class:`RateLimitHints` (requests quota) to answers
      and 429s, like real endpoints' ``x-ratelimit-*`` headers. Off by default: hidden limits.

    Determinism: latency and the failure/timeout draws depend only on ``seed`` and the call's
    arrival index; content and usage only on ``seed``, ``model_id`` and the request; a 429
    depends on the calls in flight (capacity) or in the window (RPM) at arrival.

    ``call`` is always a checkpoint. Cancelled mid-call, it frees its capacity slot, counts
    the call as ``cancelled`` and re-raises ``trio.Cancelled``; it leaves no background work.
    """

    name: str = field(default="simulated", validator=_check_name)
    seed: int = field(default=0, validator=_check_seed)
    latency_seconds: float = field(default=0.05, validator=_check_non_negative)
    latency_jitter: float = field(default=0.0, validator=_check_jitter)
    capacity: int | None = field(default=None, validator=_check_optional_limit)
    requests_per_minute: int | None = field(default=None, validator=_check_optional_limit)
    retry_after_seconds: float | None = field(default=1.0, validator=_check_optional_non_negative)
    rejection_latency_seconds: float = field(default=0.001, validator=_check_non_negative)
    failure_rate: float = field(default=0.0, validator=_check_fraction)
    timeout_rate: float = field(default=0.0, validator=_check_fraction)
    timeout_seconds: float = field(default=30.0, validator=_check_positive)
    completion_tokens: int = field(default=64, validator=_check_positive_int)
    embedding_dimensions: int = field(default=8, validator=_check_positive_int)
    publish_rate_limit_hints: bool = field(default=False, validator=_check_bool)

    _rng: random.Random = field(init=False)
    _window: deque[float] = field(init=False, factory=deque)
    _calls: int = field(init=False, default=0)
    _successes: int = field(init=False, default=0)
    _rate_limited: int = field(init=False, default=0)
    _failures: int = field(init=False, default=0)
    _timeouts: int = field(init=False, default=0)
    _cancelled: int = field(init=False, default=0)
    _in_flight: int = field(init=False, default=0)
    _max_in_flight: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @property
    def stats(self) -> SimulatedProviderStats:
        """A frozen snapshot of the counters (consistent at the moment of the call)."""
        return SimulatedProviderStats(
            calls=self._calls,
            successes=self._successes,
            rate_limited=self._rate_limited,
            failures=self._failures,
            timeouts=self._timeouts,
            cancelled=self._cancelled,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
        )

    def set_capacity(self, capacity: int | None) -> None:
        """Change the hidden concurrency capacity (``None`` removes it).

        Calls already running keep running; only arrivals see the new limit. Not a checkpoint.
        """
        _check_limit("capacity", capacity)
        self.capacity = capacity

    def set_requests_per_minute(self, requests_per_minute: int | None) -> None:
        """Change the hidden sliding-window quota (``None`` removes it).

        Admissions already in the window keep counting against the new quota. Not a checkpoint.
        """
        _check_limit("requests_per_minute", requests_per_minute)
        self.requests_per_minute = requests_per_minute

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        """Serve one call: admit or reject it, wait its latency, then answer or fail.

        Always a checkpoint (at least one ``trio.sleep``). Raises
        :class:`ProviderRateLimitedError`, :class:`ProviderFailureError` or
        :class:`ProviderTimeoutError` as configured. On cancellation the slot is freed and
        ``trio.Cancelled`` propagates.
        """
        self._calls += 1
        # Draw the per-call randomness before any decision so that call N always gets the
        # same draws, whatever happened to calls before it.
        latency_u = self._rng.uniform(-1.0, 1.0)
        timeout_u = self._rng.random()
        failure_u = self._rng.random()
        now = trio.current_time()

        rejection = self._admission_rejection(now)
        if rejection is not None:
            try:
                await trio.sleep(self.rejection_latency_seconds)
            except trio.Cancelled:
                self._cancelled += 1
                raise
            self._rate_limited += 1
            raise rejection

        if self.requests_per_minute is not None:
            self._window.append(now)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return await self._serve(model_id, request, latency_u, timeout_u, failure_u)
        except trio.Cancelled:
            self._cancelled += 1
            raise
        finally:
            self._in_flight -= 1

    def _admission_rejection(self, now: float) -> ProviderRateLimitedError | None:
        """The 429 this arrival gets, or ``None`` when it is admitted."""
        rpm = self.requests_per_minute
        if rpm is not None:
            self._prune_window(now)
            if len(self._window) >= rpm:
                # The (len - rpm + 1)-th oldest admission must leave before one slot frees;
                # after a runtime lowering of the quota that is not necessarily the oldest.
                frees_at = self._window[len(self._window) - rpm] + _WINDOW_SECONDS
                retry_after = frees_at - now
                if now + retry_after < frees_at:
                    # float rounding: a client sleeping exactly retry_after must not come back
                    # one ulp before the slot frees (and be refused once more)
                    retry_after = math.nextafter(retry_after, math.inf)
                retry_after = max(0.0, retry_after)
                return ProviderRateLimitedError(
                    f"{self.name}: requests per minute exceeded (simulated)",
                    retry_after=retry_after,
                    rate_limits=self._hints(now, rejected_for=retry_after),
                )
        capacity = self.capacity
        if capacity is not None and self._in_flight >= capacity:
            return ProviderRateLimitedError(
                f"{self.name}: concurrency capacity exceeded (simulated)",
                retry_after=self.retry_after_seconds,
                rate_limits=self._hints(now, rejected_for=self.retry_after_seconds),
            )
        return None

    def _prune_window(self, now: float) -> None:
        window = self._window
        # The same expression as the retry_after of a rejection (at + window), so the instant
        # a 429 names is exactly the instant the entry leaves: `now - window` may round the
        # other way by one ulp.
        while window and window[0] + _WINDOW_SECONDS <= now:
            window.popleft()

    def _hints(self, now: float, *, rejected_for: float | None = None) -> RateLimitHints | None:
        if not self.publish_rate_limit_hints:
            return None
        rpm = self.requests_per_minute
        if rpm is None:
            if rejected_for is None:
                return None
            # A concurrency rejection has no published quota, only "none left, come back later".
            return RateLimitHints(remaining_requests=0, reset_requests_seconds=rejected_for)
        self._prune_window(now)
        reset = self._window[0] + _WINDOW_SECONDS - now if self._window else 0.0
        return RateLimitHints(
            limit_requests=rpm,
            remaining_requests=max(0, rpm - len(self._window)),
            reset_requests_seconds=max(0.0, reset),
        )

    async def _serve(
        self,
        model_id: str,
        request: ModelRequest,
        latency_u: float,
        timeout_u: float,
        failure_u: float,
    ) -> ModelResponse:
        times_out = timeout_u < self.timeout_rate
        fails = not times_out and failure_u < self.failure_rate
        duration = (
            self.timeout_seconds
            if times_out
            else self.latency_seconds * (1.0 + latency_u * self.latency_jitter)
        )
        if request.timeout is not None and request.timeout < duration:
            await trio.sleep(max(0.0, request.timeout))
            self._timeouts += 1
            raise ProviderTimeoutError(
                f"{self.name}: no answer within the request timeout of {request.timeout}s"
            )
        await trio.sleep(duration)
        if times_out:
            self._timeouts += 1
            raise ProviderTimeoutError(
                f"{self.name}: simulated timeout after {self.timeout_seconds}s"
            )
        hints = self._hints(trio.current_time())
        if fails:
            self._failures += 1
            raise ProviderFailureError(
                f"{self.name}: simulated internal error",
                status=500,
                retryable=True,
                rate_limits=hints,
            )
        response = self._answer(model_id, request, hints)
        self._successes += 1
        return response

    def _answer(
        self, model_id: str, request: ModelRequest, hints: RateLimitHints | None
    ) -> ModelResponse:
        digest = _request_digest(self.seed, model_id, request)
        prompt_tokens = _estimate_prompt_tokens(request)
        if request.domain == "embedding":
            texts = _embedding_inputs(request.input)
            vectors = [
                _unit_vector(self.seed, model_id, text, self.embedding_dimensions) for text in texts
            ]
            return ModelResponse(
                content=vectors,
                usage=TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=0),
                model=model_id,
                rate_limits=hints,
            )
        if request.domain == "healthcheck":
            return ModelResponse(content="ok", model=model_id, rate_limits=hints)
        ceiling = self.completion_tokens
        if request.max_tokens is not None:
            ceiling = max(1, min(ceiling, request.max_tokens))
        floor = (ceiling + 1) // 2
        completion_tokens = floor + int.from_bytes(digest[:8], "big") % (ceiling - floor + 1)
        if request.domain == "image":
            content = f"simulated-image://{model_id}/{digest.hex()[:32]}"
        else:
            content = f"simulated completion {digest.hex()[:16]} from {model_id}"
        return ModelResponse(
            content=content,
            usage=TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            model=model_id,
            rate_limits=hints,
        )


def _stable_json(value: object) -> bytes:
    # repr as the fallback keeps exotic inputs hashable; sorted keys keep dict order irrelevant.
    return msgspec.json.encode(value, enc_hook=repr, order="deterministic")


def _request_digest(seed: int, model_id: str, request: ModelRequest) -> bytes:
    payload = _stable_json(
        [
            seed,
            model_id,
            request.domain,
            request.messages,
            request.input,
            request.max_tokens,
            request.temperature,
            request.extra,
        ]
    )
    return hashlib.blake2b(payload, digest_size=32).digest()


def _embedding_inputs(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [v if isinstance(v, str) else _stable_json(v).decode() for v in value]
    return [_stable_json(value).decode()]


def _text_tokens(text: str) -> int:
    return (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def _estimate_prompt_tokens(request: ModelRequest) -> int:
    """Roughly four characters per token, like the usual rule of thumb for English."""
    if request.messages is not None:
        total = 0
        for message in request.messages:
            content = message.get("content") if isinstance(message, dict) else message
            text = content if isinstance(content, str) else _stable_json(content).decode()
            total += _TOKENS_PER_MESSAGE + _text_tokens(text)
        return total
    return sum(_text_tokens(text) for text in _embedding_inputs(request.input))


def _unit_vector(seed: int, model_id: str, text: str, dimensions: int) -> list[float]:
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.blake2b(
            _stable_json([seed, model_id, text, block]), digest_size=64
        ).digest()
        # Two bytes per component, centred on zero.
        raw.extend(
            (int.from_bytes(digest[i : i + 2], "big") - 32767.5) / 32767.5
            for i in range(0, len(digest), 2)
        )
        block += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
