"""USD per call, worked out when traces are viewed, never stored on spans.

Prices come from ``genai-prices`` (the ``ui`` extra), a maintained table that follows the provider's ``-latest``
aliases, so a trace viewed later is priced as the model it named was priced at the time of the call. Without the
table, or for a model it does not know, the cost is unknown (``None``), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from respan_auto import semconv as sc

PROVIDER = "mistral"  # genai-prices' id for Mistral AI
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
MISSING_LINE = "costs show as unknown: install the price table with pip install 'respan-auto[ui]' (genai-prices)"


@lru_cache(maxsize=1)
def _table() -> Any:
    try:
        import genai_prices
    except ImportError:
        return None
    return genai_prices


def available() -> bool:
    return _table() is not None


def _tokens(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


@lru_cache(maxsize=4096)
def _price(model: str, day: int, input_tokens: int, output_tokens: int, cached: int) -> float | None:
    table = _table()
    if table is None:
        return None
    usage = table.Usage(input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cached or None)
    when = datetime.fromtimestamp(day * 86400, tz=timezone.utc)
    try:
        return float(table.calc_price(usage, model, provider_id=PROVIDER, genai_request_timestamp=when).total_price)
    except Exception:  # noqa: BLE001 - LookupError for an unknown model; a table of another shape is unknown too
        return None


def call_cost(
    model: str | None, input_tokens: Any, output_tokens: Any, cached_tokens: Any = 0, start_ns: int | None = None
) -> float | None:
    """The USD cost of one call, or None when the model or its price is unknown."""
    if not model or not isinstance(model, str):
        return None
    day = (start_ns or 0) // (86400 * 10**9)
    return _price(model, day, _tokens(input_tokens), _tokens(output_tokens), _tokens(cached_tokens))


def span_model(attributes: Mapping[str, Any]) -> str | None:
    """The model that answered, else the one asked for."""
    model = attributes.get(sc.GEN_AI_RESPONSE_MODEL) or attributes.get(sc.GEN_AI_REQUEST_MODEL)
    return model if isinstance(model, str) else None


# operations that call a model (tool and agent spans, which other instrumentors also mark, are not model calls)
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})


def is_llm_call(attributes: Mapping[str, Any]) -> bool:
    """A span that reported usage: the ones a price applies to."""
    return sc.GEN_AI_USAGE_INPUT_TOKENS in attributes or sc.GEN_AI_USAGE_OUTPUT_TOKENS in attributes


def is_model_call(attributes: Mapping[str, Any]) -> bool:
    """A model call, failed ones (no usage) included: what the views count as LLM calls. A span inside another
    instrumentation's span for the same call (``respan.usage.counted_above``) is that call, counted there."""
    if attributes.get(sc.RESPAN_USAGE_COUNTED_ABOVE):
        return False
    return is_llm_call(attributes) or attributes.get(sc.GEN_AI_OPERATION_NAME) in MODEL_OPERATIONS


def span_cost(record: Mapping[str, Any]) -> float | None:
    """The cost of a stored span record that reports usage; None for any other span, or an unknown price."""
    attributes = record.get("attributes")
    if not isinstance(attributes, Mapping) or not is_llm_call(attributes):
        return None
    return call_cost(
        span_model(attributes),
        attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS),
        attributes.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS),
        attributes.get(CACHE_READ_TOKENS),
        record.get("start") if isinstance(record.get("start"), int) else None,
    )


def total_cost(records: Iterable[Mapping[str, Any]]) -> tuple[float, int]:
    """The summed cost of the LLM calls among ``records``, and how many of those calls had no known price."""
    total, unknown = 0.0, 0
    for record in records:
        attributes = record.get("attributes")
        if not isinstance(attributes, Mapping) or not is_llm_call(attributes):
            continue
        cost = span_cost(record)
        if cost is None:
            unknown += 1
        else:
            total += cost
    return total, unknown


def format_usd(cost: float | None) -> str:
    """Three significant digits for fractions of a cent (a call often costs millionths), cents above."""
    if cost is None:
        return "unknown"
    if cost <= 0:
        return "$0"
    decimals = max(2, 2 - math.floor(math.log10(cost))) if cost < 1 else 2
    return f"${cost:.{decimals}f}".rstrip("0").rstrip(".") if cost < 1 else f"${cost:,.2f}"
