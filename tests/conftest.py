"""Shared fixtures: the real mistralai SDK, the loopback stand-in, and an in-memory span store."""

from __future__ import annotations

import gc
import importlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from respan_auto.context import ContextAttributesProcessor
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
from respan_auto.testing.mistral_server import MistralServer

REPO = Path(__file__).resolve().parent.parent

# Property tests without an explicit size use these: "ci" in CI, "thorough" (10,000 examples) on demand.
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@dataclass
class Sdk:
    """The installed mistralai generation, seen through one interface."""

    generation: int
    root: str
    mistral_cls: type
    models: ModuleType
    chat_module: ModuleType
    eventstreaming: ModuleType

    def client(self, server_url: str, **kwargs: Any) -> Any:
        return self.mistral_cls(api_key="test-mistral-key", server_url=server_url, **kwargs)


def _load_sdk() -> Sdk:
    from importlib.metadata import version

    generation = int(version("mistralai").split(".")[0])
    root = "mistralai" if generation == 1 else "mistralai.client"
    package = importlib.import_module(root)
    return Sdk(
        generation=generation,
        root=root,
        mistral_cls=package.Mistral,
        models=importlib.import_module(f"{root}.models"),
        chat_module=importlib.import_module(f"{root}.chat"),
        eventstreaming=importlib.import_module(f"{root}.utils.eventstreaming"),
    )


@pytest.fixture(scope="session")
def sdk() -> Sdk:
    return _load_sdk()


@pytest.fixture(scope="session")
def server() -> Iterator[MistralServer]:
    with MistralServer() as srv:
        yield srv


# The mistralai SDK's own tracer: its spans (mistralai <= 2.4.9 under a global provider) are not ours.
SDK_TRACER = "mistralai_sdk_tracer"

# One global provider for the whole session, as an app has: decorators and other instrumentors use it.
_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider(shutdown_on_exit=False)
_PROVIDER.add_span_processor(ContextAttributesProcessor())
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
trace.set_tracer_provider(_PROVIDER)


class Spans:
    """Finished spans, read from a real SDK pipeline (the global one, emptied for each test)."""

    def __init__(self) -> None:
        self.exporter = _EXPORTER
        self.provider = _PROVIDER
        gc.collect()  # a stream a previous test dropped ends now, not in the middle of this test
        self.exporter.clear()

    def finished(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.instrumentation_scope.name != SDK_TRACER]

    def one(self) -> ReadableSpan:
        spans = self.finished()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def clear(self) -> None:
        self.exporter.clear()


@pytest.fixture
def spans() -> Spans:
    return Spans()


@pytest.fixture
def instrument(spans: Spans) -> Iterator[Any]:
    """Instrument with the test provider; ``instrument(capture_content=False)`` re-instruments."""
    instrumentor = MistralAIInstrumentor()
    last: dict[str, Any] = {}

    def apply(**kwargs: Any) -> MistralAIInstrumentor:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        last.clear()
        last.update(kwargs)
        instrumentor.instrument(tracer_provider=spans.provider, **kwargs)
        return instrumentor

    @contextmanager
    def off() -> Iterator[None]:
        """Run the block with the SDK exactly as it is without us, then instrument again."""
        instrumentor.uninstrument()
        try:
            yield
        finally:
            apply(**dict(last))

    apply.off = off  # type: ignore[attr-defined]

    apply()
    yield apply
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()


@pytest.fixture
def client(sdk: Sdk, server: MistralServer, instrument: Any) -> Any:
    return sdk.client(server.url)


@pytest.fixture
def new_client(sdk: Sdk, server: MistralServer, instrument: Any) -> Any:
    """A fresh client per call: the SDK's async client is bound to the event loop it first ran on."""
    return lambda: sdk.client(server.url)


@pytest.fixture
def uninstrumented(instrument: Any) -> Any:
    """``with uninstrumented():`` runs a block against the unpatched SDK."""
    return instrument.off


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def run_python(code: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter of this environment: for import-time and global-state checks."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=str(cwd or REPO),
        timeout=120,
    )


# A fresh interpreter with a global provider and a client, where the SDK's own tracing traces by itself (always on
# mistralai <= 2.4.9 under a global provider, with MISTRAL_SDK_TELEMETRY=global later): ``body`` runs after it and
# prints one JSON line, which is returned.
_SDK_TRACING_SETUP = """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
from {root} import Mistral
client = Mistral(api_key="k", server_url="{url}")
"""


def with_sdk_tracing(sdk: Sdk, server: MistralServer, body: str) -> Any:
    code = _SDK_TRACING_SETUP.format(root=sdk.root, url=server.url) + textwrap.dedent(body)
    result = run_python(code, env={"MISTRAL_SDK_TELEMETRY": "global"})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])
