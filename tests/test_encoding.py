"""Any span the app can make reaches the encoder in a form it can encode, and our encoder writes the standard's bytes.

Text protobuf cannot encode (a lone surrogate) costs at most its own value, repaired, never the
request: without the repair, the standard encoder raises and the whole batch is lost. Our direct
encoder must produce exactly the bytes of the standard one on every span the cleaner hands over,
and refuse (so that the standard exporter takes the batch) what it cannot write the same way.
"""

from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from respan_auto.export.encoding import UnencodableError, encode_request
from respan_auto.export.limits import Cleaner, Trimmer, span_size

ids = st.integers(1, 2**64 - 1)
text = st.text(max_size=30)  # includes lone surrogates
scalar = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))
value = st.one_of(
    scalar,
    st.lists(text, max_size=3).map(tuple),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=3).map(tuple),
)
attributes = st.dictionaries(st.text(max_size=20), value, max_size=6)


def context(draw_trace, draw_span, remote=False, state=None):
    return SpanContext(draw_trace, draw_span, is_remote=remote, trace_flags=TraceFlags(1), trace_state=state)


@st.composite
def spans(draw):
    resource = draw(st.sampled_from([Resource.create({"service.name": "a"}), Resource({"x": 1}, "https://s")]))
    if draw(st.booleans()):  # equal but distinct objects, which the standard encoder groups together
        resource = Resource(dict(resource.attributes), resource.schema_url)
    scope = draw(
        st.sampled_from(
            [
                None,
                InstrumentationScope("lib", "1.0"),
                InstrumentationScope("other", None, "https://u"),
                InstrumentationScope("", "2", None, {"scope.attr": 1}),
            ]
        )
    )
    parent = draw(st.one_of(st.none(), st.tuples(st.integers(1, 2**128 - 1), ids, st.booleans())))
    state = draw(st.sampled_from([None, TraceState([("k", "v")])]))
    return ReadableSpan(
        name=draw(text),
        context=context(draw(st.integers(1, 2**128 - 1)), draw(ids), state=state),
        parent=context(*parent) if parent else None,
        resource=resource,
        attributes=draw(attributes),
        events=[
            Event(draw(text), draw(attributes), draw(st.integers(1, 2**63))) for _ in range(draw(st.integers(0, 3)))
        ],
        links=[
            Link(context(draw(st.integers(1, 2**128 - 1)), draw(ids), draw(st.booleans())), draw(attributes))
            for _ in range(draw(st.integers(0, 2)))
        ],
        kind=draw(st.sampled_from(list(SpanKind))),
        status=Status(draw(st.sampled_from(list(StatusCode))), draw(st.sampled_from([None, "why"]))),
        start_time=draw(st.integers(1, 2**63)),
        end_time=draw(st.integers(1, 2**63)),
        instrumentation_scope=scope,
    )


def _encodable(value):
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(spans(), max_size=6))
def test_cleaned_spans_always_encode_and_keep_every_encodable_value(batch):
    cleaned = [Cleaner(None)(span) for span in batch]
    encode_spans(cleaned).SerializeToString()  # never raises
    for before, after in zip(batch, cleaned, strict=True):
        for key, value in (before.attributes or {}).items():
            values = value if isinstance(value, tuple) else (value,)
            if all(_encodable(v) for v in values):
                assert after.attributes[key] == value  # only the values that could not be encoded change
        if all(_encodable(v) for v in (before.attributes or {}).values()) and _encodable(before.name):
            assert encode_spans([after]) == encode_spans([before])


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(spans(), min_size=1, max_size=6))
def test_the_size_estimate_never_undercounts(batch):
    """Requests are split on the estimate; an undercount could make one too large to send."""
    for span in batch:
        trimmed, _ = Trimmer(10**9, 10**9)(span)
        assert trimmed is span
        one = encode_spans([Cleaner(None)(span)]).ByteSize()
        empty = encode_spans([]).ByteSize()
        resource_and_scope = 600  # counted once per request (REQUEST_SLACK covers them), not per span
        assert one - empty <= span_size(span) + resource_and_scope


def _standard_bytes(batch):
    return encode_spans(batch).SerializePartialToString()


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(spans(), max_size=6))
def test_our_encoder_writes_the_standard_bytes_for_every_cleaned_span(batch):
    cleaned = [Cleaner(None)(span) for span in batch]
    assert encode_request(cleaned) == _standard_bytes(cleaned)


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(spans(), min_size=1, max_size=4))
def test_our_encoder_refuses_what_it_cannot_write_as_the_standard_does(batch):
    """Raw spans may carry lone surrogates: then ours refuses, and the standard exporter takes the batch."""
    try:
        ours = encode_request(batch)
    except UnencodableError:
        assert any(
            not _encodable(span.name) or not all(_encodable_value(v) for v in span.attributes.values())
            for span in batch
        ) or _has_bad_event_or_link(batch)
        return
    assert ours == _standard_bytes(batch)


def _encodable_value(value):
    return all(_encodable(v) for v in value) if isinstance(value, tuple) else _encodable(value)


def _has_bad_event_or_link(batch):
    for span in batch:
        for item in (*span.events, *span.links):
            if not all(_encodable_value(v) for v in (item.attributes or {}).values()):
                return True
            if not _encodable(getattr(item, "name", "")):
                return True
        if any(not _encodable(key) for key in span.attributes):
            return True
    return False


@pytest.mark.parametrize(
    "value",
    [None, 2**64, {"nested": {"deeper": [1, 2]}}, b"\x00\xff", ("a", "b"), (), 0, 0.0, False, ""],
    ids=repr,
)
def test_edge_values_match_or_are_refused(value):
    span = ReadableSpan(
        name="s",
        context=context(1, 2),
        resource=Resource({}),
        attributes={"k": value},
        kind=SpanKind.CLIENT,
        start_time=1,
        end_time=2,
    )
    try:
        ours = encode_request([span])
    except UnencodableError:
        assert value is None or value == 2**64  # what the standard encoders of different OTel trains disagree on
        return
    assert ours == _standard_bytes([span])


def test_values_that_compare_equal_but_encode_differently_are_not_confused():
    """The encoder caches short attributes: 0.0 and -0.0 (or 1, True and 1.0) must each keep their own bytes."""

    def span(value):
        return ReadableSpan(name="s", context=context(1, 2), resource=Resource({}), attributes={"k": value})

    for value in (0.0, -0.0, 1, True, 1.0, 0, False, -0.0):
        assert encode_request([span(value)]) == _standard_bytes([span(value)])


class Role(str, enum.Enum):
    USER = "user"


class Seven(int):
    def __int__(self):
        return 7


@pytest.mark.parametrize(
    "attributes",
    [
        {"role": Role.USER},
        {"roles": (Role.USER, "x")},
        {"n": Seven(3)},
        {0: "v", "z": 1},
        {"nested": {1: "a", "1": "b"}},
        {"bytes": bytearray(b"ab")},
    ],
    ids=["str-enum", "str-enum-in-array", "int-subclass", "non-string-key", "colliding-nested-keys", "bytearray"],
)
def test_what_str_or_int_would_change_is_left_to_the_standard_encoder(attributes):
    """Protobuf writes what a subclass holds, not what str()/int() return: ours must match or refuse."""
    span = ReadableSpan(name="s", context=context(1, 2), resource=Resource({}), attributes=attributes)
    try:
        ours = encode_request([span])
    except UnencodableError:
        return
    assert ours == _standard_bytes([span])


def test_resources_are_grouped_as_a_dict_would_group_them():
    """Equal resources with different hashes ({"a": 1} and {"a": 1.0}) are two groups, as in the standard encoder."""
    batch = [
        ReadableSpan(name=f"s{i}", context=context(1, i + 1), resource=resource, attributes={})
        for i, resource in enumerate([Resource({"a": 1}), Resource({"a": 1.0}), Resource({"a": 1}), Resource({})])
    ]
    assert encode_request(batch) == _standard_bytes(batch)
