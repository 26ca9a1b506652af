"""Model columns: free text (:func:`llm_text`), structured output (:func:`llm_structured`) and
judges (:func:`judge`). Each cell renders its prompt template from the row's upstream values and
calls its endpoint alias through request admission (``ctx.call``).

Structured output is decoded with msgspec into the column's schema. An answer that does not
decode or validate is answered with the problem and asked again, at most
``max_invalid_retries`` times; then the cell fails with :class:`StructuredOutputError` and its
row is dropped with that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec
from attrs import frozen

from .._internal.checks import describe, did_you_mean
from ..errors import RetryableTaskError
from ..requests import ModelRequest
from .columns import CallStyle, Column
from .context import CellContext, RowView
from .errors import PipelineDefinitionError, StructuredOutputError
from .metadata import SchedulingMetadata
from .specs import (
    JudgeColumnSpec,
    LLMStructuredColumnSpec,
    LLMTextColumnSpec,
    callable_ref,
    code_digest,
)
from .templates import PromptTemplate

_ROW_AND_CTX: Final = CallStyle(is_async=True, passes_row=True, passes_ctx=True, keywords=())


class JudgeScore(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One criterion of a judge's verdict: the score and a short reason."""

    score: float
    reason: str = ""


@frozen
class _Prompting:
    template: PromptTemplate
    model: str
    system: str | None
    max_tokens: int | None
    temperature: float | None

    def messages(self, row: RowView, suffix: str = "") -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system is not None:
            messages.append({"role": "system", "content": self.system})
        messages.append({"role": "user", "content": self.template.render(row) + suffix})
        return messages

    def request(
        self, messages: list[dict[str, Any]], extra: dict[str, Any] | None = None
    ) -> ModelRequest:
        return ModelRequest(
            messages=messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            extra=extra,
        )


def _text_of(content: object, column: str) -> str:
    if isinstance(content, str) and content:
        return content
    # An empty or missing completion is usually transient (a truncated or filtered answer).
    raise RetryableTaskError(f"column {column!r}: the model returned no text")


@frozen
class _LLMText:
    column: str
    prompting: _Prompting

    async def __call__(self, row: RowView, ctx: CellContext) -> str:
        p = self.prompting
        response = await ctx.call(p.model, p.request(p.messages(row)))
        return _text_of(response.content, self.column)


@frozen
class _LLMStructured:
    column: str
    prompting: _Prompting
    decoder: msgspec.json.Decoder[Any]
    instructions: str
    max_invalid_retries: int
    check: Callable[[Any], str | None] | None = None
    extra: dict[str, Any] | None = None
    """``response_format`` asking the server for the schema (None: the prompt alone asks)."""

    async def __call__(self, row: RowView, ctx: CellContext) -> Any:
        p = self.prompting
        messages = p.messages(row, self.instructions)
        problem = ""
        attempts = 0
        for _ in range(self.max_invalid_retries + 1):
            response = await ctx.call(p.model, p.request(messages, self.extra))
            attempts += 1
            text = _text_of(response.content, self.column)
            try:
                value = self.decoder.decode(extract_json(text))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                problem = str(exc)[:300]
            else:
                found = self.check(value) if self.check is not None else None
                if found is None:
                    return value
                problem = found
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {
                    "role": "user",
                    "content": f"That answer was not valid: {problem}. Reply with only the "
                    "corrected JSON, nothing else.",
                },
            ]
        raise StructuredOutputError(self.column, attempts, problem)


def extract_json(text: str) -> str:
    """The JSON document inside a model answer (strips code fences and surrounding prose)."""
    stripped = text.strip()
    if stripped.startswith("```"):
        first_newline = stripped.find("\n")
        stripped = stripped[first_newline + 1 :] if first_newline >= 0 else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
        stripped = stripped.strip()
    if stripped[:1] in ("{", "["):
        return stripped
    start = min((i for i in (stripped.find("{"), stripped.find("[")) if i >= 0), default=-1)
    if start < 0:
        return stripped
    end = max(stripped.rfind("}"), stripped.rfind("]"))
    return stripped[start : end + 1] if end > start else stripped[start:]


def _check_model(name: str, model: object) -> str:
    if not isinstance(model, str) or not model:
        raise PipelineDefinitionError(
            f"column {name!r}.model",
            f"got {describe(model)}",
            "name the endpoint alias the column calls, e.g. model='writer'",
        )
    return model


def _check_retries(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PipelineDefinitionError(
            f"column {name!r}.max_invalid_retries",
            f"got {describe(value)}",
            "use an integer >= 0 (0: no second chance)",
        )
    return value


def _model_column(
    name: str,
    generator: Callable[..., Any],
    template: PromptTemplate,
    model: str,
    spec: Any,
    *,
    keep_if: Callable[[Any], Any] | None,
    drop: bool,
    weight: float,
    value_type: Any = None,
) -> Column:
    return Column(
        name=name,
        generator=generator,
        depends_on=template.placeholders,
        scheduling=SchedulingMetadata(kind="model", weight=weight),
        spec=spec,
        call_style=_ROW_AND_CTX,
        model=model,
        keep_if=keep_if,
        drop=drop,
        threaded=False,
        value_type=value_type,
    )


def llm_text(
    name: str,
    prompt: str,
    *,
    model: str,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
    weight: float = 1.0,
) -> Column:
    """A column of model text. ``prompt`` is a template: ``{column}`` placeholders are its
    dependencies, filled from the row; ``model`` is the endpoint alias to call."""
    template = PromptTemplate(prompt, field=f"column {name!r}.prompt")
    model = _check_model(name, model)
    prompting = _Prompting(template, model, system, max_tokens, temperature)
    spec = LLMTextColumnSpec(
        name=name,
        depends_on=template.placeholders,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        prompt=prompt,
        model=model,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    return _model_column(
        name, _LLMText(name, prompting), template, model, spec,
        keep_if=keep_if, drop=drop, weight=weight,
    )  # fmt: skip


RESPONSE_FORMATS: Final = ("json_schema", "prompt")
"""How a structured column asks for its schema: ``json_schema`` sends it as the request's
``response_format`` (servers with structured outputs constrain the answer to it) and in the
prompt; ``prompt`` only in the prompt, for servers that refuse ``response_format``."""


def _schema_document(schema: Any, name: str) -> dict[str, Any]:
    try:
        document: dict[str, Any] = msgspec.json.schema(schema)
    except (TypeError, ValueError) as exc:
        raise PipelineDefinitionError(
            f"column {name!r}.schema",
            f"{describe(schema)} is not a type msgspec can decode ({exc})",
            "pass a msgspec.Struct subclass (or another msgspec-supported type)",
        ) from None
    return document


def _schema_instructions(document: dict[str, Any]) -> str:
    text = msgspec.json.encode(document, order="deterministic").decode()
    return (
        "\n\nReply with only a JSON document (no prose, no code fences) that matches this "
        f"JSON schema:\n{text}"
    )


def _response_format(name: str, document: dict[str, Any], how: object) -> dict[str, Any] | None:
    if how not in RESPONSE_FORMATS:
        raise PipelineDefinitionError(
            f"column {name!r}.response_format",
            f"got {describe(how)}",
            "use 'json_schema' (send the schema as response_format; the default) or "
            "'prompt' (only describe it in the prompt, for servers that refuse response_format)"
            + did_you_mean(str(how), RESPONSE_FORMATS),
        )
    if how == "prompt":
        return None
    label = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64] or "answer"
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": label, "schema": document, "strict": False},
        }
    }


def llm_structured(
    name: str,
    prompt: str,
    *,
    schema: Any,
    model: str,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    max_invalid_retries: int = 2,
    response_format: str = "json_schema",
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
    weight: float = 1.0,
) -> Column:
    """A column whose value is the model's answer decoded into ``schema`` (a msgspec Struct).

    The schema is sent as the request's ``response_format`` (servers with structured outputs
    constrain the answer to it; ``response_format="prompt"`` skips that for servers that
    refuse it) and appended to the prompt. Invalid answers are asked again up to
    ``max_invalid_retries`` times, then the row is dropped with the decoding problem.
    """
    template = PromptTemplate(prompt, field=f"column {name!r}.prompt")
    model = _check_model(name, model)
    retries = _check_retries(name, max_invalid_retries)
    document = _schema_document(schema, name)
    extra = _response_format(name, document, response_format)
    instructions = _schema_instructions(document)
    prompting = _Prompting(template, model, system, max_tokens, temperature)
    spec = LLMStructuredColumnSpec(
        name=name,
        depends_on=template.placeholders,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        prompt=prompt,
        model=model,
        schema=callable_ref(schema),
        schema_digest=code_digest(schema),
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        max_invalid_retries=retries,
        response_format=response_format,
    )
    generator = _LLMStructured(
        name, prompting, msgspec.json.Decoder(schema), instructions, retries, extra=extra
    )
    return _model_column(
        name, generator, template, model, spec,
        keep_if=keep_if, drop=drop, weight=weight, value_type=schema,
    )  # fmt: skip


def judge(
    name: str,
    prompt: str,
    *,
    model: str,
    scores: Mapping[str, str] | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    max_invalid_retries: int = 2,
    response_format: str = "json_schema",
    keep_if: Callable[[Any], Any] | None = None,
    drop: bool = False,
    weight: float = 1.0,
) -> Column:
    """A model judging upstream values (named in ``prompt``'s placeholders).

    With ``scores`` (criterion -> what it measures) the value is a mapping criterion ->
    :class:`JudgeScore` decoded and validated like :func:`llm_structured` (every criterion
    must be scored; the schema goes out as ``response_format`` unless
    ``response_format="prompt"``). Without it the value is the judge's verdict as text.
    """
    template = PromptTemplate(prompt, field=f"column {name!r}.prompt")
    model = _check_model(name, model)
    retries = _check_retries(name, max_invalid_retries)
    rubric = _check_scores(name, scores)
    prompting = _Prompting(template, model, system, max_tokens, temperature)
    spec = JudgeColumnSpec(
        name=name,
        depends_on=template.placeholders,
        keep_if=callable_ref(keep_if) if keep_if is not None else None,
        drop=drop,
        prompt=prompt,
        model=model,
        scores=rubric,
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        max_invalid_retries=retries,
        response_format=response_format,
    )
    if rubric is None:
        generator: Callable[..., Any] = _LLMText(name, prompting)
        value_type: Any = None
    else:
        value_type = dict[str, JudgeScore]
        criteria = "\n".join(f"- {key}: {text}" for key, text in rubric.items())
        example = ", ".join(f'"{key}": {{"score": <number>, "reason": "<why>"}}' for key in rubric)
        instructions = (
            f"\n\nScore these criteria:\n{criteria}\n\nReply with only this JSON object, no "
            f"prose: {{{example}}}"
        )
        score = _schema_document(JudgeScore, name)
        document = {
            "type": "object",
            "properties": {key: {"$ref": "#/$defs/JudgeScore"} for key in rubric},
            "required": list(rubric),
            "$defs": score.get("$defs", {}),
        }
        generator = _LLMStructured(
            name,
            prompting,
            msgspec.json.Decoder(value_type),
            instructions,
            retries,
            _Criteria(tuple(rubric)),
            extra=_response_format(name, document, response_format),
        )
    return _model_column(
        name, generator, template, model, spec,
        keep_if=keep_if, drop=drop, weight=weight, value_type=value_type,
    )  # fmt: skip


@frozen
class _Criteria:
    """A judge's check: every criterion is scored; extra keys are dropped; order is fixed."""

    names: tuple[str, ...]

    def __call__(self, verdict: dict[str, JudgeScore]) -> str | None:
        missing = [c for c in self.names if c not in verdict]
        if missing:
            return f"criteria not scored: {', '.join(missing)}"
        for extra in [k for k in verdict if k not in self.names]:
            del verdict[extra]
        for name in self.names:  # criterion order, whatever order the model answered in
            verdict[name] = verdict.pop(name)
        return None


def _check_scores(name: str, scores: Mapping[str, str] | None) -> dict[str, str] | None:
    if scores is None:
        return None
    if not isinstance(scores, Mapping) or not scores:
        raise PipelineDefinitionError(
            f"column {name!r}.scores",
            f"got {describe(scores)}",
            "map each criterion to what it measures, e.g. {'accuracy': 'Is it correct? 1-5'}",
        )
    for key, text in scores.items():
        if not isinstance(key, str) or not key or not isinstance(text, str):
            raise PipelineDefinitionError(
                f"column {name!r}.scores",
                f"entry {key!r}: {describe(text)} is not a criterion name and its description",
                "use string keys and string descriptions",
            )
    return dict(scores)
