"""Gives the examples a Mistral client: the real API when MISTRAL_API_KEY is set, else the loopback stand-in."""

from __future__ import annotations

import os
from typing import Any

try:  # mistralai 2.x and 3.x
    from mistralai.client import Mistral
except ImportError:  # mistralai 1.x
    from mistralai import Mistral

_server = None


def mistral_client() -> Any:
    global _server
    key = os.getenv("MISTRAL_API_KEY")
    if key:
        return Mistral(api_key=key)
    if _server is None:
        from respan_auto.testing.mistral_server import MistralServer

        _server = MistralServer().start()
        print(f"(MISTRAL_API_KEY is not set: using the offline Mistral stand-in at {_server.url})\n")
    return Mistral(api_key="offline", server_url=_server.url)
