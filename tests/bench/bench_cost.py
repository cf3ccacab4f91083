"""Cost: audio seconds processed per CPU second and peak memory, hark against openWakeWord 0.4.0.

Three 10-minute streams, built reproducibly from ``../shared/data`` (kept in ``--workdir``):

- ``steady``: a room's steady background only (running tap, pink and white noise, exercise bike:
  30-120 s pieces at a constant level each), what a detector hears most of the day;
- ``busy``: speech and sounds all the time (``make_stream.py`` with 0.1-0.5 s gaps);
- ``mixed``: keywords, speech and sounds among background (``make_stream.py``'s defaults, seed 7).

Each system runs in a fresh child process, fed 1280 samples (80 ms) at a time:

- hark: ``FileSource`` -> ``Pipeline`` with a ``--base speech`` model (what ``hark detect`` and
  ``hark run`` run), with the device's default activity gate and, for comparison, without it;
- openWakeWord 0.4.0 (``pip install openwakeword==0.4.0``; its wheel ships its ONNX models, so
  nothing is fetched at run time): ``Model`` with its bundled ``alexa`` model on onnxruntime, one
  thread (its defaults): its mel model, the same speech embedding network, and the wake-word model.

The rounds alternate the systems (hark, hark ungated, openWakeWord, then again) and each keeps its
least CPU: the machine is shared, and contention only ever adds time. CPU is the child's user +
system time from ``os.wait4``; the child also reports what start-up (imports and model loading)
took, and the speed compares the processing loop (whole-process figures are printed too). Peak
memory is the child's own high-water mark (``VmHWM``, which the child reads at its end): not the
``ru_maxrss`` of ``wait4``, which on Linux starts from the parent's resident size when the child is
spawned, so a parent that had just built streams or trained a model inflated every child's figure.
The anonymous resident memory at the end (``RssAnon``) is printed beside it: the peak also counts
the shared libraries' pages mapped into the process, which move by several MB between runs of the
same code with the kernel's page cache, and the anonymous part does not.
The whole ``hark detect`` command is measured the same way (its ``main`` called from a wrapper that
reads ``VmHWM`` afterwards).

    .venv/bin/python tests/bench/bench_cost.py [--model MODEL] [--rounds 3] [--streams steady,busy,mixed]
    .venv/bin/python tests/bench/bench_cost.py --hide-avx512   # the same, as on a CPU without AVX-512

With ``--hide-avx512`` every process of the measurement sees a CPU without AVX-512, AVX-VNNI and
AMX, and its runtimes pick their kernels for that, on this machine's cores
(:mod:`hidden_cpu_features`: CPUID faulting, where the kernel offers it).

Without ``--model`` it uses the speech model of ``bench_streaming.py`` (trained there if missing).
Targets: hark >= 2x openWakeWord's audio-s per CPU-s on the mixed stream and >= 4x on the steady
one; hark's peak memory <= 60 MB.
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

import hidden_cpu_features
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests" / "bench"))

SR = 16000
STREAM_MINUTES = 10.0
STEADY_SOURCES = ("running_tap", "pink_noise", "white_noise", "exercise_bike")
SIMD_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
              "avx512_vnni", "avx_vnni", "avx512_bf16", "asimd", "asimddp", "sve", "i8mm", "bf16")

# The child's own peak resident size, and its anonymous resident memory at the end, in MB (None where
# /proc is missing). The peak includes the shared libraries' pages mapped into the process, which vary
# by several MB with the kernel's page cache between runs of the same code; the anonymous part does not.
PEAK = r"""
def status_mb(key):
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None
def peak_mb():
    return status_mb("VmHWM")
def anon_mb():
    return status_mb("RssAnon")
"""

# Child processes: each prints one JSON line; "startup_cpu_s" is the CPU spent before the loop.
HARK_RUNNER = PEAK + r"""
import json, resource, sys
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
from hark.audio import FileSource
from hark.model import Model
from hark.pipeline import Pipeline
from hark import runtime
model = Model.load(sys.argv[2])
pipeline = Pipeline(model, gate=sys.argv[3])
startup = cpu()
with FileSource(sys.argv[1], chunk_samples=1280) as source:
    found = pipeline.run(source)
print(json.dumps({"audio_s": pipeline.time_s, "startup_cpu_s": startup, "loop_cpu_s": cpu() - startup,
                  "detections": len(found), "runtime": runtime.runtime_name,
                  "embeddings": pipeline.frontend_features, "gated_windows": pipeline.gated_windows,
                  "head_runs": pipeline.head_runs, "peak_mb": peak_mb(), "anon_mb": anon_mb(),
                  "heavy_modules": sorted(m for m in ("scipy", "tensorflow", "keras", "paho", "gpiozero")
                                          if m in sys.modules)}))
"""

OWW_RUNNER = PEAK + r"""
import json, resource, sys, wave
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
import numpy as np
import openwakeword
from openwakeword.model import Model
paths = [p for p in openwakeword.get_pretrained_model_paths() if "alexa" in p]
model = Model(wakeword_model_paths=paths[:1])
startup = cpu()
audio_s = 0.0
with wave.open(sys.argv[1], "rb") as f:  # the 16 kHz PCM16 files this benchmark writes
    while True:
        chunk = np.frombuffer(f.readframes(1280), dtype=np.int16)
        if len(chunk) == 0:
            break
        model.predict(chunk)
        audio_s += len(chunk) / 16000
print(json.dumps({"audio_s": audio_s, "startup_cpu_s": startup, "loop_cpu_s": cpu() - startup,
                  "model": paths[0].split("/")[-1], "version": openwakeword.__version__ if hasattr(openwakeword,
                  "__version__") else "0.4.0", "peak_mb": peak_mb(), "anon_mb": anon_mb()}))
"""

# ``python -m hark ARGS``, then its peak as a last JSON line.
DETECT_RUNNER = PEAK + r"""
import json, sys
from hark.cli import main
try:
    code = main(sys.argv[1:])
finally:
    print(json.dumps({"peak_mb": peak_mb(), "anon_mb": anon_mb()}), flush=True)
sys.exit(code)
"""

VERSIONS = r"""
import importlib.metadata as md, platform
found = [f"Python {platform.python_version()}"]
for name in ("ai-edge-litert", "tflite-runtime", "numpy", "openwakeword", "onnxruntime"):
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
print(", ".join(found))
"""


def cpu_description() -> list[str]:
    """The CPU's model and SIMD flags (what the inference kernels can use), from /proc/cpuinfo."""
    model, flags = platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "CPU part") and model == platform.machine():
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    simd = [f for f in SIMD_FLAGS if f in flags]
    lines = [f"CPU: {model} ({platform.machine()}, {os.cpu_count()} cores)",
             f"SIMD: {' '.join(simd) or 'none of ' + ', '.join(SIMD_FLAGS[:6])}"]
    if platform.machine() in ("x86_64", "AMD64"):
        lines.append("AVX-512: " + ("yes" if "avx512f" in flags else "no"))
        if hidden_cpu_features.active():
            lines.append(hidden_cpu_features.check_hidden())
    if os.environ.get("QEMU_CPU"):
        # Under qemu-user, /proc/cpuinfo is the host's: the model and flags above are not the emulated core's.
        lines.append(f"emulated: QEMU_CPU={os.environ['QEMU_CPU']} on the CPU above (/proc/cpuinfo is the "
                     "host's); CPU times are the emulator's work, so only ratios mean anything")
    return lines


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[dict[str, object], float, float]:
    """Run ``cmd``; its JSON line, total CPU seconds (user + system, from wait4) and peak RSS in MB.

    The peak is the one the child reports (its VmHWM) when it does: wait4's ``ru_maxrss`` is at
    least the parent's resident size at the time of the spawn. The line's ``anon_mb`` is a number
    (0 where the child had no /proc to read it from).
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {code}")
    lines = [line for line in out.strip().splitlines() if line.startswith("{")]
    info = json.loads(lines[-1]) if lines else {}
    peak = info.get("peak_mb") or usage.ru_maxrss / 1024
    info["anon_mb"] = float(info.get("anon_mb") or 0.0)  # type: ignore[arg-type]
    return info, usage.ru_utime + usage.ru_stime, float(peak)


def make_stream(path: Path, *, seed: int, extra: list[str], minutes: float) -> None:
    real = SHARED / "data" / "real"
    subprocess.run([sys.executable, str(SHARED / "data" / "make_stream.py"), str(path),
                    "--targets", str(real / "keywords"), "--distractors", str(real / "esc10"), str(real / "speech"),
                    "--noise", str(real / "background"), "--minutes", f"{minutes:g}", "--seed", str(seed),
                    *extra], check=True, stdout=subprocess.DEVNULL)


def steady_stream(path: Path, *, seed: int, minutes: float) -> None:
    """A room's steady background: pieces of 30-120 s of the steady recordings, each at its own constant level."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    sources = [sf.read(SHARED / "data" / "real" / "background" / f"{name}.flac", dtype="float32")[0]
               for name in STEADY_SOURCES]
    n = int(minutes * 60 * SR)
    bed = np.zeros(n, np.float32)
    pos = 0
    while pos < n:
        src = sources[rng.integers(len(sources))]
        take = int(min(n - pos, rng.integers(30 * SR, 120 * SR), len(src)))
        start = int(rng.integers(0, len(src) - take + 1))
        piece = src[start:start + take]
        bed[pos:pos + take] = piece / (np.std(piece) + 1e-9) * rng.uniform(0.02, 0.1)
        pos += take
    sf.write(path, bed / (np.abs(bed).max() + 1e-9) * 0.5, SR, subtype="PCM_16")


def streams(work: Path, names: list[str], minutes: float = STREAM_MINUTES) -> dict[str, Path]:
    """The benchmark's streams, built once in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    builders = {
        "steady": lambda p: steady_stream(p, seed=11, minutes=minutes),
        "busy": lambda p: make_stream(p, seed=9, minutes=minutes, extra=["--gap-min", "0.1", "--gap-max", "0.5",
                                                                          "--distractor-share", "0.6"]),
        "mixed": lambda p: make_stream(p, seed=7, minutes=minutes, extra=[]),
    }
    out = {}
    for name in names:
        path = work / f"{name}_{minutes:g}min.wav"
        if not path.exists():
            print(f"building {path}", flush=True)
            builders[name](path)
        out[name] = path
    return out


def speed(value: float) -> str:
    """Audio-s per CPU-s, with decimals where it is small (under emulation it is below 1)."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def versions(python: str) -> str:
    """Python and the packages that decide the speed, as installed for ``python``."""
    probe = subprocess.run([python, "-c", VERSIONS], capture_output=True, text=True)
    return probe.stdout.strip() or f"? ({python})"


def bench_model(model: Path | None, workdir: Path) -> Path:
    """``--model``, or bench_streaming's speech model (trained there if missing), copied into ``workdir``."""
    if model is not None:
        return model
    import bench_streaming

    trained, _ = bench_streaming.prepare(Path("build/bench/streaming"), minutes=30.0, per_class=8,
                                         base="speech", fresh=False)
    model = workdir / "model"  # a copy, so a retraining over there cannot pull it away mid-run
    if not model.exists():
        shutil.copytree(trained, model)
    return model


def openwakeword_available(python: str) -> str | None:
    """Why openWakeWord 0.4.0 cannot be run with ``python``, or None if it can."""
    probe = subprocess.run([python, "-c", "import openwakeword, onnxruntime; "
                            "print([p for p in openwakeword.get_pretrained_model_paths() if 'alexa' in p][0])"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return (probe.stderr.strip().splitlines() or ["?"])[-1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a --base speech bundle (default: bench_streaming's)")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench/cost"))
    parser.add_argument("--rounds", type=int, default=3, help="alternations; each system keeps its least CPU")
    parser.add_argument("--streams", default="steady,busy,mixed")
    parser.add_argument("--minutes", type=float, default=STREAM_MINUTES,
                        help="each stream's length (shorter under emulation)")
    parser.add_argument("--oww-python", default=sys.executable,
                        help="a Python with openwakeword==0.4.0 and onnxruntime (default: this one)")
    parser.add_argument("--hide-avx512", action="store_true",
                        help="as on a CPU without AVX-512: hide it (and AVX-VNNI, AMX) from the runtimes")
    args = parser.parse_args()
    names = [n.strip() for n in args.streams.split(",") if n.strip()]
    if args.hide_avx512:
        hidden_cpu_features.reexec_hidden(program="bench_cost")
    env = {**os.environ, "HARK_CACHE_DIR": os.environ.get("HARK_CACHE_DIR", str(SHARED / "models")),
           "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    for line in cpu_description():
        print(line)
    print(f"hark: {versions(sys.executable)}")
    if args.oww_python != sys.executable:
        print(f"openWakeWord: {versions(args.oww_python)}")
    files = streams(args.workdir, names, args.minutes)
    model = bench_model(args.model, args.workdir)
    print(f"hark model: {model}")
    why_not = openwakeword_available(args.oww_python)
    if why_not is not None:
        print(f"openWakeWord: not measured: {args.oww_python} cannot import openwakeword 0.4.0 and onnxruntime "
              f"({why_not}); pip install openwakeword==0.4.0")
    systems = {"hark": [sys.executable, "-c", HARK_RUNNER, "{audio}", str(model), "default"],
               "hark ungated": [sys.executable, "-c", HARK_RUNNER, "{audio}", str(model), "off"]}
    if why_not is None:
        systems["openWakeWord"] = [args.oww_python, "-c", OWW_RUNNER, "{audio}"]
    best: dict[tuple[str, str], dict[str, object]] = {}
    for stream, audio in files.items():
        for _ in range(args.rounds):
            for system, cmd in systems.items():
                info, total, peak = run_child([c.replace("{audio}", str(audio)) for c in cmd],
                                              env if system.startswith("hark") else {**os.environ, "PYTHONPATH": ""})
                key = (stream, system)
                loop = float(info["loop_cpu_s"])  # type: ignore[arg-type]
                print(f"  {stream:<7} {system:<14} loop {loop:6.2f} CPU-s, process {total:6.2f} CPU-s, "
                      f"peak {peak:4.0f} MB", flush=True)
                if key not in best or loop < float(best[key]["loop_cpu_s"]):  # type: ignore[arg-type]
                    best[key] = {**info, "total_cpu_s": total, "peak_mb": peak}
                else:
                    best[key]["peak_mb"] = max(float(best[key]["peak_mb"]), peak)  # type: ignore[arg-type]
                    best[key]["anon_mb"] = max(float(best[key]["anon_mb"]), info["anon_mb"])  # type: ignore[arg-type]
        # The whole command a user runs, start-up included.
        info, total, peak = run_child([sys.executable, "-c", DETECT_RUNNER, "detect", "-m", str(model), str(audio),
                                       "--json"], env)
        best[(stream, "hark detect")] = {"audio_s": best[(stream, "hark")]["audio_s"], "loop_cpu_s": total,
                                         "total_cpu_s": total, "peak_mb": peak, "anon_mb": info["anon_mb"]}

    print(f"\nleast CPU of {args.rounds} alternating rounds, {args.minutes:g}-minute streams, 80 ms chunks")
    print(f"{'stream':<8} {'system':<24} {'audio-s/CPU-s':>14} {'whole process':>14} {'peak MB':>8} "
          f"{'anon MB':>8}  notes")
    for stream in files:
        for system in [*systems, "hark detect"]:
            r = best.get((stream, system))
            if r is None:
                continue
            audio_s = float(r["audio_s"])  # type: ignore[arg-type]
            note = ""
            if system.startswith("hark") and "embeddings" in r:
                note = f"{r['embeddings']} embeddings, {r['gated_windows']} windows gated, {r['detections']} det."
            elif system == "openWakeWord":
                note = f"{r['model']}, onnxruntime"
            elif system == "hark detect":
                note = "the whole command, start-up included"
            print(f"{stream:<8} {system:<24} {speed(audio_s / float(r['loop_cpu_s'])):>14} "  # type: ignore[arg-type]
                  f"{speed(audio_s / float(r['total_cpu_s'])):>14} {float(r['peak_mb']):>8.0f} "  # type: ignore[arg-type]
                  f"{float(r['anon_mb']):>8.0f}  {note}")  # type: ignore[arg-type]
    heavy = sorted({m for (s, system), r in best.items() if system == "hark"
                    for m in r.get("heavy_modules", [])})  # type: ignore[union-attr]
    if heavy:
        print(f"warning: the hot path imported {', '.join(heavy)}")
    print()
    targets = {"steady": 4.0, "mixed": 2.0}
    for stream in files:
        if (stream, "openWakeWord") not in best:
            continue
        ours, theirs = best[(stream, "hark")], best[(stream, "openWakeWord")]
        ratio = (float(ours["audio_s"]) / float(ours["loop_cpu_s"])) / (  # type: ignore[arg-type]
            float(theirs["audio_s"]) / float(theirs["loop_cpu_s"]))  # type: ignore[arg-type]
        target = f"(target >= {targets[stream]:g}x)" if stream in targets else ""
        print(f"SPEED RATIO {stream.upper():<7} {ratio:5.2f}x hark/openWakeWord {target}")
    peak = max(float(r["peak_mb"]) for (s, system), r in best.items() if system.startswith("hark"))  # type: ignore[arg-type]
    anon = max(float(r["anon_mb"]) for (s, system), r in best.items() if system.startswith("hark"))  # type: ignore[arg-type]
    print(f"HARK PEAK MEMORY    {peak:5.0f} MB (target <= 60 MB); anonymous {anon:.0f} MB (the part that does not "
          "move with the kernel's page cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
