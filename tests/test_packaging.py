"""The wheel ships the bootstrap inside the package, never as a top-level sitecustomize."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO


def test_wheel_layout(tmp_path):
    build = f"from setuptools import build_meta; build_meta.build_wheel({str(tmp_path)!r})"
    result = subprocess.run([sys.executable, "-c", build], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("respan_auto-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "respan_auto/_bootstrap/sitecustomize.py" in names
    assert not [n for n in names if n.split("/")[0] in ("sitecustomize", "sitecustomize.py")]
    assert not [n for n in names if n.startswith(("tests/", "examples/", "benchmarks/"))]
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    )
    assert "respan_mistralai = respan_auto.instrumentation.mistralai:MistralAIInstrumentor" in entry_points
    assert "respan-instrument = respan_auto.cli:main" in entry_points
