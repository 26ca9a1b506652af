"""The OpenAI-compatible wire format: request, response and error bodies, and header names.

One definition serves both ends: :class:`~sluicegate.providers.OpenAICompatibleProvider`
encodes requests and decodes answers with these types, and the loopback emulator
(:mod:`sluicegate.testing`) decodes requests and encodes answers with the very same types, so
the two cannot drift apart.

Decoding is lenient where real servers differ (vLLM, NIM and OpenAI omit or add fields): every
field a client does not strictly need has a default, and unknown fields are ignored. Encoding
omits ``None`` optionals (``omit_defaults``), so a request body carries only what was set.

The header names are the ones OpenAI documents (``x-ratelimit-*``, ``retry-after-ms``) plus
the standard ``Retry-After``; :mod:`sluicegate.providers.rate_limit_headers` turns them into
:class:`~sluicegate.requests.RateLimitHints` and back.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "CHAT_DECODER",
    "CHAT_REQUEST_DECODER",
    "EMBEDDINGS_PATH",
    "EMBEDDING_DECODER",
    "EMBEDDING_REQUEST_DECODER",
    "ENCODER",
    "ERROR_DECODER",
    "LIMIT_REQUESTS",
    "LIMIT_TOKENS",
    "MODELS_DECODER",
    "MODELS_PATH",
    "RATE_LIMIT_HEADERS",
    "REMAINING_REQUESTS",
    "REMAINING_TOKENS",
    "RESET_REQUESTS",
    "RESET_TOKENS",
    "RETRY_AFTER",
    "RETRY_AFTER_MS",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionRequest",
    "ChatMessage",
    "Embedding",
    "EmbeddingList",
    "EmbeddingRequest",
    "ErrorBody",
    "ErrorDetail",
    "ModelInfo",
    "ModelList",
    "Usage",
]

# Paths under the API root (``.../v1``).
CHAT_COMPLETIONS_PATH: Final = "chat/completions"
EMBEDDINGS_PATH: Final = "embeddings"
MODELS_PATH: Final = "models"

# Header names, lower case (HTTP header names are case-insensitive; h11 and httpx lower them).
RETRY_AFTER: Final = "retry-after"
RETRY_AFTER_MS: Final = "retry-after-ms"
LIMIT_REQUESTS: Final = "x-ratelimit-limit-requests"
REMAINING_REQUESTS: Final = "x-ratelimit-remaining-requests"
RESET_REQUESTS: Final = "x-ratelimit-reset-requests"
LIMIT_TOKENS: Final = "x-ratelimit-limit-tokens"
REMAINING_TOKENS: Final = "x-ratelimit-remaining-tokens"
RESET_TOKENS: Final = "x-ratelimit-reset-tokens"
RATE_LIMIT_HEADERS: Final = (
    LIMIT_REQUESTS,
    REMAINING_REQUESTS,
    RESET_REQUESTS,
    LIMIT_TOKENS,
    REMAINING_TOKENS,
    RESET_TOKENS,
)


class ChatCompletionRequest(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``POST /v1/chat/completions``. ``max_completion_tokens`` is OpenAI's newer name."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    response_format: dict[str, Any] | None = None
    guided_json: dict[str, Any] | None = None

    @property
    def completion_limit(self) -> int | None:
        """The completion length limit, whichever of the two names carried it."""
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """``POST /v1/embeddings``: one string or a list of inputs."""

    model: str
    input: str | list[Any]


class Usage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Token usage. Some servers send ``null`` counts; readers treat those as 0."""

    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = None


class ChatMessage(msgspec.Struct, kw_only=True):
    """One message of an answer; ``content`` is usually text, ``None`` for tool calls."""

    role: str = "assistant"
    content: Any = None


class ChatChoice(msgspec.Struct, kw_only=True):
    """One choice of a chat completion."""

    message: ChatMessage
    index: int = 0
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct, kw_only=True):
    """The answer to a chat completion request."""

    choices: list[ChatChoice]
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str | None = None
    usage: Usage | None = None


class Embedding(msgspec.Struct, kw_only=True):
    """One vector; ``index`` is the position of its input."""

    embedding: list[float]
    index: int = 0
    object: str = "embedding"


class EmbeddingList(msgspec.Struct, kw_only=True):
    """The answer to an embeddings request."""

    data: list[Embedding]
    object: str = "list"
    model: str | None = None
    usage: Usage | None = None


class ModelInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One entry of ``GET /v1/models``."""

    id: str
    object: str = "model"
    owned_by: str | None = None


class ModelList(msgspec.Struct, kw_only=True):
    """The answer to ``GET /v1/models``."""

    data: list[ModelInfo]
    object: str = "list"


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The ``error`` object of an OpenAI-style error body.

    ``message`` is free text (servers sometimes quote the request in it); ``type``, ``code``
    and ``param`` are identifiers.
    """

    message: str | None = None
    type: str | None = None
    code: str | int | None = None
    param: str | None = None


class ErrorBody(msgspec.Struct, kw_only=True):
    """An error answer: ``{"error": {...}}`` (some servers send a bare string instead)."""

    error: ErrorDetail | str | None = None


CHAT_REQUEST_DECODER: Final = msgspec.json.Decoder(ChatCompletionRequest)
EMBEDDING_REQUEST_DECODER: Final = msgspec.json.Decoder(EmbeddingRequest)
CHAT_DECODER: Final = msgspec.json.Decoder(ChatCompletion)
EMBEDDING_DECODER: Final = msgspec.json.Decoder(EmbeddingList)
MODELS_DECODER: Final = msgspec.json.Decoder(ModelList)
ERROR_DECODER: Final = msgspec.json.Decoder(ErrorBody)
ENCODER: Final = msgspec.json.Encoder()
