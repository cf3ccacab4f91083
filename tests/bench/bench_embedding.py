"""Can the speech embedding be made cheaper? Quantized copies of it: how close, and how fast, per runtime.

    .venv/bin/python tests/bench/bench_embedding.py [--out build/bench/embedding] [--python ...]
    .venv/bin/python tests/bench/bench_embedding.py --speed-only [--python ...]   # no TensorFlow
    .venv/bin/python tests/bench/bench_embedding.py --speed-only --hide-avx512     # as without AVX-512
    .venv/bin/python tests/bench/bench_embedding.py --runs [--python ...]          # consecutive windows

A ``.tflite`` file cannot be quantized again by TensorFlow's converter, which starts from a
TensorFlow model; the trainer's :mod:`hark.trainer.quantize` rebuilds ``embedding_model.tflite``
in Keras from the file's own weights (checked equal to it here: largest difference printed) and
converts that, as ``hark train --embedding int8`` does. This bench makes:

- ``dynamic-range``: int8 weights, float activations (weights only: no data needed, deterministic);
- ``int8``: int8 weights and activations, float input and output, calibrated on a representative set
  of real audio: mel windows of every 2nd file of a sample of ../shared/data/real (keywords, LibriSpeech,
  ESC-10, background); the other files' windows are the test set.

Printed: each copy's cosine similarity and relative error to the float embedding on the test
windows, and its CPU per embedding (one window, one thread, least of 3 runs of 500) in every Python
given with ``--python`` (one with tflite-runtime, one with ai-edge-litert: the kernels differ).

``--speed-only`` times the copies an earlier run left in ``--out``, without TensorFlow.
``--runs`` times the float file on runs of n consecutive windows (one input of ``76 + 8 (n - 1)``
frames, how hark's frontend computes them: :class:`hark.frontend.SpeechFrontend`) against the same
windows as a batch ``[n, 76, 32, 1]``, and checks that both give each window's own embedding.
``--hide-avx512`` times them as on a CPU without AVX-512: the runtimes see none (nor AVX-VNNI, AMX)
and pick their kernels for that, on this machine's cores (:mod:`hidden_cpu_features`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT / "tests" / "bench"))
MODELS = SHARED / "models"
REAL = SHARED / "data" / "real"

SPEED = r"""
import sys, time, numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
    name = "ai-edge-litert"
except ImportError:
    from tflite_runtime.interpreter import Interpreter
    name = "tflite-runtime"
import importlib.metadata as md
name += " " + md.version(name)
for path in sys.argv[1:]:
    best = 1e9
    for _ in range(3):
        it = Interpreter(path, num_threads=1)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        x = np.random.default_rng(0).random((1, 76, 32, 1), dtype=np.float32)
        for _ in range(20):
            it.set_tensor(d["index"], x); it.invoke()
        t = time.process_time()
        for _ in range(500):
            it.set_tensor(d["index"], x); it.invoke()
        best = min(best, (time.process_time() - t) / 500)
    print(f"{name}\t{path}\t{best * 1e3:.3f}")
"""

RUNS = r"""
import sys, time, numpy as np
try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    from tflite_runtime.interpreter import Interpreter
path = sys.argv[1]
frames = np.random.default_rng(0).normal(2.0, 1.0, (1, 76 + 8 * 127, 32, 1)).astype(np.float32)
alone = Interpreter(path, num_threads=1)
alone.allocate_tensors()
def embed(it, x):
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).reshape(-1, 96).copy()
own = np.concatenate([embed(alone, frames[:, 8 * k:8 * k + 76]) for k in range(128)])
def least(shape, x, n):
    best, exact = 1e9, None
    for _ in range(3):
        it = Interpreter(path, num_threads=1)
        it.resize_tensor_input(it.get_input_details()[0]["index"], shape)
        it.allocate_tensors()
        out = embed(it, x)
        exact = np.array_equal(out, own[:n])
        repeats = max(20, 2000 // n)
        t = time.process_time()
        for _ in range(repeats):
            embed(it, x)
        best = min(best, (time.process_time() - t) / repeats / n)
    return best, exact
for n in (1, 2, 3, 4, 8, 16, 32, 128):
    run = least([1, 76 + 8 * (n - 1), 32, 1], np.ascontiguousarray(frames[:, :76 + 8 * (n - 1)]), n)
    batch = least([n, 76, 32, 1], np.concatenate([frames[:, 8 * k:8 * k + 76] for k in range(n)]), n)
    print(f"{n}\t{run[0] * 1e3:.3f}\t{run[1]}\t{batch[0] * 1e3:.3f}\t{batch[1]}")
"""


def time_runs(pythons: list[str]) -> None:
    """CPU per embedding in runs of n consecutive windows, against the same windows as a batch."""
    print("\nCPU per embedding (ms, float file, one thread, least of 3); exact: each window's own embedding")
    for python in pythons:
        result = subprocess.run([python, "-c", RUNS, str(MODELS / "embedding_model.tflite")],
                                capture_output=True, text=True)
        if result.returncode != 0:
            print(f"  {python}: failed ({(result.stderr.strip().splitlines() or ['?'])[-1]})")
            continue
        print(f"  {python}\n  {'windows':>8} {'one run':>9} {'exact':>6} {'as batch':>9} {'exact':>6}")
        for line in result.stdout.strip().splitlines():
            n, run, run_exact, batch, batch_exact = line.split("\t")
            print(f"  {n:>8} {float(run):9.3f} {run_exact:>6} {float(batch):9.3f} {batch_exact:>6}")


def mel_windows(files: list[Path]) -> np.ndarray:
    from hark.audiofile import read_audio
    from hark.frontend import SpeechFrontend

    fe = SpeechFrontend(mel_model=MODELS / "melspectrogram.tflite", embedding_model=MODELS / "embedding_model.tflite")
    out = []
    for f in files:
        mel = fe._run_mel(read_audio(f)[:16000 * 20].astype(np.float32))
        out += [mel[s:s + 76] for s in range(0, len(mel) - 76, 8)]
    return np.stack(out).astype(np.float32)


def time_copies(copies: dict[str, Path], pythons: list[str]) -> None:
    """CPU per embedding of each copy, in each Python's runtime."""
    print("\nCPU per embedding (ms, one window, one thread, least of 3):")
    for python in pythons:
        result = subprocess.run([python, "-c", SPEED, *map(str, copies.values())], capture_output=True, text=True)
        if result.returncode != 0:
            print(f"  {python}: failed ({(result.stderr.strip().splitlines() or ['?'])[-1]})")
            continue
        for line in result.stdout.strip().splitlines():
            runtime, path, ms = line.split("\t")
            name = next(n for n, p in copies.items() if str(p) == path)
            print(f"  {runtime:<24} {name:<18} {float(ms):6.3f}")


def made_copies(out: Path) -> dict[str, Path]:
    """The float file and the quantized copies a full run wrote into ``out``."""
    copies = {"float (the file)": MODELS / "embedding_model.tflite",
              **{name: out / f"embedding_{name}.tflite" for name in ("dynamic-range", "int8")}}
    missing = [str(p) for p in copies.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"bench_embedding: {', '.join(missing)} missing: run it once without --speed-only "
                         "(it makes the quantized copies; needs TensorFlow)")
    return copies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/bench/embedding"))
    parser.add_argument("--python", nargs="*", default=[sys.executable],
                        help="Pythons to time the copies in (each with tflite-runtime or ai-edge-litert)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only time the copies already in --out (no TensorFlow needed)")
    parser.add_argument("--runs", action="store_true",
                        help="time runs of consecutive windows against batches (no TensorFlow needed)")
    parser.add_argument("--hide-avx512", action="store_true",
                        help="as on a CPU without AVX-512: hide it (and AVX-VNNI, AMX) from the runtimes")
    args = parser.parse_args()
    if args.hide_avx512:
        import hidden_cpu_features

        hidden_cpu_features.reexec_hidden(program="bench_embedding")
    if args.runs:
        from bench_cost import cpu_description

        print("\n".join(cpu_description()))
        time_runs(args.python)
        return 0
    if args.speed_only:
        from bench_cost import cpu_description

        print("\n".join(cpu_description()))
        time_copies(made_copies(args.out), args.python)
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from hark.trainer.quantize import cosine, embed, quantize, rebuild

    args.out.mkdir(parents=True, exist_ok=True)
    source = MODELS / "embedding_model.tflite"
    files = (sorted(REAL.glob("keywords/*/*.flac"))[::25] + sorted(REAL.glob("speech/*/*.flac"))[::20]
             + sorted(REAL.glob("esc10/*/*.flac"))[::10] + sorted(REAL.glob("background/*.flac")))
    representative, test = mel_windows(files[::2]), mel_windows(files[1::2])
    rng = np.random.default_rng(0)
    test = test[rng.choice(len(test), min(512, len(test)), replace=False)]
    model = rebuild(source)
    reference = embed(source, test)
    rebuilt = model.predict(test[..., None], verbose=0).reshape(len(test), -1)
    print(f"representative windows {len(representative)}, test windows {len(test)} (from {len(files)} files)")
    print(f"Keras rebuild vs the file: largest difference {np.abs(rebuilt - reference).max():.2e} "
          f"(outputs up to {np.abs(reference).max():.0f})")

    calibration = representative[np.sort(rng.choice(len(representative), min(400, len(representative)),
                                                    replace=False))]
    copies: dict[str, Path] = {"float (the file)": source}
    for name in ("dynamic-range", "int8"):
        path = args.out / f"embedding_{name}.tflite"
        path.write_bytes(quantize(model, calibration, mode=name))
        copies[name] = path
    print(f"\n{'copy':<18} {'bytes':>9} {'cosine mean':>12} {'cosine min':>11} {'rel. error':>11}")
    for name, path in copies.items():
        out = embed(path, test)
        cos = cosine(out, reference)
        err = np.linalg.norm(out - reference) / np.linalg.norm(reference)
        print(f"{name:<18} {path.stat().st_size:>9} {cos.mean():>12.4f} {cos.min():>11.4f} {err:>11.3f}")
    time_copies(copies, args.python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
