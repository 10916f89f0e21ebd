"""The web view's HTTP server: the page, its assets and the JSON API it reads, on the loopback address.

The store holds prompts and completions, so every request needs the access token printed at start, as Jupyter
does: ``?token=`` once (answered with an HttpOnly, SameSite=Strict cookie and a redirect to the same address
without it), then the cookie, or an ``Authorization: Bearer`` header. An API address answers ``?token=`` at once,
with no cookie, so that a script can read it in one request. Anything else is a 403 with no data. The
Host header must name the bound address (or localhost) with the port, so a page whose name was rebound to 127.0.0.1
(DNS rebinding) is refused too. Every answer carries a strict Content-Security-Policy; API answers are never cached.

JSON API (GET and HEAD; others are answered 501. Times are integers in ns since the epoch, durations in ns unless
named ``_ms``):

``/api/traces?app=&model=&customer=&errors=1&q=&since=&until=&before=&limit=``
    The newest traces matching every filter given (``q``: case-insensitive text in any attribute of any span:
    prompts, completions, tool arguments, decorated functions' input and output; ``before``: older than this
    start, or than ``next_before``'s ``start.trace_id``, for paging;
    ``limit``: 1 to 500, default 50):
    ``{"traces": [{trace_id, start, end, duration_ns, app, root_name, span_count, llm_calls, input_tokens,
    output_tokens, error, customer, models, cost, cost_text, unpriced_calls}], "next_before": "start.trace_id" |
    null}``.
``/api/traces/<trace_id>``
    One trace (404 when there is none): ``{trace_id, start, end, duration_ns, app, root_name, error, cost,
    cost_text, unpriced_calls, spans: [...]}``, its spans in tree order with ``depth``, each with its messages
    (``input``, ``output``), ``tools``, ``entity_input`` and ``entity_output`` (a decorated function's), ``params``,
    ``usage``, ``stream``, ``error``, ``respan``, ``events`` and ``attributes`` (``respan_auto.ui.views.span_view``).
``/api/overview?since=&until=``
    LLM calls summed up: ``{calls, errors, input_tokens, output_tokens, cost, cost_text, unpriced_calls,
    latency_ms: {p50, p90, p99}, time_to_first_chunk_ms, bucket_ns,
    series: [{start, calls, errors, input_tokens, output_tokens, cost}],
    models: [{model, answered_by, calls, errors, input_tokens, output_tokens, cost, cost_text, unpriced_calls,
    latency_ms}]}``,
    ``model`` the one asked for (failed calls included), ``answered_by`` the other names it was answered under.
``/api/facets``
    ``{"apps": [...], "models": [...], "customers": [...]}``, for the filter menus.
``/api/changes``
    ``{"marker": n, "prices": bool}``: ``marker`` grows whenever spans are stored; the page polls it to refresh.

A bad parameter is a 400 ``{"error": "..."}``. Costs are worked out per request from the price table, never stored.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import re
import socket
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from respan_auto import cost
from respan_auto.export import local_store
from respan_auto.ui import views

MAX_LIMIT = 500
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_TRACE_PATH = re.compile(r"/api/traces/([0-9a-fA-F]{1,32})")
_STATIC = {"/": "index.html", "/app.js": "app.js", "/app.css": "app.css", "/favicon.svg": "favicon.svg"}
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class BadRequestError(ValueError):
    """A query parameter the API cannot read: answered 400, naming it."""


def _static(name: str) -> bytes:
    return resources.files("respan_auto.ui").joinpath("static").joinpath(name).read_bytes()


def _nanoseconds(params: dict[str, str], name: str) -> int | None:
    value = params.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequestError(f"{name}: expected a time in ns since the epoch, got {value!r}") from None


def _limit(params: dict[str, str]) -> int:
    value = params.get("limit", "")
    if not value:
        return 50
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequestError(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {value!r}")
    return limit


def _before(params: dict[str, str]) -> dict[str, Any]:
    """``before``: a start (ns), or ``start.trace_id`` as ``next_before`` gives it, so equal starts page right."""
    start, _, trace_id = params.get("before", "").partition(".")
    if trace_id and not re.fullmatch(r"[0-9a-f]{32}", trace_id):
        raise BadRequestError(f"before: expected a start in ns, or start.trace_id, got {params['before']!r}")
    return {"before_ns": _nanoseconds({"before": start}, "before"), "before_trace_id": trace_id or None}


def trace_query(params: dict[str, str]) -> local_store.TraceQuery:
    """The list's filters from the query string; empty values mean "not filtered"."""
    return local_store.TraceQuery(
        limit=_limit(params),
        **_before(params),
        since_ns=_nanoseconds(params, "since"),
        until_ns=_nanoseconds(params, "until"),
        app=params.get("app") or None,
        model=params.get("model") or None,
        customer=params.get("customer") or None,
        errors=params.get("errors", "") not in ("", "0", "false"),
        text=params.get("q") or None,
    )


class Api:
    """The JSON answers, from the store at ``path``: the store's queries with costs and views worked out."""

    def __init__(self, path: str) -> None:
        self.path = path

    def traces(self, params: dict[str, str]) -> Any:
        query = trace_query(params)
        rows = [views.trace_row(t) for t in local_store.list_traces(self.path, query)]
        full = len(rows) == query.limit
        last = rows[-1] if full and rows else None
        return {"traces": rows, "next_before": f"{last['start']}.{last['trace_id']}" if last else None}

    def trace(self, trace_id: str) -> Any:
        records = local_store.trace_records(self.path, trace_id.lower())
        return views.trace_view(records) if records else None

    def overview(self, params: dict[str, str]) -> Any:
        since, until = _nanoseconds(params, "since"), _nanoseconds(params, "until")
        return views.overview(local_store.llm_calls(self.path, since_ns=since, until_ns=until))

    def facets(self, params: dict[str, str]) -> Any:
        return local_store.facets(self.path)

    def changes(self, params: dict[str, str]) -> Any:
        return {"marker": local_store.change_marker(self.path), "prices": cost.available()}

    def route(self, path: str) -> Callable[[dict[str, str]], Any] | None:
        match = _TRACE_PATH.fullmatch(path)
        if match:
            return lambda params: self.trace(match[1])
        return {
            "/api/traces": self.traces,
            "/api/overview": self.overview,
            "/api/facets": self.facets,
            "/api/changes": self.changes,
        }.get(path)


class ViewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, store: str, token: str) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.token = token
        self.api = Api(store)
        self.port = int(self.server_address[1])
        self.host = host
        self.cookie_name = f"respan_ui_{self.port}"  # cookies ignore the port: one per view running

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def host_allowed(self, header: str | None) -> bool:
        """The Host header names this server: its address or a loopback name, with its port."""
        if not header:
            return False
        name, sep, port = header.rpartition(":")
        if not sep or port != str(self.port):
            return False
        bound = f"[{self.host}]" if ":" in self.host else self.host
        if name.lower() in (*_LOOPBACK_NAMES, bound.lower()):
            return True
        if self.host in ("0.0.0.0", "::"):  # every address of this machine: a literal address, never a name
            try:
                ipaddress.ip_address(name.strip("[]"))
            except ValueError:
                return False
            return True
        return False


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: without it an answer can wait ~40 ms

    def version_string(self) -> str:
        return "respan-ui"  # not the Python version

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the terminal shows the one URL line, not a line per request

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away (a reload mid-answer)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, reason: str) -> None:
        self._send(status, reason.encode() + b"\n", "text/plain; charset=utf-8", {"Cache-Control": "no-store"})

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False, default=str, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", {"Cache-Control": "no-store"})

    def _cookie_token(self) -> str | None:
        header = self.headers.get("Cookie")
        if not header:
            return None
        try:
            morsel = SimpleCookie(header).get(self.server.cookie_name)
        except CookieError:
            return None
        return morsel.value if morsel is not None else None

    def _valid(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.server.token.encode())

    def _authorized(self) -> bool:
        bearer = self.headers.get("Authorization", "")
        if bearer[:7].lower() == "bearer " and self._valid(bearer[7:].strip()):
            return True
        return self._valid(self._cookie_token())

    def _redirect_with_cookie(self, path: str, params: list[tuple[str, str]]) -> None:
        """The token becomes a cookie, and the address bar (and history) loses it."""
        rest = urllib.parse.urlencode([(k, v) for k, v in params if k != "token"])
        cookie = f"{self.server.cookie_name}={self.server.token}; Path=/; HttpOnly; SameSite=Strict"
        headers = {"Location": path + (f"?{rest}" if rest else ""), "Set-Cookie": cookie, "Cache-Control": "no-store"}
        self._send(HTTPStatus.FOUND, b"", "text/plain; charset=utf-8", headers)

    def do_GET(self) -> None:
        if not self.server.host_allowed(self.headers.get("Host")):
            self._refuse(HTTPStatus.FORBIDDEN, "forbidden: unexpected Host header")
            return
        url = urllib.parse.urlsplit(self.path)
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        token = next((v for k, v in pairs if k == "token"), None)
        given = token is not None and self._valid(token)
        if given and not url.path.startswith("/api/"):
            self._redirect_with_cookie(url.path, pairs)
            return
        if not given and not self._authorized():  # the API answers ?token= itself: a script need not keep cookies
            self._refuse(HTTPStatus.FORBIDDEN, "forbidden: open the address with its token, as printed at start")
            return
        if url.path.startswith("/api/"):
            self._api(url.path, dict(pairs))
        elif url.path in _STATIC:
            name = _STATIC[url.path]
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            charset = "; charset=utf-8" if kind.startswith("text/") or kind.endswith("javascript") else ""
            self._send(HTTPStatus.OK, _static(name), kind + charset, {"Cache-Control": "no-cache"})
        else:
            self._refuse(HTTPStatus.NOT_FOUND, "not found")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _api(self, path: str, params: dict[str, str]) -> None:
        handler = self.server.api.route(path)
        if handler is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such API: {path}"})
            return
        try:
            payload = handler(params)
        except BadRequestError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
            return
        except Exception as error:  # noqa: BLE001 - a store being replaced under us: the page shows it and retries
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(error).__name__}: {error}"})
            return
        if payload is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such trace in the store"})
        else:
            self._json(HTTPStatus.OK, payload)
