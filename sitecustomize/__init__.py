"""respan-instrument's bootstrap folder: only the launcher puts it on PYTHONPATH."""
