"""``respan-instrument doctor``: one screen that says whether the set-up works, and exactly one line per problem.

Each test runs the installed console script as a subprocess against real parts: a loopback OTLP receiver for
Respan and for an OTLP endpoint, a closed loopback port, a throw-away distribution on PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from respan_auto.export.local_store import open_writer
from respan_auto.instrumentation.mistralai.families import FAMILIES
from respan_auto.testing.otlp_receiver import OtlpReceiver

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
KEY = "rk-doctor-sentinel-0xD0C7"
HEADER_SECRET = "otlp-header-secret-9F1E"
NO_KEY_NOTE = (
    "  note     no RESPAN_API_KEY: spans stay in the local store {store}; "
    "view them with `respan-instrument traces` or `respan-instrument ui`"
)


# Mistral instrumentors this venv holds beside ours (the test extra brings OpenInference's to some sessions): turned
# off as a user would, so that each test sees only the conflicts it sets up
FOREIGN = [
    ep.name
    for ep in entry_points(group="opentelemetry_instrumentor")
    if "mistral" in ep.value.lower() and not ep.value.startswith("respan_auto.")
]


def clean_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_", "PYTHONPATH"))}
    disabled = [*FOREIGN, *more.pop("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")]
    env.update(RESPAN_LOCAL_STORE=str(tmp_path / "store" / "traces.db"), **more)
    if any(disabled):
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(name for name in disabled if name)
    return env


def doctor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LAUNCHER, "doctor", *args], capture_output=True, text=True, env=env, timeout=60)


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("problem: ")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_healthy_respan_destination_accepts_the_key(tmp_path):
    with OtlpReceiver() as receiver:
        result = doctor([], clean_env(tmp_path, RESPAN_API_KEY=KEY, RESPAN_BASE_URL=receiver.base_url))
        exports = list(receiver.exports)
    assert result.returncode == 0, result.stdout + result.stderr
    accepted = rf"  ok       {re.escape(receiver.traces_url)} accepted RESPAN_API_KEY \(HTTP 200, \d+ ms\)"
    assert any(re.fullmatch(accepted, line) for line in result.stdout.splitlines()), result.stdout
    assert result.stdout.splitlines()[-1].startswith("healthy: no problems")
    assert problems(result) == []
    assert result.stderr == ""
    [export] = exports  # one empty export request, as the exporter would send it
    assert export.path == "/api/v2/traces"
    assert export.headers["authorization"] == f"Bearer {KEY}"
    assert export.headers["content-type"] == "application/x-protobuf"
    assert export.raw == b""
    assert KEY not in result.stdout


@pytest.mark.parametrize(("args", "named"), [([], "RESPAN_API_KEY"), (["--api-key", KEY], "--api-key")])
def test_a_rejected_key_is_one_problem_naming_it_as_written(tmp_path, args, named):
    extra = {} if args else {"RESPAN_API_KEY": KEY}
    with OtlpReceiver(status=401) as receiver:
        env = clean_env(tmp_path, RESPAN_BASE_URL=receiver.base_url, **extra)
        result = doctor([*args, "--base-url", receiver.base_url] if args else [], env)
    assert result.returncode == 1
    assert problems(result) == [f"problem: {named} was rejected by {receiver.traces_url} (HTTP 401)"]
    assert KEY not in result.stdout + result.stderr


def test_an_unreachable_endpoint_names_the_base_url(tmp_path):
    base_url = f"http://127.0.0.1:{closed_port()}/api"
    result = doctor([], clean_env(tmp_path, RESPAN_API_KEY=KEY, RESPAN_BASE_URL=base_url))
    assert result.returncode == 1
    assert problems(result) == [
        f"problem: cannot reach {base_url}/v2/traces (connection refused): check RESPAN_BASE_URL"
    ]


def test_no_key_keeps_spans_local_with_a_note_and_a_writable_store(tmp_path):
    store = tmp_path / "store" / "traces.db"
    result = doctor([], clean_env(tmp_path))
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert NO_KEY_NOTE.format(store=store) in lines
    assert f"  ok       the local store {store} does not exist yet and can be created" in lines
    assert not store.parent.exists()  # the doctor looks, and creates nothing


def test_an_existing_store_is_reported_with_its_size(tmp_path):
    store = tmp_path / "mine.db"
    open_writer(str(store)).close()
    size = sum(p.stat().st_size for p in tmp_path.glob("mine.db*"))
    result = doctor(["--local-store", str(store), "--offline"], clean_env(tmp_path))
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert f"  ok       RESPAN_LOCAL_STORE = {store} (flag --local-store)" in lines
    assert f"  ok       the local store {store} is writable and holds {size / 1024:.1f} KiB" in lines


def test_a_store_path_holding_another_file_is_a_problem_and_stays_as_it_was(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not traces\n")
    result = doctor(["--offline"], {**clean_env(tmp_path), "RESPAN_LOCAL_STORE": str(notes)})
    assert result.returncode == 1, result.stdout
    assert problems(result) == [
        f"problem: the local store {notes} is not a respan-auto trace store (spans are not kept there): "
        "check RESPAN_LOCAL_STORE"
    ]
    assert f"  note     no RESPAN_API_KEY: spans would go to the local store {notes} (see below)" in result.stdout
    assert notes.read_text() == "not traces\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _fake_mistral_instrumentor(site: Path) -> None:
    info = site / "fake_mistral_instr-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-mistral-instr\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\nfake_mistral = fake_mistral_instr:MistralInstrumentor\n"
    )


def test_another_mistral_instrumentor_is_a_problem(tmp_path):
    site = tmp_path / "site"
    _fake_mistral_instrumentor(site)
    result = doctor(["--offline"], clean_env(tmp_path, PYTHONPATH=str(site)))
    assert result.returncode == 1
    assert problems(result) == [
        "problem: another Mistral instrumentor is installed: fake_mistral = fake_mistral_instr:MistralInstrumentor "
        "(fake-mistral-instr 1.0); only one may trace Mistral: uninstall it, or add fake_mistral to "
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
    ]
    assert "  note     fake_mistral (fake-mistral-instr 1.0): skipped: respan_mistralai traces Mistral" in result.stdout


def test_a_disabled_other_mistral_instrumentor_is_only_a_note(tmp_path):
    site = tmp_path / "site"
    _fake_mistral_instrumentor(site)
    env = clean_env(tmp_path, PYTHONPATH=str(site), OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="fake_mistral")
    result = doctor(["--offline"], env)
    assert result.returncode == 0, result.stdout
    note = "  note     fake_mistral (fake-mistral-instr 1.0): skipped: OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names it"
    assert note in result.stdout.splitlines()


def test_a_command_with_isolated_mode_is_flagged(tmp_path):
    command = [sys.executable, "-I", "app.py"]
    result = doctor(["--offline", "--", *command], clean_env(tmp_path))
    assert result.returncode == 1
    shown = " ".join(command)
    assert problems(result) == [
        f"problem: `{sys.executable} -I` ignores PYTHONPATH or site customisation, so respan-instrument's bootstrap "
        f"does not run and `{shown}` will not be traced: drop -I"
    ]


def test_a_plain_command_is_fine(tmp_path):
    result = doctor(["--offline", "--", sys.executable, "app.py"], clean_env(tmp_path))
    assert result.returncode == 0, result.stdout
    expected = f"  ok       `{sys.executable} app.py` keeps PYTHONPATH and site customisation: respan-instrument's"
    assert any(line.startswith(expected) for line in result.stdout.splitlines())


@pytest.mark.parametrize(
    ("body", "status", "line"),
    [
        (
            "pass\n",
            0,
            "  note     your sitecustomize ({path}) is kept: respan-instrument's bootstrap runs it after its own",
        ),
        ("raise RuntimeError('boom')\n", 1, "problem: your sitecustomize ({path}) does not import: Python skipped it"),
    ],
)
def test_a_user_sitecustomize_is_chained_or_broken(tmp_path, body, status, line):
    site = tmp_path / "mine"
    site.mkdir()
    (site / "sitecustomize.py").write_text(body)
    result = doctor(["--offline"], clean_env(tmp_path, PYTHONPATH=str(site)))
    assert result.returncode == status, result.stdout
    expected = line.format(path=site / "sitecustomize.py")
    assert any(out.startswith(expected) for out in result.stdout.splitlines()), result.stdout


def test_json_has_the_facts_and_masks_the_key(tmp_path):
    with OtlpReceiver() as receiver:
        result = doctor(["--json"], clean_env(tmp_path, RESPAN_API_KEY=KEY, RESPAN_BASE_URL=receiver.base_url))
    assert result.returncode == 0, result.stdout
    assert KEY not in result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["healthy"] is True
    assert document["problems"] == []
    assert set(document) >= {"versions", "instrumentors", "destination", "live_check", "conflicts", "notes"}
    assert document["destination"]["kind"] == "respan"
    assert document["destination"]["settings"]["RESPAN_API_KEY"] == {"value": "****D0C7", "source": "RESPAN_API_KEY"}
    assert document["destination"]["settings"]["RESPAN_BASE_URL"] == {
        "value": receiver.base_url,
        "source": "RESPAN_BASE_URL",
    }
    [endpoint] = document["live_check"]["endpoints"]
    assert endpoint["url"] == receiver.traces_url
    assert endpoint["verdict"] == "accepted"
    assert endpoint["answer"] == "HTTP 200"
    assert document["versions"]["mistralai"]["layout"] in ("mistralai", "mistralai.client")
    active = [ep["name"] for ep in document["instrumentors"]["entry_points"] if ep["active"]]
    assert "respan_mistralai" in active
    methods = {m["family"]: m["patched"] for m in document["instrumentors"]["mistral_methods"]}
    # every family the installed SDK has (1.x has no speech, only 3.x has responses), every method
    layout = document["versions"]["mistralai"]["layout"]
    present = [f for f in FAMILIES if importlib.util.find_spec(f"{layout}.{f.module}") is not None]
    assert {"Chat", "conversations", "transcriptions"} <= {f.label for f in present}
    assert methods == {family.label: list(family.methods) for family in present}
    assert methods["conversations"][:4] == ["start", "start_async", "start_stream", "start_stream_async"]


def test_an_otlp_endpoint_is_reported_with_its_source_and_its_headers_masked(tmp_path):
    with OtlpReceiver() as receiver:
        endpoint = f"{receiver.url}/custom/traces"
        env = clean_env(
            tmp_path,
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint,
            OTEL_EXPORTER_OTLP_HEADERS=f"api-key={HEADER_SECRET}",
        )
        result = doctor([], env)
        exports = list(receiver.exports)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert f"  ok       OTLP endpoint {endpoint} (from OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), http/protobuf" in lines
    assert "  ok       OTEL_EXPORTER_OTLP_HEADERS: api-key=****9F1E" in lines
    assert any(
        line.startswith(f"  ok       {endpoint} accepted OTEL_EXPORTER_OTLP_HEADERS (HTTP 200,") for line in lines
    )
    assert HEADER_SECRET not in result.stdout + result.stderr
    [export] = exports
    assert export.path == "/custom/traces"
    assert export.headers["api-key"] == HEADER_SECRET
