"""The SDK's API families we trace: where each class lives, which methods, and how their calls read.

Every family runs on the one call life cycle (``call.py``) and the same wrappers (``patch.py``); what differs is
pure extraction, here and in ``attributes.py``:

- chat: ``Chat.complete``/``stream`` (and their async twins), the request's messages and tools;
- FIM: ``Fim.complete``/``stream``, a ``text_completion`` whose prompt is one user message (the code before the gap)
  and whose suffix (the code after it) is ``respan.fim.suffix``; its answers have the chat shape;
- embeddings: ``Embeddings.create``, whose inputs are user messages; the answer's usage, how many vectors came
  back and their dimension, never the vectors;
- agents: ``Agents.complete``/``stream``, an ``invoke_agent`` named after ``gen_ai.agent.id``, read as chat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.attributes import Attributes

RequestReader = Callable[[Mapping[str, Any], bool, bool, int], Attributes]
ResponseReader = Callable[[Any, bool], Attributes]


@dataclass(frozen=True)
class Family:
    """One API family: the module (under each generation's root) and class it lives in, and how it reads."""

    label: str  # as messages name it
    module: str
    class_name: str
    methods: tuple[str, ...]  # ``*_async`` are coroutines; ``stream*`` return event streams
    operation: str
    request: RequestReader
    response: ResponseReader
    named_by: str = sc.GEN_AI_REQUEST_MODEL  # the request attribute the span's name ends with


def _texts(value: Any) -> list[str]:
    """One string, or a list of them (the texts to embed)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    return []


def _user_inputs(texts: list[str], capture_content: bool, max_indexed: int) -> Attributes:
    """The texts a call sends (a FIM prompt, the texts to embed) as its user messages, when content is captured."""
    if not capture_content or not texts:
        return {}
    messages = [{"role": "user", "content": text} for text in texts]
    return attrs.guarded("prompt extraction", attrs.prompt_attributes, messages, max_indexed)


def fim_request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    out = attrs.common_request_attributes(kwargs, sc.OPERATION_TEXT_COMPLETION, "completion", stream)
    out.update(_user_inputs(_texts(kwargs.get("prompt")), capture, max_indexed))
    suffix = kwargs.get("suffix")
    if capture and isinstance(suffix, str) and suffix:
        out[sc.RESPAN_FIM_SUFFIX] = suffix
    return out


def embeddings_request_attributes(
    kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int
) -> Attributes:
    out = attrs.common_request_attributes(kwargs, sc.OPERATION_EMBEDDINGS, "embedding")
    encoding = kwargs.get("encoding_format")
    if not attrs.is_missing(encoding):
        out[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [attrs.plain_text(encoding)]
    dimension = kwargs.get("output_dimension")
    if isinstance(dimension, int) and not isinstance(dimension, bool):
        out[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = dimension
    out.update(_user_inputs(_texts(kwargs.get("inputs")), capture, max_indexed))
    return out


def agents_request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    """A chat request to an agent: the same messages and parameters, and the agent instead of a model."""
    out = attrs.request_attributes(kwargs, capture, stream, max_indexed)
    out[sc.GEN_AI_OPERATION_NAME] = sc.OPERATION_INVOKE_AGENT
    agent = kwargs.get("agent_id")
    if isinstance(agent, str) and agent:
        out[sc.GEN_AI_AGENT_ID] = agent
    return out


def _embeddings_output(response: Any) -> Attributes:
    data = attrs.field_of(response, "data")
    if not isinstance(data, (list, tuple)):
        return {}
    out: Attributes = {sc.RESPAN_EMBEDDINGS_COUNT: len(data)}
    vector = attrs.field_of(data[0], "embedding") if data else None
    if isinstance(vector, (list, tuple)) and vector:
        out[sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] = len(vector)
    return out


def embeddings_response_attributes(response: Any, capture_content: bool) -> Attributes:
    """Identity, usage (input tokens only), and the vectors' count and dimension."""
    out = attrs.guarded("response identity", attrs.response_identity, response)
    out.update(attrs.guarded("response usage", attrs.usage_attributes, attrs.field_of(response, "usage")))
    out.update(attrs.guarded("embeddings output", _embeddings_output, response))
    return out


_COMPLETIONS = ("complete", "complete_async", "stream", "stream_async")
CHAT = Family(
    "Chat", "chat", "Chat", _COMPLETIONS, sc.OPERATION_CHAT, attrs.request_attributes, attrs.response_attributes
)
FIM = Family(
    "FIM", "fim", "Fim", _COMPLETIONS, sc.OPERATION_TEXT_COMPLETION, fim_request_attributes, attrs.response_attributes
)
EMBEDDINGS = Family(
    "embeddings",
    "embeddings",
    "Embeddings",
    ("create", "create_async"),
    sc.OPERATION_EMBEDDINGS,
    embeddings_request_attributes,
    embeddings_response_attributes,
)
AGENTS = Family(
    "agents",
    "agents",
    "Agents",
    _COMPLETIONS,
    sc.OPERATION_INVOKE_AGENT,
    agents_request_attributes,
    attrs.response_attributes,
    named_by=sc.GEN_AI_AGENT_ID,
)
FAMILIES = (CHAT, FIM, EMBEDDINGS, AGENTS)
