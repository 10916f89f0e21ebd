"""Spans reach the exporter at every kind of process end, and the process ends exactly as it would without us.

Real subprocesses (servers under the launcher, scripts, multiprocessing children) export to a
loopback OTLP receiver. The batch delay is set far beyond each run, so only the process-end
flush can deliver. Where the exit status matters, the same app also runs without respan-auto
and both statuses are compared.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from respan_auto.testing.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.conftest import REPO, SDK_TRACER

BIN = Path(sys.executable).parent
LAUNCHER = str(BIN / "respan-instrument")
REQUESTS = 12
DEADLINE = 60.0  # seconds any one wait may take; pytest-timeout stops a test at 120

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX process ends: signals and fork")


@pytest.fixture
def receiver():
    with OtlpReceiver() as rx:
        yield rx


@pytest.fixture(autouse=True)
def reap():
    """Whatever a failed test left running (a server and its workers) is killed with its process group."""
    yield
    while Proc.started:
        Proc.started.pop().kill()


def app_env(tmp_path: Path, rx: OtlpReceiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_", "MISTRAL_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(tmp_path)]),
        RESPAN_API_KEY="anything",
        RESPAN_BASE_URL=rx.base_url,
        OTEL_BSP_SCHEDULE_DELAY="600000",  # nothing leaves before the process ends
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def write(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


def command(name: str) -> list[str]:
    """A tool of this environment, by its console script as a user would run it."""
    script = BIN / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Proc:
    """A started process whose output (stdout and stderr together) goes to a file we can poll."""

    started: list[Proc] = []

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.log = cwd / f"output-{len(list(cwd.glob('output-*')))}.txt"
        with self.log.open("w") as out:
            self.popen = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its own process group, so that cleaning up reaches the workers too
            )
        Proc.started.append(self)

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait()

    def output(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, count: int = 1) -> None:
        deadline = time.monotonic() + DEADLINE
        while self.output().count(text) < count:
            if self.popen.poll() is not None:
                pytest.fail(f"exited {self.popen.returncode} before {text!r} x{count}:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"no {text!r} x{count} within {DEADLINE} s:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def send(self, signum: int = signal.SIGTERM) -> None:
        self.popen.send_signal(signum)

    def wait(self) -> int:
        try:
            return self.popen.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {DEADLINE} s after the signal:\n{self.output()[-3000:]}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.send(signum)
        return self.wait()


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return body
    finally:
        connection.close()


def wait_until_serving(proc: Proc, port: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            if get(port, "/ready") == "ok":
                return
        except OSError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never served on port {port}:\n{proc.output()[-3000:]}")
        time.sleep(0.1)


def names(spans: list[ReceivedSpan]) -> list[str]:
    return sorted(s.name for s in spans)


def wait_for_spans(rx: OtlpReceiver, count: int, seconds: float = 2.0) -> list[ReceivedSpan]:
    """The receiver's spans once ``count`` arrived (or after ``seconds``): an export may still be in its hands."""
    deadline = time.monotonic() + seconds
    while len(rx.spans) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # and anything extra (a duplicate) would arrive by now
    return rx.spans


# ---------------------------------------------------------------------------------------------
# Servers: uvicorn, gunicorn with uvicorn workers, gunicorn sync workers
# ---------------------------------------------------------------------------------------------

ASGI_APP = """
    import os

    from respan_auto import workflow

    try:
        from mistralai.client import Mistral
    except ImportError:
        from mistralai import Mistral

    client = Mistral(api_key="k", server_url=os.environ["STANDIN_URL"])


    @workflow(name="handle")
    async def handle(path: str) -> str:
        await client.chat.complete_async(model="mistral-small-latest", messages=[{"role": "user", "content": path}])
        return f"{os.getpid()} {path}"


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        body = (await handle(path) if path.startswith("/r/") else "ok").encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
"""

WSGI_APP = """
    import os

    from respan_auto import workflow


    @workflow(name="handle")
    def handle(path: str) -> str:
        return f"{os.getpid()} {path}"


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        body = (handle(path) if path.startswith("/r/") else "ok").encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
"""

GUNICORN_CONF = """
    import sys


    def post_worker_init(worker):
        print("worker ready", file=sys.stderr, flush=True)
"""


@dataclass
class Served:
    returncode: int
    pids: set[str] = field(default_factory=set)
    output: str = ""


def serve_then_sigterm(args: list[str], env: dict[str, str], cwd: Path, port: int, ready: str, workers: int) -> Served:
    """Start a server, wait for every worker, serve REQUESTS requests, then SIGTERM the server."""
    proc = Proc(args, env, cwd)
    proc.wait_for(ready, workers)
    wait_until_serving(proc, port)
    bodies = [get(port, f"/r/{i}") for i in range(REQUESTS)]
    returncode = proc.stop()
    return Served(returncode, {b.split()[0] for b in bodies}, proc.output())


def handled_paths(spans: list[ReceivedSpan]) -> list[str]:
    return sorted(json.loads(s.attributes["traceloop.entity.input"])["args"][0] for s in spans)


def assert_each_request_once(spans: list[ReceivedSpan], with_llm: bool) -> None:
    spans = [s for s in spans if s.scope != SDK_TRACER]  # the SDK's own (older mistralai) are not ours
    workflows = [s for s in spans if s.name == "handle.workflow"]
    assert handled_paths(workflows) == sorted(f"/r/{i}" for i in range(REQUESTS))
    if with_llm:
        chats = [s for s in spans if s.name.startswith("chat ")]
        assert len(chats) == REQUESTS, names(spans)
        assert sorted(c.parent_id or "" for c in chats) == sorted(w.span_id for w in workflows)
    assert len(spans) == REQUESTS * (2 if with_llm else 1), names(spans)


def compare_with_and_without_us(
    tmp_path: Path, rx: OtlpReceiver, server_args: Callable[[int], list[str]], ready: str, workers: int, **env: str
) -> tuple[Served, Served]:
    environ = app_env(tmp_path, rx, **env)
    port = free_port()
    plain = serve_then_sigterm(server_args(port), environ, tmp_path, port, ready, workers)
    assert rx.spans == [], "without the launcher nothing is traced"
    port = free_port()
    traced = serve_then_sigterm([LAUNCHER, *server_args(port)], environ, tmp_path, port, ready, workers)
    return plain, traced


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_sigterm_delivers_every_span_once(tmp_path, receiver, server, workers):
    """uvicorn re-raises SIGTERM after its graceful shutdown, with the handler it found: atexit never runs."""
    pytest.importorskip("uvicorn")
    write(tmp_path, "asgi_app.py", ASGI_APP)

    def args(port: int) -> list[str]:
        extra = ["--workers", str(workers)] if workers > 1 else []
        return [*command("uvicorn"), "asgi_app:app", "--host", "127.0.0.1", "--port", str(port), *extra]

    plain, traced = compare_with_and_without_us(
        tmp_path, receiver, args, "Application startup complete.", workers, STANDIN_URL=server.url
    )
    assert traced.returncode == plain.returncode, traced.output[-3000:]
    assert_each_request_once(wait_for_spans(receiver, 2 * REQUESTS), with_llm=True)
    assert "Traceback" not in traced.output, traced.output[-3000:]


def test_gunicorn_uvicorn_workers_sigterm_delivers_every_span_once(tmp_path, receiver, server):
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn.workers")  # later uvicorn releases may move it to the uvicorn-worker package
    write(tmp_path, "asgi_app.py", ASGI_APP)

    def args(port: int) -> list[str]:
        return [
            *command("gunicorn"),
            *("-k", "uvicorn.workers.UvicornWorker", "-w", "2", "-b", f"127.0.0.1:{port}", "asgi_app:app"),
        ]

    plain, traced = compare_with_and_without_us(
        tmp_path, receiver, args, "Application startup complete.", 2, STANDIN_URL=server.url
    )
    assert traced.returncode == plain.returncode, traced.output[-3000:]
    assert_each_request_once(wait_for_spans(receiver, 2 * REQUESTS), with_llm=True)
    assert "Traceback" not in traced.output, traced.output[-3000:]


@pytest.mark.parametrize("preload", [False, True], ids=["app-in-workers", "preload"])
def test_gunicorn_sync_workers_sigterm_delivers_every_span_once(tmp_path, receiver, preload):
    """Sync workers leave through sys.exit; with --preload the pipeline is inherited by fork."""
    pytest.importorskip("gunicorn")
    write(tmp_path, "wsgi_app.py", WSGI_APP)
    write(tmp_path, "gunicorn_conf.py", GUNICORN_CONF)

    def args(port: int) -> list[str]:
        options = ["-c", "gunicorn_conf.py", "-w", "2", "-b", f"127.0.0.1:{port}", *(["--preload"] if preload else [])]
        return [*command("gunicorn"), *options, "wsgi_app:app"]

    plain, traced = compare_with_and_without_us(tmp_path, receiver, args, "worker ready", 2)
    assert traced.returncode == plain.returncode, traced.output[-3000:]
    assert_each_request_once(wait_for_spans(receiver, REQUESTS), with_llm=False)
    assert "Traceback" not in traced.output, traced.output[-3000:]


# ---------------------------------------------------------------------------------------------
# multiprocessing children: they end in os._exit, past atexit
# ---------------------------------------------------------------------------------------------

MP_APP = """
    import multiprocessing
    import os
    import sys
    from concurrent.futures import ProcessPoolExecutor

    from opentelemetry import trace

    if os.environ.get("SETUP") == "launcher":
        import respan_auto.decorators  # what starts tracing under the launcher, as importing mistralai does
    else:
        from respan_auto import Respan

        Respan()
    tracer = trace.get_tracer("app")


    def work(tag: str, count: int) -> int:
        for i in range(count):
            tracer.start_span(f"{tag}-{i}").end()
        return count


    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        tracer.start_span("parent").end()
        processes = [context.Process(target=work, args=(f"process{k}", 5)) for k in range(3)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        with ProcessPoolExecutor(2, mp_context=context) as pool:
            done = list(pool.map(work, [f"pool{k}" for k in range(4)], [5] * 4))
        print([process.exitcode for process in processes], done)
"""

LAZY_CHILD_APP = """
    import multiprocessing
    import sys

    from opentelemetry import trace


    def work(tag: str) -> None:
        from respan_auto import Respan

        Respan()  # the pipeline is born in the running child
        tracer = trace.get_tracer("app")
        for i in range(5):
            tracer.start_span(f"{tag}-{i}").end()


    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        processes = [context.Process(target=work, args=(f"child{k}",)) for k in range(2)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        print([process.exitcode for process in processes])
"""

METHODS = [m for m in ("fork", "forkserver", "spawn") if m in __import__("multiprocessing").get_all_start_methods()]


def run_script(path: Path, args: list[str], env: dict[str, str], launcher: bool = False) -> subprocess.CompletedProcess:
    prefix = [LAUNCHER] if launcher else []
    return subprocess.run(
        [*prefix, sys.executable, str(path), *args],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


@pytest.mark.parametrize("setup", ["Respan()", "launcher"])
@pytest.mark.parametrize("method", METHODS)
def test_multiprocessing_children_deliver_every_span_once(tmp_path, receiver, method, setup):
    app = write(tmp_path, "mp_app.py", MP_APP)
    env = app_env(tmp_path, receiver, SETUP="launcher" if setup == "launcher" else "manual")
    result = run_script(app, [method], env, launcher=setup == "launcher")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["[0,", "0,", "0]", "[5,", "5,", "5,", "5]"], result.stdout
    expected = ["parent"] + [f"process{k}-{i}" for k in range(3) for i in range(5)]
    expected += [f"pool{k}-{i}" for k in range(4) for i in range(5)]
    assert names(wait_for_spans(receiver, len(expected))) == sorted(expected)


@pytest.mark.parametrize("method", METHODS)
def test_pipeline_born_in_a_running_child_flushes_at_its_end(tmp_path, receiver, method):
    app = write(tmp_path, "lazy_app.py", LAZY_CHILD_APP)
    result = run_script(app, [method], app_env(tmp_path, receiver))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[0, 0]"
    expected = sorted(f"child{k}-{i}" for k in range(2) for i in range(5))
    assert names(wait_for_spans(receiver, len(expected))) == expected


# ---------------------------------------------------------------------------------------------
# Scripts and their own SIGTERM dispositions
# ---------------------------------------------------------------------------------------------

SIGNAL_APP = """
    import os
    import signal
    import sys
    import threading
    import time

    from opentelemetry import trace
    from respan_auto import Respan

    mode = sys.argv[1]


    def app_handler(signum, frame):
        print("app handler ran", flush=True)
        sys.exit(3)


    if mode == "handler-before":
        signal.signal(signal.SIGTERM, app_handler)
    if mode == "ignore-before":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "thread":
        starter = threading.Thread(target=Respan)
        starter.start()
        starter.join()
    else:
        Respan()
    if mode == "handler-after":
        signal.signal(signal.SIGTERM, app_handler)
    if mode == "chaining-after":
        previous = signal.getsignal(signal.SIGTERM)

        def chaining(signum, frame):
            if callable(previous):
                previous(signum, frame)
            app_handler(signum, frame)

        signal.signal(signal.SIGTERM, chaining)
    if mode == "ignore-after":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    tracer = trace.get_tracer("app")
    for i in range(10):
        tracer.start_span(f"before-{i}").end()
    print("ready", flush=True)
    if mode.startswith("ignore"):
        sys.stdin.readline()  # the test writes a line once its SIGTERM had time to arrive
        tracer.start_span("after-sigterm").end()
        print("still running", flush=True)
        sys.exit(0)
    while True:
        time.sleep(0.05)
"""

BEFORE = [f"before-{i}" for i in range(10)]


def run_until_sigterm(tmp_path: Path, rx: OtlpReceiver, mode: str, **env: str) -> tuple[int, str]:
    app = write(tmp_path, "signal_app.py", SIGNAL_APP)
    proc = Proc([sys.executable, str(app), mode], app_env(tmp_path, rx, **env), tmp_path)
    proc.wait_for("ready")
    return proc.stop(), proc.output()


@pytest.mark.parametrize("mode", ["default", "thread"], ids=["main-thread", "started-in-a-thread"])
def test_sigterm_with_the_default_disposition_flushes_then_dies_of_sigterm(tmp_path, receiver, mode):
    returncode, output = run_until_sigterm(tmp_path, receiver, mode)
    assert returncode == -signal.SIGTERM, output
    assert names(wait_for_spans(receiver, len(BEFORE))) == BEFORE
    assert "Traceback" not in output, output


@pytest.mark.parametrize("mode", ["handler-before", "handler-after", "chaining-after"])
def test_the_apps_own_sigterm_handler_still_decides(tmp_path, receiver, mode):
    """Its handler runs, the process ends as it says (3), and the spans arrive through atexit."""
    returncode, output = run_until_sigterm(tmp_path, receiver, mode)
    plain_returncode, plain_output = run_until_sigterm(tmp_path, receiver, mode, RESPAN_ENABLED="false")
    assert returncode == plain_returncode == 3, output
    assert output.count("app handler ran") == plain_output.count("app handler ran") == 1, output
    assert names(wait_for_spans(receiver, len(BEFORE))) == BEFORE


@pytest.mark.parametrize("mode", ["ignore-before", "ignore-after"])
def test_an_ignored_sigterm_stays_ignored(tmp_path, receiver, mode):
    app = write(tmp_path, "signal_app.py", SIGNAL_APP)
    proc = Proc([sys.executable, str(app), mode], app_env(tmp_path, receiver), tmp_path)
    proc.wait_for("ready")
    proc.send(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.popen.poll() is None, proc.output()
    assert receiver.spans == []  # nothing flushed early either
    assert proc.popen.stdin is not None
    proc.popen.stdin.write("go on\n")
    proc.popen.stdin.flush()
    assert proc.wait() == 0, proc.output()
    assert "still running" in proc.output()
    assert names(wait_for_spans(receiver, len(BEFORE) + 1)) == sorted([*BEFORE, "after-sigterm"])


RERAISE_APP = """
    import os
    import signal
    import sys
    import time

    from opentelemetry import trace

    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))  # a server's graceful handler

    from respan_auto import Respan

    Respan()
    tracer = trace.get_tracer("app")
    tracer.start_span("served").end()
    print("ready", flush=True)
    while not stopping:
        time.sleep(0.05)
    tracer.start_span("finished-during-shutdown").end()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as uvicorn: restore what it found, then re-raise
    if sys.argv[1] == "raise_signal":
        signal.raise_signal(signal.SIGTERM)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not reached", flush=True)
"""


@pytest.mark.parametrize("how", ["raise_signal", "kill"])
def test_a_graceful_shutdown_that_re_raises_sigterm_delivers_everything(tmp_path, receiver, how):
    """The spans of work finished after the signal arrive too, and the process still dies of SIGTERM."""
    app = write(tmp_path, "reraise_app.py", RERAISE_APP)
    proc = Proc([sys.executable, str(app), how], app_env(tmp_path, receiver), tmp_path)
    proc.wait_for("ready")
    assert proc.stop() == -signal.SIGTERM, proc.output()
    assert "not reached" not in proc.output()
    assert names(wait_for_spans(receiver, 2)) == ["finished-during-shutdown", "served"]


TERMINATED_CHILD_APP = """
    import multiprocessing
    import sys
    import time

    from opentelemetry import trace
    from respan_auto import Respan

    Respan()
    tracer = trace.get_tracer("app")


    def work(ready) -> None:
        for i in range(5):
            tracer.start_span(f"child-{i}").end()
        ready.set()
        time.sleep(60)


    if __name__ == "__main__":
        context = multiprocessing.get_context(sys.argv[1])
        ready = context.Event()
        child = context.Process(target=work, args=(ready,))
        child.start()
        assert ready.wait(30)
        child.terminate()  # SIGTERM
        child.join()
        print(child.exitcode)
"""


@pytest.mark.parametrize("method", METHODS)
def test_a_terminated_multiprocessing_child_flushes_then_dies_of_sigterm(tmp_path, receiver, method):
    app = write(tmp_path, "terminated_app.py", TERMINATED_CHILD_APP)
    result = run_script(app, [method], app_env(tmp_path, receiver))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == str(-signal.SIGTERM)
    expected = [f"child-{i}" for i in range(5)]
    assert names(wait_for_spans(receiver, len(expected))) == expected


ONCE_APP = """
    import multiprocessing
    import os
    import sys

    from respan_auto.export import process_end

    role = "parent" if __name__ == "__main__" else "spawn child"
    process_end.install(lambda: print(f"flush in {role}", flush=True))


    def nothing() -> None:
        pass


    if __name__ == "__main__":
        if os.fork() == 0:
            role = "forked child"
            sys.exit(0)
        os.wait()
        child = multiprocessing.get_context("spawn").Process(target=nothing)  # both its Finalize and atexit fire
        child.start()
        child.join()
"""


def test_the_flush_runs_once_in_each_process(tmp_path, receiver):
    app = write(tmp_path, "once_app.py", ONCE_APP)
    result = run_script(app, [], app_env(tmp_path, receiver))
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines()) == ["flush in forked child", "flush in parent", "flush in spawn child"]


DEADLOCK_APP = """
    import threading
    import time

    from respan_auto.export import process_end

    held = threading.Lock()
    process_end.install(lambda: held.acquire())  # the flush needs a lock...
    held.acquire()  # ...that the code the signal interrupts holds (a processor's queue lock, the logging lock)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
"""


def test_sigterm_never_deadlocks_on_a_lock_the_interrupted_code_holds(tmp_path, receiver):
    """The flush runs in a helper thread; the dying process waits for it RESPAN_EXIT_TIMEOUT plus a margin at most."""
    app = write(tmp_path, "deadlock_app.py", DEADLOCK_APP)
    proc = Proc([sys.executable, str(app)], app_env(tmp_path, receiver, RESPAN_EXIT_TIMEOUT="0.5"), tmp_path)
    proc.wait_for("ready")
    started = time.monotonic()
    assert proc.stop() == -signal.SIGTERM, proc.output()
    assert time.monotonic() - started < 10
