"""Environment switches: one clear message for a malformed value, and the default kept."""

from __future__ import annotations

import logging

import pytest

from respan_auto import _guard, config


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"RESPAN_TRACE_CONTENT": "false"}, False),
        ({"RESPAN_TRACE_CONTENT": "0"}, False),
        ({"RESPAN_TRACE_CONTENT": "TRUE"}, True),
        ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"}, False),
        ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "NO_CONTENT"}, False),
        ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"}, True),
        ({"RESPAN_TRACE_CONTENT": "true", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false"}, False),
    ],
)
def test_capture_content(env, expected):
    assert config.capture_content(env) is expected


def test_malformed_value_warns_once_naming_the_variable(caplog, monkeypatch):
    monkeypatch.setattr(_guard, "_reported", set())
    caplog.set_level(logging.WARNING)
    env = {"RESPAN_TRACE_CONTENT": "maybe"}
    assert config.capture_content(env) is True
    assert config.capture_content(env) is True
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "RESPAN_TRACE_CONTENT" in messages[0] and "'maybe'" in messages[0]
