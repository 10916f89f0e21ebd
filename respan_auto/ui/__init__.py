"""``respan-instrument ui``: the local web view of the trace store (standard library only, no network)."""
