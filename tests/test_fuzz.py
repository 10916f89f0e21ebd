"""Never raise, never change what the user receives, always end the span: the wrappers under random input.

CI runs the ``ci`` profile (a few hundred examples per property); ``HYPOTHESIS_PROFILE=thorough``
runs 10,000 (see tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import gc

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.metrics import NoOpMeterProvider

from respan_auto.instrumentation.mistralai import patch
from respan_auto.instrumentation.mistralai.call import Telemetry
from tests.test_attributes_properties import Obj, messages, stream_item, text

huge = st.one_of(
    text, st.just("€" * 20_000), st.just("x" * 200_000), st.text(alphabet="日本語🙂\u200b\x00", max_size=50)
)
item = st.one_of(stream_item, huge.map(lambda t: Obj(data=Obj(choices=[Obj(index=0, delta=Obj(content=t))]))))


class UserError(Exception):
    """Stands for an error the SDK raises to the user mid-stream."""


class FakeStream:
    def __init__(self, items, fail_at):
        self.items = list(items)
        self.fail_at = fail_at
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.position == self.fail_at:
            raise UserError("boom")
        if self.position >= len(self.items):
            raise StopIteration
        self.position += 1
        return self.items[self.position - 1]

    def close(self):
        self.position = len(self.items)


class FakeAsyncStream(FakeStream):
    """The same, the way the SDK's EventStreamAsync behaves."""

    __next__ = None  # type: ignore[assignment]

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return FakeStream.__next__(self)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self):
        FakeStream.close(self)


def _wrappers(spans, capture):
    return patch.chat_wrappers(
        Telemetry(spans.provider.get_tracer("fuzz"), NoOpMeterProvider().get_meter("f"), capture)
    )


def _kwargs(model, msgs, params):
    return {"model": model, "messages": msgs, **params}


params = st.dictionaries(
    st.sampled_from(["temperature", "max_tokens", "top_p", "random_seed", "stop", "n", "tools", "server_url"]),
    st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), text, st.lists(text, max_size=3)),
)


@given(
    items=st.lists(item, max_size=15),
    fail_at=st.one_of(st.none(), st.integers(0, 15)),
    stop_after=st.one_of(st.none(), st.integers(0, 15)),
    msgs=messages,
    model=st.one_of(text, st.none(), st.integers()),
    extra=params,
    capture=st.booleans(),
    is_async=st.booleans(),
)
def test_stream_wrapper_is_transparent_and_always_ends(
    spans, items, fail_at, stop_after, msgs, model, extra, capture, is_async
):
    spans.clear()
    wrappers = _wrappers(spans, capture)
    stream = (FakeAsyncStream if is_async else FakeStream)(items, fail_at)
    seen, raised = [], None

    def consume(proxy):
        nonlocal raised
        try:
            for index, value in enumerate(proxy):
                seen.append(value)
                if stop_after is not None and index >= stop_after:
                    proxy.close()
                    break
        except UserError as error:
            raised = error

    if is_async:

        async def opened():
            return stream

        async def run():
            nonlocal raised
            proxy = await wrappers["stream_async"](lambda **kw: opened(), None, (), _kwargs(model, msgs, extra))
            try:
                async for value in proxy:
                    seen.append(value)
                    if stop_after is not None and len(seen) > stop_after:
                        await proxy.close()
                        break
            except UserError as error:
                raised = error

        asyncio.run(run())
    else:
        consume(wrappers["stream"](lambda **kw: stream, None, (), _kwargs(model, msgs, extra)))

    limit = len(items) if fail_at is None else min(fail_at, len(items))
    expected = items[:limit]
    if stop_after is not None:
        expected = expected[: stop_after + 1]
    assert seen == expected and all(a is b for a, b in zip(seen, expected, strict=True))
    fails = fail_at is not None and fail_at <= len(items) and (stop_after is None or stop_after >= fail_at)
    assert (raised is not None) == fails
    gc.collect()
    assert len(spans.finished()) == 1


@given(msgs=messages, model=st.one_of(text, st.none()), extra=params, capture=st.booleans(), response=stream_item)
def test_complete_wrapper_returns_the_very_object(spans, msgs, model, extra, capture, response):
    spans.clear()
    wrapper = _wrappers(spans, capture)["complete"]
    assert wrapper(lambda **kw: response, None, (), _kwargs(model, msgs, extra)) is response
    assert len(spans.finished()) == 1
