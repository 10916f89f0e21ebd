"""Gateway mode: a loopback server plays the Respan gateway and records every request."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import StatusCode

from respan_auto import context, gateway, gateway_params, propagate_attributes
from respan_auto.testing.mistral_server import MistralServer
from tests.conftest import REPO, user

RESPAN_KEY = "rk-gateway-sentinel-77"
MISTRAL_KEY = "test-mistral-key"  # what conftest's clients carry
MODEL = "mistral-small-latest"


@pytest.fixture
def gw():
    with MistralServer(extra_headers={"X-Respan-Log-Id": "log-abc-123"}) as server:
        yield server


@pytest.fixture
def routed(gw):
    gateway.enable(f"{gw.url}/api", RESPAN_KEY)
    yield gw
    gateway.disable()


def params_of(request) -> dict:
    raw = request.headers.get("x-data-respan-params")
    return json.loads(base64.b64decode(raw)) if raw else {}


def call(client, kind: str, prompt: str, **kwargs):
    if kind == "complete":
        return client.chat.complete(model=MODEL, messages=user(prompt), **kwargs).choices[0].message.content
    if kind == "stream":
        return "".join(c.data.choices[0].delta.content for c in client.chat.stream(model=MODEL, messages=user(prompt)))

    async def run():
        if kind == "complete_async":
            response = await client.chat.complete_async(model=MODEL, messages=user(prompt))
            return response.choices[0].message.content
        stream = await client.chat.stream_async(model=MODEL, messages=user(prompt))
        return "".join([c.data.choices[0].delta.content async for c in stream])

    return asyncio.run(run())


KINDS = ["complete", "stream", "complete_async", "stream_async"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["gateway-only", "both"])
def test_calls_go_to_the_gateway_with_respan_key_and_params(kind, mode, sdk, server, routed, spans, instrument):
    if mode == "gateway-only":
        instrument().uninstrument()
    client = sdk.client(server.url)
    with propagate_attributes(customer_identifier="cust-1", thread_identifier="th-1", metadata={"plan": "pro"}):
        with gateway_params(fallback_models=["gpt-4.1-nano"], cache_enabled=True):
            reply = call(client, kind, f"via gateway {kind}")
    assert reply.startswith(f"Offline stand-in reply to: via gateway {kind}")
    assert server.requests == [] or all(
        r.body["messages"][0]["content"] != f"via gateway {kind}" for r in server.requests
    )
    (request,) = [r for r in routed.requests if r.body["messages"][0]["content"] == f"via gateway {kind}"]
    assert request.path == "/api/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {RESPAN_KEY}"
    assert MISTRAL_KEY not in json.dumps(request.headers) + json.dumps(request.body)
    assert params_of(request) == {
        "customer_identifier": "cust-1",
        "thread_identifier": "th-1",
        "metadata": {"plan": "pro"},
        "fallback_models": ["gpt-4.1-nano"],
        "cache_enabled": True,
    }
    assert request.body["stream"] is kind.startswith("stream")
    if mode == "both":
        (span,) = spans.finished()
        assert span.attributes["respan.gateway.log_id"] == "log-abc-123"
        assert span.attributes["server.port"] == routed.server_address[1]
    else:
        assert spans.finished() == []


def test_clients_created_before_and_after_activation(sdk, server, gw):
    before = sdk.client(server.url)
    gateway.enable(f"{gw.url}/api", RESPAN_KEY)
    try:
        after = sdk.client(server.url)
        call(before, "complete", "from before")
        call(after, "complete", "from after")
    finally:
        gateway.disable()
    assert sorted(r.body["messages"][0]["content"] for r in gw.requests) == ["from after", "from before"]
    call(before, "complete", "switch off")
    assert [r.body["messages"][0]["content"] for r in gw.requests].count("switch off") == 0
    (direct,) = [r for r in server.requests if r.body["messages"][0]["content"] == "switch off"]
    assert direct.headers["authorization"] == f"Bearer {MISTRAL_KEY}"


def test_embeddings_go_to_the_gateway_and_other_families_to_mistral(sdk, routed, spans, instrument):
    with MistralServer() as mistral:  # its own: the session's stand-in records chat requests only
        client = sdk.client(mistral.url)
        with gateway_params(cache_enabled=True):
            vectors = client.embeddings.create(model="mistral-embed", inputs=["through the gateway"])
            client.fim.complete(model="codestral-latest", prompt="def stays_direct():")
    (embedding,) = routed.requests
    assert embedding.path == "/api/v1/embeddings" and embedding.body["input"] == ["through the gateway"]
    assert embedding.headers["authorization"] == f"Bearer {RESPAN_KEY}" and params_of(embedding)["cache_enabled"]
    assert len(vectors.data) == 1
    (direct,) = mistral.requests
    assert direct.path.endswith("/v1/fim/completions")
    assert direct.headers["authorization"] == f"Bearer {MISTRAL_KEY}" and params_of(direct) == {}
    assert [s.name for s in spans.finished()] == ["embeddings mistral-embed", "text_completion codestral-latest"]


def test_user_request_fields_and_prefixed_model_pass_untouched(sdk, server, routed):
    client = sdk.client(server.url)
    fields = {"temperature": 0.3, "max_tokens": 17, "random_seed": 5, "stop": ["X"]}
    client.chat.complete(model="mistral/mistral-large-latest", messages=user("exact body"), **fields)
    routed_body = routed.requests[-1].body
    gateway.disable()
    client.chat.complete(model="mistral/mistral-large-latest", messages=user("exact body"), **fields)
    direct_body = server.requests[-1].body
    assert routed_body == direct_body
    assert routed_body["model"] == "mistral/mistral-large-latest"


def test_nested_scopes_across_asyncio_tasks(new_client, routed, defaults_reset):
    context.add_defaults(context.to_attributes({"customer_identifier": "default"}, {"service": "api"}))

    async def one(client, i):
        async with propagate_attributes(thread_identifier=f"t{i}", metadata={"n": i}):
            async with gateway_params(cache_ttl=i):
                if i % 2:
                    async with gateway_params(disable_log=True), propagate_attributes(customer_identifier=f"c{i}"):
                        await client.chat.complete_async(model=MODEL, messages=user(f"task {i}"))
                else:
                    await client.chat.complete_async(model=MODEL, messages=user(f"task {i}"))

    async def main():
        client = new_client()
        await asyncio.gather(*(one(client, i) for i in range(10)))

    asyncio.run(main())
    seen = {r.body["messages"][0]["content"]: params_of(r) for r in routed.requests}
    for i in range(10):
        params = seen[f"task {i}"]
        assert params["thread_identifier"] == f"t{i}"
        assert params["metadata"] == {"service": "api", "n": str(i)}
        assert params["cache_ttl"] == i
        assert params["customer_identifier"] == (f"c{i}" if i % 2 else "default")
        assert params.get("disable_log") is (True if i % 2 else None)


@pytest.fixture
def defaults_reset():
    saved = dict(context._defaults)
    yield
    context._defaults = saved


@pytest.mark.parametrize("status", [500, 401])
def test_gateway_errors_reach_the_user_as_mistral_errors(sdk, server, routed, spans, instrument, status):
    client = sdk.client(server.url)
    with pytest.raises(Exception) as raised:
        client.chat.complete(model=MODEL, messages=user(f"#{status}"))
    assert raised.value.status_code == status
    assert type(raised.value).__name__ == "SDKError"
    (span,) = spans.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["http.response.status_code"] == status


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(env)
    full["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [str(sys.executable), "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full, timeout=60
    )


APP = """
    import os
    try:
        from mistralai.client import Mistral
    except ImportError:
        from mistralai import Mistral
    client = Mistral(api_key="sk-mistral-subprocess", server_url=os.environ["STANDIN_URL"])
    print(client.chat.complete(model="m", messages=[{"role": "user", "content": "sub"}]).choices[0].message.content)
"""


def test_gateway_only_by_environment_sends_no_spans(tmp_path, server, gw):
    store = tmp_path / "traces.jsonl"
    env = {
        "STANDIN_URL": server.url,
        "RESPAN_GATEWAY": "true",
        "RESPAN_TRACING": "false",
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_GATEWAY_URL": f"{gw.url}/api",
        "RESPAN_LOCAL_STORE": str(store),
        "RESPAN_CUSTOMER_IDENTIFIER": "env-cust",
    }
    launcher = os.path.join(os.path.dirname(sys.executable), "respan-instrument")
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    full.update(env, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [launcher, sys.executable, "-c", textwrap.dedent(APP)], capture_output=True, text=True, env=full, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Offline stand-in reply to: sub")
    (request,) = gw.requests
    assert request.headers["authorization"] == f"Bearer {RESPAN_KEY}"
    assert "sk-mistral-subprocess" not in json.dumps(request.headers)
    assert params_of(request)["customer_identifier"] == "env-cust"
    assert not store.exists()
    assert result.stderr == ""


def test_respan_gateway_argument_in_code(server, gw):
    code = (
        """
    from respan_auto import Respan
    Respan(gateway=True, tracing=False)
    """
        + APP
    )
    env = {"STANDIN_URL": server.url, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_GATEWAY_URL": f"{gw.url}/api"}
    result = _run(code, env)
    assert result.returncode == 0, result.stderr
    assert len(gw.requests) == 1


def test_gateway_without_key_says_so_and_calls_mistral(server, gw):
    code = (
        """
    from respan_auto import Respan
    Respan(gateway=True, tracing=False)
    """
        + APP
    )
    result = _run(code, {"STANDIN_URL": server.url, "RESPAN_GATEWAY_URL": f"{gw.url}/api"})
    assert result.returncode == 0
    assert "the gateway needs RESPAN_API_KEY" in result.stderr
    assert gw.requests == []
