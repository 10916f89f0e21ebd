"""Settings from ``Respan(...)`` arguments and the environment, with one clear message per bad value.

Everything else reads a ``Settings`` object and never ``os.environ`` itself. Arguments win over
the environment; a malformed value is reported once, naming it as the user wrote it, and its default
is used. Each value is read by one reader (``READERS``), which the launcher also checks its flags with,
so a flag and its variable are judged alike. The launcher checks the whole environment before it runs
the program (``check``) and passes on what it reported (``REPORTED_VARIABLE``), so the program does not
say it again.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Mapping
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
MAX_EXIT_SECONDS = 600.0
# Above these a count or a size is a mistake, and some would overflow the SDK's queue or timer.
MAX_COUNT = 2**31 - 1
MAX_BYTES = 2**40
MAX_DELAY_MILLIS = 86_400_000  # a day between batches
MAX_AGE_SECONDS = 100 * 365 * 86400  # a century: longer is a mistake, and the nanoseconds would overflow
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# The problems the launcher already reported, as a JSON list of keys: the program it runs stays quiet about them.
REPORTED_VARIABLE = "RESPAN_REPORTED"


class InvalidValueError(ValueError):
    """A value that cannot be used; its text says what was expected."""


# ---- reporting -----------------------------------------------------------------------------------------------------

_collected: list[tuple[str, str]] | None = None  # set while ``check`` runs: problems are gathered, not logged


def _warn(key: str, message: str) -> None:
    if _collected is not None:
        _collected.append((key, message))
        return
    if key in reported_by_launcher():
        return
    warn_once(key, "respan_auto: %s", message)


def reported_by_launcher() -> frozenset[str]:
    """The keys of the problems ``respan-instrument`` already reported for this process's environment."""
    raw = os.environ.get(REPORTED_VARIABLE)
    if not raw:
        return frozenset()
    try:
        keys = json.loads(raw)
    except ValueError:
        return frozenset()
    return frozenset(k for k in keys if isinstance(k, str)) if isinstance(keys, list) else frozenset()


def check(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every problem the settings of ``environ`` have, as (key, message) pairs, without logging any.

    For the launcher, which reports them before the program starts (and passes the keys on in
    ``REPORTED_VARIABLE``). Not thread-safe; the launcher has one thread.
    """
    global _collected
    found: list[tuple[str, str]] = []
    _collected = found
    try:
        Settings.load(environ)
        capture_content(environ)
    finally:
        _collected = None
    return list(dict.fromkeys(found))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _written(name: str, raw: Any) -> str:
    """A value as the user wrote it: ``RESPAN_X='v'`` for a variable, ``Respan(x='v')`` for an argument."""
    if name.endswith("=...)"):
        return f"{name[:-4]}{raw!r})"
    return f"{name}={raw!r}"


def _read(name: str, raw: Any, reader: Callable[[Any], Any], default: Any) -> Any:
    """``reader(raw)``; when it is unusable, one line naming ``name`` and ``default`` instead."""
    if raw is None:
        return default
    try:
        return reader(raw)
    except InvalidValueError as problem:
        _warn(f"{name}={raw}", f"ignoring {_written(name, raw)}: {problem}; using {_shown(default)}")
        return default


# ---- readers: a raw value to what it means, or InvalidValueError -------------------------------------------------


def read_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidValueError("expected true or false")


def read_seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= MAX_EXIT_SECONDS:  # NaN and inf too
        raise InvalidValueError(f"expected a number of seconds from 0 to {MAX_EXIT_SECONDS:g}")
    return value


def read_age(raw: str) -> int:
    """An age in whole seconds: a number of seconds, or one with a unit such as ``90m``, ``12h``, ``7d``, ``4w``."""
    match = _AGE.fullmatch(raw.strip().lower())
    seconds = float(match[1]) * _AGE_UNITS[match[2]] if match else 0.0
    value = round(seconds) if seconds <= MAX_AGE_SECONDS else 0  # "1e400" days would overflow round()
    if not 1 <= value <= MAX_AGE_SECONDS:
        raise InvalidValueError("expected an age from a second to a century: seconds, or a number with s, m, h, d, w")
    return value


def read_whole(minimum: int, maximum: int = MAX_COUNT) -> Callable[[str], int]:
    def read(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if not minimum <= value <= maximum:
            raise InvalidValueError(f"expected a whole number from {minimum} to {maximum}")
        return value

    return read


def read_key(raw: Any) -> str:
    """An API key as an HTTP header can carry it. Its text is never quoted back."""
    text = str(raw)
    if not (text.isascii() and text.isprintable()) or any(c.isspace() for c in text):
        raise InvalidValueError("it holds a space, a line break or a non-ASCII character, which no HTTP header takes")
    return text


def read_url(raw: str) -> str:
    """An http(s) base URL, without its trailing slash."""
    from urllib.parse import urlsplit

    text = str(raw).strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a port that is not a number
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0
    except ValueError:
        usable = False
    if not usable:
        raise InvalidValueError("expected an http:// or https:// URL")
    return text.rstrip("/")


def read_metadata(raw: Any) -> dict[str, str]:
    """A metadata mapping with string values (others JSON-encoded)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidValueError('expected a JSON object like {"team": "search"}') from None
    if not isinstance(raw, Mapping):
        raise InvalidValueError(f'expected a JSON object like {{"team": "search"}}, got {type(raw).__name__}')
    return {str(k): v if isinstance(v, str) else json.dumps(v, default=str) for k, v in raw.items()}


def pattern_problem(pattern: str) -> str | None:
    """Why a redaction regex cannot be used alone (as the redactor compiles it), or None."""
    import re

    try:
        compiled = re.compile(pattern)
    except Exception as error:  # noqa: BLE001 - re.error, or a warning the app's filters made an error
        return str(error) or type(error).__name__
    if compiled.fullmatch(""):
        return "it matches empty text, so it would redact between every character"
    return None


def read_patterns(raw: Any) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """Redaction regexes from a JSON list (or a list, or one regex): the usable ones, and (pattern, why) for the rest.

    Each is compiled on its own, as the redactor uses it, so inline flags such as ``(?i)`` mean what
    they mean alone.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = [raw]
    if not isinstance(raw, (list, tuple)):
        raise InvalidValueError('expected a JSON list of regular expressions, like ["password=\\\\S+"]')
    kept: list[str] = []
    rejected: list[tuple[str, str]] = []
    for item in raw:
        pattern = str(item)
        problem = pattern_problem(pattern)
        if problem is None:
            kept.append(pattern)
        else:
            rejected.append((pattern, problem))
    return tuple(kept), rejected


def read_patterns_strictly(raw: Any) -> tuple[str, ...]:
    kept, rejected = read_patterns(raw)
    if rejected:
        pattern, problem = rejected[0]
        raise InvalidValueError(f"pattern {pattern!r}: {problem}")
    return kept


# option -> its reader: what the launcher checks each flag's value with (flags without one take any text)
READERS: dict[str, Callable[[str], Any]] = {
    "api_key": read_key,
    "base_url": read_url,
    "gateway_url": read_url,
    "metadata": read_metadata,
    "exit_timeout": read_seconds,
    "max_queue_size": read_whole(1),
    "max_queue_bytes": read_whole(MIN_EXPORT_BYTES, MAX_BYTES),
    "max_export_bytes": read_whole(MIN_EXPORT_BYTES, MAX_BYTES),
    "max_attribute_length": read_whole(1),
    "spool_max_bytes": read_whole(MIN_EXPORT_BYTES, MAX_BYTES),
    "local_max_bytes": read_whole(1, MAX_BYTES),
    "local_max_age": read_age,
    "redact_patterns": read_patterns_strictly,
}


# ---- the public helpers --------------------------------------------------------------------------------------------


def _std(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


def _env(environ: Mapping[str, str], option: str) -> str | None:
    return _std(environ, ENVIRONMENT[option][0])


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    """A boolean value; an unreadable one keeps the default and is reported once."""
    return bool(_read(name, raw if raw is not None and raw.strip() else None, read_bool, default))


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
    try:
        return read_metadata(raw)
    except InvalidValueError as problem:
        _warn(f"{name}={raw}", f"ignoring {name}: {problem}")
        return {}


def _parse_patterns(name: str, raw: Any) -> tuple[str, ...]:
    """Redaction regexes; a bad one is reported once and skipped, the others kept."""
    if raw is None or raw == "":
        return ()
    try:
        kept, rejected = read_patterns(raw)
    except InvalidValueError as problem:
        _warn(f"{name}={raw}", f"ignoring {name}: {problem}")
        return ()
    for pattern, why in rejected:
        _warn(f"{name}:{pattern}", f"ignoring pattern {pattern!r} in {name}: {why}")
    return kept


def default_local_store(environ: Mapping[str, str]) -> str:
    state = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "respan-auto", "traces.db")


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
    local_max_bytes: int = 256 * 1024 * 1024
    local_max_age: int = 30 * 86400
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

        def source(option: str) -> tuple[str, Any]:
            """The value to read and its name as the user wrote it: ``Respan(option=...)``, else the variable."""
            if option in given:
                return f"Respan({option}=...)", given[option]
            return ENVIRONMENT[option][0], _env(env, option)

        def pick(option: str) -> Any:
            return source(option)[1]

        def pick_bool(option: str, default: bool) -> bool:
            name, raw = source(option)
            if isinstance(raw, bool):
                return raw
            return parse_bool(name, None if raw is None else str(raw), default)

        def pick_read(option: str, default: Any, fallback: str = "") -> Any:
            """A value through its reader; without it, the standard variable it stands for, else the default."""
            name, raw = source(option)
            if raw is None and fallback and _std(env, fallback) is not None:
                name, raw = fallback, _std(env, fallback)
            return _read(name, raw, READERS[option], default)

        metadata = parse_metadata(*source("metadata"))
        trace_content = given.get("trace_content")
        app_name = pick("app_name") or env.get("OTEL_SERVICE_NAME")
        if not app_name and "service.name=" not in env.get("OTEL_RESOURCE_ATTRIBUTES", ""):
            app_name = _program_name()
        base_url = pick_read("base_url", DEFAULT_BASE_URL)
        key_name, api_key = source("api_key")
        try:
            api_key = read_key(api_key) if api_key is not None else None
        except InvalidValueError as problem:
            _warn(f"{key_name}:unusable", f"ignoring {key_name}: {problem}")  # the key itself never in a message
            api_key = None
        return cls(
            enabled=pick_bool("enabled", True),
            api_key=api_key,
            base_url=base_url,
            environment=pick("environment"),
            app_name=app_name or None,
            customer_identifier=pick("customer_identifier"),
            metadata=metadata,
            trace_content=capture_content(env) if trace_content is None else pick_bool("trace_content", True),
            instrument_threading=pick_bool("instrument_threading", True),
            local_store=pick("local_store") or default_local_store(env),
            local_max_bytes=pick_read("local_max_bytes", 256 * 1024 * 1024),
            local_max_age=pick_read("local_max_age", 30 * 86400),
            exit_timeout=pick_read("exit_timeout", 2.0),
            otlp_from_environment=otlp_endpoint_configured(env),
            sdk_disabled=parse_bool("OTEL_SDK_DISABLED", env.get("OTEL_SDK_DISABLED"), False),
            gateway=pick_bool("gateway", False),
            gateway_url=pick_read("gateway_url", base_url),
            tracing=pick_bool("tracing", True),
            max_queue_size=pick_read("max_queue_size", 2048, fallback="OTEL_BSP_MAX_QUEUE_SIZE"),
            max_queue_bytes=pick_read("max_queue_bytes", 64 * 1024 * 1024),
            max_export_batch_size=_read(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", _std(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"), read_whole(1), 512
            ),
            schedule_delay_millis=_read(
                "OTEL_BSP_SCHEDULE_DELAY", _std(env, "OTEL_BSP_SCHEDULE_DELAY"), read_whole(0, MAX_DELAY_MILLIS), 5000
            ),
            max_export_bytes=pick_read("max_export_bytes", 4_000_000),
            max_attribute_length=pick_read("max_attribute_length", 65536, fallback="OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
            spool_dir=pick("spool_dir"),
            spool_max_bytes=pick_read("spool_max_bytes", 256 * 1024 * 1024),
            redact_patterns=_parse_patterns(*source("redact_patterns")),
            redact_keys=pick_bool("redact_keys", True),
        )
