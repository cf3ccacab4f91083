"""What the page costs the daemon: CPU per second of audio with no page, the page closed, and one open.

Runs ``hark run -c CONFIG --input STREAM --realtime`` (paced like a microphone) three ways:

* ``no web``: the config without a ``web:`` section (the daemon as it was before the page);
* ``page closed``: with ``web:``, nobody connected;
* ``page open``: with ``web:`` and one WebSocket client reading every live update, as an open
  Live tab does (an aiohttp client, so the browser's own cost is not counted).

Each run's CPU time (user + system of the daemon process, from ``wait4``) is divided by the
audio's length. The closed page may cost at most 5% over ``no web``. Usage::

    python tests/bench/bench_web.py [--model MODEL] [--seconds 60] [--repeats 3]

Without ``--model`` the committed test bundle (``tests/fixtures/bundles/tone``, ``--base none``) is used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.fixtures.broker import free_port  # noqa: E402
from tests.fixtures.make_bundles import BUNDLES  # noqa: E402
from tests.fixtures.synth import write_stream  # noqa: E402


def config(folder: Path, model: Path, port: int | None) -> Path:
    lines = [f"model: {model}", f"state_dir: {folder / 'state'}", "recording:", "  capture: true"]
    if port is not None:
        lines += ["web:", f"  port: {port}"]
    path = folder / f"hark-{port or 'noweb'}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def client(port: int, stop: threading.Event, counts: list[int]) -> None:
    """One open Live tab: a session cookie from the page, then every WebSocket message read."""
    import aiohttp

    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                try:
                    async with session.get(f"http://127.0.0.1:{port}/") as response:
                        await response.read()
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(ws.receive(), 0.5)
                    except asyncio.TimeoutError:
                        continue
                    if message.type != aiohttp.WSMsgType.TEXT:
                        return
                    counts[0] += 1

    try:
        asyncio.run(run())
    except Exception as err:  # the daemon ended first
        counts.append(-1)
        print(f"  client stopped: {err!r}", file=sys.stderr)


WARMUP_S = 6.0  # start-up (imports, model, server) is over by then; the steady state is measured after it


def cpu_of(pid: int) -> float:
    """CPU seconds the process's threads have run so far, from the scheduler's nanosecond counters
    (/proc/PID/task/*/schedstat; /proc/PID/stat counts in 10 ms ticks, too coarse for a few ms a second)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between listing and reading
    return total / 1e9


def run_once(cfg: Path, stream: Path, seconds: float, port: int | None) -> tuple[float, float, int]:
    """CPU seconds of one daemon run: in the steady state per wall second, and in all (start-up included);
    and the number of WebSocket messages the client read."""
    proc = subprocess.Popen([sys.executable, "-m", "hark", "run", "-c", str(cfg), "--input", str(stream),
                             "--realtime"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    stop = threading.Event()
    counts = [0]
    thread = None
    if port is not None:
        thread = threading.Thread(target=client, args=(port, stop, counts), daemon=True)
        thread.start()
    started = time.monotonic()
    time.sleep(WARMUP_S)
    first = cpu_of(proc.pid)
    time.sleep(seconds - WARMUP_S - 1.0)
    steady = (cpu_of(proc.pid) - first) / (time.monotonic() - started - WARMUP_S)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    if thread is not None:
        thread.join(5)
    if proc.returncode != 0:
        raise SystemExit(f"hark run exited {proc.returncode}")
    return steady, usage.ru_utime + usage.ru_stime, counts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or BUNDLES / "tone"
        events = [(1.0 + 3.0 * i, "beep" if i % 2 == 0 else "chirp") for i in range(int(args.seconds // 3))]
        stream = write_stream(folder / "stream.wav", events, seconds=args.seconds)
        port = free_port()
        cases = {"no web": (config(folder, model, None), None, False),
                 "page closed": (config(folder, model, port), None, False),
                 "page open (1 WebSocket)": (config(folder, model, port), port, True)}
        results: dict[str, list[float]] = {name: [] for name in cases}
        totals: dict[str, list[float]] = {name: [] for name in cases}
        messages: dict[str, int] = {}
        for repeat in range(args.repeats):
            for name, (cfg, client_port, _) in cases.items():
                started = time.monotonic()
                steady, cpu, count = run_once(cfg, stream, args.seconds, client_port)
                results[name].append(steady * 1000)
                totals[name].append(cpu / args.seconds * 1000)
                messages[name] = count
                print(f"  run {repeat + 1} {name}: {cpu:.2f} s CPU in {time.monotonic() - started:.1f} s "
                      f"({count} messages)", file=sys.stderr)
        print(f"hark run --realtime, {args.seconds:.0f} s of audio, {args.repeats} runs each; "
              "CPU ms per audio second, median (min-max):")
        for title, table in ((f"steady state (after the first {WARMUP_S:.0f} s)", results),
                             ("whole run, start-up included", totals)):
            print(f" {title}:")
            base = statistics.median(table["no web"])
            for name, values in table.items():
                median = statistics.median(values)
                extra = f"  {100 * (median / base - 1):+.1f}% vs no web" if name != "no web" else ""
                shown = (f"  ({messages[name] / args.seconds:.1f} messages/s)"
                         if name.startswith("page open") and table is results else "")
                print(f"  {name:<24} {median:7.2f}  ({min(values):.2f}-{max(values):.2f}){extra}{shown}")


if __name__ == "__main__":
    main()
