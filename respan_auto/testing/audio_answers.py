"""The stand-in's audio answers: ``POST /v1/audio/transcriptions`` (a form in, JSON or SSE events out) and
``POST /v1/audio/speech`` (JSON in; base64 audio, or SSE audio deltas, out).

The transcript is made from the uploaded file's name (or the ``file_url``), so a test can tell calls apart;
``#500`` in it fails the call.
"""

from __future__ import annotations

import base64
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

TRANSCRIPTION_MODEL = "voxtral-mini-2507"
AUDIO_SECONDS = 7
LANGUAGE = "en"


def form_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """A form body as {field: text}, files as {"file_name": ..., "size": ...}."""
    if not content_type.startswith("multipart/"):
        return dict(parse_qsl(raw.decode("utf-8", "replace")))
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            fields[str(name)] = {"file_name": filename, "size": len(payload)}
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields


def heard(form: dict[str, Any]) -> str:
    audio = form.get("file")
    return str(audio["file_name"]) if isinstance(audio, dict) else str(form.get("file_url") or form.get("file_id"))


def transcript(form: dict[str, Any]) -> str:
    return f"Offline stand-in transcript of {heard(form)}"


def _usage(text: str) -> dict[str, int]:
    words = len(text.split())
    return {
        "prompt_tokens": 0,
        "completion_tokens": words,
        "total_tokens": words,
        "prompt_audio_seconds": AUDIO_SECONDS,
    }


def transcription_body(form: dict[str, Any]) -> dict[str, Any]:
    text = transcript(form)
    return {
        "model": TRANSCRIPTION_MODEL,
        "text": text,
        "language": form.get("language") or LANGUAGE,
        "segments": [{"type": "transcription_segment", "text": text, "start": 0.0, "end": float(AUDIO_SECONDS)}],
        "usage": _usage(text),
    }


def transcription_frames(form: dict[str, Any]) -> list[bytes]:
    text = transcript(form)
    words = text.split(" ")
    events: list[tuple[str, dict[str, Any]]] = [("transcription.language", {"audio_language": LANGUAGE})]
    events += [
        ("transcription.text.delta", {"text": word + (" " if i < len(words) - 1 else "")})
        for i, word in enumerate(words)
    ]
    events.append(("transcription.segment", {"text": text, "start": 0.0, "end": float(AUDIO_SECONDS)}))
    events.append(
        (
            "transcription.done",
            {"model": TRANSCRIPTION_MODEL, "text": text, "language": LANGUAGE, "usage": _usage(text)},
        )
    )
    return [f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode() for kind, data in events]


SPEECH_AUDIO = b"ID3" + bytes(range(200))  # what every speech answer "says", split over three deltas when streamed


def speech_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"audio_data": base64.b64encode(SPEECH_AUDIO).decode()}


def speech_frames(body: dict[str, Any]) -> list[bytes]:
    third = len(SPEECH_AUDIO) // 3
    pieces = [SPEECH_AUDIO[:third], SPEECH_AUDIO[third : 2 * third], SPEECH_AUDIO[2 * third :]]
    events: list[tuple[str, dict[str, Any]]] = [
        ("speech.audio.delta", {"audio_data": base64.b64encode(piece).decode()}) for piece in pieces
    ]
    words = len(str(body.get("input", "")).split())
    events.append(
        ("speech.audio.done", {"usage": {"prompt_tokens": words, "completion_tokens": 0, "total_tokens": words}})
    )
    return [f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode() for kind, data in events]
