"""Our OTLP encoder decodes to exactly what the standard encoder produces, for any span."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState

from respan_auto.export.encoding import encode_request

ids = st.integers(1, 2**64 - 1)
text = st.text(max_size=30)
scalar = st.one_of(text, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))
value = st.one_of(
    scalar,
    st.lists(text, max_size=3).map(tuple),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3).map(tuple),
    st.lists(st.booleans(), max_size=3).map(tuple),
    st.lists(st.floats(allow_nan=False), max_size=3).map(tuple),
)
attributes = st.dictionaries(st.text(min_size=1, max_size=20), value, max_size=6)


def context(draw_trace, draw_span, remote=False, state=None):
    return SpanContext(draw_trace, draw_span, is_remote=remote, trace_flags=TraceFlags(1), trace_state=state)


@st.composite
def spans(draw):
    resource = draw(st.sampled_from([Resource.create({"service.name": "a"}), Resource({"x": 1}, "https://s")]))
    scope = draw(
        st.sampled_from([None, InstrumentationScope("lib", "1.0"), InstrumentationScope("other", None, "https://u")])
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


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(spans(), max_size=6))
def test_same_message_as_the_standard_encoder(batch):
    ours = ExportTraceServiceRequest.FromString(encode_request(batch))
    assert ours == encode_spans(batch)
