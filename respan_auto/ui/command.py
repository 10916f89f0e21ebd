"""``respan-instrument ui``: serve the local trace store as a web page, on 127.0.0.1 unless told otherwise.

The one line printed is the address with its access token, flushed at once so that a script (or a test) can read
it while the server runs. Ctrl-C and SIGTERM end the server quietly, with status 0.
"""

from __future__ import annotations

import html
import ipaddress
import os
import pathlib
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import webbrowser
from types import FrameType

from respan_auto import cost
from respan_auto.cli.store_option import STORE_HELP, OneLineParser, store_to_read, whole_number
from respan_auto.ui.server import ViewServer


class _TerminatedError(Exception):
    """SIGTERM, raised in the main thread so that the server loop ends as it does for Ctrl-C."""


def _port(value: str) -> int:
    return whole_number(value, 0, 65535, "a port number from 0 to 65535 (0: any free port)")


def _parser() -> OneLineParser:
    parser = OneLineParser(
        prog="respan-instrument ui",
        description="Browse the local trace store in a web page: traces, their spans and messages, costs, latency.",
        epilog="The printed address carries an access token; the page and its JSON API (/api/...) need it.",
        allow_abbrev=False,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, metavar="N", help="port (default: a free one)")
    parser.add_argument("--open", action="store_true", help="open the page in a browser")
    parser.add_argument("--store", help=STORE_HELP)
    return parser


def beyond_this_machine(address: str) -> bool:
    """Whether a view bound to ``address`` can be reached from other machines."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, which Python before 3.13 calls not loopback
    return not (ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _TerminatedError


def main(argv: list[str]) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    store = store_to_read(options.store, parser.prog)
    if store is None:
        return 1
    try:
        server = ViewServer(options.host, options.port, store, secrets.token_urlsafe(32))
    except OSError as error:
        reason = error.strerror or type(error).__name__
        print(f"respan-instrument ui: cannot listen on {options.host}:{options.port}: {reason}", file=sys.stderr)
        return 1
    url = f"{server.url}?token={server.token}"
    print(url, flush=True)
    if not os.path.exists(store):
        print(f"{parser.prog}: no traces in {store} yet; they appear here as traced programs run", file=sys.stderr)
    if beyond_this_machine(str(server.server_address[0])):
        print(
            f"{parser.prog}: listening on {options.host}, beyond this machine: whoever has the address with its token "
            "can read the prompts",
            file=sys.stderr,
            flush=True,
        )
    if not cost.available():
        print(cost.MISSING_LINE, file=sys.stderr, flush=True)
    launcher = _launch_page(url) if options.open else None
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _TerminatedError):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
        if launcher is not None:
            shutil.rmtree(launcher, ignore_errors=True)
    return 0


def _launch_page(url: str) -> str:
    """Open the view through a private file that redirects to it, as Jupyter does: a browser started with the URL
    itself would show the token to every local user in its command line."""
    folder = tempfile.mkdtemp(prefix="respan-ui-")  # 0700
    page = os.path.join(folder, "open.html")
    fd = os.open(page, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">\n')
    threading.Thread(target=webbrowser.open, args=(pathlib.Path(page).as_uri(),), daemon=True).start()
    return folder
