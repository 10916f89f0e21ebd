"""How fast the local web view opens with 1,000 traces in the store: page load in Chromium, and the API behind it.

Why it is built this way:

* The store is filled the way users fill it: one traced program under ``respan-instrument`` against the loopback
  stand-in, making 1,000 traces (every tenth a workflow with two calls and a tool span), so the rows, indexes and
  attributes are what the instrumentation really writes.
* The view runs as users run it, ``respan-instrument ui --port 0`` as a subprocess, and the page is Debian's
  chromium driven by Playwright. The page load is timed from navigation until the list's rows are in the DOM
  (``tr.trace-row``, the first page of 50), in a fresh tab each time, after one warm-up visit that sets the cookie.
* The API timings are plain HTTP requests (urllib, keep-alive off) for the list's default query, a text search,
  one trace, the overview and the change marker, so they show what each page waits for.

Usage: ``python benchmarks/ui_load.py [--traces N] [--runs N]``. It needs /usr/bin/chromium and playwright.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from respan_auto.testing.chromium import CHROMIUM, CHROMIUM_ARGS
from respan_auto.testing.mistral_server import MistralServer

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
APP = """
import os
import sys

try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral

from respan_auto import tool, workflow

client = Mistral(api_key="sk-bench", server_url=os.environ["STANDIN_URL"])


@tool
def lookup(n):
    return {"n": n}


@workflow(name="agent")
def agent(n):
    client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": f"plan step {n}"}])
    lookup(n)
    client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": f"answer {n}"}])


for n in range(int(sys.argv[1])):
    if n % 10 == 0:
        agent(n)
    else:
        question = f"question number {n}: what does the store look like with many traces? " * 4
        client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": question}])
"""


def fill(folder: Path, traces: int, server: MistralServer) -> str:
    store = folder / "traces.db"
    app = folder / "app.py"
    app.write_text(textwrap.dedent(APP))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(STANDIN_URL=server.url, RESPAN_LOCAL_STORE=str(store), RESPAN_APP_NAME="bench")
    subprocess.run([LAUNCHER, sys.executable, str(app), str(traces)], env=env, check=True, capture_output=True)
    return str(store)


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:8.1f} ms  (min {min(samples) * 1e3:.1f}, max {max(samples) * 1e3:.1f})"


def time_get(url: str, token: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Connection": "close"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
        samples.append(time.perf_counter() - began)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7, help="page loads timed (the median is reported)")
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, MistralServer() as server:
        began = time.perf_counter()
        store = fill(Path(tmp), options.traces, server)
        print(f"store: {options.traces} traces written by one traced run in {time.perf_counter() - began:.1f} s")
        view = subprocess.Popen([LAUNCHER, "ui", "--store", store, "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert view.stdout is not None and select.select([view.stdout], [], [], 30)[0], "no address printed"
            url = view.stdout.readline().strip()
            base, token = url.split("?token=")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                warm = context.new_page()
                warm.goto(url)
                warm.wait_for_selector("tr.trace-row")
                rows = warm.locator("tr.trace-row").count()
                warm.close()
                loads = []
                for _ in range(options.runs):
                    page = context.new_page()
                    start = time.perf_counter()
                    page.goto(base)
                    page.wait_for_selector("tr.trace-row")
                    loads.append(time.perf_counter() - start)
                    page.close()
                browser.close()
            request = urllib.request.Request(base + "api/traces?limit=1", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=60) as response:  # also the warm-up request
                one = json.loads(response.read())["traces"][0]["trace_id"]
            print(f"page load until the list is rendered ({rows} rows), median of {options.runs}: {median_ms(loads)}")
            for label, path in (
                ("/api/traces (default: newest 50)", "api/traces"),
                ("/api/traces?q=... (text search)", "api/traces?q=store%20look"),
                ("/api/traces?errors=1", "api/traces?errors=1"),
                ("/api/traces/<id>", f"api/traces/{one}"),
                ("/api/overview", "api/overview"),
                ("/api/changes", "api/changes"),
            ):
                print(f"{label:36} median of 20: {median_ms(time_get(base + path, token, 20))}")
        finally:
            view.send_signal(signal.SIGTERM)
            view.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
