"""Entry points for plain ``opentelemetry-instrument``: our distro and configurator.

With respan-auto installed, ``opentelemetry-instrument python app.py`` exports to Respan (or
the local store) with the same settings as ``respan-instrument``.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro

try:
    from opentelemetry.sdk._configuration import _BaseConfigurator
except ImportError:  # pragma: no cover - very old SDKs
    _BaseConfigurator = object  # type: ignore[assignment,misc]

# Entry-point names other projects give their Mistral instrumentors: ours traces Mistral.
OTHER_MISTRAL_ENTRY_POINTS = ("mistralai",)


class RespanDistro(BaseDistro):
    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "respan")
        disabled = [
            n.strip() for n in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",") if n.strip()
        ]
        disabled += [n for n in OTHER_MISTRAL_ENTRY_POINTS if n not in disabled]
        os.environ["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = ",".join(disabled)


class RespanConfigurator(_BaseConfigurator):
    def _configure(self, **kwargs: Any) -> None:
        from respan_auto.sdk import Respan

        Respan()  # the instrumentors are opentelemetry-instrument's job
