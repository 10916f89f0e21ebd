"""The export pipeline: a batching processor, the OTLP/HTTP exporter and the local store."""
