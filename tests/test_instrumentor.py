"""The instrumentor's life cycle: lazy patching, idempotence, restore, unknown layouts."""

from __future__ import annotations

from importlib.metadata import entry_points

import wrapt

from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
from tests.conftest import run_python, user, with_sdk_tracing

METHODS = ("complete", "complete_async", "stream", "stream_async")


def test_instrument_never_imports_mistralai_and_patches_on_import(sdk, server):
    result = run_python(
        f"""
        import sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from respan_auto.instrumentation.mistralai import MistralAIInstrumentor

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        MistralAIInstrumentor().instrument(tracer_provider=provider)
        assert not [m for m in sys.modules if m.startswith("mistralai")], "instrument() imported mistralai"

        from {sdk.root} import Mistral
        client = Mistral(api_key="k", server_url="{server.url}")
        client.chat.complete(model="lazy-model", messages=[{{"role": "user", "content": "hi"}}])
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['chat lazy-model']"


def test_patched_class_is_seen_by_early_imports(sdk, client, spans):
    # a reference taken to the class before patching still sees the patched method
    chat_cls = sdk.chat_module.Chat
    for name in METHODS:
        assert isinstance(vars(chat_cls)[name], wrapt.FunctionWrapper), name
    client.chat.complete(model="m", messages=user("x"))
    assert len(spans.finished()) == 1


def test_instrument_twice_patches_once_and_uninstrument_restores(sdk, server, spans):
    chat_cls = sdk.chat_module.Chat
    originals = {name: vars(chat_cls)[name] for name in METHODS}
    instrumentor = MistralAIInstrumentor()
    instrumentor.instrument(tracer_provider=spans.provider)
    instrumentor.instrument(tracer_provider=spans.provider)
    MistralAIInstrumentor().instrument(tracer_provider=spans.provider)
    try:
        for name in METHODS:
            wrapper = vars(chat_cls)[name]
            assert isinstance(wrapper, wrapt.FunctionWrapper)
            assert wrapper.__wrapped__ is originals[name]
        sdk.client(server.url).chat.complete(model="m", messages=user("x"))
        assert len(spans.finished()) == 1
    finally:
        instrumentor.uninstrument()
    for name in METHODS:
        assert vars(chat_cls)[name] is originals[name]
    spans.clear()
    sdk.client(server.url).chat.complete(model="m", messages=user("x"))
    assert spans.finished() == []


def test_uninstrument_before_import_leaves_sdk_alone(sdk):
    result = run_python(
        f"""
        from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
        instrumentor = MistralAIInstrumentor()
        instrumentor.instrument()
        instrumentor.uninstrument()
        import wrapt
        from {sdk.root}.chat import Chat
        print(isinstance(vars(Chat)["complete"], wrapt.FunctionWrapper))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_unknown_layout_warns_once_and_app_runs(tmp_path):
    package = tmp_path / "mistralai"
    (package / "newplace").mkdir(parents=True)
    (package / "__init__.py").write_text("from mistralai.newplace import thing\n")
    (package / "newplace" / "__init__.py").write_text("thing = 42\n")
    result = run_python(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
        MistralAIInstrumentor().instrument(skip_dep_check=True)
        import mistralai
        import importlib; importlib.reload(mistralai)
        print("app ran", mistralai.thing)
        """,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "app ran 42"
    assert result.stderr.count("layout respan_auto does not know") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_chat_module_without_chat_class_warns_once(tmp_path):
    package = tmp_path / "mistralai"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "chat.py").write_text("class Conversation:\n    pass\n")
    result = run_python(
        """
        import logging
        logging.basicConfig(level=logging.WARNING)
        from respan_auto.instrumentation.mistralai import MistralAIInstrumentor
        MistralAIInstrumentor().instrument(skip_dep_check=True)
        import mistralai.chat
        print("app ran")
        """,
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "app ran"
    assert result.stderr.count("has no Chat class") == 1, result.stderr


def test_entry_point_and_instruments_extra():
    found = [ep for ep in entry_points(group="opentelemetry_instrumentor") if ep.name == "respan_mistralai"]
    assert len(found) == 1
    assert found[0].load() is MistralAIInstrumentor
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    assert get_dependency_conflicts(MistralAIInstrumentor().instrumentation_dependencies()) is None


def test_sdk_own_tracing_hook_yields_one_span_with_model(sdk, server):
    """mistralai <= 2.4.9 traces by itself under a global provider; later ones with MISTRAL_SDK_TELEMETRY."""
    seen = with_sdk_tracing(
        sdk,
        server,
        """
        def model_spans():
            exporter.clear()
            client.chat.complete(model="hook-model", messages=[{"role": "user", "content": "hi"}])
            for _ in client.chat.stream(model="hook-model", messages=[{"role": "user", "content": "hi"}]):
                pass
            return [s.name for s in exporter.get_finished_spans() if "gen_ai.request.model" in s.attributes]

        bare = model_spans()
        instrumentor = MistralAIInstrumentor()
        instrumentor.instrument()
        traced = model_spans()
        instrumentor.uninstrument()
        print(json.dumps({"bare": bare, "traced": traced, "after": model_spans()}))
        """,
    )
    # the control: the SDK really does trace by itself in this set-up
    assert len(seen["bare"]) == 2, seen
    assert seen["traced"] == ["chat hook-model", "chat hook-model"], seen
    assert seen["after"] == seen["bare"], seen
