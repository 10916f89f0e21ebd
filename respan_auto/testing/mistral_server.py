"""A loopback stand-in for the Mistral API (chat, agents, FIM, embeddings, classifiers, OCR, conversations, audio and
the Responses API (see ``conversation_answers``, ``audio_answers`` and ``responses_answers``), and the cloud clients'
chat): JSON and chunked SSE, as the API speaks.

Used by the offline examples, the tests and the benchmark. It binds to 127.0.0.1 only.

The reply is driven by markers in the last user message (a FIM call's prompt; any of the texts to embed), so
that an unmodified app can be pointed at it:

==================  ======================================================================
marker              effect
==================  ======================================================================
(none)              a short echo of the prompt
``#tools``          the assistant calls ``get_weather`` instead of answering
``#split-args``     (stream) the tool-call arguments arrive split over several chunks
``#usage-chunk``    (stream) usage arrives in a trailing chunk with ``choices: []``
``#chunks=N``       (stream) the text is sent as N chunks
``#slow``           (stream) 50 ms between chunks
``#malformed``      (stream) an undecodable event after the first chunk
``#flag``           (moderation) the input is flagged for ``violence_and_threats``
``#500``, ``#401``  that HTTP error, with Mistral's error body
==================  ======================================================================
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from respan_auto.testing import audio_answers as audio
from respan_auto.testing import conversation_answers as conversations
from respan_auto.testing import responses_answers as responses

RESPONSE_MODEL = "mistral-small-2506"
_CHUNKS = re.compile(r"#chunks=(\d+)")


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


_JSON_SAMPLES = {"string": "stand-in", "integer": 1, "number": 1.5, "boolean": True, "array": [], "object": {}}


def _json_reply(response_format: Any) -> str | None:
    """For a ``json_schema`` response format (what ``chat.parse`` sends): an object with each property filled."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or {}
    properties = schema.get("properties") or {}
    return json.dumps({name: _JSON_SAMPLES.get(spec.get("type"), None) for name, spec in properties.items()})


def reply_text(body: dict[str, Any]) -> str:
    structured = _json_reply(body.get("response_format"))
    if structured is not None:
        return structured
    prompt = _last_user_text(body)
    words = prompt.split()
    preview = " ".join(words[:12]) + (" ..." if len(words) > 12 else "")
    return f"Offline stand-in reply to: {preview}"


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt_tokens = sum(
        len(str(m.get("content", "")).split()) for m in body.get("messages") or [] if isinstance(m, dict)
    )
    completion_tokens = len(text.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


TOOL_ARGUMENTS = '{"city": "Paris", "unit": "celsius"}'


def _tool_call(index: int = 0, arguments: str = TOOL_ARGUMENTS, with_name: bool = True) -> dict[str, Any]:
    """A tool call; continuation fragments carry no id and an empty name, as the API sends them."""
    call: dict[str, Any] = {"index": index, "function": {"name": "", "arguments": arguments}}
    if with_name:
        call["id"] = "call_weather_1"
        call["type"] = "function"
        call["function"]["name"] = "get_weather"
    return call


EMBEDDING_DIMENSION = 8  # unless the request asks for another output_dimension


def _as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A FIM request as the chat request it is answered like: its prompt is the user's message."""
    return {**body, "messages": [{"role": "user", "content": str(body.get("prompt") or "")}]}


def _embedding_texts(body: dict[str, Any]) -> list[str]:
    inputs = body.get("input", body.get("inputs"))  # the SDK's ``inputs`` travel as ``input``
    return [inputs] if isinstance(inputs, str) else [str(t) for t in inputs or []]


def embeddings_body(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to an embeddings request: one small deterministic vector per text."""
    texts = _embedding_texts(body)
    dimension = body.get("output_dimension") or EMBEDDING_DIMENSION
    tokens = sum(len(text.split()) for text in texts)
    return {
        "id": "embd-standin-0001",
        "object": "list",
        "model": body.get("model") or "mistral-embed",
        "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        "data": [
            {"object": "embedding", "index": i, "embedding": [((i + 1) * (k + 1) % 7) / 7 for k in range(dimension)]}
            for i in range(len(texts))
        ],
    }


def _judged_texts(body: dict[str, Any]) -> list[str]:
    """What a classifier judges: each text, or each conversation's text (messages, lists of them, or requests)."""
    inputs = body.get("input", body.get("inputs"))
    if isinstance(inputs, str):
        return [inputs]
    items = list(inputs or []) if isinstance(inputs, list) else [inputs]
    if items and isinstance(items[0], dict) and "role" in items[0]:
        items = [items]
    items = [i.get("messages", []) if isinstance(i, dict) else i for i in items]
    return [" ".join(str(m.get("content", "")) for m in i) if isinstance(i, list) else str(i) for i in items]


def moderation_body(body: dict[str, Any]) -> dict[str, Any]:
    """One result per input; ``#flag`` in it flags ``violence_and_threats``."""
    results = []
    for text in _judged_texts(body):
        flagged = "#flag" in text
        results.append(
            {
                "categories": {"violence_and_threats": flagged, "hate_and_discrimination": False},
                "category_scores": {"violence_and_threats": 0.91 if flagged else 0.02, "hate_and_discrimination": 0.01},
            }
        )
    return {"id": "mod-standin-0001", "model": body.get("model") or "mistral-moderation-latest", "results": results}


def classification_body(body: dict[str, Any]) -> dict[str, Any]:
    results = [{"intent": {"scores": {"support": 0.75, "sales": 0.25}}} for _ in _judged_texts(body)]
    return {"id": "cls-standin-0001", "model": body.get("model") or "classifier", "results": results}


def ocr_body(body: dict[str, Any]) -> dict[str, Any]:
    """Two pages of markdown, whatever the document."""
    pages = [
        {
            "index": i,
            "markdown": f"# Page {i + 1}",
            "images": [],
            "dimensions": {"dpi": 200, "height": 2200, "width": 1700},
        }
        for i in range(2)
    ]
    return {
        "pages": pages,
        "model": body.get("model") or "mistral-ocr-latest",
        "usage_info": {"pages_processed": 2, "doc_size_bytes": 48213},
    }


def completion_body(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON answer to a non-streamed chat request."""
    prompt = _last_user_text(body)
    n = body.get("n") or 1
    message: dict[str, Any]
    if "#tools" in prompt:
        message = {"role": "assistant", "content": "", "tool_calls": [_tool_call()]}
        finish = "tool_calls"
        text = ""
    else:
        text = reply_text(body)
        message = {"role": "assistant", "content": text, "tool_calls": None}
        finish = "stop"
    return {
        "id": "cmpl-standin-0001",
        "object": "chat.completion",
        "model": RESPONSE_MODEL,
        "created": 1764201600,
        "usage": _usage(body, text),
        "choices": [{"index": i, "message": message, "finish_reason": finish} for i in range(n)],
    }


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "cmpl-standin-0002",
        "object": "chat.completion.chunk",
        "model": RESPONSE_MODEL,
        "created": 1764201600,
        "choices": choices,
    }
    if usage is not None:
        data["usage"] = usage
    return data


def stream_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunk objects of a streamed answer, before SSE framing."""
    prompt = _last_user_text(body)
    if "#tools" in prompt or "#split-args" in prompt:
        usage = _usage(body, "")
        if "#split-args" in prompt:
            pieces = [TOOL_ARGUMENTS[:9], TOOL_ARGUMENTS[9:21], TOOL_ARGUMENTS[21:]]
            calls = [[_tool_call(arguments=pieces[0])]] + [
                [_tool_call(arguments=p, with_name=False)] for p in pieces[1:]
            ]
        else:
            calls = [[_tool_call()]]
        chunks = [_chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        chunks += [_chunk([{"index": 0, "delta": {"tool_calls": c}, "finish_reason": None}]) for c in calls]
        chunks.append(_chunk([{"index": 0, "delta": {"content": ""}, "finish_reason": "tool_calls"}], usage))
        return chunks
    text = reply_text(body)
    match = _CHUNKS.search(prompt)
    count = int(match.group(1)) if match else max(1, len(text.split()))
    words = text.split(" ")
    pieces = [" ".join(words[i * len(words) // count : (i + 1) * len(words) // count]) for i in range(count)]
    pieces = [p + (" " if i < count - 1 and p else "") for i, p in enumerate(pieces)]
    usage = _usage(body, text)
    trailing = "#usage-chunk" in prompt
    chunks = []
    for i, piece in enumerate(pieces):
        delta: dict[str, Any] = {"content": piece}
        if i == 0:
            delta["role"] = "assistant"
        last = i == count - 1
        chunks.append(
            _chunk(
                [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
                usage if last and not trailing else None,
            )
        )
    if trailing:
        chunks.append(_chunk([], usage))
    return chunks


def sse_events(body: dict[str, Any]) -> Iterator[bytes]:
    """The SSE byte frames of a streamed answer, ending with ``data: [DONE]``."""
    prompt = _last_user_text(body)
    for i, chunk in enumerate(stream_chunks(body)):
        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
        if i == 0 and "#malformed" in prompt:
            yield b"data: {not json\n\n"
    yield b"data: [DONE]\n\n"


def error_for(body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    prompt = _last_user_text(body)
    if "#500" in prompt:
        return 500, {"object": "error", "message": "Internal server error", "type": "internal_error", "code": "500"}
    if "#401" in prompt:
        return 401, {"object": "error", "message": "Unauthorized", "type": "invalid_api_key", "code": "1000"}
    return None


# Plain JSON answers, by path after /v1: the texts whose markers decide, and the body of the answer.
_JSON_ANSWERS: dict[str, tuple[Callable[[dict[str, Any]], list[str]], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "/embeddings": (_embedding_texts, embeddings_body),
    "/moderations": (_judged_texts, moderation_body),
    "/chat/moderations": (_judged_texts, moderation_body),
    "/classifications": (_judged_texts, classification_body),
    "/chat/classifications": (_judged_texts, classification_body),
    "/ocr": (lambda body: [], ocr_body),
}

# chat: Mistral's /v1/chat/completions, and the Azure client's /chat/completions (1.x) or /models/chat/completions;
# the Google Cloud client posts chat and FIM alike to .../models/{model}:rawPredict (or :streamRawPredict)
_ROUTES = (
    "/chat/completions",
    "/v1/agents/completions",
    "/v1/fim/completions",
    *(f"/v1{path}" for path in _JSON_ANSWERS),
    "/v1/audio/speech",
    "/v1/responses",
    ":rawPredict",
    ":streamRawPredict",
)

# the Conversations API: start (/v1/conversations), append (/v1/conversations/{id}) and restart (.../restart)
_CONVERSATION = re.compile(r"/v1/conversations(?:/([^/]+?)(?:/restart)?)?$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it each answer waits ~40 ms
    server: MistralServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-stream: that is what abandoned streams do

    def _read_json(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        content_type = self.headers.get("content-type") or ""
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            self._answer_form(content_type)
            return
        body = self._read_json()
        self.server.record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        path = self.path.partition("?")[0].rstrip("/")
        if not isinstance(body, dict) or not (path.endswith(_ROUTES) or _CONVERSATION.search(path)):
            self._send_json(404, {"object": "error", "message": "not found", "type": "not_found", "code": "404"})
            return
        streamed = bool(body.get("stream"))
        if path.endswith("/v1/responses"):
            self._answer(
                responses.latest_input(body), streamed, responses.response_body, responses.response_frames, body
            )
            return
        if path.endswith("/v1/audio/speech"):
            self._answer(str(body.get("input", "")), streamed, audio.speech_body, audio.speech_frames, body)
            return
        conversation = _CONVERSATION.search(path)
        if conversation is not None:
            turn = conversation.group(1)
            self._answer(
                conversations.latest_input(body),
                streamed,
                lambda b: conversations.conversation_body(b, turn),
                lambda b: conversations.conversation_frames(b, turn),
                body,
            )
            return
        answer = _JSON_ANSWERS.get(path.rsplit("/v1", 1)[-1])
        if answer is not None:
            texts, answer_body = answer
            error = error_for({"messages": [{"role": "user", "content": " ".join(texts(body))}]})
            self._send_json(*(error or (200, answer_body(body))))
            return
        if path.endswith("/v1/fim/completions") or (path.endswith("Predict") and "prompt" in body):
            body = _as_chat(body)
        error = error_for(body)
        if error is not None:
            self._send_json(*error)
            return
        if not body.get("stream"):
            self._send_json(200, completion_body(body), self.server.extra_headers)
            return
        self._send_events(sse_events(body), slow="#slow" in _last_user_text(body))

    def _answer_form(self, content_type: str) -> None:
        """Audio transcription, the one form endpoint (multipart with a file, URL-encoded with only a file_url)."""
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        form = audio.form_fields(content_type, raw)
        self.server.record(RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, form))
        if not self.path.partition("?")[0].rstrip("/").endswith("/v1/audio/transcriptions"):
            self._send_json(404, {"object": "error", "message": "not found", "type": "not_found", "code": "404"})
            return
        streamed = form.get("stream") == "true"
        self._answer(audio.heard(form), streamed, audio.transcription_body, audio.transcription_frames, form)

    def _answer(
        self,
        decisive: str,
        streamed: bool,
        answer_body: Callable[[dict[str, Any]], dict[str, Any]],
        frames: Callable[[dict[str, Any]], Iterable[bytes]],
        request: dict[str, Any],
    ) -> None:
        """The families beside chat: an error when ``decisive`` (the text whose markers decide) asks for one, else
        the answer as JSON or, when streamed, as SSE frames."""
        error = error_for({"messages": [{"role": "user", "content": decisive}]})
        if error is not None:
            self._send_json(*error)
        elif streamed:
            self._send_events(frames(request))
        else:
            self._send_json(200, answer_body(request))

    def _send_events(self, frames: Iterable[bytes], slow: bool = False) -> None:
        """SSE frames, chunked as the API sends them."""
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        for key, value in self.server.extra_headers.items():
            self.send_header(key, value)
        self.end_headers()
        try:
            for frame in frames:
                if slow:
                    time.sleep(0.05)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class MistralServer(ThreadingHTTPServer):
    """Call ``start()``; ``url`` is the ``server_url`` to give the SDK."""

    daemon_threads = True
    request_queue_size = 256  # tests open many connections at once

    def __init__(self, extra_headers: dict[str, str] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.extra_headers = dict(extra_headers or {})
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> MistralServer:
        self._thread = threading.Thread(target=self.serve_forever, name="mistral-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self) -> MistralServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


if __name__ == "__main__":
    with MistralServer() as server:
        print(f"Mistral stand-in listening on {server.url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
