from __future__ import annotations

import pytest

from sluicegate import ConfigurationError
from sluicegate.requests.identity import (
    ModelEndpoint,
    ProviderModelKey,
    RequestResourceKey,
    RequestResourceResolver,
)


def endpoint(name: str, provider: str, model_id: str, cap: int, alias: str | None = None):
    return ModelEndpoint(
        name=name,
        provider=provider,
        model_id=model_id,
        max_parallel_requests=cap,
        provider_alias=alias,
    )


def test_alias_resolves_to_concrete_endpoint_and_domain() -> None:
    resolver = RequestResourceResolver([endpoint("judge", "openai", "gpt-4o", 8)])
    assert resolver.resolve("judge") == RequestResourceKey("openai", "gpt-4o", "chat")
    assert resolver.resolve("judge", domain="embedding") == RequestResourceKey(
        "openai", "gpt-4o", "embedding"
    )
    # concrete model id with its provider works too
    assert resolver.resolve("gpt-4o", provider="openai") == RequestResourceKey(
        "openai", "gpt-4o", "chat"
    )


def test_aliases_of_one_endpoint_share_min_cap_and_keep_contributions() -> None:
    resolver = RequestResourceResolver(
        [
            endpoint("generator", "openai", "gpt-4o", 16),
            endpoint("judge", "openai", "gpt-4o", 6),
            endpoint("embedder", "openai", "text-embedding-3", 32),
        ]
    )
    plan = resolver.cap_plan(ProviderModelKey("openai", "gpt-4o"))
    assert plan.static_cap == 6
    assert plan.aliases == ("generator", "judge")
    assert [c.raw_cap for c in plan.contributions] == [16, 6]
    assert resolver.cap_plan(ProviderModelKey("openai", "text-embedding-3")).static_cap == 32
    assert len(resolver.cap_plans()) == 2


def test_provider_alias_canonicalizes_other_declarations() -> None:
    # "nim" is declared as an alias of "nvidia"; an endpoint declared under "nim" is the
    # same concrete provider, so both aliases share one cap.
    resolver = RequestResourceResolver(
        [
            endpoint("a", "nvidia", "meta/llama-3.1-8b", 10, alias="nim"),
            endpoint("b", "nim", "meta/llama-3.1-8b", 4),
        ]
    )
    key = ProviderModelKey("nvidia", "meta/llama-3.1-8b")
    assert resolver.resolve_endpoint("b") == key
    assert resolver.resolve_endpoint("meta/llama-3.1-8b", provider="nim") == key
    assert resolver.cap_plan(key).static_cap == 4
    assert resolver.canonical_provider("nim") == "nvidia"
    assert resolver.resolve(RequestResourceKey("nim", "meta/llama-3.1-8b", "image")) == (
        RequestResourceKey("nvidia", "meta/llama-3.1-8b", "image")
    )


def test_unknown_alias_names_it_with_did_you_mean() -> None:
    resolver = RequestResourceResolver([endpoint("generator", "openai", "gpt-4o", 4)])
    with pytest.raises(ConfigurationError) as info:
        resolver.resolve("generater")
    assert "'generater'" in str(info.value)
    assert "did you mean 'generator'" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"unknown provider 'opena'.*did you mean"):
        resolver.resolve("gpt-4o", provider="opena")
    with pytest.raises(ConfigurationError, match="unknown request domain 'chatt'"):
        resolver.resolve("generator", domain="chatt")  # type: ignore[arg-type]


def test_alias_with_wrong_provider_is_rejected() -> None:
    resolver = RequestResourceResolver(
        [endpoint("g", "openai", "gpt-4o", 4), endpoint("h", "anthropic", "claude", 4)]
    )
    with pytest.raises(ConfigurationError, match="belongs to provider 'openai'"):
        resolver.resolve("g", provider="anthropic")


@pytest.mark.parametrize(
    ("endpoints", "match"),
    [
        ([endpoint("g", "p", "m", 1), endpoint("g", "p", "n", 1)], "declared twice"),
        (
            [endpoint("a", "p", "m", 1, alias="x"), endpoint("b", "q", "m", 1, alias="x")],
            "already names provider 'p'",
        ),
        (
            [endpoint("a", "p", "m", 1, alias="q"), endpoint("b", "q", "m", 1, alias="p")],
            "cycle",
        ),
    ],
)
def test_inconsistent_declarations_are_rejected(endpoints, match) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RequestResourceResolver(endpoints)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_parallel_requests": 0}, "max_parallel_requests"),
        ({"max_parallel_requests": True}, "max_parallel_requests"),
        ({"name": ""}, "name"),
        ({"provider_alias": " "}, "provider_alias"),
    ],
)
def test_endpoint_validation_names_field(kwargs, field) -> None:
    base = {"name": "g", "provider": "p", "model_id": "m", "max_parallel_requests": 2}
    with pytest.raises(ConfigurationError) as info:
        ModelEndpoint(**{**base, **kwargs})
    assert field in info.value.field
