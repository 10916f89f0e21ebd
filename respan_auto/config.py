"""Settings from ``Respan(...)`` arguments and the environment, with one clear message per bad value.

Everything else reads a ``Settings`` object and never ``os.environ`` itself. Arguments win over
the environment; a malformed variable is reported once, naming it, and its default is used.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from respan_auto._guard import warn_once
from respan_auto.options import DEFAULT_BASE_URL, ENVIRONMENT

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT also takes the newer enum values.
_GENAI_CONTENT_ON = frozenset({"span_only", "event_only", "span_and_event"})
_GENAI_CONTENT_OFF = frozenset({"no_content"})


# Below this a request cannot hold an ordinary LLM span: smaller values are a mistake, reported as such.
MIN_EXPORT_BYTES = 65536


def _std(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


def _env(environ: Mapping[str, str], option: str) -> str | None:
    return _std(environ, ENVIRONMENT[option][0])


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    """A boolean value; an unreadable one keeps the default and is reported once."""
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    warn_once(
        f"env:{name}",
        "respan_auto: ignoring %s=%r: expected true or false; using %s",
        name,
        raw,
        "true" if default else "false",
    )
    return default


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return parse_bool(name, env.get(name), default)


def capture_content(environ: Mapping[str, str] | None = None) -> bool:
    """Whether prompts, completions, tool arguments and chunk text may be recorded.

    Content is captured unless ``RESPAN_TRACE_CONTENT`` or
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` turns it off; either one saying
    "off" wins, so a user who disables content in one place is never overridden by the other.
    """
    env = os.environ if environ is None else environ
    if not env_bool("RESPAN_TRACE_CONTENT", True, env):
        return False
    raw = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").strip().lower()
    if raw in _GENAI_CONTENT_OFF:
        return False
    if raw in _GENAI_CONTENT_ON:
        return True
    return env_bool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", True, env)


def parse_metadata(name: str, raw: Any) -> dict[str, str]:
    """A metadata mapping with string values (others JSON-encoded); anything else is reported once."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            warn_once(
                f"metadata:{name}",
                'respan_auto: ignoring %s: it is not valid JSON (expected an object like {"team": "search"})',
                name,
            )
            return {}
    if not isinstance(raw, Mapping):
        warn_once(
            f"metadata:{name}", "respan_auto: ignoring %s: expected a JSON object, got %s", name, type(raw).__name__
        )
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in raw.items()}


MAX_EXIT_SECONDS = 600.0


def _parse_seconds(name: str, raw: str | None, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
        if 0 <= value <= MAX_EXIT_SECONDS:
            return value
    except ValueError:
        pass
    warn_once(
        f"env:{name}",
        "respan_auto: ignoring %s=%r: expected a number of seconds from 0 to %d; using %s",
        name,
        raw,
        MAX_EXIT_SECONDS,
        default,
    )
    return default


def _parse_int(name: str, raw: str | None, default: int, minimum: int = 1) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
        if value >= minimum:
            return value
    except ValueError:
        pass
    warn_once(
        f"env:{name}",
        "respan_auto: ignoring %s=%r: expected a whole number of at least %d; using %s",
        name,
        raw,
        minimum,
        default,
    )
    return default


def _int_option(env: Mapping[str, str], option: str, default: int, minimum: int = 1, fallback: str = "") -> int:
    """A RESPAN_* whole number, else the standard variable it stands for, else the default."""
    raw = _env(env, option)
    if raw is not None:
        return _parse_int(ENVIRONMENT[option][0], raw, default, minimum)
    if fallback and (env.get(fallback) or "").strip():
        return _parse_int(fallback, env[fallback].strip(), default, minimum)
    return default


def _parse_patterns(raw: Any) -> tuple[str, ...]:
    """Redaction regexes: a JSON list (from the environment) or a list; bad ones are reported once and skipped."""
    import re

    name = ENVIRONMENT["redact_patterns"][0]
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = [raw]
    if not isinstance(raw, (list, tuple)):
        warn_once("redact:type", "respan_auto: ignoring %s: expected a JSON list of regular expressions", name)
        return ()
    patterns = []
    for pattern in raw:
        try:
            re.compile(str(pattern))
        except re.error as error:
            warn_once(f"redact:{pattern}", "respan_auto: ignoring pattern %r in %s: %s", pattern, name, error)
            continue
        patterns.append(str(pattern))
    return tuple(patterns)


def default_local_store(environ: Mapping[str, str]) -> str:
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "respan-auto", "traces.jsonl")


def _program_name() -> str | None:
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    if not argv0:
        return None
    name = os.path.basename(argv0)
    return name[:-3] if name.endswith(".py") else name


def otlp_endpoint_configured(environ: Mapping[str, str]) -> bool:
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    environment: str | None = None
    app_name: str | None = None
    customer_identifier: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    trace_content: bool = True
    instrument_threading: bool = True
    local_store: str = ""
    exit_timeout: float = 2.0
    otlp_from_environment: bool = False
    sdk_disabled: bool = False
    gateway: bool = False
    gateway_url: str = DEFAULT_BASE_URL
    tracing: bool = True
    max_queue_size: int = 2048
    max_queue_bytes: int = 64 * 1024 * 1024
    max_export_batch_size: int = 512
    schedule_delay_millis: int = 5000
    max_export_bytes: int = 4_000_000
    spool_max_bytes: int = 256 * 1024 * 1024
    max_attribute_length: int = 65536
    spool_dir: str | None = None
    redact_patterns: tuple[str, ...] = ()
    redact_keys: bool = True

    @property
    def export_target(self) -> str:
        """``respan`` (a key is set), ``otlp`` (the OTEL_* variables), ``both``, or ``local`` (neither)."""
        if self.otlp_from_environment:
            return "both" if self.api_key else "otlp"
        return "respan" if self.api_key else "local"

    @property
    def traces_url(self) -> str:
        return f"{self.base_url}/v2/traces"

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **arguments: Any) -> Settings:
        """Settings from ``arguments`` (``None`` means "not given") over the environment."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in arguments.items() if v is not None}

        def pick(option: str) -> Any:
            return given[option] if option in given else _env(env, option)

        def pick_bool(option: str, default: bool) -> bool:
            if option in given:
                return bool(given[option])
            return parse_bool(ENVIRONMENT[option][0], _env(env, option), default)

        if "metadata" in given:
            metadata = parse_metadata("metadata=", given["metadata"])
        else:
            metadata = parse_metadata(ENVIRONMENT["metadata"][0], _env(env, "metadata"))
        trace_content = given.get("trace_content")
        app_name = pick("app_name") or env.get("OTEL_SERVICE_NAME")
        if not app_name and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            app_name = _program_name()
        base_url = str(pick("base_url") or DEFAULT_BASE_URL).rstrip("/")
        return cls(
            enabled=pick_bool("enabled", True),
            api_key=pick("api_key"),
            base_url=base_url,
            environment=pick("environment"),
            app_name=app_name or None,
            customer_identifier=pick("customer_identifier"),
            metadata=metadata,
            trace_content=capture_content(env) if trace_content is None else bool(trace_content),
            instrument_threading=pick_bool("instrument_threading", True),
            local_store=pick("local_store") or default_local_store(env),
            exit_timeout=_parse_seconds(ENVIRONMENT["exit_timeout"][0], _env(env, "exit_timeout"), 2.0),
            otlp_from_environment=otlp_endpoint_configured(env),
            sdk_disabled=parse_bool("OTEL_SDK_DISABLED", env.get("OTEL_SDK_DISABLED"), False),
            gateway=pick_bool("gateway", False),
            gateway_url=str(pick("gateway_url") or base_url).rstrip("/"),
            tracing=pick_bool("tracing", True),
            max_queue_size=_int_option(env, "max_queue_size", 2048, fallback="OTEL_BSP_MAX_QUEUE_SIZE"),
            max_queue_bytes=_int_option(env, "max_queue_bytes", 64 * 1024 * 1024, minimum=MIN_EXPORT_BYTES),
            max_export_batch_size=_parse_int(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", _std(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), 512
            ),
            schedule_delay_millis=_parse_int("OTEL_BSP_SCHEDULE_DELAY", _std(env, "OTEL_BSP_SCHEDULE_DELAY"), 5000, 0),
            max_export_bytes=_int_option(env, "max_export_bytes", 4_000_000, minimum=MIN_EXPORT_BYTES),
            max_attribute_length=_int_option(
                env, "max_attribute_length", 65536, fallback="OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
            ),
            spool_dir=pick("spool_dir"),
            spool_max_bytes=_int_option(env, "spool_max_bytes", 256 * 1024 * 1024, minimum=MIN_EXPORT_BYTES),
            redact_patterns=_parse_patterns(given.get("redact_patterns", _env(env, "redact_patterns"))),
            redact_keys=pick_bool("redact_keys", True),
        )
