"""Request identity: which concrete endpoint a model call goes to."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

import msgspec

RequestDomain: TypeAlias = Literal["chat", "embedding", "image", "healthcheck"]
REQUEST_DOMAINS: Final[tuple[RequestDomain, ...]] = ("chat", "embedding", "image", "healthcheck")


class ProviderModelKey(msgspec.Struct, frozen=True, gc=False, order=True):
    """A concrete endpoint after alias resolution: one provider, one model id."""

    provider: str
    model_id: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model_id}"


class RequestResourceKey(msgspec.Struct, frozen=True, gc=False, order=True):
    """What request admission keeps an AIMD limit for: an endpoint plus a request domain."""

    provider: str
    model_id: str
    domain: RequestDomain = "chat"

    @property
    def provider_model(self) -> ProviderModelKey:
        return ProviderModelKey(self.provider, self.model_id)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model_id}/{self.domain}"
