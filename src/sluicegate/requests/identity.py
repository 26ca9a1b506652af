"""Request identity: which concrete endpoint a model call goes to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal, TypeAlias

import msgspec

from .._internal.checks import did_you_mean
from ..errors import ConfigurationError

RequestDomain: TypeAlias = Literal["chat", "embedding", "image", "healthcheck"]


REQUEST_DOMAINS: Final[tuple[RequestDomain, ...]] = ("chat", "embedding", "image", "healthcheck")


def _check_key(kind: str, provider: object, model_id: object) -> None:
    if type(provider) is not str or type(model_id) is not str or not provider or not model_id:
        raise ConfigurationError(
            kind,
            f"provider and model_id must be non-empty strings, got {provider!r}, {model_id!r}",
            f"build the key as {kind}('provider', 'model-id')",
        )


class ProviderModelKey(msgspec.Struct, frozen=True, gc=False, order=True):
    """A concrete endpoint after alias resolution: one provider, one model id."""

    provider: str
    model_id: str

    def __post_init__(self) -> None:
        _check_key("ProviderModelKey", self.provider, self.model_id)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model_id}"

    def resource_keys(self) -> tuple[RequestResourceKey, ...]:
        """This endpoint's request resource in every request domain."""
        return tuple(RequestResourceKey(self.provider, self.model_id, d) for d in REQUEST_DOMAINS)


class RequestResourceKey(msgspec.Struct, frozen=True, gc=False, order=True):
    """What request admission keeps an AIMD limit for: an endpoint plus a request domain."""

    provider: str
    model_id: str
    domain: RequestDomain = "chat"

    def __post_init__(self) -> None:
        _check_key("RequestResourceKey", self.provider, self.model_id)
        if self.domain not in REQUEST_DOMAINS:
            raise ConfigurationError(
                "RequestResourceKey.domain",
                f"unknown request domain {self.domain!r}"
                + did_you_mean(str(self.domain), REQUEST_DOMAINS),
                "use one of: " + ", ".join(REQUEST_DOMAINS),
            )

    @property
    def provider_model(self) -> ProviderModelKey:
        return ProviderModelKey(self.provider, self.model_id)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model_id}/{self.domain}"


class ModelEndpoint(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One declared model endpoint, as a pipeline names it.

    ``name`` is the model alias that columns use; ``provider`` and ``model_id`` name the
    concrete endpoint; ``max_parallel_requests`` is this alias' static cap. ``provider_alias``
    is another name callers may use for ``provider`` (e.g. ``"nim"`` for ``"nvidia"``).
    Several aliases may point at one concrete endpoint: they then share one aggregate cap.
    """

    name: str
    provider: str
    model_id: str
    max_parallel_requests: int
    provider_alias: str | None = None

    def __post_init__(self) -> None:
        for field in ("name", "provider", "model_id"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(
                    f"ModelEndpoint.{field}",
                    f"must be a non-empty string, got {value!r}",
                    f"give the endpoint a {field}",
                )
        cap = self.max_parallel_requests
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
            raise ConfigurationError(
                f"ModelEndpoint({self.name!r}).max_parallel_requests",
                f"must be an integer >= 1, got {cap!r}",
                "declare how many calls this endpoint may have in flight at once, at least 1",
            )
        if self.provider_alias is not None and (
            not isinstance(self.provider_alias, str) or not self.provider_alias.strip()
        ):
            raise ConfigurationError(
                f"ModelEndpoint({self.name!r}).provider_alias",
                f"must be a non-empty string or omitted, got {self.provider_alias!r}",
                "drop provider_alias or name the alternative provider name",
            )


class ProviderCapContribution(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One alias' share in an aggregate cap: the alias and the cap it declared."""

    alias: str
    declared_provider: str
    raw_cap: int


class ProviderCapPlan(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """The aggregate static cap of one concrete endpoint.

    ``static_cap`` is the minimum of the caps its aliases declared, so no alias can be used to
    bypass a stricter one; ``contributions`` keeps every alias and raw cap for diagnostics.
    """

    key: ProviderModelKey
    static_cap: int
    contributions: tuple[ProviderCapContribution, ...]

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(c.alias for c in self.contributions)


def _canonical_provider_names(endpoints: tuple[ModelEndpoint, ...]) -> dict[str, str]:
    """Map every provider name and provider alias to its canonical provider name.

    An endpoint may declare ``provider="oai"`` where another declares ``provider="openai",
    provider_alias="oai"``: both then name the same concrete provider.
    """
    alias_of: dict[str, tuple[str, str]] = {}  # alias -> (provider, declaring endpoint)
    for endpoint in endpoints:
        alias = endpoint.provider_alias
        if alias is None or alias == endpoint.provider:
            continue
        previous = alias_of.get(alias)
        if previous is not None and previous[0] != endpoint.provider:
            raise ConfigurationError(
                f"ModelEndpoint({endpoint.name!r}).provider_alias",
                f"{alias!r} already names provider {previous[0]!r} "
                f"(endpoint {previous[1]!r}), so it cannot also name {endpoint.provider!r}",
                "use a distinct provider_alias per provider",
            )
        alias_of[alias] = (endpoint.provider, endpoint.name)
    names: dict[str, str] = {}
    for name in {*alias_of, *(e.provider for e in endpoints)}:
        seen = [name]
        current = name
        while current in alias_of:
            current = alias_of[current][0]
            if current in seen:
                raise ConfigurationError(
                    f"ModelEndpoint({alias_of[name][1]!r}).provider_alias",
                    "provider aliases form a cycle: " + " -> ".join([*seen, current]),
                    "make every provider_alias point at one canonical provider name",
                )
            seen.append(current)
        names[name] = current
    return names


class RequestResourceResolver:
    """Canonicalizes (provider alias, model alias) to the concrete endpoint it names.

    Built once from the declared :class:`ModelEndpoint` list; immutable afterwards. Aliases of
    one concrete endpoint share a single :class:`ProviderCapPlan` whose cap is the minimum of
    their declared caps. Unknown names raise :class:`ConfigurationError` with a did-you-mean.
    """

    __slots__ = ("_by_alias", "_by_key", "_endpoints", "_plans", "_provider_names")

    def __init__(self, endpoints: Iterable[ModelEndpoint]) -> None:
        self._endpoints: tuple[ModelEndpoint, ...] = tuple(endpoints)
        self._provider_names = _canonical_provider_names(self._endpoints)
        names = self._provider_names

        by_alias: dict[str, ProviderModelKey] = {}
        contributions: dict[ProviderModelKey, list[ProviderCapContribution]] = {}
        for endpoint in self._endpoints:
            if endpoint.name in by_alias:
                raise ConfigurationError(
                    f"ModelEndpoint({endpoint.name!r}).name",
                    "the alias is declared twice",
                    "give every endpoint declaration a unique name",
                )
            key = ProviderModelKey(names[endpoint.provider], endpoint.model_id)
            by_alias[endpoint.name] = key
            contributions.setdefault(key, []).append(
                ProviderCapContribution(
                    alias=endpoint.name,
                    declared_provider=endpoint.provider,
                    raw_cap=endpoint.max_parallel_requests,
                )
            )
        self._by_alias = by_alias
        self._plans = {
            key: ProviderCapPlan(
                key=key, static_cap=min(c.raw_cap for c in contribs), contributions=tuple(contribs)
            )
            for key, contribs in contributions.items()
        }
        self._by_key = {(key.provider, key.model_id): key for key in self._plans}

    @property
    def endpoints(self) -> tuple[ModelEndpoint, ...]:
        """The declarations this resolver was built from."""
        return self._endpoints

    @property
    def aliases(self) -> tuple[str, ...]:
        """Every declared model alias."""
        return tuple(self._by_alias)

    def canonical_provider(self, provider: str) -> str:
        """The canonical provider name for ``provider`` or one of its aliases."""
        try:
            return self._provider_names[provider]
        except KeyError:
            raise ConfigurationError(
                "provider",
                f"unknown provider {provider!r}{did_you_mean(provider, self._provider_names)}",
                "declare a ModelEndpoint for it or use one of: "
                + (", ".join(sorted(self._provider_names)) or "none declared"),
            ) from None

    def resolve_endpoint(
        self, model: str | ProviderModelKey, *, provider: str | None = None
    ) -> ProviderModelKey:
        """The concrete endpoint for a model alias, or for ``provider`` + concrete model id.

        A :class:`ProviderModelKey` is checked and returned as is (after provider-alias
        canonicalization). Raises :class:`ConfigurationError` for unknown names.
        """
        if isinstance(model, ProviderModelKey):
            canonical = self.canonical_provider(model.provider)
            key = self._by_key.get((canonical, model.model_id))
            if key is None:
                raise self._unknown_model(model.model_id, canonical)
            return key
        key = self._by_alias.get(model)
        if key is not None:
            if provider is not None and self.canonical_provider(provider) != key.provider:
                raise ConfigurationError(
                    "provider",
                    f"model alias {model!r} belongs to provider {key.provider!r}, not {provider!r}",
                    f"drop the provider or use {key.provider!r}",
                )
            return key
        if provider is not None:
            canonical = self.canonical_provider(provider)
            key = self._by_key.get((canonical, model))
            if key is not None:
                return key
            raise self._unknown_model(model, canonical)
        raise self._unknown_model(model, None)

    def resolve(
        self,
        model: str | ProviderModelKey | RequestResourceKey,
        *,
        provider: str | None = None,
        domain: RequestDomain = "chat",
    ) -> RequestResourceKey:
        """The :class:`RequestResourceKey` admission keeps state for (endpoint + domain)."""
        if isinstance(model, RequestResourceKey):
            key = self.resolve_endpoint(model.provider_model)
            return RequestResourceKey(key.provider, key.model_id, model.domain)
        if domain not in REQUEST_DOMAINS:
            raise ConfigurationError(
                "domain",
                f"unknown request domain {domain!r}{did_you_mean(str(domain), REQUEST_DOMAINS)}",
                "use one of: " + ", ".join(REQUEST_DOMAINS),
            )
        key = self.resolve_endpoint(model, provider=provider)
        return RequestResourceKey(key.provider, key.model_id, domain)

    def cap_plan(self, key: ProviderModelKey) -> ProviderCapPlan:
        """The aggregate cap plan of a concrete endpoint."""
        try:
            return self._plans[key]
        except KeyError:
            raise self._unknown_model(key.model_id, key.provider) from None

    def cap_plans(self) -> tuple[ProviderCapPlan, ...]:
        """Every concrete endpoint's cap plan, in declaration order."""
        return tuple(self._plans.values())

    def __contains__(self, key: object) -> bool:
        if isinstance(key, RequestResourceKey):
            key = key.provider_model
        return key in self._plans

    def _unknown_model(self, model: str, provider: str | None) -> ConfigurationError:
        if provider is None:
            known: list[str] = list(self._by_alias)
            where = "model alias"
        else:
            known = [k.model_id for k in self._plans if k.provider == provider]
            where = f"model of provider {provider!r}"
        return ConfigurationError(
            "model",
            f"unknown {where} {model!r}{did_you_mean(model, known)}",
            "declare a ModelEndpoint for it or use one of: "
            + (", ".join(known) or "none declared"),
        )
