"""Pure extraction for audio: transcription (``audio.transcriptions.complete``/``stream``) and speech
(``audio.speech.complete``); never the audio itself.

A transcription's span records the audio's size always, and its references (the file's name, its URL or uploaded
file id) only with content on, like a prompt; the transcript is the completion, content too. The API reports the
audio's length in seconds (``usage.prompt_audio_seconds``) and the language it heard. Streams send
``transcription.language``, ``transcription.segment``, ``transcription.text.delta`` and a final
``transcription.done`` that carries the model, the whole text and the usage.

Speech turns text (content, recorded as the user's message) into audio, returned base64-encoded in one answer or
as ``speech.audio.delta`` events ending with ``speech.audio.done`` and the usage; only the audio's size is kept.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping
from typing import Any

from respan_auto import semconv as sc
from respan_auto.instrumentation.mistralai import attributes as attrs
from respan_auto.instrumentation.mistralai.attributes import Attributes, Choice, field_of, plain_text, type_of


def _size(content: Any) -> int | None:
    """The audio's size in bytes, read without touching the object the SDK has yet to send: only bytes, an in-memory
    buffer, or a regular file on disk (never a pipe, a socket or a spooled file, whose ``fileno`` rolls it over)."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return len(content)
    if isinstance(content, io.BytesIO):
        with content.getbuffer() as view:
            return view.nbytes
    if isinstance(content, (io.FileIO, io.BufferedReader, io.BufferedRandom)):
        try:
            status = os.fstat(content.fileno())
        except (OSError, ValueError):
            return None
        return status.st_size if stat.S_ISREG(status.st_mode) else None
    return None


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
        kind = type_of(data)
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


def speech_request_attributes(kwargs: Mapping[str, Any], capture: bool, stream: bool, max_indexed: int) -> Attributes:
    streamed = kwargs.get("stream") is True
    out = attrs.common_request_attributes(kwargs, sc.OPERATION_SPEECH, sc.OPERATION_SPEECH, streamed)
    out[sc.GEN_AI_OUTPUT_TYPE] = sc.OUTPUT_TYPE_SPEECH
    for key, attribute in (("voice_id", sc.RESPAN_SPEECH_VOICE), ("response_format", sc.RESPAN_SPEECH_FORMAT)):
        value = kwargs.get(key)
        if value is not None and not attrs.is_missing(value):
            out[attribute] = plain_text(value)
    text = kwargs.get("input")
    if capture and isinstance(text, str) and text:
        messages = [{"role": "user", "content": text}]
        out.update(attrs.guarded("prompt extraction", attrs.prompt_attributes, messages, max_indexed))
    return out


def _decoded_size(audio_data: Any) -> int | None:
    """The size of base64-encoded audio once decoded, without decoding it."""
    if not isinstance(audio_data, str):
        return None
    stripped = audio_data.rstrip("=")
    return len(stripped) * 3 // 4


def speech_response_attributes(response: Any, capture: bool) -> Attributes:
    """Only the audio's size: nothing in the answer is content we keep."""
    size = _decoded_size(field_of(response, "audio_data"))
    return {sc.RESPAN_SPEECH_AUDIO_SIZE: size} if size is not None else {}


class SpeechStream(attrs.EventAccumulator):
    """Speech events: the audio's size, summed over its deltas, and the final usage."""

    __slots__ = ("size", "usage")

    def __init__(self, capture_content: bool, sizes: bool = False) -> None:
        super().__init__(capture_content, sizes)
        self.size = 0
        self.usage: Any = None

    def read(self, data: Any) -> int:
        kind = type_of(data)
        if kind == "speech.audio.delta":
            self.size += _decoded_size(field_of(data, "audio_data")) or 0
        elif kind == "speech.audio.done":
            self.usage = field_of(data, "usage")
        return 0

    def attributes(self) -> Attributes:
        out: Attributes = {sc.RESPAN_SPEECH_AUDIO_SIZE: self.size}
        out.update(attrs.guarded("stream usage", attrs.usage_attributes, self.usage))
        return out
