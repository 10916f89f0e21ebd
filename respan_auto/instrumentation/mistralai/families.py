"""The SDK's API families we trace: where each class lives, which methods, and how their calls read.

Every family runs on the one call life cycle (``call.py``) and the same wrappers (``patch.py``); what differs is
pure extraction, here and in ``attributes.py``:

- chat: ``Chat.complete``/``stream`` (and their async twins), the request's messages and tools;
- responses: ``Responses.create`` (3.x), the stateless Responses API, a ``chat`` whose input and output items are read
  in ``responses.py``; a stream when the request says so;
- FIM: ``Fim.complete``/``stream``, a ``text_completion`` whose prompt is one user message (the code before the gap)
  and whose suffix (the code after it) is ``respan.fim.suffix``; its answers have the chat shape;
- embeddings: ``Embeddings.create``, whose inputs are user messages; the answer's usage, how many vectors came
  back and their dimension, never the vectors;
- agents: ``Agents.complete``/``stream``, an ``invoke_agent`` named after ``gen_ai.agent.id``, read as chat;
- conversations: ``Conversations.start``/``append``/``restart`` and their ``_stream`` forms, an ``invoke_agent`` on
  an agent or a model, with ``gen_ai.conversation.id``; their entries and events are read in ``conversations.py``;
- conversation runs: ``run_async``/``run_stream_async``, one INTERNAL ``invoke_agent`` span for the whole client-side
  loop, whose requests and tool runs (``tool_runs.py``) are its children;
- classifiers: ``moderate``/``moderate_chat`` (``moderation``) and ``classify``/``classify_chat``
  (``classification``): the texts or conversations judged (content), the flagged categories and the scores;
- OCR: ``Ocr.process`` (``ocr``): the document's kind and address (never its bytes, nor a ``data:`` URL), pages
  returned and processed, the document's size; the recognised text stays out of the span;
- transcriptions: ``Transcriptions.complete``/``stream`` (``transcription``): the audio's size, its references and the
  transcript (content), the language heard and the seconds billed; read in ``audio.py``;
- speech: ``Speech.complete`` (``speech``, 2.x and later), a stream when the request says so: the text spoken
  (content), the voice and format, and the audio's size, never the audio.

Classifiers, OCR, transcriptions and speech have no operation in the conventions: ``moderation``,
``classification``, ``ocr``, ``transcription`` and ``speech`` are ours.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai import audio, conversations, responses
from respan_auto.instrumentation.mistralai.attributes import Attributes

RequestReader = Callable[[Mapping[str, Any], bool, bool, int], Attributes]
ResponseReader = Callable[[Any, bool], Attributes]
Accumulator = Callable[[bool, bool], Any]  # (capture content, keep chunk sizes) -> a StreamAccumulator-like


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
    named_by: tuple[str, ...] = (sc.GEN_AI_REQUEST_MODEL,)  # the span's name ends with the first of these
    accumulator: Accumulator = attrs.StreamAccumulator  # reads the family's stream events
    positional: tuple[str, ...] = ()  # the leading parameters that callers may pass by position
    run: bool = False  # a client-side loop: an INTERNAL span whose calls are traced as its children
    streams_on_request: bool = False  # its methods return a stream when the request says ``stream=True``


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


def classifier_request_attributes(
    kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int, operation: str
) -> Attributes:
    """Texts (``moderate``, ``classify``) or conversations (``*_chat``) to judge; content, like any prompt."""
    out = attrs.common_request_attributes(kwargs, operation, operation)
    inputs: Any = kwargs.get("inputs", kwargs.get("input"))  # ``classify_chat`` takes ``input`` on 2.x and later
    if not capture:
        return out
    conversations = _conversations(inputs)
    if conversations is None:
        out.update(_user_inputs(_texts(inputs), capture, max_indexed))
        return out
    messages = [message for conversation in conversations for message in conversation]
    out.update(attrs.guarded("prompt extraction", attrs.prompt_attributes, messages, max_indexed))
    return out


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _conversations(inputs: Any) -> list[list[Any]] | None:
    """The conversations a ``*_chat`` call judges: messages, lists of them, or ``{"messages": [...]}`` requests."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        return None
    if attrs.field_of(items[0], "messages") is not None:
        return [_listed(attrs.field_of(item, "messages")) for item in items]
    if isinstance(items[0], (list, tuple)):
        return [_listed(item) for item in items]
    if attrs.field_of(items[0], "role") is not None:
        return [items]
    return None


def _results(response: Any) -> list[Any]:
    results = attrs.field_of(response, "results")
    return list(results) if isinstance(results, (list, tuple)) else []


def _moderation_output(response: Any) -> Attributes:
    flagged: set[str] = set()
    scores = []
    for result in _results(response):
        categories = attrs.to_plain(attrs.field_of(result, "categories"))
        if isinstance(categories, Mapping):
            flagged.update(str(name) for name, value in categories.items() if value is True)
        scores.append(attrs.to_plain(attrs.field_of(result, "category_scores")))
    return {
        sc.RESPAN_MODERATION_FLAGGED: bool(flagged),
        sc.RESPAN_MODERATION_CATEGORIES: sorted(flagged),
        sc.RESPAN_MODERATION_SCORES: attrs.dumps(scores),
    }


def _classification_output(response: Any) -> Attributes:
    results = [attrs.to_plain(result) for result in _results(response)]
    return {sc.RESPAN_CLASSIFICATION_RESULTS: attrs.dumps(results)}


def _judged(output: Callable[[Any], Attributes]) -> ResponseReader:
    """A classifier's answer: its identity, and what it judged (scores, never the inputs)."""

    def read(response: Any, capture_content: bool) -> Attributes:
        out = attrs.guarded("response identity", attrs.response_identity, response)
        out.update(attrs.guarded("classifier output", output, response))
        return out

    return read


def ocr_request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    """The document's kind, and its address when it is one (content); never its bytes."""
    out = attrs.common_request_attributes(kwargs, sc.OPERATION_OCR, sc.OPERATION_OCR)
    document = attrs.to_plain(kwargs.get("document"))
    if isinstance(document, Mapping):
        kind = document.get("type")
        if isinstance(kind, str):
            out[sc.RESPAN_OCR_DOCUMENT_TYPE] = kind
        url = document.get("document_url") or document.get("image_url")
        url = url.get("url") if isinstance(url, Mapping) else url
        if capture and isinstance(url, str) and not url.startswith("data:"):
            out[sc.RESPAN_OCR_DOCUMENT_URL] = url
    return out


def _ocr_output(response: Any) -> Attributes:
    out: Attributes = {}
    pages = attrs.field_of(response, "pages")
    if isinstance(pages, (list, tuple)):
        out[sc.RESPAN_OCR_PAGES] = len(pages)
    usage = attrs.field_of(response, "usage_info")
    for field, key in (
        ("pages_processed", sc.RESPAN_OCR_PAGES_PROCESSED),
        ("doc_size_bytes", sc.RESPAN_OCR_DOCUMENT_SIZE),
    ):
        value = attrs.field_of(usage, field)
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return out


def ocr_response_attributes(response: Any, capture_content: bool) -> Attributes:
    """Pages returned and processed, and the document's size; the recognised text stays out of the span."""
    out = attrs.guarded("response identity", attrs.response_identity, response)
    out.update(attrs.guarded("ocr output", _ocr_output, response))
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
    named_by=(sc.GEN_AI_AGENT_ID,),
)
_TURNS = ("start", "append", "restart")
CONVERSATIONS = Family(
    "conversations",
    "conversations",
    "Conversations",
    tuple(f"{turn}{form}" for turn in _TURNS for form in ("", "_async", "_stream", "_stream_async")),
    sc.OPERATION_INVOKE_AGENT,
    conversations.request_attributes,
    conversations.response_attributes,
    named_by=(sc.GEN_AI_AGENT_ID, sc.GEN_AI_REQUEST_MODEL),
    accumulator=conversations.ConversationStream,
)
RUNS = Family(
    "conversation runs",
    "conversations",
    "Conversations",
    ("run_async", "run_stream_async"),
    sc.OPERATION_INVOKE_AGENT,
    conversations.run_request_attributes,
    conversations.run_response_attributes,
    named_by=(sc.GEN_AI_AGENT_ID, sc.GEN_AI_REQUEST_MODEL),
    accumulator=conversations.RunStream,
    positional=("run_ctx", "inputs"),
    run=True,
)


def _classifier(label: str, verb: str, operation: str, output: Callable[[Any], Attributes]) -> Family:
    """A family of ``Classifiers``: ``verb`` on texts and ``verb_chat`` on conversations, sync and async."""
    methods = (verb, f"{verb}_async", f"{verb}_chat", f"{verb}_chat_async")
    request = functools.partial(classifier_request_attributes, operation=operation)
    return Family(label, "classifiers", "Classifiers", methods, operation, request, _judged(output))


MODERATION = _classifier("moderation", "moderate", sc.OPERATION_MODERATION, _moderation_output)
CLASSIFICATION = _classifier("classification", "classify", sc.OPERATION_CLASSIFICATION, _classification_output)
OCR = Family(
    "OCR", "ocr", "Ocr", ("process", "process_async"), sc.OPERATION_OCR, ocr_request_attributes, ocr_response_attributes
)
TRANSCRIPTIONS = Family(
    "transcriptions",
    "transcriptions",
    "Transcriptions",
    _COMPLETIONS,
    sc.OPERATION_TRANSCRIPTION,
    audio.request_attributes,
    audio.response_attributes,
    accumulator=audio.TranscriptionStream,
)
SPEECH = Family(
    "speech",
    "speech",
    "Speech",
    ("complete", "complete_async"),
    sc.OPERATION_SPEECH,
    audio.speech_request_attributes,
    audio.speech_response_attributes,
    accumulator=audio.SpeechStream,
    streams_on_request=True,
)
RESPONSES = Family(
    "responses",
    "responses",
    "Responses",
    ("create", "create_async"),
    sc.OPERATION_CHAT,
    responses.request_attributes,
    responses.response_attributes,
    accumulator=responses.ResponsesStream,
    streams_on_request=True,
)
FAMILIES = (
    CHAT,
    RESPONSES,
    FIM,
    EMBEDDINGS,
    AGENTS,
    CONVERSATIONS,
    RUNS,
    MODERATION,
    CLASSIFICATION,
    OCR,
    TRANSCRIPTIONS,
    SPEECH,
)
