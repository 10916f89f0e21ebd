"""respan-auto: zero-code OpenTelemetry tracing for the Mistral AI Python SDK."""

from respan_auto.version import __version__

__all__ = ["__version__"]
