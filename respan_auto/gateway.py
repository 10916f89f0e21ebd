"""Gateway mode: send every Mistral chat and embeddings request through the Respan gateway, with no code change.

The gateway is OpenAI-compatible and serves those two; every other family keeps going to Mistral.

The SDK's ``BaseSDK.do_request`` (and its async twin) is wrapped, so clients created before or
after activation, sync or async, all follow the switch. A rerouted request gets the gateway's
URL, the Respan key instead of the Mistral key, and the Respan parameters in force (defaults,
``propagate_attributes`` and ``gateway_params`` scopes) in the ``X-Data-Respan-Params`` header:
the header leaves the user's JSON body untouched, works the same for streamed and plain calls,
and has the lowest precedence, so body fields the user sends themselves still win.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace

from respan_auto import context
from respan_auto import semconv as sc
from respan_auto._guard import report_once

CHAT_PATH = "/v1/chat/completions"
ROUTED_PATHS = (CHAT_PATH, "/v1/embeddings")  # what the gateway serves
PARAMS_HEADER = "X-Data-Respan-Params"
LOG_ID_HEADER = "x-respan-log-id"
BASESDK_MODULES = ("mistralai.basesdk", "mistralai.client.basesdk")

_PARAMS_KEY = context_api.create_key("respan-gateway-params")
_route: tuple[str, str] | None = None  # (gateway base URL, Respan key) while the switch is on
_patched: list[tuple[type, str, Any]] = []


class gateway_params(context.ContextScope):  # noqa: N801 - used like a function
    """Gateway-only parameters for the calls inside the block (sync or async ``with``).

    ``fallback_models``, ``cache_enabled``, ``cache_ttl``, ``cache_options``, ``load_balance_group``,
    ``prompt``, ``retry_params``, ``disable_log``, ``customer_params``, and any other documented
    parameter, passed through as given. Nested scopes merge; the inner value wins.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.params = params

    def entered_context(self) -> context_api.Context:
        merged = {**_scoped_params(), **self.params}
        return context_api.set_value(_PARAMS_KEY, merged)


def _scoped_params() -> dict[str, Any]:
    """The ``gateway_params`` in force here (only a scope ever puts a dict under the key)."""
    params = context_api.get_value(_PARAMS_KEY)
    return params if isinstance(params, dict) else {}


_REVERSE = {v: k for k, v in context.ATTRIBUTE_KEYS.items()}


def respan_params() -> dict[str, Any]:
    """The Respan parameters in force here, in the gateway's vocabulary."""
    params: dict[str, Any] = {}
    metadata: dict[str, str] = {}
    customer: dict[str, str] = {}
    for key, value in context.current_attributes().items():
        if key.startswith(context.METADATA_PREFIX):
            metadata[key[len(context.METADATA_PREFIX) :]] = value
            continue
        option = _REVERSE.get(key)
        if option == "customer_identifier":
            params["customer_identifier"] = value
            customer["customer_identifier"] = value
        elif option in ("customer_email", "customer_name"):
            customer[option.split("_", 1)[1]] = value
        elif option == "thread_identifier":
            params["thread_identifier"] = value
        elif option == "environment":
            metadata.setdefault("environment", value)
    if len(customer) > (1 if "customer_identifier" in customer else 0):
        params["customer_params"] = customer
    if metadata:
        params["metadata"] = metadata
    extra = dict(_scoped_params())
    if isinstance(extra.get("metadata"), dict) and "metadata" in params:
        extra["metadata"] = {**params["metadata"], **extra["metadata"]}
    params.update(extra)
    return params


def _reroute(request: Any) -> Any:
    """A copy of a chat or embeddings request aimed at the gateway, or the request itself when not ours to move."""
    if _route is None:
        return request
    path = next((p for p in ROUTED_PATHS if request.url.path.endswith(p)), None)
    if path is None:
        return request
    base, key = _route
    headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "authorization")}
    headers["authorization"] = f"Bearer {key}"
    params = respan_params()
    if params:
        encoded = json.dumps(params, ensure_ascii=False, default=str).encode()
        headers[PARAMS_HEADER] = base64.b64encode(encoded).decode("ascii")
    url = base + path
    if request.url.query:
        url += "?" + request.url.query.decode("ascii")
    return type(request)(
        request.method, url, headers=headers, content=request.content, extensions=dict(request.extensions)
    )


def _record_log_id(response: Any, request: Any) -> None:
    span = trace.get_current_span()
    if not span.is_recording():
        return
    log_id = response.headers.get(LOG_ID_HEADER)
    if log_id:
        span.set_attribute(sc.RESPAN_GATEWAY_LOG_ID, log_id)
    url = request.url
    span.set_attribute(sc.SERVER_ADDRESS, url.host)
    span.set_attribute(sc.SERVER_PORT, url.port or (443 if url.scheme == "https" else 80))


def _split(args: tuple, kwargs: dict) -> tuple[Any, tuple, dict]:
    if "request" in kwargs:
        return kwargs["request"], args, kwargs
    return args[1], args, kwargs


def _with_request(args: tuple, kwargs: dict, request: Any) -> tuple[tuple, dict]:
    if "request" in kwargs:
        return args, {**kwargs, "request": request}
    return (args[0], request, *args[2:]), kwargs


def _prepare(args: tuple, kwargs: dict) -> tuple[tuple, dict, Any]:
    try:
        original, _, _ = _split(args, kwargs)
        routed = _reroute(original)
        if routed is original:
            return args, kwargs, None
        args, kwargs = _with_request(args, kwargs, routed)
        return args, kwargs, routed
    except Exception as exc:  # noqa: BLE001 - if we cannot reroute, the call goes as the user wrote it
        report_once("gateway reroute", exc)
        return args, kwargs, None


def _after(response: Any, routed: Any) -> None:
    if routed is not None:
        try:
            _record_log_id(response, routed)
        except Exception as exc:  # noqa: BLE001
            report_once("gateway log id", exc)


def _do_request(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    args, kwargs, routed = _prepare(args, kwargs)
    response = wrapped(*args, **kwargs)
    _after(response, routed)
    return response


def _do_request_async(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    args, kwargs, routed = _prepare(args, kwargs)

    async def run() -> Any:
        response = await wrapped(*args, **kwargs)
        _after(response, routed)
        return response

    return run()


def _patch(module: Any) -> None:
    import wrapt

    cls = getattr(module, "BaseSDK", None)
    if not isinstance(cls, type) or any(c is cls for c, _, _ in _patched):
        return
    for name, wrapper in (("do_request", _do_request), ("do_request_async", _do_request_async)):
        original = vars(cls).get(name)
        if original is not None:
            wrapt.wrap_function_wrapper(cls, name, wrapper)
            _patched.append((cls, name, original))


def enable(base_url: str, api_key: str) -> None:
    """Route chat calls to ``{base_url}/v1/chat/completions`` with ``api_key``; lazily, like the instrumentor."""
    global _route
    first = _route is None and not _patched
    _route = (base_url.rstrip("/"), api_key)
    if first:
        import wrapt

        for module in BASESDK_MODULES:
            wrapt.register_post_import_hook(_patch, module)


def disable() -> None:
    """Calls go to Mistral again; the SDK's methods are restored."""
    global _route
    _route = None
    while _patched:
        cls, name, original = _patched.pop()
        setattr(cls, name, original)


def enabled() -> bool:
    return _route is not None
