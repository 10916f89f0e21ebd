"""OpenTelemetry instrumentors shipped with respan_auto."""
