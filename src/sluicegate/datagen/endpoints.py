"""Model endpoints of a pipeline: declared once, named by alias from columns.

:class:`Endpoint` is the serializable declaration (alias -> provider, model, caps, rate
windows). :func:`build_request_stack` turns the declarations into the request layer: a
:class:`~sluicegate.requests.RequestResourceResolver` (aliases of one concrete endpoint share
its cap), an :class:`~sluicegate.requests.AdaptiveRequestAdmissionController` and a
:class:`~sluicegate.requests.ModelRequestExecutor`, with one provider per provider name.
With no ``base_url`` and no provider object, an endpoint is served by the embedded
:class:`~sluicegate.providers.SimulatedProvider` (no network).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import httpx
import msgspec

from .._internal.checks import describe, did_you_mean, is_number
from ..errors import ConfigurationError
from ..events import EventSink
from ..providers import OpenAICompatibleProvider, SimulatedProvider
from ..requests import (
    AdaptiveRequestAdmissionController,
    ModelEndpoint,
    ModelRequestExecutor,
    Provider,
    ProviderModelKey,
    RequestAdmissionConfig,
    RequestResourceOverride,
    RequestResourceSettings,
)


class Endpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One model endpoint as a pipeline declares it.

    - ``alias``: the name columns use (``model="writer"``); ``aliases``: more names for it.
    - ``model``: the model id sent to the provider.
    - ``base_url``: an OpenAI-compatible API root (``http://host:8000/v1``); ``None`` serves
      the endpoint with the embedded simulated provider unless ``providers=`` names one.
    - ``provider``: the provider name (default: ``simulated``, or the URL's ``host:port``).
      Endpoints with the same provider and model are one concrete endpoint: they share one
      cap (the smallest declared), whatever their aliases.
    - ``max_parallel_requests``: calls in flight at once (the static cap).
    - ``requests_per_minute`` / ``tokens_per_minute``: optional published quotas (a sliding
      60-second rate window).
    - ``api_key_env``: the environment variable holding the API key (never the key itself).
    - ``timeout``: seconds per attempt (default: the provider's).
    - ``initial_limit``: the adaptive limit to start at (default: the request layer's
      start, which may be a slow start); set it to ``max_parallel_requests`` for an endpoint
      whose capacity is known.
    """

    alias: str
    model: str
    base_url: str | None = None
    provider: str | None = None
    max_parallel_requests: int = 16
    aliases: tuple[str, ...] = ()
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    api_key_env: str | None = None
    timeout: float | None = None
    initial_limit: int | None = None

    def __post_init__(self) -> None:
        where = f"Endpoint({self.alias!r})"
        for name in ("alias", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(
                    f"{where}.{name}", f"must be a non-empty string, got {value!r}", f"set {name}"
                )
        for alias in self.aliases:
            if not isinstance(alias, str) or not alias.strip() or alias == self.alias:
                raise ConfigurationError(
                    f"{where}.aliases",
                    f"{alias!r} is not a new non-empty name",
                    "list extra names for this endpoint, different from its alias",
                )
        for name, least in (
            ("max_parallel_requests", 1),
            ("requests_per_minute", 1),
            ("tokens_per_minute", 1),
            ("initial_limit", 1),
        ):
            value = getattr(self, name)
            if value is None and name != "max_parallel_requests":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                optional = "" if name == "max_parallel_requests" else ", or omit it"
                raise ConfigurationError(
                    f"{where}.{name}",
                    f"must be an integer >= {least}, got {value!r}",
                    "use a positive whole number" + optional,
                )
        if self.initial_limit is not None and self.initial_limit > self.max_parallel_requests:
            raise ConfigurationError(
                f"{where}.initial_limit",
                f"{self.initial_limit} is above max_parallel_requests {self.max_parallel_requests}",
                "start at or below the cap",
            )
        if self.timeout is not None and not (is_number(self.timeout) and self.timeout > 0):
            raise ConfigurationError(
                f"{where}.timeout", f"got {self.timeout!r}", "use seconds > 0, or omit it"
            )
        if self.api_key_env is not None and self.base_url is None:
            raise ConfigurationError(
                f"{where}.api_key_env",
                "an API key needs a base_url (the simulated endpoint takes none)",
                "set base_url, or drop api_key_env",
            )
        if self.base_url is not None:
            try:
                url = httpx.URL(self.base_url)
            except httpx.InvalidURL as exc:
                raise ConfigurationError(
                    f"{where}.base_url", f"not a valid URL ({exc})", "use http(s)://host:port/v1"
                ) from None
            if url.scheme not in ("http", "https") or not url.host:
                raise ConfigurationError(
                    f"{where}.base_url",
                    f"{self.base_url!r} is not an absolute http(s) URL",
                    "use e.g. 'http://127.0.0.1:8000/v1'",
                )

    @property
    def provider_name(self) -> str:
        """The provider name this endpoint's calls go to."""
        if self.provider is not None:
            return self.provider
        if self.base_url is None:
            return "simulated"
        url = httpx.URL(self.base_url)
        return f"{url.host}:{url.port}" if url.port else str(url.host)

    @property
    def names(self) -> tuple[str, ...]:
        """The alias and every extra alias."""
        return (self.alias, *self.aliases)


@attrs.frozen
class RequestStack:
    """The request layer built for one run."""

    controller: AdaptiveRequestAdmissionController
    executor: ModelRequestExecutor
    providers: dict[str, Provider]
    owned: tuple[Any, ...]
    endpoint_of_alias: dict[str, ProviderModelKey]
    static_caps: dict[ProviderModelKey, int]

    async def aclose(self) -> None:
        """Close the HTTP providers this stack created (user providers stay open)."""
        for provider in self.owned:
            await provider.aclose()


def check_endpoints(endpoints: Sequence[Endpoint]) -> dict[str, Endpoint]:
    """Endpoints by every alias; duplicate aliases and conflicting providers are errors."""
    by_alias: dict[str, Endpoint] = {}
    urls: dict[str, str | None] = {}
    for endpoint in endpoints:
        if not isinstance(endpoint, Endpoint):
            raise ConfigurationError(
                "endpoints", f"{describe(endpoint)} is not an Endpoint", "declare Endpoint(...)"
            )
        for alias in endpoint.names:
            if alias in by_alias:
                raise ConfigurationError(
                    f"Endpoint({alias!r})", "the alias is declared twice", "give every alias once"
                )
            by_alias[alias] = endpoint
        name = endpoint.provider_name
        if name in urls and urls[name] != endpoint.base_url:
            raise ConfigurationError(
                f"Endpoint({endpoint.alias!r}).provider",
                f"provider {name!r} is declared with base_url {urls[name]!r} and "
                f"{endpoint.base_url!r}",
                "give each server its own provider name",
            )
        urls[name] = endpoint.base_url
    return by_alias


def unknown_alias(alias: str, known: Mapping[str, Endpoint], field: str) -> ConfigurationError:
    """The error for a column naming an undeclared endpoint alias."""
    return ConfigurationError(
        field,
        f"unknown endpoint alias {alias!r}{did_you_mean(alias, known)}",
        "declare Endpoint("
        + repr(alias)
        + ", model=...) or use one of: "
        + (", ".join(known) or "none declared"),
    )


def _provider_for(endpoint: Endpoint, seed: int, owned: list[Any]) -> Provider:
    name = endpoint.provider_name
    if endpoint.base_url is None:
        return SimulatedProvider(name=name, seed=seed)
    api_key = None
    if endpoint.api_key_env is not None:
        api_key = os.environ.get(endpoint.api_key_env)
        if not api_key:
            raise ConfigurationError(
                f"Endpoint({endpoint.alias!r}).api_key_env",
                f"the environment variable {endpoint.api_key_env!r} is not set",
                f"export {endpoint.api_key_env}=<your key>",
            )
    options: dict[str, Any] = {"base_url": endpoint.base_url, "name": name, "api_key": api_key}
    if endpoint.timeout is not None:
        options["timeout"] = endpoint.timeout
    fields = attrs.fields_dict(OpenAICompatibleProvider)
    # Size the connection pool from the cap when the provider offers it (a newer provider).
    for pool_field in ("max_connections", "pool_size"):
        if pool_field in fields:
            options[pool_field] = endpoint.max_parallel_requests
            break
    provider = OpenAICompatibleProvider(**options)
    owned.append(provider)
    return provider


def build_request_stack(
    endpoints: Sequence[Endpoint],
    *,
    providers: Mapping[str, Provider] | None,
    seed: int,
    sink: EventSink | None,
    config: RequestAdmissionConfig | None = None,
    max_attempts: int = 3,
) -> RequestStack:
    """The controller, executor and providers for ``endpoints``."""
    check_endpoints(endpoints)
    declared = []
    overrides = []
    for endpoint in endpoints:
        for alias in endpoint.names:
            declared.append(
                ModelEndpoint(
                    name=alias,
                    provider=endpoint.provider_name,
                    model_id=endpoint.model,
                    max_parallel_requests=endpoint.max_parallel_requests,
                )
            )
        window: dict[str, Any] = {}
        if endpoint.requests_per_minute is not None:
            window["requests_per_window"] = endpoint.requests_per_minute
        if endpoint.tokens_per_minute is not None:
            window["tokens_per_window"] = endpoint.tokens_per_minute
        if window:
            window["window_seconds"] = 60.0
        if endpoint.initial_limit is not None:
            window["initial_limit"] = endpoint.initial_limit
        if window:
            overrides.append(RequestResourceOverride(alias=endpoint.alias, **window))
    base = config if config is not None else RequestAdmissionConfig()
    merged = RequestAdmissionConfig(
        defaults=base.defaults if config is not None else RequestResourceSettings(),
        resources=(*base.resources, *overrides),
    )
    controller = AdaptiveRequestAdmissionController(declared, merged, sink=sink)
    owned: list[Any] = []
    built: dict[str, Provider] = dict(providers or {})
    for endpoint in endpoints:
        name = endpoint.provider_name
        if name not in built:
            built[name] = _provider_for(endpoint, seed, owned)
    for name, provider in built.items():
        if not isinstance(provider, Provider):
            raise ConfigurationError(
                f"providers[{name!r}]",
                f"{describe(provider)} is not a Provider",
                "pass an object with name and async call()",
            )
    executor = ModelRequestExecutor(controller, built, max_attempts=max_attempts, seed=seed)
    resolver = controller.resolver
    endpoint_of_alias = {alias: resolver.resolve_endpoint(alias) for alias in resolver.aliases}
    static_caps = {plan.key: plan.static_cap for plan in resolver.cap_plans()}
    return RequestStack(
        controller=controller,
        executor=executor,
        providers=built,
        owned=tuple(owned),
        endpoint_of_alias=endpoint_of_alias,
        static_caps=static_caps,
    )
