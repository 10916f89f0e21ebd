"""Pure extraction for audio transcription (``audio.transcriptions.complete``/``stream``): never the audio itself.

A transcription's span records the audio's size always, and its references (the file's name, its URL or uploaded
file id) only with content on, like a prompt; the transcript is the completion, content too. The API reports the
audio's length in seconds (``usage.prompt_audio_seconds``) and the language it heard. Streams send
``transcription.language``, ``transcription.segment``, ``transcription.text.delta`` and a final
``transcription.done`` that carries the model, the whole text and the usage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.attributes import Attributes, Choice, field_of, plain_text


def _size(content: Any) -> int | None:
    """The audio's size in bytes, read without touching a stream the SDK has yet to send."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return len(content)
    fileno = getattr(content, "fileno", None)
    if fileno is None:
        return None
    try:
        return os.fstat(fileno()).st_size
    except (OSError, ValueError, TypeError):  # not a real file (BytesIO raises UnsupportedOperation, an OSError)
        getbuffer = getattr(content, "getbuffer", None)
        return len(getbuffer()) if getbuffer is not None else None


def request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    out = attrs.common_request_attributes(kwargs, sc.OPERATION_TRANSCRIPTION, sc.OPERATION_TRANSCRIPTION, stream)
    language = kwargs.get("language")
    if isinstance(language, str) and language:
        out[sc.RESPAN_AUDIO_REQUEST_LANGUAGE] = language
    audio = kwargs.get("file")
    if audio is not None and not attrs.is_missing(audio):
        size = _size(field_of(audio, "content"))
        if size is not None:
            out[sc.RESPAN_AUDIO_SIZE] = size
        name = field_of(audio, "file_name")
        if capture and isinstance(name, str) and name:
            out[sc.RESPAN_AUDIO_FILE_NAME] = name
    for key, attribute in (("file_url", sc.RESPAN_AUDIO_FILE_URL), ("file_id", sc.RESPAN_AUDIO_FILE_ID)):
        value = kwargs.get(key)
        if capture and isinstance(value, str) and value and not value.startswith("data:"):
            out[attribute] = value
    return out


def _heard(model: Any, language: Any, usage: Any, segments: Any) -> Attributes:
    out: Attributes = {}
    if model:
        out[sc.GEN_AI_RESPONSE_MODEL] = plain_text(model)
    if isinstance(language, str) and language:
        out[sc.RESPAN_AUDIO_LANGUAGE] = language
    seconds = field_of(usage, "prompt_audio_seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        out[sc.RESPAN_AUDIO_DURATION] = seconds
    if isinstance(segments, int) and not isinstance(segments, bool):
        out[sc.RESPAN_AUDIO_SEGMENTS] = segments
    out.update(attrs.guarded("response usage", attrs.usage_attributes, usage))
    return out


def _transcript(text: Any, capture: bool) -> Attributes:
    choice = Choice()
    if isinstance(text, str):
        choice.text.append(text)
    return attrs.completion_attributes([choice], capture)


def _count(segments: Any) -> int | None:
    return len(segments) if isinstance(segments, (list, tuple)) else None


def response_attributes(response: Any, capture: bool) -> Attributes:
    """A ``TranscriptionResponse``: model, language heard, audio seconds, usage and the transcript (content)."""
    usage, segments = field_of(response, "usage"), field_of(response, "segments")
    out = attrs.guarded(
        "transcription", _heard, field_of(response, "model"), field_of(response, "language"), usage, _count(segments)
    )
    out.update(attrs.guarded("response output", _transcript, field_of(response, "text"), capture))
    return out


class TranscriptionStream(attrs.EventAccumulator):
    """Transcription events: the text's deltas, the segments, the language heard, and the final ``done``."""

    __slots__ = ("done", "language", "segments", "text")

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        super().__init__(capture_content, sizes)
        self.text: list[str] = []
        self.language: Any = None
        self.segments = 0
        self.done: Any = None

    def read(self, data: Any) -> int:
        kind = field_of(data, "type")
        kind = plain_text(kind) if kind is not None else None
        if kind == "transcription.text.delta":
            text = field_of(data, "text")
            if isinstance(text, str):
                self.text.append(text)
                return len(text)
        elif kind == "transcription.segment":
            self.segments += 1
        elif kind == "transcription.language":
            self.language = field_of(data, "audio_language")
        elif kind == "transcription.done":
            self.done = data
        return 0

    def attributes(self) -> Attributes:
        done = self.done
        language = field_of(done, "language") or self.language
        segments = _count(field_of(done, "segments")) or self.segments or None
        out = attrs.guarded(
            "transcription", _heard, field_of(done, "model"), language, field_of(done, "usage"), segments
        )
        text = field_of(done, "text")
        out.update(
            attrs.guarded("stream output", _transcript, text if text else "".join(self.text), self.capture_content)
        )
        return out
