"""Cost on a Raspberry Pi's CPU, estimated under emulation: hark against openWakeWord as a ratio.

Absolute times under qemu-user mean nothing for a Pi (qemu translates every ARM instruction into
x86 code; NEON maps onto SSE/AVX at another throughput; caches and memory bandwidth are the host's).
What can carry over is the *ratio* of two detectors doing the same kind of work, measured in the
same emulated root on the same stream. So this measures, in a root built by ``scripts/pi-check``
(arm64, ``QEMU_CPU=cortex-a72``, a Pi 4's core):

- hark: ``FileSource`` -> ``Pipeline`` with a ``--base speech`` bundle (what ``hark detect`` runs),
  through the runtime ``hark[device]`` installs there (ai-edge-litert);
- openWakeWord 0.4.0 (its wheel ships its ONNX models: melspectrogram, embedding and ``alexa``),
  one model through onnxruntime, single-threaded as openWakeWord sets it,

each fed 1280 samples (80 ms) at a time, CPU from ``time.process_time()`` around the loop (model
loading excluded), alternating the two ``--repeats`` times and keeping each one's least CPU. The
same two runners on this machine's own CPU give the x86 ratio beside it.

    sudo .venv/bin/python tests/bench/bench_pi_cost.py [--os bookworm] [--minutes 2] [--repeats 3]

Needs the root's hark install (``sudo scripts/pi-check --os bookworm`` first); installs
openWakeWord into /opt/oww inside the root, and into WORKDIR/oww-x86 on this machine, once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PI_CHECK = ROOT / "scripts" / "pi-check"
OWW = "openwakeword==0.4.0"
os.environ.setdefault("HARK_CACHE_DIR", str(SHARED / "models"))  # training never downloads the base
sys.path.insert(0, str(ROOT / "tests" / "bench"))

from bench_streaming import link_dataset  # noqa: E402

HARK_RUNNER = r"""
import json, platform, resource, sys, time
import numpy
import soundfile
from hark import runtime
from hark.audio import FileSource
from hark.model import Model
from hark.pipeline import Pipeline
model = Model.load(sys.argv[2])
pipeline = Pipeline(model)
cpu = time.process_time()
with FileSource(sys.argv[1], chunk_samples=1280) as source:
    found = pipeline.run(source)
cpu = time.process_time() - cpu
# The file's length, as openWakeWord's runner counts it (the pipeline's clock also counts the padding
# that flushes the last windows).
print(json.dumps({"audio_s": soundfile.info(sys.argv[1]).duration, "cpu_s": cpu, "detections": len(found),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "python": platform.python_version(), "numpy": numpy.__version__, "runtime": runtime.runtime_name}))
"""

OWW_RUNNER = r"""
import json, platform, resource, sys, time, wave
import numpy as np
import onnxruntime
import openwakeword
from openwakeword.model import Model
paths = [p for p in openwakeword.get_pretrained_model_paths() if "alexa" in p]
model = Model(wakeword_model_paths=paths[:1])
cpu = time.process_time()
audio_s = 0.0
with wave.open(sys.argv[1], "rb") as f:  # the 16 kHz PCM16 file make_stream.py writes
    while True:
        chunk = np.frombuffer(f.readframes(1280), dtype=np.int16)
        if len(chunk) == 0:
            break
        model.predict(chunk)
        audio_s += len(chunk) / 16000
cpu = time.process_time() - cpu
print(json.dumps({"audio_s": audio_s, "cpu_s": cpu, "model": paths[0].split("/")[-1],
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "python": platform.python_version(), "numpy": np.__version__,
                  "runtime": "onnxruntime " + onnxruntime.__version__}))
"""


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:] if kwargs.get("capture_output") else []
        raise SystemExit(f"bench_pi_cost: {' '.join(cmd[:6])} ... exited {proc.returncode}\n" + "\n".join(tail))
    return proc


def in_root(release: str, cache: Path, work: Path, command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return run([sys.executable, str(PI_CHECK), "--shell", release, "--cache", str(cache), "--bind", str(work),
                "--", *command], **kwargs)


def prepare(work: Path, minutes: float) -> tuple[Path, Path]:
    """A --base speech bundle (8 clips a class of three keywords) and a stream of speech, sounds and noise."""
    data, real = SHARED / "data", SHARED / "data" / "real"
    work.mkdir(parents=True, exist_ok=True)
    train_list = work / "train.txt"
    if not train_list.exists():
        out = run([sys.executable, str(data / "make_stream.py"), "split", str(real / "keywords"), "--per-class", "8"],
                  capture_output=True)
        train_list.write_text(out.stdout)
    model = work / "model"
    if not (model / "manifest.json").exists():
        dataset = work / "dataset"
        shutil.rmtree(dataset, ignore_errors=True)
        link_dataset(dataset, train_list, real)
        run([sys.executable, "-m", "hark", "train", str(dataset), "-o", str(model), "--base", "speech",
             "--seed", "0", "--no-negatives", "--no-report"], capture_output=True)
    stream = work / f"stream_{minutes:g}min.wav"
    if not stream.exists():
        run([sys.executable, str(data / "make_stream.py"), str(stream), "--targets", str(real / "keywords"),
             "--skip", str(train_list), "--distractors", str(real / "esc10"), str(real / "speech"),
             "--noise", str(real / "background"), "--minutes", f"{minutes:g}", "--seed", "7"], capture_output=True)
    return model, stream


def least(results: list[dict]) -> dict:
    return min(results, key=lambda r: r["cpu_s"])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--os", default="bookworm", help="the cached root to measure in (default: bookworm)")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "pi-roots")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench/pi-cost"))
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the stream (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="alternations of the two; least CPU kept (default 3)")
    parser.add_argument("--no-x86", action="store_true", help="skip the same runners on this machine's CPU")
    args = parser.parse_args()
    work = args.workdir.resolve()
    model, stream = prepare(work, args.minutes)
    print(f"stream: {stream} ({args.minutes:g} min), hark model: {model} (--base speech)", flush=True)

    # openWakeWord in its own venv inside the root; numpy 1 where a wheel exists (as its 0.4.0 was made for).
    probe = in_root(args.os, args.cache, work, ["sh", "-c", "[ -x /opt/oww/bin/python ] && echo yes || echo no"],
                    capture_output=True)
    if probe.stdout.strip() != "yes":
        print(f"installing {OWW} and onnxruntime into /opt/oww in the {args.os} root (several minutes)", flush=True)
        in_root(args.os, args.cache, work, ["sh", "-c", "rm -rf /opt/oww.partial && python3 -m venv /opt/oww.partial"
                " && /opt/oww.partial/bin/pip install -q " + OWW + " onnxruntime"
                " \"numpy<2; python_version < '3.12'\" && mv /opt/oww.partial /opt/oww"], capture_output=True)
    runners: dict[str, list[list[str]]] = {
        f"arm64 {args.os} (qemu, cortex-a72)": [
            [sys.executable, str(PI_CHECK), "--shell", args.os, "--cache", str(args.cache), "--bind", str(work), "--",
             "/opt/hark/.venv/bin/python", "-c", HARK_RUNNER, str(stream), str(model)],
            [sys.executable, str(PI_CHECK), "--shell", args.os, "--cache", str(args.cache), "--bind", str(work), "--",
             "/opt/oww/bin/python", "-c", OWW_RUNNER, str(stream)]]}
    if not args.no_x86:
        oww_x86 = work / "oww-x86"
        if not (oww_x86 / "bin" / "python").exists():
            print(f"installing {OWW} and onnxruntime into {oww_x86}", flush=True)
            run([sys.executable, "-m", "venv", str(oww_x86)])
            run([str(oww_x86 / "bin" / "pip"), "install", "-q", OWW, "onnxruntime", "numpy<2"], capture_output=True)
        runners[f"x86_64 ({cpu_name()})"] = [[sys.executable, "-c", HARK_RUNNER, str(stream), str(model)],
                                            [str(oww_x86 / "bin" / "python"), "-c", OWW_RUNNER, str(stream)]]

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = []
    for where, (hark_cmd, oww_cmd) in runners.items():
        ours, theirs = [], []
        for i in range(args.repeats):
            for cmd, into in ((hark_cmd, ours), (oww_cmd, theirs)):
                out = run(cmd, capture_output=True, env=env).stdout
                into.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{where} round {i + 1}: hark {ours[-1]['cpu_s']:.1f} CPU-s, "
                  f"openWakeWord {theirs[-1]['cpu_s']:.1f} CPU-s", flush=True)
        rows.append((where, least(ours), least(theirs)))

    print(f"\n{'where':<46} {'hark a-s/CPU-s':>14} {'oWW a-s/CPU-s':>14} {'ratio':>6}  versions")
    for where, ours, theirs in rows:
        speed, oww_speed = ours["audio_s"] / ours["cpu_s"], theirs["audio_s"] / theirs["cpu_s"]
        print(f"{where:<46} {speed:>14.1f} {oww_speed:>14.1f} {speed / oww_speed:>5.2f}x  "
              f"Python {ours['python']}, hark on {ours['runtime']} + numpy {ours['numpy']}; "
              f"openWakeWord on {theirs['runtime']} + numpy {theirs['numpy']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
