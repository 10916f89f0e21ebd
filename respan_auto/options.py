"""The RESPAN_* variables, in one table the launcher's --help and the settings both read.

Kept free of imports: the launcher reads it on every start.
"""

DEFAULT_BASE_URL = "https://api.respan.ai/api"

# option -> (environment variable, what it is)
ENVIRONMENT = {
    "enabled": ("RESPAN_ENABLED", "false turns respan-auto off entirely (default true)"),
    "api_key": ("RESPAN_API_KEY", "Respan API key; without it (and without an OTLP endpoint) traces stay local"),
    "base_url": ("RESPAN_BASE_URL", f"Respan API base (default {DEFAULT_BASE_URL}); traces go to BASE/v2/traces"),
    "environment": ("RESPAN_ENVIRONMENT", "environment tag, recorded as respan.environment on every span"),
    "app_name": ("RESPAN_APP_NAME", "service name (falls back to OTEL_SERVICE_NAME, then the program's name)"),
    "customer_identifier": ("RESPAN_CUSTOMER_IDENTIFIER", "default customer identifier for every span"),
    "metadata": ("RESPAN_METADATA", 'default metadata for every span, a JSON object: {"team": "search"}'),
    "trace_content": ("RESPAN_TRACE_CONTENT", "false keeps prompts, completions and tool arguments out of spans"),
    "instrument_threading": ("RESPAN_INSTRUMENT_THREADING", "false leaves threads without context propagation"),
    "local_store": (
        "RESPAN_LOCAL_STORE",
        "file for local traces (default $XDG_STATE_HOME/respan-auto/traces.db, ~/.local/state without it)",
    ),
    "local_max_bytes": ("RESPAN_LOCAL_MAX_BYTES", "largest the local store may grow; the oldest traces go (268435456)"),
    "local_max_age": ("RESPAN_LOCAL_MAX_AGE", "age after which local traces go: seconds, or 12h, 7d, 4w (default 30d)"),
    "exit_timeout": ("RESPAN_EXIT_TIMEOUT", "seconds process exit may wait for the last export (default 2)"),
    "max_queue_size": ("RESPAN_MAX_QUEUE_SIZE", "spans held for export at most (OTEL_BSP_MAX_QUEUE_SIZE, else 2048)"),
    "max_queue_bytes": (
        "RESPAN_MAX_QUEUE_BYTES",
        "bytes held for export at most, waiting to be encoded and again waiting to be sent (67108864)",
    ),
    "max_export_bytes": ("RESPAN_MAX_EXPORT_BYTES", "largest export request before compression, in bytes (4000000)"),
    "max_attribute_length": (
        "RESPAN_MAX_ATTRIBUTE_LENGTH",
        "longest attribute value kept, in characters (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, else 65536)",
    ),
    "spool_dir": ("RESPAN_SPOOL_DIR", "folder for spans still undelivered at exit; sent by the next run or `flush`"),
    "spool_max_bytes": ("RESPAN_SPOOL_MAX_BYTES", "largest the spool folder may grow; the oldest files go (268435456)"),
    "redact_patterns": ("RESPAN_REDACT_PATTERNS", "extra regexes to redact from captured content (a JSON list)"),
    "redact_keys": ("RESPAN_REDACT_KEYS", "false turns off the built-in redaction of key-like tokens (default true)"),
    "gateway": ("RESPAN_GATEWAY", "true routes Mistral chat calls through the Respan gateway (needs RESPAN_API_KEY)"),
    "gateway_url": ("RESPAN_GATEWAY_URL", "gateway base for a self-hosted or regional gateway (default: the base URL)"),
    "tracing": ("RESPAN_TRACING", "false turns tracing off (gateway-only mode)"),
}
