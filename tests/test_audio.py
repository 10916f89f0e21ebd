"""Audio transcription (``audio.transcriptions``), plain and streamed, sync and async, on the real SDK against the
loopback stand-in: the audio's size and language, never its bytes."""

from __future__ import annotations

import asyncio
import base64
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind, StatusCode

from respan_auto.instrumentation.mistralai import audio
from respan_auto.testing.audio_answers import AUDIO_SECONDS, SPEECH_AUDIO, TRANSCRIPTION_MODEL
from respan_auto.testing.mistral_server import MistralServer

MODEL = "voxtral-mini-latest"
AUDIO = b"RIFF" + bytes(range(256)) * 8  # never to be found on a span


@pytest.fixture(scope="module")
def server() -> Iterator[MistralServer]:
    with MistralServer() as srv:
        yield srv


def transcribe(new_client: Any, method: str, is_async: bool = False, **kwargs: Any) -> Any:
    """``client.audio.transcriptions.<method>``, or its ``_async`` twin; a stream is read to its end."""
    owner = new_client().audio.transcriptions
    if not is_async:
        result = getattr(owner, method)(**kwargs)
        return list(result) if method == "stream" else result

    async def go() -> Any:
        result = await getattr(owner, method + "_async")(**kwargs)
        return [event async for event in result] if method == "stream" else result

    return asyncio.run(go())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_transcription_records_size_language_and_seconds_never_the_audio(new_client, spans, is_async):
    file = {"file_name": "meeting.wav", "content": AUDIO}
    response = transcribe(new_client, "complete", is_async, model=MODEL, file=file, language="en", temperature=0.0)
    span = spans.one()
    a = span.attributes
    assert span.name == f"transcription {MODEL}" and span.kind is SpanKind.CLIENT
    assert a["gen_ai.operation.name"] == "transcription" and a["gen_ai.request.temperature"] == 0.0
    assert a["respan.audio.size_bytes"] == len(AUDIO) and a["respan.audio.file_name"] == "meeting.wav"
    assert a["respan.audio.request.language"] == "en" and a["respan.audio.language"] == response.language
    assert a["respan.audio.duration_seconds"] == AUDIO_SECONDS == response.usage.prompt_audio_seconds
    assert a["respan.audio.segments"] == len(response.segments)
    assert a["gen_ai.response.model"] == response.model == TRANSCRIPTION_MODEL
    assert a["gen_ai.usage.output_tokens"] == response.usage.completion_tokens
    assert a["gen_ai.completion.0.content"] == response.text
    assert not any("RIFF" in str(v) for v in a.values())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_streamed_transcription_from_a_file_on_disk(new_client, spans, is_async, tmp_path: Path):
    path = tmp_path / "call.wav"
    path.write_bytes(AUDIO)
    with path.open("rb") as handle:
        events = transcribe(
            new_client, "stream", is_async, model=MODEL, file={"file_name": "call.wav", "content": handle}
        )
    span = spans.one()
    a = span.attributes
    assert a["gen_ai.request.stream"] is True and a["respan.stream.chunk_count"] == len(events)
    assert a["respan.audio.size_bytes"] == len(AUDIO)
    done = events[-1].data
    assert (
        a["gen_ai.completion.0.content"]
        == done.text
        == "".join(e.data.text for e in events if e.event == "transcription.text.delta")
    )
    assert a["respan.audio.language"] == "en" and a["respan.audio.duration_seconds"] == AUDIO_SECONDS
    assert a["gen_ai.usage.output_tokens"] == done.usage.completion_tokens


def test_content_off_keeps_the_size_and_drops_the_references_and_transcript(new_client, spans, instrument):
    instrument(capture_content=False)
    transcribe(new_client, "complete", model=MODEL, file={"file_name": "secret-board-meeting.wav", "content": AUDIO})
    transcribe(new_client, "complete", model=MODEL, file_url="https://files.example/secret-board-meeting.wav")
    for span in spans.finished():
        a = span.attributes
        assert not any("secret" in str(v) for v in a.values()), dict(a)
        assert not any(k.startswith("gen_ai.completion.") for k in a)
        assert a["respan.audio.duration_seconds"] == AUDIO_SECONDS
    assert spans.finished()[0].attributes["respan.audio.size_bytes"] == len(AUDIO)


def test_an_error_is_recorded_and_reraised_unchanged(new_client, uninstrumented, spans):
    kwargs = {"model": MODEL, "file": {"file_name": "x #500.wav", "content": AUDIO}}
    with pytest.raises(Exception) as traced:
        transcribe(new_client, "complete", **kwargs)
    with uninstrumented(), pytest.raises(Exception) as bare:
        transcribe(new_client, "complete", **kwargs)
    assert type(traced.value) is type(bare.value) and str(traced.value) == str(bare.value)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["http.response.status_code"] == 500


def test_the_sdk_behaves_as_without_us(new_client, uninstrumented, spans):
    kwargs = {"model": MODEL, "file": {"file_name": "same.wav", "content": AUDIO}}
    owner = type(new_client().audio.transcriptions)
    methods = ("complete", "complete_async", "stream", "stream_async")
    shapes = [(inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m))) for m in methods]
    traced = [transcribe(new_client, "complete", **kwargs), transcribe(new_client, "stream", **kwargs)]
    with uninstrumented():
        bare = [transcribe(new_client, "complete", **kwargs), transcribe(new_client, "stream", **kwargs)]
        bare_shapes = [
            (inspect.signature(getattr(owner, m)), inspect.iscoroutinefunction(getattr(owner, m))) for m in methods
        ]
    assert shapes == bare_shapes
    assert type(traced[0]) is type(bare[0]) and traced[0].model_dump() == bare[0].model_dump()
    assert [e.model_dump() for e in traced[1]] == [e.model_dump() for e in bare[1]]


ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
KEYS = st.sampled_from(["model", "file", "file_url", "file_id", "language", "temperature"])


@given(st.dictionaries(KEYS, ANY, max_size=6), st.booleans())
def test_request_extraction_never_raises(kwargs, capture):
    assert audio.request_attributes(kwargs, capture, False, 8)["gen_ai.operation.name"] == "transcription"


@given(st.dictionaries(st.sampled_from(["model", "text", "language", "usage", "segments"]), ANY), st.booleans())
def test_response_extraction_never_raises(response, capture):
    audio.response_attributes(response, capture)


EVENT = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "transcription.text.delta",
                "transcription.segment",
                "transcription.language",
                "transcription.done",
                "other",
            ]
        )
    },
    optional={"text": ANY, "audio_language": ANY, "model": ANY, "usage": ANY, "language": ANY, "segments": ANY},
)


@given(st.lists(EVENT | ANY, max_size=8), st.booleans())
def test_stream_accumulation_never_raises_and_counts_every_event(events, capture):
    stream = audio.TranscriptionStream(capture, sizes=True)
    for i, event in enumerate(events):
        stream.add({"event": "e", "data": event} if i % 2 else event, i)
    assert len(stream.chunk_times) == len(stream.chunk_sizes or []) == len(events)
    stream.attributes()


def test_the_terminal_viewer_shows_the_audio_heard(new_client, spans):
    from respan_auto.cli.traces import render_trace
    from respan_auto.export.local_store import span_record

    transcribe(new_client, "complete", model=MODEL, file={"file_name": "meeting.wav", "content": AUDIO})
    tree = render_trace([span_record(spans.one())])
    assert f"{len(AUDIO)} bytes of audio, {AUDIO_SECONDS} s, language en" in tree
    assert "completion: Offline stand-in transcript of meeting.wav" in tree


def speak(new_client: Any, sdk: Any, is_async: bool, **kwargs: Any) -> Any:
    if sdk.generation == 1:
        pytest.skip("mistralai 1.x has no speech API")
    owner = new_client().audio.speech
    if not is_async:
        result = owner.complete(**kwargs)
        return list(result) if kwargs.get("stream") else result

    async def go() -> Any:
        result = await owner.complete_async(**kwargs)
        return [event async for event in result] if kwargs.get("stream") else result

    return asyncio.run(go())


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_speech_records_the_text_voice_and_audio_size_never_the_audio(new_client, sdk, spans, is_async, stream):
    kwargs = {"input": "hello there", "model": "voxtral-tts", "voice_id": "v_en_1", "response_format": "mp3"}
    result = speak(new_client, sdk, is_async, stream=stream, **kwargs)
    span = spans.one()
    a = span.attributes
    assert span.name == "speech voxtral-tts" and a["gen_ai.operation.name"] == "speech"
    assert a["gen_ai.output.type"] == "speech" and a["respan.speech.voice"] == "v_en_1"
    assert a["respan.speech.format"] == "mp3" and a["gen_ai.prompt.0.content"] == "hello there"
    assert a["respan.speech.audio_size_bytes"] == len(SPEECH_AUDIO)
    if stream:
        assert a["gen_ai.request.stream"] is True and a["respan.stream.chunk_count"] == len(result)
        assert a["gen_ai.usage.input_tokens"] == result[-1].data.usage.prompt_tokens
    else:
        assert base64.b64decode(result.audio_data) == SPEECH_AUDIO
    assert not any(str(v).startswith("SUQz") for v in a.values())  # the base64 audio is never on the span


def test_speech_with_content_off_keeps_only_sizes(new_client, sdk, spans, instrument):
    instrument(capture_content=False)
    speak(new_client, sdk, False, input="the secret plan", model="voxtral-tts")
    a = spans.one().attributes
    assert not any("secret" in str(v) for v in a.values()) and a["respan.speech.audio_size_bytes"] == len(SPEECH_AUDIO)


@given(
    st.dictionaries(st.sampled_from(["input", "model", "voice_id", "response_format", "stream"]), ANY), st.booleans()
)
def test_speech_extraction_never_raises(kwargs, capture):
    assert audio.speech_request_attributes(kwargs, capture, False, 8)["gen_ai.output.type"] == "speech"
    audio.speech_response_attributes(kwargs, capture)
    stream = audio.SpeechStream(capture)
    stream.add({"data": kwargs}, 0)
    stream.attributes()


def test_the_size_is_read_without_touching_the_callers_file_object(tmp_path: Path):
    import os
    import tempfile

    spooled = tempfile.SpooledTemporaryFile(max_size=10_000)
    spooled.write(AUDIO)
    spooled.seek(5)
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe, open(write_end, "wb"):
        kwargs = [{"file": {"file_name": "a.wav", "content": c}} for c in (spooled, pipe)]
        sized = [audio.request_attributes(k, True, False, 8).get("respan.audio.size_bytes") for k in kwargs]
    assert sized == [None, None]
    assert not spooled._rolled and spooled.tell() == 5  # still in memory, where the caller left it
    buffer = __import__("io").BytesIO(AUDIO)
    buffer.seek(3)
    assert audio.request_attributes({"file": {"content": buffer}}, True, False, 8)["respan.audio.size_bytes"] == len(
        AUDIO
    )
    assert buffer.tell() == 3
    buffer.write(b"more")  # no buffer export left behind: the caller can still resize it
