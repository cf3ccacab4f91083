#!/usr/bin/env python3
"""Build the demo: a spoken-word dataset, a model trained on it, and a recording to run it on.

Everything is made here from scratch, so the repository carries no one else's recordings or
weights: words are spoken by espeak-ng in many voices over generated noise, and the model is
trained with hark's own trainer on ``--base none`` (no third-party weights at all).

    python scripts/make_demo.py            # writes demo/model/, demo/demo.flac, demo/demo.csv

The dataset goes to build/demo-data/ (not committed). The recording uses voices the model was
not trained on, with other words and bleeps in between, and demo/demo.csv says where each word
is (distractors are marked with a leading '~'). At the end the script runs the streaming
detector over the recording and prints what it found against that list.

Training uses ``--no-negatives`` (the demo learns only from data this script makes, so it builds
offline) and ``--no-report`` (the committed bundle stays small).

Needs espeak-ng (Debian: espeak-ng) and, for training, hark's trainer extra.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hark import SAMPLE_RATE  # noqa: E402
from hark.audiofile import resample  # noqa: E402

SR = SAMPLE_RATE
WORDS = ("lights", "music")
DISTRACTORS = ("light", "magic", "night", "museum", "kitchen", "hello", "stop", "yes", "no", "coffee",
               "window", "seven", "open", "water", "door", "morning", "mister", "lightning")
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan")
VOICES = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f5", "Andy", "Annie", "David", "Ed", "Gene",
          "Jacky", "Lee", "Max", "Michael", "Paul", "Rob", "Steph", "grandpa", "Alex")
# Voices kept out of training and used only in the recording: the demo shows the model hearing
# voices it never heard before.
HELD_OUT = ("m7", "f4", "Mike", "Linda", "Belinda", "Storm")


def speak(word: str, rng: np.random.Generator, voices: tuple[str, ...]) -> np.ndarray:
    """``word`` spoken by espeak-ng in a random accent, voice, speed and pitch, 16 kHz, peak 1."""
    voice = f"{rng.choice(ACCENTS)}+{rng.choice(voices)}"
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 200))), "-p", str(int(rng.integers(25, 75))),
         "--stdout", word],
        check=True, capture_output=True,
    )
    audio, rate = sf.read(io.BytesIO(out.stdout), dtype="float32")
    audio = resample(audio, rate)
    # Trim espeak's leading and trailing silence so this script decides where words sit.
    loud = np.flatnonzero(np.abs(audio) > 0.02 * (np.abs(audio).max() + 1e-9))
    if len(loud):
        audio = audio[max(0, loud[0] - 160): loud[-1] + 160]
    return audio / (np.abs(audio).max() + 1e-9)


def noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """A room: pink or brown noise, sometimes mains hum, unit standard deviation."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec /= np.sqrt(f) if rng.random() < 0.7 else f / 30
    x = np.fft.irfft(spec, n)
    x /= x.std() + 1e-9
    if rng.random() < 0.4:
        t = np.arange(n) / SR
        x += rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * rng.choice([50, 60]) * t)
    return (x / (x.std() + 1e-9)).astype(np.float32)


def bleep(rng: np.random.Generator) -> np.ndarray:
    """A kitchen-timer beep or a click: sounds that are not words and must not fire."""
    n = int(SR * rng.uniform(0.05, 0.4))
    t = np.arange(n) / SR
    return (np.sin(2 * np.pi * rng.uniform(400, 3500) * t) * np.hanning(n)).astype(np.float32)


def at_snr(sound: np.ndarray, bed: np.ndarray, snr_db: float) -> np.ndarray:
    """``sound`` scaled to ``snr_db`` over ``bed`` (both the same length)."""
    p_sound = np.mean(sound**2) + 1e-12
    p_bed = np.mean(bed**2) + 1e-12
    return sound * np.sqrt(p_bed * 10 ** (snr_db / 10) / p_sound)


def place(word: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A clip of ``seconds`` with ``word`` at a random place, over noise at a random SNR."""
    n = int(seconds * SR)
    word = word[:n]
    clip = np.zeros(n, np.float32)
    start = int(rng.integers(0, n - len(word) + 1))
    clip[start:start + len(word)] = word
    bed = noise(rng, n)
    out = clip + at_snr(bed, bed, 0) * np.sqrt(np.mean(word**2) / 10 ** (rng.uniform(8, 30) / 10))
    return (out / (np.abs(out).max() + 1e-9) * rng.uniform(0.2, 0.9)).astype(np.float32)


def make_dataset(root: Path, *, per_class: int, seed: int) -> None:
    """``root/<word>/``, ``root/_unknown_/`` (other words) and ``root/_background_noise_/``."""
    rng = np.random.default_rng(seed)
    if root.exists():
        shutil.rmtree(root)
    # Twice as many other words as clips per word: they teach the model what the words are not.
    for label, words, count in [(w, (w,), per_class) for w in WORDS] + [("_unknown_", DISTRACTORS, 2 * per_class)]:
        (root / label).mkdir(parents=True)
        for i in range(count):
            # Every other word in turn, so near-misses like "light" are all there several times.
            word = speak(words[i % len(words)], rng, VOICES)
            sf.write(root / label / f"{label.strip('_')}_{i:03d}.wav", place(word, 1.0, rng), SR, subtype="PCM_16")
    (root / "_background_noise_").mkdir()
    for i in range(6):
        bed = noise(rng, 10 * SR)
        for _ in range(4):
            b = bleep(rng) * rng.uniform(0.5, 2.0)
            s = int(rng.integers(0, len(bed) - len(b)))
            bed[s:s + len(b)] += b
        sf.write(root / "_background_noise_" / f"room_{i}.wav", (bed / np.abs(bed).max() * 0.5).astype(np.float32),
                 SR, subtype="PCM_16")


def make_recording(path: Path, *, seconds: float, seed: int) -> list[tuple[float, float, str]]:
    """A recording of a room where the words are said now and then among other words and bleeps."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    bed = noise(rng, n) * 0.02
    rows = []
    targets = list(WORDS) * 3
    others = ["~" + str(w) for w in rng.choice(DISTRACTORS, 5, replace=False)] + ["~bleep"] * 2
    events = targets + others
    rng.shuffle(events)
    t = 1.5
    for label in events:
        sound = bleep(rng) if label == "~bleep" else speak(label.lstrip("~"), rng, HELD_OUT)
        s = int(t * SR)
        if s + len(sound) > n - SR:
            break
        bed[s:s + len(sound)] += at_snr(sound, bed[s:s + len(sound)], rng.uniform(12, 25))
        rows.append((round(t, 3), round(t + len(sound) / SR, 3), label))
        t += len(sound) / SR + rng.uniform(1.6, 3.0)
    sf.write(path, (bed / np.abs(bed).max() * 0.7).astype(np.float32), SR, format="FLAC", subtype="PCM_16")
    return rows


def score(rows: list[tuple[float, float, str]], detections: list[dict]) -> tuple[int, int, int]:
    """(targets found, targets, false detections); a hit fires from 0.25 s before to 1.5 s after the word."""
    targets = [r for r in rows if not r[2].startswith("~")]
    found, false = set(), 0
    for d in detections:
        hit = next((i for i, (s, e, lab) in enumerate(targets)
                    if lab == d["label"] and s - 0.25 <= d["time_s"] <= e + 1.5 and i not in found), None)
        if hit is None:
            false += 1
        else:
            found.add(hit)
    return len(found), len(targets), false


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "demo", help="where the demo goes (default demo/)")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "demo-data", help="dataset folder (scratch)")
    parser.add_argument("--per-class", type=int, default=30, help="clips per word (default 30)")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the recording (default 45)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-train", action="store_true", help="keep the model there is; remake audio only")
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("make_demo: espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    args.out.mkdir(parents=True, exist_ok=True)
    hark = [sys.executable, "-m", "hark"]

    if not args.skip_train:
        print(f"make_demo: speaking {args.per_class} clips of each of {', '.join(WORDS)} into {args.data}", flush=True)
        make_dataset(args.data, per_class=args.per_class, seed=args.seed)
        subprocess.run([*hark, "dataset", "check", str(args.data)], check=True)
        model = args.out / "model"
        if model.exists():
            shutil.rmtree(model)
        subprocess.run([*hark, "train", str(args.data), "-o", str(model), "--base", "none",
                        "--seed", str(args.seed), "--no-negatives", "--no-report"], check=True)

    recording = args.out / "demo.flac"
    rows = make_recording(recording, seconds=args.seconds, seed=args.seed + 1000)
    with (args.out / "demo.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_s", "end_s", "label"])
        writer.writerows(rows)
    print(f"make_demo: {recording} ({args.seconds:.0f} s, {len(rows)} sounds, list in demo.csv)", flush=True)

    out = subprocess.run([*hark, "detect", "-m", str(args.out / "model"), str(recording), "--json"],
                         check=True, capture_output=True, text=True)
    detections = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    found, total, false = score(rows, detections)
    print(f"make_demo: hark detect found {found} of {total} words, {false} false detection(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
