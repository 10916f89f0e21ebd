"""Zero-code activation, run as real subprocesses: the launcher, Respan(...), the distro, export."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest

from respan_auto.export.local_store import read_records
from respan_auto.testing.otlp_receiver import OtlpReceiver
from tests.conftest import REPO, SDK_TRACER

BIN = Path(sys.executable).parent
LAUNCHER = str(BIN / "respan-instrument")
RESPAN_KEY = "rk-respan-sentinel-0xC0FFEE"
MISTRAL_KEY = "sk-mistral-sentinel-0xBEEF"

APP = f"""
import os, sys
try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral
client = Mistral(api_key="{MISTRAL_KEY}", server_url=os.environ["STANDIN_URL"])
messages = [{{"role": "user", "content": "hello from app"}}]
response = client.chat.complete(model="mistral-small-latest", messages=messages)
print(response.choices[0].message.content)
print("done", file=sys.stderr)
sys.exit(int(os.environ.get("APP_EXIT", "0")))
"""


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture
def base_env(tmp_path, server):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env["STANDIN_URL"] = server.url
    env["RESPAN_LOCAL_STORE"] = str(tmp_path / "store" / "traces.jsonl")
    env["PYTHONPATH"] = str(REPO)
    return env


def run(args, env, cwd=None, timeout=60):
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def write(tmp_path, name, code):
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return str(path)


def llm_spans(receiver):
    return [s for s in receiver.spans if "gen_ai.request.model" in s.attributes or "llm.model_name" in s.attributes]


def test_launcher_keeps_output_and_exit_code_and_exports_to_respan(tmp_path, base_env, receiver):
    app = write(tmp_path, "app.py", APP)
    env = {**base_env, "APP_EXIT": "3"}
    plain = run([sys.executable, app], env)
    traced = run(
        [LAUNCHER, sys.executable, app], {**env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    )
    assert plain.returncode == traced.returncode == 3
    assert traced.stdout == plain.stdout
    assert traced.stderr == plain.stderr == "done\n"
    exports = receiver.exports
    assert exports and all(e.path == "/api/v2/traces" for e in exports)
    assert all(e.headers["authorization"] == f"Bearer {RESPAN_KEY}" for e in exports)
    assert all(e.headers["content-type"] == "application/x-protobuf" for e in exports)
    spans = llm_spans(receiver)
    assert [s.name for s in spans] == ["chat mistral-small-latest"]
    assert spans[0].attributes["gen_ai.prompt.0.content"] == "hello from app"
    assert spans[0].resource["service.name"] == "app"
    blob = b"".join(e.raw for e in exports)
    assert RESPAN_KEY.encode() not in blob and MISTRAL_KEY.encode() not in blob


def test_options_and_environment_reach_every_span(tmp_path, base_env, receiver):
    app = write(tmp_path, "app.py", APP)
    env = {
        **base_env,
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_BASE_URL": receiver.base_url,
        "RESPAN_METADATA": json.dumps({"team": "search", "tier": 2}),
        "RESPAN_CUSTOMER_IDENTIFIER": "from-env",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.region=eu-1",
    }
    result = run(
        [LAUNCHER, "--environment", "staging", "--customer-identifier=cust-42", "--app-name=svc", sys.executable, app],
        env,
    )
    assert result.returncode == 0, result.stderr
    (span,) = llm_spans(receiver)
    a = span.attributes
    assert a["respan.environment"] == "staging"
    assert a["respan.customer_params.customer_identifier"] == "cust-42"  # the option wins
    assert a["respan.metadata.team"] == "search"
    assert a["respan.metadata.tier"] == "2"
    assert span.resource["service.name"] == "svc"
    assert span.resource["deployment.region"] == "eu-1"


def test_help_lists_every_variable():
    result = run([LAUNCHER, "--help"], dict(os.environ))
    assert result.returncode == 0
    from respan_auto.options import ENVIRONMENT

    for variable, _ in ENVIRONMENT.values():
        assert variable in result.stdout


def test_user_sitecustomize_still_runs(tmp_path, base_env):
    user_dir = tmp_path / "usersite"
    user_dir.mkdir()
    (user_dir / "sitecustomize.py").write_text("import os\nos.environ['USER_SITE_RAN'] = 'yes'\n")
    app = write(tmp_path, "app.py", "import os\nprint(os.environ.get('USER_SITE_RAN'))\n")
    env = {**base_env, "PYTHONPATH": os.pathsep.join([str(user_dir), str(REPO)])}
    result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "yes"


def test_child_process_and_forked_worker_are_traced(tmp_path, base_env, receiver):
    child = write(tmp_path, "child.py", APP.replace("hello from app", "hello from child"))
    parent = write(
        tmp_path,
        "parent.py",
        f"""
        import os, subprocess, sys
        subprocess.run([sys.executable, {child!r}], check=True)
        import mistralai  # the parent starts tracing before it forks, as a pre-fork server does
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        pids = []
        for n in range(2):
            pid = os.fork()
            if pid == 0:
                client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
                client.chat.complete(model="worker-model", messages=[{{"role": "user", "content": f"worker {{n}}"}}])
                sys.exit(0)
            pids.append(pid)
        print([os.waitpid(pid, 0)[1] for pid in pids])
        """,
    )
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([LAUNCHER, sys.executable, parent], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[0, 0]")
    prompts = sorted(s.attributes["gen_ai.prompt.0.content"] for s in llm_spans(receiver))
    assert prompts == ["hello from child", "worker 0", "worker 1"]  # each exactly once


def test_interpreter_flags_that_disable_bootstrap_are_named(tmp_path, base_env):
    result = run([LAUNCHER, sys.executable, "-I", "-c", "print('ran')"], base_env)
    assert result.stdout.strip() == "ran"
    assert "-I" in result.stderr and "will not be traced" in result.stderr


def test_python_without_the_package_is_named(tmp_path, base_env):
    bare = tmp_path / "bare-venv"
    venv.create(bare, with_pip=False)
    python = bare / "bin" / "python"
    env = {**base_env, "PYTHONPATH": ""}
    result = run([LAUNCHER, str(python), "-c", "print('ran')"], env)
    assert result.returncode == 0
    assert result.stdout.strip() == "ran"
    assert "cannot import respan_auto" in result.stderr
    assert result.stderr.count("\n") == 1


def test_rejected_key_gives_one_clear_line(tmp_path, base_env):
    app = write(tmp_path, "app.py", APP)
    with OtlpReceiver(status=401) as rx:
        plain = run([sys.executable, app], base_env)
        env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url}
        result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == plain.returncode == 0
    assert result.stdout == plain.stdout
    extra = result.stderr.replace("done\n", "", 1)
    assert extra.count("rejected the API key") == 1, extra
    assert "RESPAN_API_KEY" in extra
    assert RESPAN_KEY not in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_endpoint_gives_one_line_and_a_quick_exit(tmp_path, base_env):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    app = write(tmp_path, "app.py", APP)
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": f"http://127.0.0.1:{port}/api"}
    started = time.monotonic()
    result = run([LAUNCHER, sys.executable, app], env)
    elapsed = time.monotonic() - started
    assert result.returncode == 0
    assert result.stdout.startswith("Offline stand-in reply to: hello from app")
    extra = result.stderr.replace("done\n", "", 1)
    assert extra.count("cannot reach") == 1, extra
    assert "Traceback" not in extra
    assert elapsed < 10


def test_malformed_metadata_is_named_once_and_the_app_runs(tmp_path, base_env):
    app = write(tmp_path, "app.py", APP)
    result = run([LAUNCHER, sys.executable, app], {**base_env, "RESPAN_METADATA": "{not json"})
    assert result.returncode == 0
    assert result.stdout.startswith("Offline stand-in reply")
    assert result.stderr.count("RESPAN_METADATA") == 1, result.stderr


def test_no_key_uses_the_local_store_and_traces_shows_it(tmp_path, base_env):
    app = write(tmp_path, "app.py", APP)
    result = run([LAUNCHER, sys.executable, app], base_env)
    assert result.returncode == 0, result.stderr
    store = base_env["RESPAN_LOCAL_STORE"]
    assert result.stderr.count(store) == 1  # said once
    records = list(read_records(store))
    assert [r["name"] for r in records] == ["chat mistral-small-latest"]
    shown = run([LAUNCHER, "traces"], base_env)
    assert shown.returncode == 0
    assert "chat mistral-small-latest" in shown.stdout
    assert "prompt: hello from app" in shown.stdout
    assert "completion: Offline stand-in reply to: hello from app" in shown.stdout
    assert "tokens 3 in /" in shown.stdout


def test_respan_in_code_auto_instruments_and_flushes(tmp_path, base_env, receiver):
    app = write(
        tmp_path,
        "app.py",
        """
        import os
        from respan_auto import Respan
        respan = Respan(is_auto_instrument=True, customer_identifier="user_123", metadata={"service": "chat-api"})
        again = Respan(environment="production")
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
        client.chat.complete(model="in-code", messages=[{"role": "user", "content": "hi"}])
        print("flushed", respan.flush())
        """,
    )
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "flushed True"
    assert result.stderr.count("already set up") == 1
    (span,) = llm_spans(receiver)
    assert span.attributes["respan.customer_params.customer_identifier"] == "user_123"
    assert span.attributes["respan.metadata.service"] == "chat-api"
    assert span.attributes["respan.environment"] == "production"


def test_flush_reports_failure_when_nothing_was_delivered(tmp_path, base_env):
    app = write(
        tmp_path,
        "app.py",
        """
        import os
        from respan_auto import Respan
        from opentelemetry import trace
        respan = Respan()
        trace.get_tracer("t").start_span("x").end()
        print(respan.flush(timeout=3))
        """,
    )
    with OtlpReceiver(status=503) as rx:
        env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": rx.base_url}
        result = run([sys.executable, app], env)
    assert result.stdout.strip() == "False"


def test_disabled_instrumentations_and_broken_instrumentor(tmp_path, base_env, receiver):
    plugins = tmp_path / "plugins"
    dist = plugins / "broken_instrumentor-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-instrumentor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[opentelemetry_instrumentor]\nbroken = broken_instrumentor:Broken\n")
    (plugins / "broken_instrumentor.py").write_text(
        "class Broken:\n    def instrument(self, **kwargs):\n        raise RuntimeError('kaboom')\n"
    )
    app = write(tmp_path, "app.py", APP)
    env = {
        **base_env,
        "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)]),
        "RESPAN_API_KEY": RESPAN_KEY,
        "RESPAN_BASE_URL": receiver.base_url,
    }
    result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "broken" in line]
    assert len(complaints) == 1 and "kaboom" in complaints[0]
    assert len(llm_spans(receiver)) == 1  # the others still ran

    receiver.exports.clear()
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = "respan_mistralai,mistralai,broken"
    result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == 0
    assert "broken" not in result.stderr
    # nothing of ours (mistralai <= 2.4.9 may still trace by itself under the global provider)
    assert [s for s in llm_spans(receiver) if s.scope != SDK_TRACER] == []


def test_opentelemetry_instrument_uses_our_distro(tmp_path, base_env, receiver):
    otel_instrument = BIN / "opentelemetry-instrument"
    if not otel_instrument.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    app = write(tmp_path, "app.py", APP)
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([str(otel_instrument), sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    assert [s.name for s in llm_spans(receiver)] == ["chat mistral-small-latest"]


def _openinference_available() -> bool:
    try:
        import openinference.instrumentation.mistralai  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


needs_openinference = pytest.mark.skipif(
    not _openinference_available(), reason="openinference-instrumentation-mistralai is not installed here"
)


@needs_openinference
def test_seed_example_with_openinference_instrumentor(tmp_path, base_env, receiver):
    app = write(
        tmp_path,
        "app.py",
        """
        import os
        from respan_auto import Respan
        from openinference.instrumentation.mistralai import MistralAIInstrumentor
        from mistralai.client import Mistral

        respan = Respan(instrumentations=[MistralAIInstrumentor()], customer_identifier="user_123",
                        metadata={"service": "chat-api", "version": "1.0.0"})
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])
        response = client.chat.complete(model="mistral-large-latest", messages=[{"role": "user", "content": "hi"}])
        print(response.choices[0].message.content)
        respan.flush()
        """,
    )
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    spans = llm_spans(receiver)
    assert len(spans) == 1
    a = spans[0].attributes
    assert a.get("openinference.span.kind") == "LLM"
    assert a["respan.customer_params.customer_identifier"] == "user_123"
    assert a["respan.metadata.version"] == "1.0.0"


@needs_openinference
def test_one_llm_span_when_another_mistral_instrumentor_is_installed(tmp_path, base_env, receiver):
    app = write(tmp_path, "app.py", APP)
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    spans = llm_spans(receiver)
    assert [s.name for s in spans] == ["chat mistral-small-latest"]


def test_standard_otel_variables_keep_their_meaning(tmp_path, base_env, receiver):
    app = write(tmp_path, "app.py", APP)
    with OtlpReceiver() as respan:  # with a key too, spans also go to Respan (here a loopback one)
        env = {
            **base_env,
            "RESPAN_API_KEY": RESPAN_KEY,
            "RESPAN_BASE_URL": respan.base_url,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.base_url}/custom/v1/traces",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme,authorization=Basic%20abc",
        }
        result = run([LAUNCHER, sys.executable, app], env)
        assert [s.name for s in respan.spans] == ["chat mistral-small-latest"]
    assert result.returncode == 0, result.stderr
    (export,) = receiver.exports
    assert export.path == "/api/custom/v1/traces"
    assert export.headers["x-tenant"] == "acme"
    assert export.headers["authorization"] == "Basic abc"  # the endpoint's own credentials, not the Respan key

    receiver.exports.clear()
    for variables in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_SAMPLER": "always_off"}):
        env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url, **variables}
        result = run([LAUNCHER, sys.executable, app], env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Offline stand-in reply")
    assert receiver.spans == []


def test_threads_carry_the_context_under_the_launcher(tmp_path, base_env, receiver):
    app = write(
        tmp_path,
        "app.py",
        """
        import os
        from concurrent.futures import ThreadPoolExecutor
        from respan_auto import propagate_attributes, workflow
        try:
            from mistralai.client import Mistral
        except ImportError:
            from mistralai import Mistral
        client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])

        @workflow(name="fan_out")
        def fan_out():
            with propagate_attributes(customer_identifier="pooled"):
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(lambda q: client.chat.complete(model="m", messages=[
                        {"role": "user", "content": q}]), ["a", "b"]))

        fan_out()
        """,
    )
    env = {**base_env, "RESPAN_API_KEY": RESPAN_KEY, "RESPAN_BASE_URL": receiver.base_url}
    result = run([LAUNCHER, sys.executable, app], env)
    assert result.returncode == 0, result.stderr
    root = next(s for s in receiver.spans if s.name == "fan_out.workflow")
    llms = [s for s in receiver.spans if s.name == "chat m"]
    assert len(llms) == 2
    for span in llms:
        assert span.parent_id == root.span_id
        assert span.attributes["respan.customer_params.customer_identifier"] == "pooled"
