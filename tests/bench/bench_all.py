#!/usr/bin/env python3
"""Run every hark benchmark in one go and print one table, with the machine it ran on.

    .venv/bin/python tests/bench/bench_all.py [--only fewshot,streaming,cost] [--logs DIR]

Each benchmark is its own script in this folder (bench_fewshot.py: few-shot accuracy on real
keywords and ESC-10; bench_streaming.py: recall, false alarms and latency on a 30-minute
stream; bench_quality.py: the same on a dev and a sealed split, keyword sets rotated, five seeds;
bench_cost.py: CPU and memory against openWakeWord). They run one after another (the
machine has few cores and each wants them all), their full output goes to ``DIR/<name>.log``,
and their results are gathered into one table for the README's Performance section.

A result is a line a benchmark prints starting with a word in capitals (``RECALL  97.5%``);
everything else stays in its log. A benchmark that fails is shown as failed with
the tail of its log, and the others still run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# Script and arguments; {work} is this run's own folder, so streaming trains a model with today's
# code (not one cached by an earlier run) and cost measures that same model.
BENCHMARKS = {
    "fewshot": ("bench_fewshot.py", []),
    "streaming": ("bench_streaming.py", ["--workdir", "{work}/streaming"]),
    "quality": ("bench_quality.py", ["--workdir", "{work}/quality"]),
    "cost": ("bench_cost.py", ["--workdir", "{work}/cost", "--model", "{work}/streaming/model_speech"]),
}
PROGRESS = re.compile(r"\r|\d+%\|")


@dataclass
class Run:
    """One benchmark's run: how it went and what it printed."""

    name: str
    script: Path
    args: list[str] = field(default_factory=list)
    seconds: float = 0.0
    returncode: int | None = None
    output: str = ""
    results: list[tuple[str, str]] = field(default_factory=list)


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        # x86 and ARM say "model name"; a Raspberry Pi also names the board in "Model".
        cpu = " / ".join(v for v in (info.get("model name"), info.get("Model")) if v) or cpu
    except OSError:
        pass
    try:
        mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
        memory = f"{mem_kb / 1024 / 1024:.0f} GB"
    except (OSError, StopIteration):
        memory = "?"
    return [
        ("CPU", cpu),
        ("cores", str(os.cpu_count())),
        ("memory", memory),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("date", time.strftime("%Y-%m-%d")),
    ]


def results_of(output: str) -> list[tuple[str, str]]:
    """The headline lines of a benchmark's output: those that start with a word in capitals.

    The benchmarks print their results as ``RECALL   97.5%  (target >= 95%)`` or
    ``KEYWORDS --base speech ...: mean accuracy 99%``; the capitals are the measure, the rest the
    value. Detail lines (per seed, per class) are lower case and stay in the log.
    """
    found = []
    for line in output.splitlines():
        if PROGRESS.search(line):
            continue
        tokens = line.split()
        name = []
        for token in tokens:
            if any(c.isalpha() for c in token) and token == token.upper() and len(token) > 1:
                name.append(token)
            else:
                break
        if name and len(name[0]) >= 3 and name[0][0].isalpha():
            found.append((" ".join(name), " ".join(tokens[len(name):])))
    return found


def run(bench: Run, logs: Path) -> Run:
    print(f"bench_all: running {bench.script.name} (log: {logs / (bench.name + '.log')})", file=sys.stderr, flush=True)
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("HARK_CACHE_DIR", str(ROOT.parent / "shared" / "models"))
    lines = []
    # stdout and stderr both go to the log as they come (to follow a long run: tail -f); stdout is kept.
    with (logs / f"{bench.name}.log").open("w", buffering=1) as log:
        proc = subprocess.Popen([sys.executable, str(bench.script), *bench.args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
        proc.wait()
    bench.seconds = time.monotonic() - start
    bench.returncode = proc.returncode
    bench.output = "".join(lines)
    bench.results = results_of(bench.output)
    return bench


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """A Markdown table (pastes straight into the README)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |", *map(line, rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated: " + ", ".join(BENCHMARKS))
    parser.add_argument("--logs", type=Path, default=Path("build/bench/all"),
                        help="folder for the logs and the benchmarks' work (default build/bench/all)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    args.logs.mkdir(parents=True, exist_ok=True)

    runs = []
    for name in names:
        script_name, script_args = BENCHMARKS[name]
        script = HERE / script_name
        if not script.exists():
            runs.append(Run(name, script, output=f"{script.name} is not there"))
            continue
        runs.append(run(Run(name, script, [a.format(work=args.logs) for a in script_args]), args.logs))

    rows: list[tuple[str, ...]] = []
    for r in runs:
        if r.returncode is None:
            rows.append((r.name, "not run", r.output))
        elif r.returncode != 0:
            tail = " / ".join(r.output.strip().splitlines()[-2:]) or f"see {args.logs / (r.name + '.log')}"
            rows.append((r.name, f"FAILED (exit {r.returncode}, {r.seconds:.0f} s)", tail))
        elif not r.results:
            rows.append((r.name, "no results printed", f"see {args.logs / (r.name + '.log')}"))
        else:
            rows.extend((r.name, key, value) for key, value in r.results)
            rows.append((r.name, "wall time", f"{r.seconds:.0f} s"))

    print("Machine\n")
    print(table(machine(), ("", "")))
    print("\nResults\n")
    print(table(rows, ("benchmark", "measure", "value")))
    return 0 if all(r.returncode == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
