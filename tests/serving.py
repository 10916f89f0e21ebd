"""A real ASGI server (uvicorn) for one test, on 127.0.0.1, in a thread of the test process.

In-process so that the test reads the spans from the session's provider and the log records from caplog.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def serve(app: Any) -> Iterator[Callable[[str], bytes]]:
    """Serve ``app``; yields ``get(path) -> body``."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped before it started")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]

    def get(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.read()

    try:
        yield get
    finally:
        server.should_exit = True
        thread.join()
