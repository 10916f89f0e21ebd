"""Attribute and metric keys, spelled once.

Semantic-convention keys come from the installed ``opentelemetry-semantic-conventions`` package; the spelling
after each name is only for releases that predate that key (the package is as old as our OpenTelemetry floor).
The ``gen_ai.prompt.*``, ``gen_ai.completion.*`` and ``llm.*`` keys are the Traceloop family that Respan's ingest
reads beside the conventions, and ``respan.*`` are our own; ``OWN_KEYS`` and ``OWN_PREFIXES`` list them, so a test
can check that every key we emit is either conventional or one of these.
"""

from __future__ import annotations

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes, http_attributes, server_attributes


def _conventional(module: object, name: str, spelling: str) -> str:
    return str(getattr(module, name, spelling))


# GenAI semantic conventions
GEN_AI_OPERATION_NAME = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_SYSTEM = _gen_ai.GEN_AI_SYSTEM
GEN_AI_REQUEST_MODEL = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_REQUEST_TEMPERATURE = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_REQUEST_MAX_TOKENS = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TOP_P = _gen_ai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_SEED = _gen_ai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_STOP_SEQUENCES = _gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_REQUEST_FREQUENCY_PENALTY = _gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY
GEN_AI_REQUEST_PRESENCE_PENALTY = _gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY
GEN_AI_REQUEST_CHOICE_COUNT = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_REQUEST_STREAM = _conventional(_gen_ai, "GEN_AI_REQUEST_STREAM", "gen_ai.request.stream")
GEN_AI_RESPONSE_ID = _gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_MODEL = _gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_FINISH_REASONS = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = _conventional(
    _gen_ai, "GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK", "gen_ai.response.time_to_first_chunk"
)
GEN_AI_USAGE_INPUT_TOKENS = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_INPUT_MESSAGES = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES = _gen_ai.GEN_AI_OUTPUT_MESSAGES
GEN_AI_SYSTEM_INSTRUCTIONS = _gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
GEN_AI_TOOL_DEFINITIONS = _conventional(_gen_ai, "GEN_AI_TOOL_DEFINITIONS", "gen_ai.tool.definitions")
GEN_AI_TOKEN_TYPE = _gen_ai.GEN_AI_TOKEN_TYPE
SERVER_ADDRESS = server_attributes.SERVER_ADDRESS
SERVER_PORT = server_attributes.SERVER_PORT
ERROR_TYPE = error_attributes.ERROR_TYPE
HTTP_RESPONSE_STATUS_CODE = http_attributes.HTTP_RESPONSE_STATUS_CODE

GEN_AI_REQUEST_ENCODING_FORMATS = _conventional(
    _gen_ai, "GEN_AI_REQUEST_ENCODING_FORMATS", "gen_ai.request.encoding_formats"
)
GEN_AI_EMBEDDINGS_DIMENSION_COUNT = _conventional(
    _gen_ai, "GEN_AI_EMBEDDINGS_DIMENSION_COUNT", "gen_ai.embeddings.dimension.count"
)

GEN_AI_AGENT_ID = _conventional(_gen_ai, "GEN_AI_AGENT_ID", "gen_ai.agent.id")
GEN_AI_CONVERSATION_ID = _conventional(_gen_ai, "GEN_AI_CONVERSATION_ID", "gen_ai.conversation.id")
GEN_AI_OUTPUT_TYPE = _conventional(_gen_ai, "GEN_AI_OUTPUT_TYPE", "gen_ai.output.type")
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = _conventional(
    _gen_ai, "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS", "gen_ai.usage.cache_read.input_tokens"
)
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = _conventional(
    _gen_ai, "GEN_AI_USAGE_REASONING_OUTPUT_TOKENS", "gen_ai.usage.reasoning.output_tokens"
)
GEN_AI_TOOL_NAME = _conventional(_gen_ai, "GEN_AI_TOOL_NAME", "gen_ai.tool.name")
GEN_AI_TOOL_TYPE = _conventional(_gen_ai, "GEN_AI_TOOL_TYPE", "gen_ai.tool.type")
GEN_AI_TOOL_CALL_ID = _conventional(_gen_ai, "GEN_AI_TOOL_CALL_ID", "gen_ai.tool.call.id")
GEN_AI_TOOL_CALL_ARGUMENTS = _conventional(_gen_ai, "GEN_AI_TOOL_CALL_ARGUMENTS", "gen_ai.tool.call.arguments")
GEN_AI_TOOL_CALL_RESULT = _conventional(_gen_ai, "GEN_AI_TOOL_CALL_RESULT", "gen_ai.tool.call.result")


def _operation(name: str, spelling: str) -> str:
    member = getattr(_gen_ai.GenAiOperationNameValues, name, None)
    return str(member.value) if member is not None else spelling


# gen_ai.operation.name values and the provider name, as the conventions spell them
OPERATION_CHAT = _operation("CHAT", "chat")
OPERATION_TEXT_COMPLETION = _operation("TEXT_COMPLETION", "text_completion")
OPERATION_EMBEDDINGS = _operation("EMBEDDINGS", "embeddings")
OPERATION_INVOKE_AGENT = _operation("INVOKE_AGENT", "invoke_agent")
OPERATION_EXECUTE_TOOL = _operation("EXECUTE_TOOL", "execute_tool")
# the conventions have no operation for these: our own values, in the same style
OPERATION_MODERATION = "moderation"
OPERATION_CLASSIFICATION = "classification"
OPERATION_OCR = "ocr"
OPERATION_TRANSCRIPTION = "transcription"
OPERATION_SPEECH = "speech"
OUTPUT_TYPE_SPEECH = "speech"
PROVIDER_MISTRAL = "mistral_ai"

# GenAI client metrics
METRIC_OPERATION_DURATION = _gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
METRIC_TOKEN_USAGE = _gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
METRIC_TIME_TO_FIRST_CHUNK = _conventional(
    _gen_ai_metrics, "GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK", "gen_ai.client.operation.time_to_first_chunk"
)
METRIC_TIME_PER_OUTPUT_CHUNK = _conventional(
    _gen_ai_metrics, "GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK", "gen_ai.client.operation.time_per_output_chunk"
)

# Keys Respan's ingest reads (Traceloop family); the usage pair below is also in the conventions, deprecated
GEN_AI_USAGE_PROMPT_TOKENS = _gen_ai.GEN_AI_USAGE_PROMPT_TOKENS
GEN_AI_USAGE_COMPLETION_TOKENS = _gen_ai.GEN_AI_USAGE_COMPLETION_TOKENS
LLM_USAGE_TOTAL_TOKENS = "llm.usage.total_tokens"
LLM_REQUEST_TYPE = "llm.request.type"  # chat, completion or embedding (Traceloop's values)
LLM_REQUEST_FUNCTIONS = "llm.request.functions"
GEN_AI_PROMPT_PREFIX = "gen_ai.prompt"  # gen_ai.prompt.{N}.role / .content / .tool_calls / .tool_call_id
GEN_AI_COMPLETION_PREFIX = "gen_ai.completion"  # gen_ai.completion.{N}.role / .content / .tool_calls / .finish_reason

# respan-auto's own
RESPAN_PROMPT_OMITTED = "respan.prompt.omitted_messages"  # messages left out of the indexed prompt keys
RESPAN_STREAM_CHUNK_COUNT = "respan.stream.chunk_count"
RESPAN_STREAM_COMPLETED = "respan.stream.completed"
RESPAN_STREAM_GAP_MEAN = "respan.stream.chunk_gap.mean"  # seconds between chunks, after the first
RESPAN_STREAM_GAP_MAX = "respan.stream.chunk_gap.max"
RESPAN_STREAM_CHUNK_EVENT = "respan.stream.chunk"  # opt-in events: index and size only, never text
RESPAN_GATEWAY_LOG_ID = "respan.gateway.log_id"
RESPAN_FIM_SUFFIX = "respan.fim.suffix"  # the code after the gap a FIM call fills (content)
RESPAN_EMBEDDINGS_COUNT = "respan.embeddings.count"  # how many vectors came back (never the vectors)
RESPAN_MODERATION_FLAGGED = "respan.moderation.flagged"  # whether any input was flagged in any category
RESPAN_MODERATION_CATEGORIES = "respan.moderation.flagged_categories"  # the categories flagged, for any input
RESPAN_MODERATION_SCORES = "respan.moderation.category_scores"  # JSON: one {category: score} per input
RESPAN_CLASSIFICATION_RESULTS = "respan.classification.results"  # JSON: one {target: {label: score}} per input
RESPAN_OCR_DOCUMENT_TYPE = "respan.ocr.document.type"  # document_url, image_url or file (never the bytes)
RESPAN_OCR_DOCUMENT_URL = "respan.ocr.document.url"  # content; never a data: URL
RESPAN_OCR_PAGES = "respan.ocr.pages"  # pages returned
RESPAN_OCR_PAGES_PROCESSED = "respan.ocr.pages_processed"
RESPAN_OCR_DOCUMENT_SIZE = "respan.ocr.document.size_bytes"
RESPAN_REQUEST_REASONING_EFFORT = "respan.request.reasoning_effort"  # as passed (the conventions have no key yet)
RESPAN_REQUEST_PREDICTION = "respan.request.prediction"  # the predicted output passed (content)
RESPAN_AUDIO_SIZE = "respan.audio.size_bytes"  # the audio sent (never its bytes)
RESPAN_AUDIO_FILE_NAME = "respan.audio.file_name"  # content, like the other references below
RESPAN_AUDIO_FILE_URL = "respan.audio.file_url"  # never a data: URL
RESPAN_AUDIO_FILE_ID = "respan.audio.file_id"  # an uploaded file's id
RESPAN_AUDIO_REQUEST_LANGUAGE = "respan.audio.request.language"  # the language the caller said the audio is in
RESPAN_AUDIO_LANGUAGE = "respan.audio.language"  # the language the model heard
RESPAN_AUDIO_DURATION = "respan.audio.duration_seconds"  # as billed (usage.prompt_audio_seconds)
RESPAN_AUDIO_SEGMENTS = "respan.audio.segments"  # timestamped segments returned
RESPAN_SPEECH_VOICE = "respan.speech.voice"  # the voice id asked for
RESPAN_SPEECH_FORMAT = "respan.speech.format"  # mp3, wav, ...
RESPAN_SPEECH_AUDIO_SIZE = "respan.speech.audio_size_bytes"  # the audio returned (never its bytes)
# inside another instrumentation's span for the same model call, which reports the usage: ours is then only here
RESPAN_USAGE_COUNTED_ABOVE = "respan.usage.counted_above"
RESPAN_USAGE_PREFIX = "respan.usage."  # + input_tokens, output_tokens, total_tokens, ...
USAGE_PREFIXES = ("gen_ai.usage.", "llm.usage.")
TRACELOOP_SPAN_KIND = "traceloop.span.kind"  # workflow, task, agent or tool: how Respan types a non-LLM span

OWN_KEYS = frozenset(
    {
        LLM_USAGE_TOTAL_TOKENS,
        LLM_REQUEST_TYPE,
        LLM_REQUEST_FUNCTIONS,
        RESPAN_PROMPT_OMITTED,
        RESPAN_STREAM_CHUNK_COUNT,
        RESPAN_STREAM_COMPLETED,
        RESPAN_STREAM_GAP_MEAN,
        RESPAN_STREAM_GAP_MAX,
        RESPAN_GATEWAY_LOG_ID,
        RESPAN_FIM_SUFFIX,
        RESPAN_EMBEDDINGS_COUNT,
        RESPAN_MODERATION_FLAGGED,
        RESPAN_MODERATION_CATEGORIES,
        RESPAN_MODERATION_SCORES,
        RESPAN_CLASSIFICATION_RESULTS,
        RESPAN_OCR_DOCUMENT_TYPE,
        RESPAN_OCR_DOCUMENT_URL,
        RESPAN_OCR_PAGES,
        RESPAN_OCR_PAGES_PROCESSED,
        RESPAN_OCR_DOCUMENT_SIZE,
        RESPAN_REQUEST_REASONING_EFFORT,
        RESPAN_REQUEST_PREDICTION,
        RESPAN_AUDIO_SIZE,
        RESPAN_AUDIO_FILE_NAME,
        RESPAN_AUDIO_FILE_URL,
        RESPAN_AUDIO_FILE_ID,
        RESPAN_AUDIO_REQUEST_LANGUAGE,
        RESPAN_AUDIO_LANGUAGE,
        RESPAN_AUDIO_DURATION,
        RESPAN_AUDIO_SEGMENTS,
        RESPAN_SPEECH_VOICE,
        RESPAN_SPEECH_FORMAT,
        RESPAN_SPEECH_AUDIO_SIZE,
        RESPAN_USAGE_COUNTED_ABOVE,
    }
)
OWN_PREFIXES = (f"{GEN_AI_PROMPT_PREFIX}.", f"{GEN_AI_COMPLETION_PREFIX}.", "respan.", "traceloop.")
