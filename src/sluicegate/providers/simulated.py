"""A deterministic, in-process model endpoint: the embedded default provider.

``SimulatedProvider`` plays the part of a real endpoint for tests, benchmarks and dry runs.
It has a hidden true concurrency capacity and/or hidden requests-per-minute and
tokens-per-minute quotas; a call beyond any of them is answered with
:class:`ProviderRateLimitedError` carrying ``retry_after``, exactly what request admission
(AIMD, rate windows) must learn to stay under. Latency (fixed, uniform, log-normal or
empirical, see :mod:`sluicegate.providers.latency`), failures and timeouts are drawn from a
``random.Random(seed)`` three draws per call, in arrival order, so a run is reproducible;
scripted faults (:mod:`sluicegate.providers.faults`) hit exactly the calls they name. The
*content* and token usage of an answer depend only on the seed and the request, never on
timing, so generated data is identical however calls interleave.

Time comes only from ``trio.sleep`` and ``trio.current_time()``: under
``trio.testing.MockClock`` every latency, window and retry-after is virtual.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from typing import Any, Final

import attrs
import msgspec
import trio
from attrs import define, field

from .._internal.checks import describe
from ..errors import ConfigurationError
from ..requests.provider import (
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderFailureError,
    ProviderRateLimitedError,
    ProviderTimeoutError,
    RateLimitHints,
    TokenUsage,
)
from .faults import Fault, FaultRule, SimulatedCall, check_fault_script, scripted_fault
from .json_instances import instance_of, json_schema_of
from .latency import LATENCY_DISTRIBUTIONS, LatencyDistribution
from .quota_window import QuotaWindow

_DEFAULT_LATENCY: Final = 0.05


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
    ``scripted_faults`` counts the calls a fault script hit (they are counted in the outcome
    counters too); ``tokens`` sums the tokens of the calls admitted (prompt plus completion).
    """

    calls: int = 0
    successes: int = 0
    rate_limited: int = 0
    failures: int = 0
    timeouts: int = 0
    cancelled: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    scripted_faults: int = 0
    tokens: int = 0


def _config_error(name: str, value: object, fix: str) -> ConfigurationError:
    return ConfigurationError(f"SimulatedProvider.{name}", f"got {describe(value)}", fix)


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


def _check_failure_status(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 500 <= value <= 599:
        raise _config_error(attr.name, value, "use a 5xx status code such as 500, 502 or 503")


def _check_latency(_inst: object, attr: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, LATENCY_DISTRIBUTIONS):
        raise _config_error(
            attr.name,
            value,
            "use FixedLatency, UniformLatency, LogNormalLatency or EmpiricalLatency "
            "(sluicegate.providers), or None for latency_seconds/latency_jitter",
        )


def _convert_faults(value: Any) -> Any:
    return check_fault_script("SimulatedProvider.faults", value)


@define(kw_only=True, eq=False)
class SimulatedProvider:
    """A deterministic stand-in for a model endpoint (implements :class:`Provider`).

    Knobs (all keyword-only, validated with :class:`ConfigurationError` naming the field):

    - ``latency``: a :data:`~sluicegate.providers.latency.LatencyDistribution` (fixed,
      uniform, log-normal, empirical). Without it, ``latency_seconds`` / ``latency_jitter``
      apply: each admitted call takes ``latency_seconds * (1 + u * latency_jitter)`` with
      ``u`` uniform in ``[-1, 1)``. Give one form or the other.
    - ``capacity``: hidden true maximum of calls in flight. A call arriving while
      ``capacity`` calls run is answered, after ``rejection_latency_seconds``, with
      :class:`ProviderRateLimitedError` (``retry_after=retry_after_seconds``).
    - ``requests_per_minute`` / ``tokens_per_minute``: hidden sliding 60-second quotas of
      admitted calls / of their tokens (prompt estimate plus completion, known at arrival). A
      call beyond either is answered with a 429 whose ``retry_after`` is the time until the
      window frees enough room. A call needing more tokens than ``tokens_per_minute`` can
      never fit: it fails at once with a non-retryable :class:`ProviderFailureError` (413).
    - ``failure_rate``: probability that an admitted call fails after its latency with
      :class:`ProviderFailureError` (status ``failure_status``, default 500, retryable).
    - ``timeout_rate``: probability that an admitted call hangs ``timeout_seconds`` and then
      raises :class:`ProviderTimeoutError`. A ``request.timeout`` shorter than the call's
      duration also ends it with :class:`ProviderTimeoutError` at that timeout.
    - ``faults``: a script of exact faults (:class:`FaultRule` tuple, first match wins, or a
      callable ``(SimulatedCall) -> Fault | None``). A scripted ``rate_limited`` fault refuses
      the call at arrival; a scripted ``failure`` or ``timeout`` applies to the call if it is
      admitted (a call refused by a hidden limit keeps its 429).
    - ``completion_tokens``: typical completion length; actual usage is deterministic per
      request, in ``[ceil(n / 2), n]`` with ``n = min(completion_tokens, max_tokens)``.
    - ``embedding_dimensions``: length of the deterministic unit vectors for embeddings.
    - ``publish_rate_limit_hints``: attach :class:`RateLimitHints` (the requests and tokens
      quotas) to answers and 429s, like real endpoints' ``x-ratelimit-*`` headers, so the
      controller can learn them. Off by default: hidden limits.

    Determinism: the n-th call's latency and failure/timeout draws depend only on ``seed``
    and n (three draws per call, whatever the distribution); scripted faults only on n (and
    the model's own call count); content and usage only on ``seed``, ``model_id`` and the
    request; a 429 depends on the calls in flight (capacity) or in the windows at arrival.

    ``call`` is always a checkpoint. Cancelled mid-call, it frees its capacity slot, counts
    the call as ``cancelled`` and re-raises ``trio.Cancelled``; it leaves no background work.
    """

    name: str = field(default="simulated", validator=_check_name)
    seed: int = field(default=0, validator=_check_seed)
    latency_seconds: float = field(default=_DEFAULT_LATENCY, validator=_check_non_negative)
    latency_jitter: float = field(default=0.0, validator=_check_jitter)
    latency: LatencyDistribution | None = field(default=None, validator=_check_latency)
    capacity: int | None = field(default=None, validator=_check_optional_limit)
    requests_per_minute: int | None = field(default=None, validator=_check_optional_limit)
    tokens_per_minute: int | None = field(default=None, validator=_check_optional_limit)
    retry_after_seconds: float | None = field(default=1.0, validator=_check_optional_non_negative)
    rejection_latency_seconds: float = field(default=0.001, validator=_check_non_negative)
    failure_rate: float = field(default=0.0, validator=_check_fraction)
    failure_status: int = field(default=500, validator=_check_failure_status)
    timeout_rate: float = field(default=0.0, validator=_check_fraction)
    timeout_seconds: float = field(default=30.0, validator=_check_positive)
    faults: tuple[FaultRule, ...] | Callable[[SimulatedCall], Fault | None] = field(
        default=(), converter=_convert_faults
    )
    completion_tokens: int = field(default=64, validator=_check_positive_int)
    embedding_dimensions: int = field(default=8, validator=_check_positive_int)
    publish_rate_limit_hints: bool = field(default=False, validator=_check_bool)

    _rng: random.Random = field(init=False)
    _requests_window: QuotaWindow | None = field(init=False, default=None)
    _tokens_window: QuotaWindow | None = field(init=False, default=None)
    _model_calls: dict[str, int] = field(init=False, factory=dict)
    _calls: int = field(init=False, default=0)
    _successes: int = field(init=False, default=0)
    _rate_limited: int = field(init=False, default=0)
    _failures: int = field(init=False, default=0)
    _timeouts: int = field(init=False, default=0)
    _cancelled: int = field(init=False, default=0)
    _in_flight: int = field(init=False, default=0)
    _max_in_flight: int = field(init=False, default=0)
    _scripted: int = field(init=False, default=0)
    _tokens: int = field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.latency is not None and (
            self.latency_seconds != _DEFAULT_LATENCY or self.latency_jitter != 0.0
        ):
            raise ConfigurationError(
                "SimulatedProvider.latency",
                "given together with latency_seconds or latency_jitter",
                "describe the latency once: either latency=<distribution> or "
                "latency_seconds (+ latency_jitter)",
            )
        self._rng = random.Random(self.seed)
        self.set_requests_per_minute(self.requests_per_minute)
        self.set_tokens_per_minute(self.tokens_per_minute)

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
            scripted_faults=self._scripted,
            tokens=self._tokens,
        )

    def set_capacity(self, capacity: int | None) -> None:
        """Change the hidden concurrency capacity (``None`` removes it).

        Calls already running keep running; only arrivals see the new limit. Not a checkpoint.
        """
        _check_limit("capacity", capacity)
        self.capacity = capacity

    def set_requests_per_minute(self, requests_per_minute: int | None) -> None:
        """Change the hidden sliding-window quota of calls (``None`` removes it).

        Admissions already in the window keep counting against the new quota. Not a checkpoint.
        """
        _check_limit("requests_per_minute", requests_per_minute)
        self.requests_per_minute = requests_per_minute
        self._requests_window = _resized(self._requests_window, requests_per_minute)

    def set_tokens_per_minute(self, tokens_per_minute: int | None) -> None:
        """Change the hidden sliding-window quota of tokens (``None`` removes it).

        Tokens already in the window keep counting against the new quota. Not a checkpoint.
        """
        _check_limit("tokens_per_minute", tokens_per_minute)
        self.tokens_per_minute = tokens_per_minute
        self._tokens_window = _resized(self._tokens_window, tokens_per_minute)

    async def call(self, model_id: str, request: ModelRequest) -> ModelResponse:
        """Serve one call: admit or reject it, wait its latency, then answer or fail.

        Always a checkpoint (at least one ``trio.sleep``). Raises
        :class:`ProviderRateLimitedError`, :class:`ProviderFailureError` or
        :class:`ProviderTimeoutError` as configured. On cancellation the slot is freed and
        ``trio.Cancelled`` propagates.
        """
        self._calls += 1
        model_calls = self._model_calls.get(model_id, 0) + 1
        self._model_calls[model_id] = model_calls
        # Draw the per-call randomness before any decision so that call N always gets the
        # same draws, whatever happened to calls before it.
        latency_u = self._rng.uniform(-1.0, 1.0)
        timeout_u = self._rng.random()
        failure_u = self._rng.random()
        now = trio.current_time()
        fault = None
        if self.faults:
            arrival = SimulatedCall(self._calls, model_calls, model_id, request)
            fault = scripted_fault(self.faults, arrival, "SimulatedProvider.faults")
            self._scripted += fault is not None

        tokens = self._call_tokens(model_id, request) if self._tokens_window else 0
        rejection = self._admission_rejection(now, tokens, fault)
        if rejection is not None:
            try:
                await trio.sleep(self.rejection_latency_seconds)
            except trio.Cancelled:
                self._cancelled += 1
                raise
            if isinstance(rejection, ProviderRateLimitedError):
                self._rate_limited += 1
            else:
                self._failures += 1
            raise rejection

        if self._requests_window is not None:
            self._requests_window.admit(1, now)
        if self._tokens_window is not None:
            self._tokens_window.admit(tokens, now)
            self._tokens += tokens
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            times_out = fault.kind == "timeout" if fault else timeout_u < self.timeout_rate
            fails = fault.kind == "failure" if fault else failure_u < self.failure_rate
            duration = self._duration(latency_u, fault if times_out else None, times_out)
            return await self._serve(model_id, request, duration, times_out, fails, fault)
        except trio.Cancelled:
            self._cancelled += 1
            raise
        finally:
            self._in_flight -= 1

    def _duration(self, latency_u: float, fault: Fault | None, times_out: bool) -> float:
        if times_out:
            if fault is not None and fault.hang_seconds is not None:
                return fault.hang_seconds
            return self.timeout_seconds
        if self.latency is not None:
            return self.latency.quantile((latency_u + 1.0) / 2.0)
        return self.latency_seconds * (1.0 + latency_u * self.latency_jitter)

    def _call_tokens(self, model_id: str, request: ModelRequest) -> int:
        usage = self._usage(model_id, request)
        return usage.prompt_tokens + usage.completion_tokens

    def _admission_rejection(
        self, now: float, tokens: int, fault: Fault | None
    ) -> ProviderError | None:
        """The error this arrival gets at once, or ``None`` when it is admitted."""
        if fault is not None and fault.kind == "rate_limited":
            return ProviderRateLimitedError(
                f"{self.name}: rate limited (scripted fault)",
                retry_after=fault.retry_after,
                rate_limits=self._hints(now, rejected_for=fault.retry_after),
            )
        for window, what in ((self._requests_window, "requests"), (self._tokens_window, "tokens")):
            if window is None:
                continue
            amount = 1 if window is self._requests_window else tokens
            if amount > window.limit:
                return ProviderFailureError(
                    f"{self.name}: the request needs {amount} tokens, more than the "
                    f"tokens_per_minute quota of {window.limit} (simulated). Fix: shorten the "
                    "prompt or lower max_tokens",
                    status=413,
                    retryable=False,
                    rate_limits=self._hints(now),
                )
            retry_after = window.wait_for(amount, now)
            if retry_after is not None:
                return ProviderRateLimitedError(
                    f"{self.name}: {what} per minute exceeded (simulated)",
                    retry_after=retry_after,
                    rate_limits=self._hints(now),
                )
        capacity = self.capacity
        if capacity is not None and self._in_flight >= capacity:
            return ProviderRateLimitedError(
                f"{self.name}: concurrency capacity exceeded (simulated)",
                retry_after=self.retry_after_seconds,
                rate_limits=self._hints(now, rejected_for=self.retry_after_seconds),
            )
        return None

    def _hints(self, now: float, *, rejected_for: float | None = None) -> RateLimitHints | None:
        """What the endpoint publishes about its quotas (``rejected_for``: the retry_after of
        a refusal that is not a quota's, shown as "no requests left for that long")."""
        if not self.publish_rate_limit_hints:
            return None
        hints: dict[str, Any] = {}
        requests = self._requests_window
        if requests is not None:
            hints.update(
                limit_requests=requests.limit,
                remaining_requests=max(0, requests.limit - requests.used(now)),
                reset_requests_seconds=requests.reset_after(now),
            )
        elif rejected_for is not None:
            hints.update(remaining_requests=0, reset_requests_seconds=rejected_for)
        tokens = self._tokens_window
        if tokens is not None:
            hints.update(
                limit_tokens=tokens.limit,
                remaining_tokens=max(0, tokens.limit - tokens.used(now)),
                reset_tokens_seconds=tokens.reset_after(now),
            )
        return RateLimitHints(**hints) if hints else None

    async def _serve(
        self,
        model_id: str,
        request: ModelRequest,
        duration: float,
        times_out: bool,
        fails: bool,
        fault: Fault | None,
    ) -> ModelResponse:
        if request.timeout is not None and request.timeout < duration:
            await trio.sleep(max(0.0, request.timeout))
            self._timeouts += 1
            raise ProviderTimeoutError(
                f"{self.name}: no answer within the request timeout of {request.timeout}s"
            )
        await trio.sleep(duration)
        if times_out:
            self._timeouts += 1
            raise ProviderTimeoutError(f"{self.name}: simulated timeout after {duration}s")
        hints = self._hints(trio.current_time())
        if fails:
            self._failures += 1
            status = fault.failure_status if fault is not None else self.failure_status
            raise ProviderFailureError(
                f"{self.name}: simulated {'internal' if status >= 500 else 'request'} error"
                f"{' (scripted fault)' if fault is not None else ''}",
                status=status,
                retryable=status >= 500,
                rate_limits=hints,
            )
        response = self._answer(model_id, request, hints)
        self._successes += 1
        return response

    def _usage(
        self, model_id: str, request: ModelRequest, digest: bytes | None = None
    ) -> TokenUsage:
        """Deterministic token usage of a request (known before it is served)."""
        if request.domain == "healthcheck":
            return TokenUsage()
        prompt_tokens = _estimate_prompt_tokens(request)
        if request.domain == "embedding":
            return TokenUsage(prompt_tokens=prompt_tokens)
        if digest is None:
            digest = _request_digest(self.seed, model_id, request)
        ceiling = self.completion_tokens
        if request.max_tokens is not None:
            ceiling = max(1, min(ceiling, request.max_tokens))
        floor = (ceiling + 1) // 2
        completion_tokens = floor + int.from_bytes(digest[:8], "big") % (ceiling - floor + 1)
        return TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    def _answer(
        self, model_id: str, request: ModelRequest, hints: RateLimitHints | None
    ) -> ModelResponse:
        if request.domain == "healthcheck":
            return ModelResponse(content="ok", model=model_id, rate_limits=hints)
        if request.domain == "embedding":
            texts = _embedding_inputs(request.input)
            vectors = [
                _unit_vector(self.seed, model_id, text, self.embedding_dimensions) for text in texts
            ]
            usage = self._usage(model_id, request)
            return ModelResponse(content=vectors, usage=usage, model=model_id, rate_limits=hints)
        digest = _request_digest(self.seed, model_id, request)
        usage = self._usage(model_id, request, digest)
        schema = json_schema_of(request.extra) if request.domain == "chat" else None
        if request.domain == "image":
            content = f"simulated-image://{model_id}/{digest.hex()[:32]}"
        elif schema is not None:  # structured output: a document that follows the schema
            document = instance_of(schema, random.Random(int.from_bytes(digest[:8], "big")))
            content = msgspec.json.encode(document).decode()
        else:
            content = f"simulated completion {digest.hex()[:16]} from {model_id}"
        return ModelResponse(content=content, usage=usage, model=model_id, rate_limits=hints)


def _resized(window: QuotaWindow | None, limit: int | None) -> QuotaWindow | None:
    if limit is None:
        return None
    if window is None:
        return QuotaWindow(limit)
    window.limit = limit
    return window


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
