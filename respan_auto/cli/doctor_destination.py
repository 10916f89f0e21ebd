"""The doctor's destination checks: where spans go, with what settings from where, and whether it answers.

The live check builds the destinations' exporters exactly as the pipeline does (``destinations.py``), lets each
resolve its request (URL, headers, key, timeout, certificates: every ``OTEL_EXPORTER_OTLP_*`` variable, read by the
standard exporter itself), and sends one empty ``ExportTraceServiceRequest`` through the same session or stub.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from respan_auto import config
from respan_auto.cli.doctor_report import Section, Setup, mask
from respan_auto.export import destinations
from respan_auto.export.local_store import store_problem
from respan_auto.options import ENVIRONMENT

KEY, BASE_URL, LOCAL_STORE = "RESPAN_API_KEY", "RESPAN_BASE_URL", "RESPAN_LOCAL_STORE"
TRACES_ENDPOINT, ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
TRACES_HEADERS, HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"
VIEW_HINT = "view them with `respan-instrument traces` or `respan-instrument ui`"
_SHOWN_BY_KIND = {"respan": ("api_key", "base_url"), "both": ("api_key", "base_url"), "local": ("local_store",)}


@dataclass
class Answer:
    verdict: str  # accepted, unreachable, refused (the credentials), failing (retried), misplaced, or other
    shown: str  # "HTTP 401", "gRPC UNAUTHENTICATED", or why nothing answered
    milliseconds: float


def _http_verdict(status: int) -> str:
    if 200 <= status < 300:
        return "accepted"
    if status in (401, 403):
        return "refused"
    if status in (408, 429) or status >= 500:
        return "failing"
    return "misplaced" if status < 400 or status in (404, 405) else "other"


_GRPC_VERDICTS = {
    "UNAUTHENTICATED": "refused",
    "PERMISSION_DENIED": "refused",
    "DEADLINE_EXCEEDED": "failing",
    "RESOURCE_EXHAUSTED": "failing",
    "UNIMPLEMENTED": "misplaced",
}


@dataclass
class Target:
    tag: str  # "respan" or "otlp"
    url: str
    url_variable: str  # the setting that chose the URL
    credential: str | None  # the setting that carries the credentials, if any
    send: Callable[[], Answer]


def _first_set(setup: Setup, *variables: str) -> str | None:
    return next((name for name in variables if (setup.environ.get(name) or "").strip()), None)


def _shown_value(option: str, value: Any) -> str:
    if option == "api_key":
        return mask(str(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, tuple)) or hasattr(value, "items"):
        import json

        return json.dumps(dict(value) if hasattr(value, "items") else list(value))
    return str(value)


def otlp_headers(setup: Setup) -> tuple[str | None, list[str]]:
    """The OTLP headers variable in force, and its headers with their values masked."""
    variable = _first_set(setup, TRACES_HEADERS, HEADERS)
    if variable is None:
        return None, []
    from urllib.parse import unquote

    pairs = [part.partition("=") for part in setup.environ[variable].split(",") if part.strip()]
    return variable, [f"{unquote(name).strip()}={mask(unquote(value).strip())}" for name, _, value in pairs]


def destination(section: Section, setup: Setup) -> None:
    settings = setup.settings
    kind = settings.export_target
    section.facts["kind"] = kind
    for _, message in config.check(setup.environ):
        section.problem(message)
    if not settings.enabled:
        section.problem(f"respan-auto is off ({setup.written('RESPAN_ENABLED')}): nothing is traced")
    if settings.sdk_disabled:
        section.problem("OTEL_SDK_DISABLED is true: no spans are made at all")
    elif not settings.tracing:
        if settings.gateway:
            section.note(
                f"gateway-only mode ({setup.written('RESPAN_TRACING')}): calls go through the gateway, untraced"
            )
        else:
            section.problem(f"tracing is off ({setup.written('RESPAN_TRACING')}): nothing is traced")
    if settings.gateway:
        if settings.api_key:
            section.ok(f"gateway: Mistral chat and embeddings calls go to {settings.gateway_url}/v1/...")
        else:
            section.problem(f"{setup.written('RESPAN_GATEWAY')} needs RESPAN_API_KEY: calls go to Mistral directly")
    if kind in ("respan", "both"):
        section.ok(f"Respan: spans go to {settings.traces_url}")
    if kind in ("otlp", "both"):
        _otlp_lines(section, setup)
    if kind == "both":
        section.note("RESPAN_API_KEY and an OTLP endpoint are both set: spans go to both")
    if kind == "local":
        section.facts["local_store"] = settings.local_store
        if store_problem(os.path.expanduser(settings.local_store)) is None:
            section.note(f"no RESPAN_API_KEY: spans stay in the local store {settings.local_store}; {VIEW_HINT}")
        else:
            section.note(f"no RESPAN_API_KEY: spans would go to the local store {settings.local_store} (see below)")
    shown: dict[str, dict[str, str]] = {}
    for option, (variable, _) in ENVIRONMENT.items():
        source = setup.source(variable)
        if source != "default" or option in _SHOWN_BY_KIND.get(kind, ()):
            shown[variable] = {"value": _shown_value(option, getattr(settings, option)), "source": source}
    section.facts["settings"] = shown
    for variable, item in shown.items():
        where = {"default": "default", variable: "variable"}.get(item["source"], f"flag {item['source']}")
        section.ok(f"{variable} = {item['value']} ({where})")


def _otlp_lines(section: Section, setup: Setup) -> None:
    protocol = destinations.otlp_protocol(setup.environ)
    endpoint_variable = _first_set(setup, TRACES_ENDPOINT, ENDPOINT) or ENDPOINT
    targets = [t for t in network_targets(setup) if t.tag == "otlp"]
    url = targets[0].url if targets else setup.environ.get(endpoint_variable, "")
    headers_variable, headers = otlp_headers(setup)
    section.facts["otlp"] = {
        "endpoint": url,
        "source": endpoint_variable,
        "protocol": protocol,
        "headers": {"source": headers_variable, "values": headers} if headers_variable else None,
    }
    section.ok(f"OTLP endpoint {url} (from {endpoint_variable}), {protocol}")
    if headers_variable:
        section.ok(f"{headers_variable}: {', '.join(headers)}")
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"):
        path = (setup.environ.get(variable) or "").strip()
        if path and not os.path.isfile(path):
            section.problem(f"{variable}={path} is not a file: the OTLP exporter cannot verify the endpoint")


# ---- the live check ------------------------------------------------------------------------------------------------


def _why(error: BaseException) -> str:
    """The innermost cause of a failed connection, in words: "connection refused", "timed out"..."""
    import requests

    if isinstance(error, requests.Timeout):
        return "no answer in time"
    seen: BaseException | None = error
    innermost = error
    while seen is not None:
        innermost = seen
        if isinstance(seen, OSError) and seen.strerror:
            return str(seen.strerror).lower()
        seen = seen.__cause__ or seen.__context__
    return type(innermost).__name__


def _empty_request() -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    return bytes(ExportTraceServiceRequest().SerializeToString())


def _learn(exporter: Any) -> None:
    """Let the exporter resolve its request (address, headers, timeout) without sending anything."""
    from respan_auto.export.transport import batch

    batch.spans = 0  # a request of no spans is learned from, never queued
    exporter.export([])


def _http_sender(exporter: Any, transport: Any) -> Callable[[], Answer]:
    def send() -> Answer:
        import requests

        transport.session.sink = lambda payload: None
        _learn(exporter)
        payload = transport.from_raw(_empty_request(), 0)
        start = time.monotonic()
        try:
            response = transport.session.deliver(payload)
        except requests.RequestException as error:
            return Answer("unreachable", _why(error), (time.monotonic() - start) * 1000)
        elapsed = (time.monotonic() - start) * 1000
        status = response.status_code
        response.close()
        return Answer(_http_verdict(status), f"HTTP {status}", elapsed)

    return send


def _grpc_sender(exporter: Any, transport: Any) -> Callable[[], Answer]:
    def send() -> Answer:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        handoff = transport.handoff
        handoff.sink = lambda payload: None
        _learn(exporter)
        meta = handoff.learned
        start = time.monotonic()
        try:
            handoff.stub.Export(
                request=ExportTraceServiceRequest(),
                metadata=meta.get("metadata"),
                timeout=max(1.0, float(meta.get("timeout") or 10.0)),
            )
        except grpc.RpcError as error:
            elapsed = (time.monotonic() - start) * 1000
            name = getattr(error.code(), "name", "UNKNOWN") if hasattr(error, "code") else "UNKNOWN"
            if name == "UNAVAILABLE":
                return Answer("unreachable", "gRPC UNAVAILABLE", elapsed)
            return Answer(_GRPC_VERDICTS.get(name, "other"), f"gRPC {name}", elapsed)
        return Answer("accepted", "gRPC OK", (time.monotonic() - start) * 1000)

    return send


def network_targets(setup: Setup) -> list[Target]:
    """Respan and the OTLP endpoint, as the pipeline would build their exporters."""
    settings = setup.settings
    targets: list[Target] = []
    if settings.api_key:
        exporter, transport = destinations.respan_exporter(settings)
        send = _http_sender(exporter, transport)
        targets.append(Target("respan", settings.traces_url, BASE_URL, KEY, send))
    if config.otlp_endpoint_configured(setup.environ):
        variable = _first_set(setup, TRACES_ENDPOINT, ENDPOINT) or ENDPOINT
        credential = _first_set(setup, TRACES_HEADERS, HEADERS)
        if destinations.otlp_protocol(setup.environ) == "grpc":
            made = destinations.otlp_grpc_exporter(setup.environ)  # None, with one warning, without the gRPC exporter
            if made is not None:
                exporter, transport = made
                targets.append(
                    Target("otlp", transport.target, variable, credential, _grpc_sender(exporter, transport))
                )
        else:
            exporter, transport = destinations.otlp_http_exporter()
            send = _http_sender(exporter, transport)
            targets.append(Target("otlp", transport.target, variable, credential, send))
    return targets


def _judge(section: Section, setup: Setup, target: Target, answer: Answer) -> None:
    timing = f"{answer.shown}, {answer.milliseconds:.0f} ms"
    credential = setup.written(target.credential) if target.credential else None
    if setup.source(target.url_variable) == "default":
        fix = f"check the network, or set {target.url_variable}"
    else:
        fix = f"check {setup.written(target.url_variable)}"
    if answer.verdict == "unreachable":
        section.problem(f"cannot reach {target.url} ({answer.shown}): {fix}")
    elif answer.verdict == "accepted":
        what = credential or "an export without credentials"
        section.ok(f"{target.url} accepted {what} ({timing})")
    elif answer.verdict == "refused" and credential:
        section.problem(f"{credential} was rejected by {target.url} ({answer.shown})")
    elif answer.verdict == "refused":
        section.problem(f"{target.url} wants credentials ({answer.shown}): set {HEADERS}")
    elif answer.verdict == "failing":
        section.problem(f"{target.url} answered {answer.shown}: the endpoint is failing (spans would be retried)")
    elif answer.verdict == "misplaced":
        section.problem(f"{target.url} answered {answer.shown}: no OTLP traces receiver there; {fix}")
    else:
        section.note(f"{target.url} answered {answer.shown} to an empty export: reachable, credentials not rejected")


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("not reached")


def _local_store(section: Section, setup: Setup) -> None:
    """Writable (or creatable) without creating anything, and how much the store holds with its companions."""
    path = os.path.abspath(os.path.expanduser(setup.settings.local_store))
    fix = f"check {setup.written(LOCAL_STORE)}" if setup.source(LOCAL_STORE) != "default" else f"set {LOCAL_STORE}"
    problem = store_problem(path)
    if problem is not None:
        section.facts["local_store"] = {"path": path, "exists": True, "writable": False, "problem": problem}
        section.problem(f"the local store {path} {problem} (spans are not kept there): {fix}")
        return
    if os.path.exists(path):
        folder = os.path.dirname(path)
        name = os.path.basename(path)
        names = [n for n in os.listdir(folder) if n == name or n.startswith((name + ".", name + "-"))]
        size = sum(os.path.getsize(os.path.join(folder, n)) for n in names)
        # SQLite writes its -wal and -shm companions beside the file: the folder must be writable too
        writable = os.access(path, os.W_OK) and os.access(folder, os.W_OK | os.X_OK)
        section.facts["local_store"] = {"path": path, "exists": True, "writable": writable, "bytes": size}
        if writable:
            section.ok(f"the local store {path} is writable and holds {_size(size)}")
        else:
            section.problem(f"the local store {path} is not writable (or its folder is not): {fix}")
        return
    existing = os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    creatable = os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)
    section.facts["local_store"] = {"path": path, "exists": False, "writable": creatable, "bytes": 0}
    if creatable:
        section.ok(f"the local store {path} does not exist yet and can be created")
    else:
        section.problem(f"the local store {path} cannot be created ({existing} is not writable): {fix}")


def live_check(section: Section, setup: Setup) -> None:
    if setup.settings.export_target == "local":
        _local_store(section, setup)
        return
    if setup.offline:
        section.facts["skipped"] = "--offline"
        section.note("the endpoints were not contacted (--offline)")
        return
    results = []
    for target in network_targets(setup):
        answer = target.send()
        results.append(
            {
                "target": target.tag,
                "url": target.url,
                "verdict": answer.verdict,
                "answer": answer.shown,
                "milliseconds": round(answer.milliseconds, 1),
            }
        )
        _judge(section, setup, target, answer)
    section.facts["endpoints"] = results
