"""Costs are priced when viewed, from the maintained table, and are "unknown" rather than guessed."""

from __future__ import annotations

import subprocess
import sys

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given
from hypothesis import strategies as st

from respan_auto import cost
from respan_auto import semconv as sc
from tests.conftest import REPO


def record(model: object, tokens_in: object, tokens_out: object, **more: object) -> dict:
    attributes = {sc.GEN_AI_RESPONSE_MODEL: model, sc.GEN_AI_USAGE_INPUT_TOKENS: tokens_in}
    attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = tokens_out
    attributes.update(more)
    return {"start": 1_767_225_600 * 10**9, "attributes": attributes}


def test_a_known_model_is_priced_as_the_table_prices_it():
    expected = calc_price(Usage(input_tokens=1200, output_tokens=300), "mistral-large-latest", provider_id="mistral")
    assert cost.call_cost("mistral-large-latest", 1200, 300) == pytest.approx(float(expected.total_price))
    assert cost.call_cost("mistral-large-latest", 1200, 300) > cost.call_cost("mistral-large-latest", 1200, 0) > 0


def test_the_answering_model_wins_over_the_requested_alias():
    # both priced by every table release the test extra admits (older ones lack some dated models)
    both = record("mistral-large-2411", 1000, 1000, **{sc.GEN_AI_REQUEST_MODEL: "mistral-small-latest"})
    assert cost.span_cost(both) == cost.call_cost("mistral-large-2411", 1000, 1000)
    assert cost.span_cost(both) != cost.call_cost("mistral-small-latest", 1000, 1000)
    requested_only = {"attributes": {sc.GEN_AI_REQUEST_MODEL: "mistral-large-latest", sc.GEN_AI_USAGE_INPUT_TOKENS: 9}}
    assert cost.span_cost(requested_only) == cost.call_cost("mistral-large-latest", 9, 0)


def test_an_unknown_model_is_unknown_and_counted_as_such():
    spans = [record("no-such-model-9000", 10, 10), record("mistral-large-2411", 10, 10), {"attributes": {"x": 1}}]
    assert cost.span_cost(spans[0]) is None
    assert cost.span_cost(spans[2]) is None  # not an LLM call at all
    total, unknown = cost.total_cost(spans)
    assert unknown == 1
    assert total == cost.span_cost(spans[1]) > 0
    assert cost.format_usd(None) == "unknown"


@given(
    st.one_of(st.none(), st.text(max_size=30), st.integers(), st.sampled_from(["mistral-small-2506", "codestral"])),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
)
def test_odd_attribute_values_never_raise(model, tokens_in, tokens_out):
    priced = cost.span_cost(record(model, tokens_in, tokens_out))
    assert priced is None or priced >= 0
    assert cost.format_usd(priced).startswith(("$", "unknown"))


@given(st.floats(min_value=1e-9, max_value=0.999, allow_nan=False))
def test_fractions_of_a_dollar_keep_three_significant_digits(value):
    shown = cost.format_usd(value)
    assert float(shown[1:]) == pytest.approx(value, rel=5e-3)


def test_amounts_above_a_dollar_show_cents():
    assert cost.format_usd(1234.567) == "$1,234.57"
    assert cost.format_usd(0) == "$0"


def test_without_the_table_every_cost_is_unknown():
    code = (
        "import sys; sys.modules['genai_prices'] = None\n"
        "from respan_auto import cost\n"
        "print(cost.available(), cost.call_cost('mistral-small-2506', 10, 10))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.split() == ["False", "None"], result.stderr


def test_a_call_counted_above_is_not_a_second_model_call():
    ours = {"gen_ai.operation.name": "chat", "respan.usage.counted_above": True, "respan.usage.input_tokens": 5}
    theirs = {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 2}
    assert [cost.is_model_call(a) for a in (ours, theirs)] == [False, True]
    assert [cost.is_llm_call(a) for a in (ours, theirs)] == [False, True]
