"""The GenAI client metrics leave through the same pipeline as the spans, under the launcher and ``Respan(...)``:
to the OTLP endpoint, over the standard exporter; into the app's own ``MeterProvider`` when it has one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from respan_auto.testing.mistral_server import MistralServer
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
OPERATION = "gen_ai.client.operation.duration"
TOKENS = "gen_ai.client.token.usage"
FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
PER_CHUNK = "gen_ai.client.operation.time_per_output_chunk"

APP = """
import os
try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral
{setup}
client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
client.chat.complete(model="metrics-model", messages=[{{"role": "user", "content": "hi"}}])
for _ in client.chat.stream(model="metrics-model", messages=[{{"role": "user", "content": "#chunks=4 hi"}}]):
    pass
client.embeddings.create(model="mistral-embed", inputs=["one"])
{after}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[MistralServer]:
    with MistralServer() as srv:
        yield srv


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


def run(
    tmp_path: Path,
    server: MistralServer,
    receiver: OtlpReceiver,
    launcher: bool = True,
    setup: str = "",
    after: str = "",
    **env: str,
) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(STANDIN_URL=server.url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, PYTHONPATH=str(REPO))
    full.update(env)
    path = tmp_path / "app.py"
    path.write_text(APP.format(setup=textwrap.dedent(setup), after=textwrap.dedent(after)))
    command = [LAUNCHER, sys.executable, str(path)] if launcher else [sys.executable, str(path)]
    result = subprocess.run(command, capture_output=True, text=True, env=full, timeout=90)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("how", ["launcher", "Respan()"])
def test_every_client_metric_reaches_the_otlp_endpoint_at_exit(tmp_path, server, receiver, how):
    setup = "" if how == "launcher" else "from respan_auto import Respan\nRespan(is_auto_instrument=True)"
    run(tmp_path, server, receiver, launcher=how == "launcher", setup=setup)
    points = receiver.points
    by_name = {p.metric: [q for q in points if q.metric == p.metric] for p in points}
    assert {OPERATION, TOKENS, FIRST_CHUNK, PER_CHUNK} <= set(by_name), sorted(by_name)
    durations = {
        (p.attributes["gen_ai.operation.name"], p.attributes["gen_ai.request.model"]): p.count
        for p in by_name[OPERATION]
    }
    assert durations == {("chat", "metrics-model"): 2, ("embeddings", "mistral-embed"): 1}
    assert all(p.unit == "s" for p in by_name[OPERATION])
    assert {p.attributes["gen_ai.token.type"] for p in by_name[TOKENS]} == {"input", "output"}
    assert [p.count for p in by_name[FIRST_CHUNK]] == [1]
    assert sum(p.count or 0 for p in by_name[PER_CHUNK]) == 3  # four chunks: three gaps
    assert all(p.attributes["gen_ai.provider.name"] == "mistral_ai" for p in points if p.metric.startswith("gen_ai."))
    assert receiver.spans, "the spans went to the same endpoint"


def test_otel_metrics_exporter_none_sends_none(tmp_path, server, receiver):
    run(tmp_path, server, receiver, OTEL_METRICS_EXPORTER="none")
    assert receiver.spans and not [e for e in receiver.exports if e.path.endswith("/v1/metrics")]


def test_the_apps_own_meter_provider_gets_them_even_set_up_after_we_started(tmp_path, server, receiver):
    setup = """
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    """
    after = """
    data = reader.get_metrics_data()
    names = sorted({m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics})
    print("APP METRICS", names)
    """
    result = run(tmp_path, server, receiver, setup=setup, after=after)
    assert f"'{OPERATION}'" in result.stdout and f"'{TOKENS}'" in result.stdout, result.stdout
    assert receiver.spans and not [e for e in receiver.exports if e.path.endswith("/v1/metrics")]  # not twice


def test_respan_and_the_local_store_take_no_metrics(tmp_path, server, receiver):
    """Respan's ingest takes spans only: with RESPAN_API_KEY and no OTLP endpoint, no metrics request is made."""
    full_env = {"RESPAN_API_KEY": "rk-metrics", "RESPAN_BASE_URL": receiver.base_url}
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(STANDIN_URL=server.url, PYTHONPATH=str(REPO), **full_env)
    path = tmp_path / "app.py"
    path.write_text(APP.format(setup="", after=""))
    result = subprocess.run([LAUNCHER, sys.executable, str(path)], capture_output=True, text=True, env=full, timeout=90)
    assert result.returncode == 0, result.stderr
    assert receiver.spans and all(not e.path.endswith("/v1/metrics") for e in receiver.exports)


def test_metrics_leave_at_sigterm_too(tmp_path, server, receiver):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(STANDIN_URL=server.url, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, PYTHONPATH=str(REPO))
    path = tmp_path / "app.py"
    path.write_text(APP.format(setup="", after="import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"))
    result = subprocess.run([LAUNCHER, sys.executable, str(path)], capture_output=True, text=True, env=full, timeout=90)
    assert result.returncode in (-15, 143), result.stderr  # the app still dies of its SIGTERM
    assert OPERATION in {p.metric for p in receiver.points}


def test_https_with_the_certificate_variable_even_beside_requests_ca_bundle(tmp_path, server):
    """``OTEL_EXPORTER_OTLP_CERTIFICATE`` must win over ``REQUESTS_CA_BUNDLE`` (which CI machines set), for metrics
    as for spans; the bundle here trusts another CA, so only the certificate variable can make the export work."""
    pytest.importorskip("cryptography")
    from respan_auto.testing.tls import make_tls_files

    tls, stranger = make_tls_files(tmp_path / "tls"), make_tls_files(tmp_path / "stranger")
    with OtlpReceiver(tls=tls) as secure:
        run(
            tmp_path,
            server,
            secure,
            OTEL_EXPORTER_OTLP_CERTIFICATE=tls.ca_cert,
            REQUESTS_CA_BUNDLE=stranger.ca_cert,
            NO_PROXY="127.0.0.1,localhost",
        )
        assert secure.url.startswith("https://") and OPERATION in {p.metric for p in secure.points}


def test_an_otel_metrics_exporter_of_another_kind_is_not_ours_to_build(tmp_path, server, receiver):
    run(tmp_path, server, receiver, OTEL_METRICS_EXPORTER="console")
    assert receiver.spans and not [e for e in receiver.exports if e.path.endswith("/v1/metrics")]


def test_a_failure_inside_a_stream_is_an_error_in_the_metrics_too(server):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

    reader = InMemoryMetricReader()
    instrumentor = MistralAIInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider(), meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key="k", server_url=server.url)
        list(client.beta.conversations.start_stream(inputs="#stream-error x", model="m"))
    finally:
        instrumentor.uninstrument()
    data = reader.get_metrics_data()
    points = [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == OPERATION
        for p in m.data.data_points
    ]
    assert [dict(p.attributes).get("error.type") for p in points] == ["conversation.response.error 3000"]
