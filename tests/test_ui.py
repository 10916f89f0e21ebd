"""``respan-instrument ui``: real traced runs under the launcher, the view as a subprocess, read by real Chromium.

The browser is Debian's chromium driven by Playwright (no browser download). Without either the browser tests are
skipped, saying why, unless REQUIRE_CHROMIUM=1 makes that a failure. The pure view-model tests always run.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from respan_auto import cost
from respan_auto.export import local_store
from respan_auto.testing.chromium import CHROMIUM, CHROMIUM_ARGS
from respan_auto.ui import views
from respan_auto.ui.command import beyond_this_machine
from tests.conftest import REPO
from tests.ui_png import distinct_colours

LAUNCHER = str(Path(sys.executable).parent / "respan-instrument")
XSS = "look <img src=x onerror=\"window.__xss='ran'\"> here"
CHAT = "tell me about Lyon"
STANDIN_REPLY = "Offline stand-in reply to: tell me about Lyon"

# One trace per case: a plain chat; a workflow whose streamed call asks for a tool (arguments split over chunks), runs
# the tool, then streams the answer; a failing call; a prompt that is markup.
APP = """
import os
import sys

try:
    from mistralai.client import Mistral
except ImportError:
    from mistralai import Mistral

from respan_auto import propagate_attributes, tool, workflow

client = Mistral(api_key="sk-ui-test", server_url=os.environ["STANDIN_URL"])
model = "mistral-small-latest"
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}}}]


def user(text):
    return [{"role": "user", "content": text}]


@tool
def get_weather(city, unit):
    return {"city": city, "temperature": 21, "unit": unit}


@workflow(name="weather_agent")
def agent(question):
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": question}]
    with client.chat.stream(model=model, messages=messages, tools=TOOLS, temperature=0.2) as stream:
        for event in stream:
            pass
    result = get_weather("Paris", "celsius")
    call = {"id": "call_weather_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}}
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": str(result), "tool_call_id": "call_weather_1", "name": "get_weather"},
        {"role": "user", "content": "now in one sentence #chunks=6"},
    ]
    with client.chat.stream(model=model, messages=messages, tools=TOOLS, max_tokens=200) as stream:
        for event in stream:
            pass


for case in sys.argv[1:]:
    if case == "agent":
        with propagate_attributes(customer_identifier="acme-42", thread_identifier="thread-7"):
            agent("weather in Paris? #tools #split-args")
    elif case == "500":
        try:
            client.chat.complete(model=model, messages=user("this fails #500"))
        except Exception:
            pass
    else:
        client.chat.complete(model=model, messages=user(case))
"""


def _env(folder: Path, server_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(
        STANDIN_URL=server_url,
        RESPAN_LOCAL_STORE=str(folder / "traces.db"),
        RESPAN_APP_NAME="ui-app",
        RESPAN_CHUNK_EVENTS="1",
        PYTHONPATH=str(REPO),
    )
    return env


def traced_run(store: dict[str, Any], *cases: str) -> None:
    result = subprocess.run(
        [LAUNCHER, sys.executable, str(store["app"]), *cases],
        capture_output=True,
        text=True,
        env=store["env"],
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory, server) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("ui")
    app = folder / "app.py"
    app.write_text(textwrap.dedent(APP))
    made = {"app": app, "env": _env(folder, server.url), "path": str(folder / "traces.db")}
    traced_run(made, CHAT, "agent", "500", XSS)
    return made


class View:
    """The ``respan-instrument ui`` subprocess and the address it printed."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, "no address printed within 30 s"
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        match = re.fullmatch(r"(http://127\.0\.0\.1:(\d+)/)\?token=([A-Za-z0-9_-]{40,})", self.url)
        assert match, self.url
        self.base, self.port, self.token = match[1], int(match[2]), match[3]

    def stop(self) -> tuple[int, str, str]:
        self.process.send_signal(signal.SIGTERM)
        out, err = self.process.communicate(timeout=10)
        return self.process.returncode, out, err


@pytest.fixture(scope="module")
def ui(store) -> Iterator[View]:
    view = View([LAUNCHER, "ui", "--store", store["path"], "--port", "0"], env=store["env"])
    yield view
    status, out, err = view.stop()
    assert (status, out, err) == (0, "", ""), "SIGTERM ends the view quietly, with status 0"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """A plain request that follows no redirect: the status, headers and body as the server sent them."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def api(ui: View, path: str) -> Any:
    status, _, body = get(ui.base.rstrip("/") + path, {"Authorization": f"Bearer {ui.token}"})
    assert status == 200, (status, body)
    return json.loads(body)


# ---- the server, without a browser ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/app.js", "/app.css", "/api/traces", "/api/facets", "/api/changes"])
def test_a_request_without_the_token_is_refused_with_no_data(ui, store, path):
    status, _, body = get(ui.base.rstrip("/") + path)
    assert status == 403
    assert b"trace" not in body.lower() and b"ui-app" not in body
    wrong = get(ui.base.rstrip("/") + path, {"Authorization": "Bearer not-the-token", "Cookie": "respan_ui=x"})
    assert wrong[0] == 403
    cookie = get(ui.base.rstrip("/") + path, {"Cookie": f"respan_ui_{ui.port}={ui.token}"})
    assert cookie[0] == 200


def test_the_token_in_the_address_becomes_a_strict_cookie_and_leaves_the_address(ui):
    status, headers, _ = get(ui.base + "?token=" + ui.token + "&keep=1")
    assert status == 302
    assert headers["Location"] == "/?keep=1"
    cookie = headers["Set-Cookie"]
    assert cookie.startswith(f"respan_ui_{ui.port}={ui.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_api_answers_the_token_in_its_address_at_once_with_no_cookie(ui):
    status, headers, body = get(ui.base + "api/facets?token=" + ui.token)
    assert status == 200 and "Set-Cookie" not in headers
    assert "acme-42" in json.loads(body)["customers"]
    assert get(ui.base + "api/facets?token=" + "x" * 43)[0] == 403


def test_another_host_name_is_refused_even_with_the_token(ui):
    """DNS rebinding: a page on evil.example rebound to 127.0.0.1 sends its own name as Host."""
    bearer = {"Authorization": f"Bearer {ui.token}"}
    assert get(ui.base + "api/facets", {**bearer, "Host": f"evil.example:{ui.port}"})[0] == 403
    assert get(ui.base + "api/facets", {**bearer, "Host": "127.0.0.1:1"})[0] == 403
    assert get(ui.base + "api/facets", {**bearer, "Host": f"localhost:{ui.port}"})[0] == 200


def test_every_answer_has_a_strict_policy_and_the_api_is_never_cached(ui):
    bearer = {"Authorization": f"Bearer {ui.token}"}
    for path, cache in (("", "no-cache"), ("app.js", "no-cache"), ("api/traces", "no-store"), ("nope", "no-store")):
        _, headers, _ = get(ui.base + path, bearer)
        assert headers["Content-Security-Policy"].startswith("default-src 'self';"), path
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == cache, path
    _, forbidden, _ = get(ui.base + "api/traces")
    assert forbidden["Cache-Control"] == "no-store"


def test_the_api_lists_filters_and_prices_the_traces(ui, store):
    listed = api(ui, "/api/traces")["traces"]
    assert len(listed) >= 4
    by_root = {t["root_name"]: t for t in listed}
    agent = by_root["weather_agent.workflow"]
    assert (agent["span_count"], agent["llm_calls"], agent["customer"]) == (4, 2, "acme-42")
    assert re.fullmatch(r"\$0\.0000\d+", agent["cost_text"]), agent
    assert [t["start"] for t in listed] == sorted((t["start"] for t in listed), reverse=True)
    failed = api(ui, "/api/traces?errors=1")["traces"]
    assert failed and all(t["error"] for t in failed)
    assert {t["root_name"] for t in api(ui, "/api/traces?q=ONERROR")["traces"]} == {"chat mistral-small-latest"}
    assert api(ui, "/api/traces?customer=acme-42")["traces"][0]["trace_id"] == agent["trace_id"]
    page = api(ui, "/api/traces?limit=1")
    older = api(ui, f"/api/traces?limit=1&before={page['next_before']}")
    assert page["traces"][0]["start"] > older["traces"][0]["start"]
    status, _, body = get(ui.base + "api/traces?limit=zero", {"Authorization": f"Bearer {ui.token}"})
    assert status == 400 and b"limit" in body
    assert get(ui.base + "api/traces/" + "f" * 32, {"Authorization": f"Bearer {ui.token}"})[0] == 404
    assert {"ui-app"} <= set(api(ui, "/api/facets")["apps"])


def test_the_overview_sums_up_latency_tokens_and_cost(ui):
    data = api(ui, "/api/overview")
    assert data["calls"] >= 3
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p90"] <= data["latency_ms"]["p99"]
    assert sum(b["calls"] for b in data["series"]) == data["calls"]
    [model] = data["models"]  # asked for by one name: the failed call counts there too, not as a model of its own
    assert (model["model"], model["answered_by"]) == ("mistral-small-latest", ["mistral-small-2506"])
    assert model["calls"] == data["calls"] and model["errors"] == data["errors"] == 1 and model["cost"] > 0


def test_a_bad_option_is_one_line_naming_it(store):
    for args, flag in ((["--port", "http"], "--port"), (["--bogus"], "--bogus"), (["--po", "1"], "--po")):
        result = subprocess.run([LAUNCHER, "ui", *args], capture_output=True, text=True, env=store["env"], timeout=60)
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and flag in lines[0] and lines[0].startswith("respan-instrument ui: "), result.stderr


def test_a_view_of_a_store_not_made_yet_says_so_and_creates_nothing(tmp_path):
    missing = tmp_path / "later" / "traces.db"
    view = View([LAUNCHER, "ui", "--store", str(missing), "--port", "0"])
    try:
        assert api(view, "/api/traces")["traces"] == []
    finally:
        status, out, err = view.stop()
    assert status == 0 and out == ""
    assert (
        err.splitlines()[0]
        == f"respan-instrument ui: no traces in {missing} yet; they appear here as traced programs run"
    )
    assert not missing.parent.exists()


@pytest.mark.parametrize(
    ("address", "beyond"),
    [
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("::", True),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_an_address_beyond_loopback_is_flagged(address, beyond):
    assert beyond_this_machine(address) is beyond


def test_open_hands_the_browser_a_private_file_never_the_token(store, tmp_path):
    """A browser's command line is readable by every local user: it gets a 0600 file that redirects, as Jupyter's."""
    seen = tmp_path / "browser-saw.txt"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}\n')
    browser.chmod(0o700)
    args = [LAUNCHER, "ui", "--store", store["path"], "--port", "0", "--open"]
    view = View(args, {**store["env"], "BROWSER": str(browser)})
    try:
        deadline = time.monotonic() + 20
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        argument = seen.read_text()
        assert view.token not in argument and argument.startswith("file://")
        page = Path(urllib.parse.urlsplit(argument).path)
        assert stat.S_IMODE(page.stat().st_mode) == 0o600 and stat.S_IMODE(page.parent.stat().st_mode) == 0o700
        assert f'content="0;url={view.url}"' in page.read_text()
    finally:
        assert view.stop()[0] == 0
    assert not page.exists()  # removed when the view ends


def test_without_the_price_table_the_view_says_so_once_and_costs_are_unknown(store):
    blocked = "import sys; sys.modules['genai_prices'] = None; from respan_auto.cli import main; sys.exit(main())"
    view = View([sys.executable, "-c", blocked, "ui", "--store", store["path"], "--port", "0"], env=store["env"])
    try:
        listed = api(view, "/api/traces")["traces"]
        agent = next(t for t in listed if t["root_name"] == "weather_agent.workflow")
        assert agent["cost"] is None and agent["cost_text"] == "unknown"
        assert api(view, "/api/changes")["prices"] is False
    finally:
        status, out, err = view.stop()
    assert status == 0 and out == ""
    assert err.splitlines() == [cost.MISSING_LINE]


# ---- the page, in Chromium -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    required = os.environ.get("REQUIRE_CHROMIUM") == "1"
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install playwright; no browser download is needed)"
    if reason is None and not os.access(CHROMIUM, os.X_OK):
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if reason is not None:
        if required:
            pytest.fail(f"REQUIRE_CHROMIUM=1 but {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, ui) -> Iterator[Any]:
    """A fresh profile (no cookie yet) on the trace list, opened with the printed address."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(ui.url)
    opened.wait_for_selector("tr.trace-row")
    yield opened
    context.close()
    assert errors == [], errors


def expect(locator: Any) -> Any:
    """Playwright's retrying assertions: they run in its own script world, which the page's policy leaves alone
    (a predicate string for ``wait_for_function`` would need the ``eval`` that the policy forbids)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def row(page: Any, text: str) -> Any:
    return page.locator("tr.trace-row", has_text=text).first


def open_trace(page: Any, text: str) -> None:
    row(page, text).locator("td.root a").click()
    page.wait_for_selector(".wf-row")


def assert_not_blank(png: bytes) -> None:
    assert distinct_colours(png) > 40, "the screenshot is (nearly) one flat colour"


def test_the_list_shows_each_trace_with_its_app_tokens_cost_and_error_mark(page, tmp_path):
    assert page.url.endswith("/") and "token" not in page.url  # the token went into the cookie
    agent = row(page, "weather_agent.workflow")
    assert agent.locator("td.app").inner_text() == "ui-app"
    assert re.fullmatch(r"\d+ → \d+", agent.locator("td.tokens").inner_text())
    assert re.fullmatch(r"\$0\.0000\d+", agent.locator("td.cost").inner_text())
    assert agent.locator(".chip").inner_text() == "acme-42"
    assert agent.locator(".error-mark").count() == 0
    failed = page.locator("tr.trace-row.failed")
    assert failed.count() == 1 and failed.locator(".error-mark").inner_text() == "error"
    assert_not_blank(page.screenshot(path=str(tmp_path / "list.png")))


def test_a_chat_shows_the_user_text_and_the_assistant_reply(page):
    page.fill("input[type=search]", "Lyon")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    open_trace(page, "chat mistral-small-latest")
    assert page.locator(".msg.role-user .msg-text").inner_text() == CHAT
    assert page.locator(".msg.role-assistant .msg-text").inner_text() == STANDIN_REPLY
    bar = page.locator(".wf-row .bar").first.bounding_box()
    track = page.locator(".wf-row .wf-track").first.bounding_box()
    assert bar and track and bar["width"] > track["width"] * 0.9  # the only span covers the whole trace
    usage = page.locator(".panel", has_text="Usage and cost")
    assert re.search(r"cost\s*\$0\.0000\d+", usage.inner_text())


def test_the_streamed_agent_shows_its_timeline_tool_call_and_stream_timing(page, tmp_path):
    open_trace(page, "weather_agent.workflow")
    rows = page.locator(".wf-row")
    assert rows.count() == 4
    names = [rows.nth(i).locator(".span-name").inner_text() for i in range(4)]
    assert names[0] == "weather_agent.workflow" and "get_weather.tool" in names
    boxes = [rows.nth(i).locator(".bar").bounding_box() for i in range(4)]
    indents = [
        rows.nth(i).locator(".wf-name").evaluate("e => parseFloat(getComputedStyle(e).paddingLeft)") for i in range(4)
    ]
    assert all(indent > indents[0] for indent in indents[1:])  # the children are nested under the workflow
    assert all(box["x"] >= boxes[0]["x"] - 1 and box["width"] < boxes[0]["width"] for box in boxes[1:])
    assert boxes[3]["x"] > boxes[1]["x"]  # the second call starts later: bars are placed by start time
    # the first LLM span is selected: the streamed call that asked for the tool
    assert page.locator(".wf-row.selected .span-name").inner_text() == names[1]
    assert page.locator(".msg.role-system .msg-text").inner_text() == "You answer briefly."
    call = page.locator(".msg.role-assistant .tool-call")
    assert call.locator(".tool-name").inner_text() == "get_weather"
    assert json.loads(call.locator(".tool-args").inner_text()) == {"city": "Paris", "unit": "celsius"}
    stream = page.locator(".panel", has_text="time to first chunk")
    assert re.search(r"time to first chunk\s*[\d.]+ ms", stream.inner_text())
    assert re.search(r"chunks\s*5\b", stream.inner_text())
    assert stream.locator(".chunk-bar").count() == 5  # one bar per respan.stream.chunk event
    assert "temperature" in page.locator(".panel", has_text="Request parameters").inner_text()
    respan = page.locator(".panel", has_text="Respan attributes").inner_text()
    assert "acme-42" in respan and "thread-7" in respan
    page.mouse.move(0, 0)
    shot = page.screenshot(path=str(tmp_path / "trace.png"))
    assert_not_blank(shot)
    if os.environ.get("RESPAN_UPDATE_SCREENSHOT") == "1":  # the README's picture, refreshed on demand
        (REPO / "docs").mkdir(exist_ok=True)
        (REPO / "docs" / "trace-view.png").write_bytes(shot)
    # the second call: the tool's result in the conversation, and the answer streamed in 6 chunks
    rows.nth(3).click()
    assert page.locator(".msg.role-tool .tool-result pre").inner_text().startswith("{'city': 'Paris'")
    assert page.locator(".chunk-bar").count() == 6
    assert "/trace/" in page.url and page.url.rsplit("/", 1)[1] != ""  # the selection is in the address
    # the decorated tool: what it was called with and what it returned
    rows.nth(names.index("get_weather.tool")).click()
    entity = page.locator("pre.entity")
    expect(entity).to_have_count(2)
    assert json.loads(entity.nth(0).inner_text()) == {"args": ["Paris", "celsius"], "kwargs": {}}
    assert json.loads(entity.nth(1).inner_text()) == {"city": "Paris", "temperature": 21, "unit": "celsius"}


def test_an_error_shows_its_type_and_http_status(page):
    open_trace(page, "error")
    panel = page.locator(".error-panel")
    assert panel.locator(".http").inner_text() == "HTTP 500"
    assert panel.locator(".error-line b").inner_text() == "SDKError"
    assert "status ERROR" in panel.inner_text()
    assert page.locator(".wf-row .bar.bar-error").count() == 1


def test_a_prompt_with_markup_renders_as_text(page):
    page.fill("input[type=search]", "onerror")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    open_trace(page, "chat mistral-small-latest")
    assert page.locator(".msg.role-user .msg-text").inner_text() == XSS
    assert page.locator("main img").count() == 0
    raw = page.locator("details.raw")
    raw.locator("summary").click()
    assert XSS in raw.inner_text()
    assert page.evaluate("window.__xss") is None


def test_filters_come_from_the_facets_and_narrow_the_list(page):
    menu = page.locator("select[data-filter=customer]")
    expect(menu.locator("option", has_text="acme-42")).to_have_count(1)
    menu.select_option("acme-42")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    assert row(page, "weather_agent.workflow").count() == 1
    assert "customer=acme-42" in page.url
    menu.select_option("")
    page.check("input[data-filter=errors]")
    expect(page.locator("tr.trace-row")).to_have_count(1)
    assert page.locator("tr.trace-row.failed").count() == 1


def test_a_new_traced_run_appears_without_a_reload(page, store):
    before = page.locator("tr.trace-row").count()
    page.evaluate("window.__sameDocument = true")
    traced_run(store, "a brand new question")
    expect(page.locator("tr.trace-row")).to_have_count(before + 1, timeout=15000)
    assert page.evaluate("window.__sameDocument") is True  # refreshed in place, not reloaded
    newest = page.locator("tr.trace-row").first
    assert "fresh" in (newest.get_attribute("class") or "")
    open_trace(page, "chat mistral-small-latest")
    assert page.locator(".msg.role-user .msg-text").inner_text() == "a brand new question"


def test_the_overview_draws_its_charts(page, tmp_path):
    page.click("nav a[data-route=overview]")
    page.wait_for_selector(".cards")
    assert int(page.locator(".cards .stat", has_text="LLM calls").locator("b").inner_text()) >= 3
    for p in ("p50", "p90", "p99"):
        assert re.search(r"[\d.]+ m?s", page.locator(f"[data-percentile={p}]").first.inner_text())
    assert page.locator(".chart-panel svg rect").count() >= 3
    assert "mistral-small-2506" in page.locator("table.models").inner_text()
    assert_not_blank(page.screenshot(path=str(tmp_path / "overview.png"), full_page=True))


def test_a_narrow_window_scrolls_tables_in_place_and_never_the_page(browser, ui, tmp_path):
    context = browser.new_context(viewport={"width": 700, "height": 900})
    try:
        narrow = context.new_page()
        narrow.goto(ui.url)
        narrow.wait_for_selector("tr.trace-row")
        overflow = "document.documentElement.scrollWidth - window.innerWidth"
        assert narrow.evaluate(overflow) <= 0
        open_trace(narrow, "weather_agent.workflow")
        assert narrow.evaluate(overflow) <= 0
        assert_not_blank(narrow.screenshot(path=str(tmp_path / "narrow.png")))
    finally:
        context.close()


# ---- the view model, without a server ------------------------------------------------------------------------


def test_span_view_reads_what_the_instrumentation_writes(store):
    listed = local_store.list_traces(store["path"], local_store.TraceQuery(customer="acme-42"))
    records = local_store.trace_records(store["path"], listed[0]["trace_id"])
    trace = views.trace_view(records)
    assert [s["depth"] for s in trace["spans"]] == [0, 1, 1, 1]
    first, answer = trace["spans"][1], trace["spans"][3]
    assert [m["role"] for m in first["input"]] == ["system", "user"]
    assert first["output"][0]["parts"] == [
        {
            "type": "tool_call",
            "name": "get_weather",
            "id": "call_weather_1",
            "arguments": first["output"][0]["parts"][0]["arguments"],
        }
    ]
    assert first["stream"]["chunk_count"] == len(first["stream"]["chunks"]) == 5
    assert [m["role"] for m in answer["input"]] == ["system", "user", "assistant", "tool", "user"]
    assert answer["input"][3]["parts"][0]["type"] == "tool_result"
    assert ["temperature", "0.2"] in first["params"]
    assert trace["cost"] == pytest.approx(sum(cost.span_cost(r) or 0 for r in records))


def test_a_failure_is_named_by_its_exception_and_events_keep_their_fields():
    record = {
        "status": "ERROR",
        "start": 1000,
        "attributes": {"traceloop.entity.input": '{"args": ["Paris"], "kwargs": {}}'},
        "events": [
            {
                "name": "exception",
                "time": 3000,
                "attributes": {
                    "exception.type": "KeyError",
                    "exception.message": "'city'",
                    "exception.stacktrace": "T",
                },
            }
        ],
    }
    view = views.span_view(record)
    assert view["error"] == {"type": "KeyError", "http_status": None, "status": "ERROR", "message": "'city'"}
    assert view["events"] == [
        {
            "name": "exception",
            "time": 3000,
            "attributes": [
                ["exception.type", "KeyError"],
                ["exception.message", "'city'"],
                ["exception.stacktrace", "T"],
            ],
        }
    ]
    assert json.loads(view["entity_input"]) == {"args": ["Paris"], "kwargs": {}} and "\n" in view["entity_input"]
    assert view["entity_output"] is None
    cut = views.span_view({"attributes": {"traceloop.entity.output": '{"cut": "sh'}})
    assert cut["entity_output"] == '{"cut": "sh'  # not JSON any more: shown as it was kept


def test_a_failed_call_counts_under_the_model_asked_for():
    calls = [
        {"start": 1, "duration_ns": 5, "model": "mistral-small-2506", "request_model": "mistral-small-latest"},
        {"start": 2, "duration_ns": 7, "model": "mistral-small-latest", "request_model": "mistral-small-latest"},
        {"start": 3, "duration_ns": 9, "model": "mistral-small-latest", "request_model": None, "error": True},
        {"start": 4, "duration_ns": 3, "model": "open-mistral-nemo", "request_model": "open-mistral-nemo"},
    ]
    models = {m["model"]: m for m in views.overview(calls)["models"]}
    assert sorted(models) == ["mistral-small-latest", "open-mistral-nemo"]
    small = models["mistral-small-latest"]
    assert (small["calls"], small["errors"], small["answered_by"]) == (3, 1, ["mistral-small-2506"])
    assert models["open-mistral-nemo"]["answered_by"] == []


def test_indexed_keys_stand_in_when_the_message_json_was_cut():
    attributes = {
        "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "te',
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "hi",
        "gen_ai.prompt.1.role": "assistant",
        "gen_ai.prompt.1.tool_calls": '[{"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}}]',
        "gen_ai.prompt.2.role": "tool",
        "gen_ai.prompt.2.content": "42",
        "gen_ai.prompt.2.tool_call_id": "c1",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "done",
        "gen_ai.prompt.².content": "not an index",
    }
    messages = views.input_messages(attributes)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["parts"][0]["name"] == "f" and json.loads(messages[1]["parts"][0]["arguments"]) == {"a": 1}
    assert messages[2]["parts"] == [{"type": "tool_result", "id": "c1", "text": "42"}]
    assert views.output_messages(attributes)[0]["parts"] == [{"type": "text", "text": "done"}]


def test_an_unpriced_model_is_unknown_never_guessed():
    row_view = views.trace_row(
        {"trace_id": "ab", "models": [{"model": "no-such-model", "calls": 2, "input_tokens": 5}]}
    )
    assert (row_view["cost"], row_view["cost_text"], row_view["unpriced_calls"]) == (None, "unknown", 2)
    assert views.trace_row({"trace_id": "ab", "models": []})["cost_text"] == ""


def test_percentiles_are_values_seen():
    assert views.percentiles([]) == {"p50": None, "p90": None, "p99": None}
    assert views.percentiles([5.0]) == {"p50": 5.0, "p90": 5.0, "p99": 5.0}
    values = [float(v) for v in range(1, 101)]
    assert views.percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def test_overview_buckets_cover_every_call():
    hour = 3600 * 10**9
    calls = [{"start": i * hour // 4, "duration_ns": 10**6 * (i + 1), "model": "m", "error": i == 3} for i in range(9)]
    data = views.overview(calls)
    assert sum(b["calls"] for b in data["series"]) == 9 and data["errors"] == 1
    assert data["bucket_ns"] == 300 * 10**9 and len(data["series"]) <= 48
    assert all(b["start"] % data["bucket_ns"] == 0 for b in data["series"])


def test_a_parent_cycle_still_shows_every_span_once():
    records = [
        {"trace_id": "t", "span_id": "a", "parent_id": "b", "start": 1},
        {"trace_id": "t", "span_id": "b", "parent_id": "a", "start": 2},
        {"trace_id": "t", "span_id": "c", "parent_id": None, "start": 0},
    ]
    assert sorted(s["span_id"] for s in views.trace_view(records)["spans"]) == ["a", "b", "c"]


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20)
)
_json_text = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
).map(lambda value: json.dumps(value))
_values = st.one_of(
    _scalars, _json_text, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=5), _scalars, max_size=2)
)
_keys = st.one_of(
    st.sampled_from(
        [
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system_instructions",
            "gen_ai.tool.definitions",
            "llm.request.functions",
            "gen_ai.prompt.0.role",
            "gen_ai.prompt.0.content",
            "gen_ai.prompt.1.tool_calls",
            "gen_ai.completion.0.tool_calls",
            "gen_ai.completion.0.content",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.request.temperature",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.cache_read.input_tokens",
            "respan.stream.chunk_count",
            "respan.stream.completed",
            "gen_ai.response.time_to_first_chunk",
            "respan.stream.chunk_gap.mean",
            "error.type",
            "http.response.status_code",
            "respan.metadata.x",
            "traceloop.entity.input",
            "traceloop.entity.output",
        ]
    ),
    st.text(max_size=12),
)
_records = st.fixed_dictionaries(
    {
        "trace_id": st.one_of(st.just("t"), _scalars),
        "span_id": _scalars,
        "parent_id": _scalars,
        "name": _scalars,
        "start": _scalars,
        "end": _scalars,
        "status": st.one_of(st.sampled_from(["OK", "ERROR", "UNSET"]), _scalars),
        "attributes": st.one_of(st.dictionaries(_keys, _values, max_size=8), _scalars),
        "events": st.one_of(
            _scalars,
            st.lists(
                st.fixed_dictionaries(
                    {"name": st.sampled_from(["respan.stream.chunk", "exception"]) | _scalars, "time": _scalars},
                    optional={"attributes": st.dictionaries(st.text(max_size=8), _values, max_size=3) | _scalars},
                ),
                max_size=3,
            ),
        ),
    }
)


@given(st.lists(_records, min_size=1, max_size=4))
def test_extraction_never_raises_and_always_gives_json(records):
    trace = views.trace_view(records)
    json.dumps(trace, allow_nan=False)
    assert len(trace["spans"]) == len(records)
    calls = [
        {
            "start": r["start"],
            "duration_ns": r["end"],
            "model": r["name"],
            "input_tokens": r["span_id"],
            "error": r["status"],
        }
        for r in records
    ]
    json.dumps(views.overview(calls), allow_nan=False)
    json.dumps(
        views.trace_row({"models": [{"model": r["name"], "input_tokens": r["start"]} for r in records]}),
        allow_nan=False,
    )
