"""OTLP protobuf for a batch of spans, written straight to bytes, byte-equal to the standard encoder.

The standard encoder builds a protobuf object per attribute and then serializes the tree: on a chat span
that is the largest single cost of tracing a call. This writes the same bytes directly, in field-number
order as protobuf does (field numbers from opentelemetry-proto's ``trace.proto`` and ``common.proto``), and
caches the bytes of short attributes that repeat from span to span (operation, provider, model, roles).

Anything this does not know how to write exactly as the standard encoder would (a value type outside the
OTLP ones, ``None``, text that is not valid UTF-8) raises ``UnencodableError``: the caller then hands that batch
to the standard exporter whole, so the bytes on the wire are always the standard's. The test suite checks
byte equality on arbitrary spans.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack
_SMALL = [bytes([n]) for n in range(128)]
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_CACHE_LIMIT = 4096
_CACHEABLE_LENGTH = 64
# not int (token counts vary: they would churn the cache) nor float (0.0 == -0.0, yet they encode differently)
_CACHEABLE = frozenset({str, bool})
_kv_cache: dict[tuple[bytes, str, type, Any], bytes] = {}
_key_cache: dict[str, bytes] = {}


class UnencodableError(Exception):
    """A span this encoder cannot write exactly as the standard one would."""


def _varint(value: int) -> bytes:
    if value < 128:
        return _SMALL[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, data: bytes) -> bytes:
    size = len(data)
    return tag + (_SMALL[size] if size < 128 else _varint(size)) + data


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: protobuf refuses it, and so do we
        raise UnencodableError("text that is not valid UTF-8") from exc


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``; its oneof is written even when it holds a default, as protobuf does."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", _utf8(value))
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        if not -(2**63) <= value < 2**63:
            raise UnencodableError("an integer outside int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if kind is float:
        return b"\x21" + _DOUBLE(value)
    if kind is bytes:
        return _field(b"\x3a", value)
    if kind is tuple or kind is list:
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if kind is dict:
        pairs = b"".join(_field(b"\x0a", _key_field(str(k)) + _field(b"\x12", _any_value(v))) for k, v in value.items())
        return _field(b"\x32", pairs)
    # Subclasses (a str Enum, numpy scalars, other sequences and mappings): protobuf writes what the object
    # holds, which str()/int() may not give back, so the standard encoder takes the batch.
    raise UnencodableError(f"an attribute of type {kind.__name__}")


def _key_field(key: str) -> bytes:
    """A ``KeyValue``'s key field, cached: keys repeat from span to span."""
    encoded = _key_cache.get(key)
    if encoded is None:
        if type(key) is not str:
            raise UnencodableError("a key that is not a string")
        encoded = _field(b"\x0a", _utf8(key)) if key else b""
        if len(_key_cache) >= _CACHE_LIMIT:
            _key_cache.clear()
        _key_cache[key] = encoded
    return encoded


def _long_text(tag: bytes, key: str, value: str) -> bytes:
    """A string attribute too long to cache, written with one join rather than nested concatenations."""
    data = _utf8(value)
    size = len(data)
    head = _varint(size)
    key_field = _key_field(key)
    any_size = 1 + len(head) + size  # AnyValue: string_value tag, length, text
    any_head = _varint(any_size)
    kv_size = len(key_field) + 1 + len(any_head) + any_size  # KeyValue: key, value tag, length, AnyValue
    return b"".join((tag, _varint(kv_size), key_field, b"\x12", any_head, b"\x0a", head, data))


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a ``KeyValue`` field under ``tag``; short scalar ones come from a cache, tag included."""
    if not attributes:
        return b""
    copy = getattr(attributes, "copy", None)  # the SDK's attributes copy to a dict at C speed; items() is Python-level
    items = (copy() if copy is not None else dict(attributes)).items()
    out = []
    cache = _kv_cache
    for key, value in items:
        kind = type(value)
        if kind is str and len(value) > _CACHEABLE_LENGTH:
            out.append(_long_text(tag, key, value))
            continue
        if kind not in _CACHEABLE:
            out.append(_field(tag, _key_field(key) + _field(b"\x12", _any_value(value))))
            continue
        cache_key = (tag, key, kind, value)
        encoded = cache.get(cache_key)
        if encoded is None:
            encoded = _field(tag, _key_field(key) + _field(b"\x12", _any_value(value)))
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[cache_key] = encoded
        out.append(encoded)
    return b"".join(out)


def _flags(context: Any) -> bytes:
    return _FIXED32(_HAS_IS_REMOTE | (_IS_REMOTE if context is not None and context.is_remote else 0))


def _count(tag: bytes, value: int) -> bytes:
    if not value:
        return b""
    if type(value) is not int or not 0 < value < 2**32:
        raise UnencodableError("a dropped count outside uint32")
    return tag + _varint(value)


def _status(status: Any) -> bytes:
    body = _field(b"\x12", _utf8(status.description)) if status.description else b""
    code = status.status_code.value
    return body + (b"\x18" + _varint(code) if code else b"")


def _event(event: Any) -> bytes:
    body = b"\x09" + _FIXED64(event.timestamp) if event.timestamp else b""
    if event.name:
        body += _field(b"\x12", _utf8(event.name))
    return body + _attributes(b"\x1a", event.attributes) + _count(b"\x20", event.dropped_attributes)


def _link(link: Any) -> bytes:
    context = link.context
    body = b"\x0a\x10" + context.trace_id.to_bytes(16, "big") + b"\x12\x08" + context.span_id.to_bytes(8, "big")
    body += _attributes(b"\x22", link.attributes) + _count(b"\x28", link.dropped_attributes)
    return body + b"\x35" + _flags(context)


def encode_span(span: ReadableSpan) -> bytes:
    context = span.context
    if context is None:
        raise UnencodableError("a span without a context")
    parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
    state = context.trace_state
    if state:
        parts.append(_field(b"\x1a", _utf8(",".join(f"{k}={v}" for k, v in state.items()))))
    if span.parent is not None:
        parts += (b"\x22\x08", span.parent.span_id.to_bytes(8, "big"))
    if span.name:
        parts.append(_field(b"\x2a", _utf8(span.name)))
    parts += (b"\x30", _varint(span.kind.value + 1))
    if span.start_time:
        parts += (b"\x39", _FIXED64(span.start_time))
    if span.end_time:
        parts += (b"\x41", _FIXED64(span.end_time))
    parts.append(_attributes(b"\x4a", span.attributes))
    parts.append(_count(b"\x50", span.dropped_attributes))
    parts.extend(_field(b"\x5a", _event(event)) for event in span.events)
    parts.append(_count(b"\x60", span.dropped_events))
    parts.extend(_field(b"\x6a", _link(link)) for link in span.links)
    parts.append(_count(b"\x70", span.dropped_links))
    parts.append(_field(b"\x7a", _status(span.status)))
    parts += (b"\x85\x01", _flags(span.parent))
    return b"".join(parts)


def _scope(scope: Any) -> bytes:
    if scope is None:
        return b""
    body = _field(b"\x0a", _utf8(scope.name)) if scope.name else b""
    if scope.version:
        body += _field(b"\x12", _utf8(scope.version))
    return body + _attributes(b"\x1a", getattr(scope, "attributes", None))


def encode_request(spans: Sequence[ReadableSpan]) -> bytes:
    """An ``ExportTraceServiceRequest``: spans grouped by resource, then by instrumentation scope, in order seen."""
    try:
        return _request(spans)
    except UnencodableError:
        raise
    except Exception as exc:
        raise UnencodableError(type(exc).__name__) from exc


_Canonical = tuple[dict[int, Any], dict[Any, Any]]  # by identity, by value


def _request(spans: Sequence[ReadableSpan]) -> bytes:
    # Grouped exactly as the standard encoder groups them (a dict keyed by resource, then by scope), but each
    # object is looked up by identity first: a Resource hashes by serializing its attributes to JSON.
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    resources: _Canonical = ({}, {})
    scopes_seen: _Canonical = ({}, {})
    for span in spans:
        resource, scope = _same(resources, span.resource), _same(scopes_seen, span.instrumentation_scope)
        scopes = groups.setdefault(id(resource), (resource, {}))[1]
        scopes.setdefault(id(scope), (scope, []))[1].append(encode_span(span))
    out = []
    for resource, scopes in groups.values():
        body = _field(b"\x0a", _attributes(b"\x0a", resource.attributes))
        for scope, encoded in scopes.values():
            scope_spans = _field(b"\x0a", _scope(scope)) + b"".join(_field(b"\x12", s) for s in encoded)
            schema = scope.schema_url if scope is not None else None
            if schema:
                scope_spans += _field(b"\x1a", _utf8(schema))
            body += _field(b"\x12", scope_spans)
        if resource.schema_url:
            body += _field(b"\x1a", _utf8(resource.schema_url))
        out.append(_field(b"\x0a", body))
    return b"".join(out)


def _same(seen: _Canonical, item: Any) -> Any:
    """The object a dict keyed by these objects would file ``item`` under: the first one equal to it, same hash."""
    by_id, by_value = seen
    key = id(item)
    if key in by_id:
        return by_id[key]
    found = by_id[key] = by_value.setdefault(item, item)
    return found
