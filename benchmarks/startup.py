"""What ``respan-instrument`` adds to a program's start-up: wall time of short programs, bare vs launched.

Why it is built this way:

* Every variant runs the same interpreter (``sys.executable``) and the console scripts next to it, so the
  figures compare launchers, not Pythons.
* The programs never import mistralai, so the launcher's lazy bootstrap never builds a pipeline: what is
  measured is the price every program pays for being launched, traced or not. ``python -c pass`` is the
  floor; a program that does a little work (``json.dumps``) shows the cost does not grow with the program.
* Variants are interleaved run by run (the order rotates each round), so drift and a busy neighbour hit
  them all alike. The added time is the median of the per-round differences with a 95 % interval.
* ``opentelemetry-instrument`` (when it is installed next to the interpreter) is there for scale, with its
  exporters set to ``none``. It runs whichever distro is installed: respan_auto registers one, in which
  case it builds respan_auto's pipeline at start-up (to the local store).
* The child environment has no RESPAN_* or OTEL_* variables except a throwaway RESPAN_LOCAL_STORE, so
  nothing can be exported anywhere.

Usage: ``python benchmarks/startup.py [--runs N] [--json]``. The exit code is 0 whether or not the target
is met: this is a report, not a gate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from respan_auto.version import __version__

TARGET_ADDED_MS = 40.0
WORK = "import json; json.dumps([1])"
OTEL_QUIET = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
# What a launched child reports about itself: our bootstrap loaded, our pipeline built, mistralai imported.
PROBE = (
    "import sys; print(*(int(m in sys.modules) for m in "
    "('respan_auto.bootstrap', 'respan_auto.export.pipeline', 'mistralai')))"
)


@dataclass
class Variant:
    key: str
    label: str
    argv: list[str]
    baseline: str | None = None  # the bare variant to subtract, besides (a)
    env: dict[str, str] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)


def child_env(local_store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESPAN_", "OTEL_"))}
    env["RESPAN_LOCAL_STORE"] = local_store
    return env


def variants(python: str) -> tuple[list[Variant], list[str]]:
    """The variants to time, and notes on what was left out."""
    bindir = Path(python).parent
    respan = str(bindir / "respan-instrument")
    found = [
        Variant("a", "python -c pass", [python, "-c", "pass"]),
        Variant("b", "respan-instrument python -c pass", [respan, python, "-c", "pass"], "a"),
        Variant("c1", "python -c json.dumps", [python, "-c", WORK]),
        Variant("c2", "respan-instrument python -c json.dumps", [respan, python, "-c", WORK], "c1"),
    ]
    notes = []
    otel = bindir / "opentelemetry-instrument"
    if otel.exists():
        distros = sorted(ep.name for ep in entry_points(group="opentelemetry_distro"))
        found.append(
            Variant("d", "opentelemetry-instrument python -c pass", [str(otel), python, "-c", "pass"], "a", OTEL_QUIET)
        )
        notes.append(f"opentelemetry-instrument distros installed: {', '.join(distros) or 'none (default distro)'}")
    else:
        notes.append(f"(d) skipped: no opentelemetry-instrument next to {python}")
    if not Path(respan).exists():
        raise SystemExit(f"no respan-instrument next to {python}: install respan-auto in that environment")
    return found, notes


class RunFailedError(Exception):
    pass


def run_once(variant: Variant, env: dict[str, str]) -> float:
    """Wall time of one run in ms; a failing run is an error, not a figure."""
    start = time.perf_counter_ns()
    done = subprocess.run(
        variant.argv,
        env={**env, **variant.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = (time.perf_counter_ns() - start) / 1e6
    if done.returncode != 0:
        raise RunFailedError(
            f"{variant.label} exited {done.returncode}: {done.stderr.decode(errors='replace').strip()}"
        )
    return elapsed


def probe(variant: Variant, env: dict[str, str]) -> dict[str, bool]:
    """Whether the launched child had our bootstrap loaded, our pipeline built and mistralai imported."""
    argv = [*variant.argv[:-1], PROBE]
    out = subprocess.run(
        argv, env={**env, **variant.env}, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    flags = [flag == "1" for flag in [*out.stdout.split(), "?", "?", "?"][:3]]
    return {"bootstrap_loaded": flags[0], "pipeline_built": flags[1], "mistralai_imported": flags[2]}


def measure(found: list[Variant], runs: int, env: dict[str, str], notes: list[str]) -> None:
    for variant in list(found):  # warm the page cache and the bytecode caches; drop what cannot run
        try:
            run_once(variant, env)
        except RunFailedError as failure:
            if variant.key in ("a", "b"):
                raise SystemExit(f"cannot measure: {failure}") from None
            found.remove(variant)
            notes.append(f"({variant.key}) skipped: {failure}")
    for round_ in range(runs):
        shift = round_ % len(found)
        for variant in found[shift:] + found[:shift]:
            variant.ms.append(run_once(variant, env))


# ---------------------------------------------------------------- statistics


def p90(values: Sequence[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


def median_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """Median and its distribution-free 95 % interval (order statistics)."""
    ordered = sorted(values)
    k = max(0, int(len(ordered) / 2 - 0.98 * math.sqrt(len(ordered))))
    return statistics.median(ordered), ordered[k], ordered[-1 - k]


def added(variant: Variant, base: Variant) -> dict[str, Any]:
    value, low, high = median_ci([v - b for v, b in zip(variant.ms, base.ms, strict=True)])
    return {"value": round(value, 2), "ci95": [round(low, 2), round(high, 2)]}


def figures(found: list[Variant]) -> dict[str, Any]:
    by_key = {v.key: v for v in found}
    cases = {}
    for v in found:
        case: dict[str, Any] = {
            "label": v.label,
            "median_ms": round(statistics.median(v.ms), 2),
            "p90_ms": round(p90(v.ms), 2),
        }
        if v.key != "a":
            case["added_ms_vs_a"] = added(v, by_key["a"])
        if v.baseline and v.baseline != "a":
            case[f"added_ms_vs_{v.baseline}"] = added(v, by_key[v.baseline])
        cases[v.key] = case
    low, high = cases["b"]["added_ms_vs_a"]["ci95"]
    verdict = "met" if high <= TARGET_ADDED_MS else "not met" if low > TARGET_ADDED_MS else "inconclusive"
    return {
        "cases": cases,
        "target": {"limit_ms": TARGET_ADDED_MS, "added_ms": cases["b"]["added_ms_vs_a"], "verdict": verdict},
    }


# ---------------------------------------------------------------- reporting


def _ci(figure: dict[str, Any]) -> str:
    low, high = figure["ci95"]
    return f"{figure['value']:+.1f} [{low:+.1f}, {high:+.1f}]"


def print_table(result: dict[str, Any]) -> None:
    row = "{:<5}{:<42}{:>11}{:>9}{:>26}{:>26}"
    lines = [
        f"respan_auto {result['respan_auto']}, {result['python']} ({result['executable']}); "
        f"{result['runs']} interleaved runs each; {result['elapsed_s']} s",
        "",
        row.format("", "", "median ms", "p90 ms", "added ms vs (a) [95 % CI]", "vs bare twin [95 % CI]"),
    ]
    for key, case in result["cases"].items():
        twin = next((v for k, v in case.items() if k.startswith("added_ms_vs_") and k != "added_ms_vs_a"), None)
        lines.append(
            row.format(
                f"({key})",
                case["label"],
                f"{case['median_ms']:.1f}",
                f"{case['p90_ms']:.1f}",
                _ci(case["added_ms_vs_a"]) if "added_ms_vs_a" in case else "",
                _ci(twin) if twin else "",
            )
        )
    target = result["target"]
    lines += [
        "",
        f"target respan-instrument adds <= {target['limit_ms']:g} ms: {target['verdict'].upper()} "
        f"(added {_ci(target['added_ms'])} ms)",
    ]
    for key, checks in result["probes"].items():
        lines.append(
            f"({key}) in the child: respan-instrument's bootstrap "
            f"{'loaded' if checks['bootstrap_loaded'] else 'absent'}, "
            f"respan_auto pipeline {'built' if checks['pipeline_built'] else 'not built'}, "
            f"mistralai {'imported' if checks['mistralai_imported'] else 'not imported'}"
        )
    lines += result["notes"]
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs of each variant (default 30)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    runs = max(2, args.runs)

    started = time.perf_counter()
    found, notes = variants(sys.executable)
    with tempfile.TemporaryDirectory(prefix="respan-startup-") as tmp:
        store = os.path.join(tmp, "traces.jsonl")
        env = child_env(store)
        measure(found, runs, env, notes)
        probes = {v.key: probe(v, env) for v in found if v.key in ("b", "d")}
        if os.path.exists(store):
            notes.append(f"the local store was written to ({os.path.getsize(store)} bytes)")
    result = {
        "respan_auto": __version__,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "runs": runs,
        **figures(found),
        "probes": probes,
        "notes": notes,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
