"""Detection quality on recordings nobody tuned on: a dev and a sealed side, rotated keyword sets, seeds.

    nice -n 5 .venv/bin/python tests/bench/bench_quality.py [keywords] [esc] [--sides dev,sealed]
        [--seeds 5] [--minutes 15] [--workdir build/bench/quality] [--no-stream] [--embedding float|int8 --tag T]
        [--bank-extra DIR[,DIR] --tag T]
    nice -n 5 .venv/bin/python tests/bench/bench_quality.py review [--right-max N] [--heads K] [--sets 3]

Every source is split in code (:func:`splits`), reproducibly, with no file on both sides:

- keywords (``real/keywords/<word>``): by clip, on a hash of the file name; each side's clips are
  split again into a training pool (the 8 clips of a seed are drawn from it) and a test pool (clip
  accuracy and the side's streams); no speaker list exists for this source, so one speaker may say
  a word on both sides;
- LibriSpeech speakers (``real/speech/<speaker>``): by speaker, on a hash of the speaker id, into
  the negative bank ($HARK_NEGATIVES of every training here), the dev streams and the sealed streams;
- ESC-10 (``real/esc10``): by fold; folds 1-2 are dev, fold 3 is sealed;
- background recordings: by time, the first half of each recording is dev, the second half sealed
  (training background and stream noise of that side).

What is trained rotates: each pair of the three keywords (the third is then spoken in the stream
as a distractor: real isolated words that must not fire) and all three; ``--seeds`` trainings of
each, with 8 clips a keyword drawn per seed from the side's training pool, ``--base speech``, the
side's background as ``_background_noise_``. Each model is scored on:

- keyword clips: every clip of the side's test pool, as ``hark classify`` labels it; with a pair,
  the third keyword's clips should come out ``background`` (printed apart);
- a stream per side and keyword set, built once by ``make_stream.py`` (fixed seeds, other seeds on
  the sealed side) from the side's test pool, its LibriSpeech speakers (continuous speech of other
  people), its ESC-10 folds (people's non-speech sounds such as sneezes and a baby's cry, household
  sounds) and the side's background; run through ``Pipeline`` as ``hark detect`` runs it.
  A detection is right when its label matches a target and it fires between 0.25 s before the
  target's start and 1.5 s after its end (../shared/README.md); every other detection is false.
  Printed: recall, false detections per hour, p95 latency at the model's own thresholds, and the
  recall at 2, 1 and 0.5 false detections per hour read off the recorded head scores (one threshold
  for all classes, the head alone, without the verifier).

- esc: ESC-10 at 8 clips a class with ``--base auto`` (the negative bank is the bank speakers only):
  dev trains on fold 1 and tests on fold 2, sealed trains on folds 1-2 and tests on fold 3.

- review: the side split once more into two 30-minute streams. A model trained on 8 clips runs as
  the daemon with capture over stream A; each capture is judged by the truth (right into its class,
  wrong into ``_unknown_``, as ``hark review`` files them); the model is trained again with them,
  and both models are measured on stream B. ``--right-max N`` keeps at most N right captures a class.
  The retraining uses the part of each capture around its detection (the record ``hark review``
  files beside it); ``--whole-captures`` trains on the whole 2 s instead, as before that record.

``--bank-extra`` adds folders of recordings to the negative bank of every keyword training (a candidate
source for the default bank, measured against the same seeds without it).

The dev side is for looking at while working; the sealed side is for reporting. Nothing is
copied into the repository: streams, splits and links live in ``--workdir``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "real"
os.environ.setdefault("HARK_CACHE_DIR", str(SHARED / "models"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import soundfile as sf  # noqa: E402
from bench_streaming import lowest_within_rate, read_targets, score  # noqa: E402

from hark.audio import FileSource  # noqa: E402
from hark.audiofile import find_audio, read_audio  # noqa: E402
from hark.detector import Detection, Detector, DetectorSettings  # noqa: E402
from hark.labels import BACKGROUND  # noqa: E402
from hark.model import Model  # noqa: E402
from hark.pipeline import Pipeline  # noqa: E402

SIDES = ("dev", "sealed")
KEYWORDS = ("alexa", "computer", "jarvis")
KEYWORD_SETS = (("alexa", "computer"), ("alexa", "jarvis"), ("computer", "jarvis"), KEYWORDS)
TRAIN_POOL = 40  # clips a keyword per side the seeds draw their 8 from; the rest are test clips
ESC_FOLDS = {"dev": "12", "sealed": "3"}
# make_stream's seed per side (plus the keyword set's index); -a and -b are the review round's two streams.
STREAM_SEEDS = {"dev": 101, "sealed": 9001, "dev-a": 201, "dev-b": 301, "sealed-a": 9101, "sealed-b": 9201}
REVIEW_MINUTES = 30.0
RATES = (2.0, 1.0, 0.5)
RATE_GRID = np.round(np.concatenate([np.arange(0.3, 0.95, 0.01), np.arange(0.95, 0.9995, 0.001)]), 4)


def code_tag() -> str:
    """The commit the models were trained with (and ``-dirty`` with changes): models are kept per tag."""
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "device",
                                "trainer"]).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("-dirty" if dirty else "")


MODELS_TAG = "unknown"


def side_of(key: str, shares: tuple[tuple[str, float], ...]) -> str:
    """The part ``key`` falls in, by a hash of it: the same on every machine and every run."""
    h = int.from_bytes(hashlib.sha256(f"hark-quality:{key}".encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for name, share in shares:
        edge += share
        if h < edge:
            return name
    return shares[-1][0]


@dataclass
class Side:
    """What one side may use: keyword clips to train from and to test on, distractors, background."""

    name: str
    train_pool: dict[str, list[Path]] = field(default_factory=dict)
    test_pool: dict[str, list[Path]] = field(default_factory=dict)
    speakers: list[Path] = field(default_factory=list)  # speaker folders for the side's streams
    esc: list[Path] = field(default_factory=list)  # ESC-10 clips of the side's folds
    background: list[Path] = field(default_factory=list)  # the side's halves of the background recordings


def splits(work: Path) -> tuple[dict[str, Side], list[Path]]:
    """Both sides and the negative bank's speaker folders (no file is in two of them)."""
    sides = {name: Side(name) for name in SIDES}
    for word in KEYWORDS:
        clips = find_audio([REAL / "keywords" / word])
        for name in SIDES:
            mine = [p for p in clips if side_of(f"kw/{word}/{p.name}", (("dev", 0.5), ("sealed", 0.5))) == name]
            rng = np.random.default_rng(list(f"{name}/{word}".encode()))
            order = rng.permutation(len(mine))
            sides[name].train_pool[word] = sorted(mine[i] for i in order[:TRAIN_POOL])
            sides[name].test_pool[word] = sorted(mine[i] for i in order[TRAIN_POOL:])
    bank: list[Path] = []
    for speaker in sorted(p for p in (REAL / "speech").iterdir() if p.is_dir()):
        part = side_of(f"speaker/{speaker.name}", (("bank", 1 / 3), ("dev", 1 / 3), ("sealed", 1 / 3)))
        (bank if part == "bank" else sides[part].speakers).append(speaker)
    for clip in find_audio([REAL / "esc10"]):
        for name, folds in ESC_FOLDS.items():
            if clip.name[0] in folds:
                sides[name].esc.append(clip)
    halves = work / "background"
    for recording in find_audio([REAL / "background"]):
        audio = read_audio(recording)
        cut = len(audio) // 2
        for name, part in (("dev", audio[:cut]), ("sealed", audio[cut:])):
            out = halves / name / f"{recording.stem}.wav"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(out, part, 16000, subtype="PCM_16")
            sides[name].background.append(out)
    return sides, bank


def check_disjoint(sides: dict[str, Side], bank: list[Path]) -> None:
    """No file on two sides, and no training clip in a test pool: the benchmark refuses to run otherwise."""
    seen: dict[Path, str] = {}

    def claim(paths: Iterable[Path], owner: str) -> None:
        for p in paths:
            p = p.resolve()
            if p in seen and seen[p] != owner:
                sys.exit(f"bench_quality: {p} is in both {seen[p]} and {owner}")
            seen[p] = owner

    for s in sides.values():
        claim((p for v in s.train_pool.values() for p in v), f"{s.name}/train")
        claim((p for v in s.test_pool.values() for p in v), f"{s.name}/test")
        claim((p for d in s.speakers for p in find_audio([d])), f"{s.name}/streams")
        claim(s.esc, f"{s.name}/streams")
    claim((p for d in bank for p in find_audio([d])), "bank")


def link(folder: Path, paths: Iterable[Path]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in paths:
        target = folder / p.name
        if not target.exists():
            target.symlink_to(p.resolve())
    return folder


def bank_folder(work: Path, bank: list[Path]) -> Path:
    folder = work / "bank"
    for speaker in bank:
        link(folder / speaker.name, find_audio([speaker]))
    return folder


def build_stream(work: Path, side: Side, words: tuple[str, ...], index: int, minutes: float) -> Path:
    """The side's stream for one keyword set (built once): trained words as targets, the others as distractors."""
    name = f"{side.name}_{'-'.join(words)}_{minutes:g}min"
    stream = work / "streams" / f"{name}.wav"
    if stream.exists():
        return stream
    src = work / "streams" / f"{name}.src"
    targets = src / "targets"
    for word in words:
        link(targets / word, side.test_pool[word])
    distractors = [src / "speech", src / "esc10"]
    for speaker in side.speakers:
        link(src / "speech" / speaker.name, find_audio([speaker]))
    for clip in side.esc:
        link(src / "esc10" / clip.parent.name, [clip])
    for word in KEYWORDS:
        if word not in words:
            link(src / "other_keywords" / word, side.test_pool[word])
            distractors.append(src / "other_keywords")
    noise = link(src / "noise", side.background)
    cmd = [sys.executable, str(SHARED / "data" / "make_stream.py"), str(stream), "--targets", str(targets),
           "--distractors", *map(str, distractors), "--noise", str(noise), "--minutes", f"{minutes:g}",
           "--seed", str(STREAM_SEEDS[side.name] + index)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return stream


def draw(pool: dict[str, list[Path]], words: Iterable[str], per_class: int, seed: int) -> dict[str, list[Path]]:
    rng = np.random.default_rng(seed)
    return {w: sorted(pool[w][i] for i in rng.choice(len(pool[w]), per_class, replace=False)) for w in words}


EMBEDDING = "float"  # --embedding: the speech base's embedding every training here uses
WHOLE_CAPTURES = False  # --whole-captures: retrain on reviewed captures without their detection times
SPEECH_CHECK = True  # --no-speech-check: train with hark train --no-speech-check (keep the models apart with --tag)


def train_model(work: Path, name: str, clips: dict[str, list[Path]], background: list[Path], *, base: str,
                seed: int, heads: int = 1, extra: dict[str, list[Path]] | None = None) -> tuple[Path, float]:
    from hark.trainer.train import TrainOptions, train

    model = work / "models" / MODELS_TAG / name
    if (model / "manifest.json").exists():
        return model, float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for label, paths in clips.items():
            link(data / label, paths)
        for label, paths in (extra or {}).items():
            # With each reviewed capture, the record of where its detection fired (hark.dataset reads it),
            # unless --whole-captures.
            records = [] if WHOLE_CAPTURES else [r for p in paths if (r := p.with_suffix(".json")).is_file()]
            link(data / label, [*paths, *records])
        link(data / "_background_noise_", background)
        started = time.monotonic()
        train(data, model, TrainOptions(base=base, seed=seed, report=False, progress=False, heads=heads,
                                        embedding=EMBEDDING, speech_check=SPEECH_CHECK))
        return model, time.monotonic() - started


@dataclass
class ClipScores:
    """Peak head scores of test clips, so several decision rules can be compared on the same run."""

    labels: list[str]
    truth: list[str]
    peaks: np.ndarray  # [clips, labels]
    decided: list[str]  # what Model.classify said


def clip_scores(model_path: Path, tests: dict[str, list[Path]], name: str = "clips") -> ClipScores:
    """Each test clip as ``hark classify`` labels it, with its peak scores (kept beside the model)."""
    kept = model_path / f"{name}.npz"
    if kept.exists():
        z = np.load(kept)
        return ClipScores(list(z["labels"]), list(z["truth"]), z["peaks"], list(z["decided"]))
    model = Model.load(model_path)
    truth, peaks, decided = [], [], []
    for label, paths in tests.items():
        for p in paths:
            result = model.classify(read_audio(p))
            truth.append(label)
            peaks.append([result.scores[x] for x in model.labels])
            decided.append(result.label)
    c = ClipScores(model.labels, truth, np.array(peaks), decided)
    np.savez(kept, labels=np.array(c.labels), truth=np.array(truth), peaks=c.peaks, decided=np.array(decided))
    return c


def rule_accuracies(c: ClipScores, trained: tuple[str, ...]) -> dict[str, float]:
    """Accuracy on the trained keywords' clips, and how often the other keyword's clips are called background,
    for ``classify`` as shipped and for the plain rule (the class with the highest peak)."""
    mine = np.array([t in trained for t in c.truth])
    truth = np.array(c.truth)
    argmax = np.array(c.labels)[1 + np.argmax(c.peaks[:, 1:], axis=1)]
    out = {"classify": float((np.array(c.decided)[mine] == truth[mine]).mean()),
           "highest peak": float((argmax[mine] == truth[mine]).mean())}
    if (~mine).any():
        out["other keyword -> background"] = float((np.array(c.decided)[~mine] == BACKGROUND).mean())
    return out


@dataclass
class StreamResult:
    recall: float
    false: int
    hours: float
    targets: int
    latencies: list[float]
    cpu_per_audio_s: float
    false_lines: list[str]


def run_stream(model_path: Path, stream: Path) -> StreamResult:
    """The model over the stream as ``hark detect`` runs it; the head's scores are kept beside the model
    (``trace_<stream>.npz``) for :func:`recall_at_rates`, and the result too, so a rerun reads them."""
    kept = model_path / f"result_{stream.stem}.json"
    if kept.exists():
        return StreamResult(**json.loads(kept.read_text()))
    model = Model.load(model_path)
    targets, distractors = read_targets(stream)
    pipeline = Pipeline(model)
    trace: list[tuple[np.ndarray, float]] = []
    update = pipeline.detector.update

    def recording_update(scores: np.ndarray, time_s: float) -> list[Detection]:
        trace.append((np.array(scores, dtype=np.float32), time_s))
        return update(scores, time_s)

    pipeline.detector.update = recording_update  # type: ignore[method-assign]
    cpu = time.process_time()
    with FileSource(stream) as source:
        found = pipeline.run(source)
    cpu = time.process_time() - cpu
    hours = pipeline.time_s / 3600
    r = score(found, targets, hours)
    false = r["false"]
    hits = [d for d in found if d not in false]  # type: ignore[operator]
    latencies = [d.time_s - t.end_s for d in hits for t in targets
                 if t.label == d.label and t.start_s - 0.25 <= d.time_s <= t.end_s + 1.5]
    everything = sorted(targets + distractors, key=lambda t: t.start_s)
    false_lines = [f"{d.label} {d.score:.2f} at {d.time_s:.1f} s near "
                   + (", ".join(f"{t.label}" for t in everything if t.start_s - 0.25 <= d.time_s <= t.end_s + 1.5)
                      or "background only") for d in false]  # type: ignore[union-attr]
    np.savez_compressed(model_path / f"trace_{stream.stem}.npz", scores=np.stack([x for x, _ in trace]),
                        times=np.array([t for _, t in trace]))
    result = StreamResult(recall=float(r["recall"]), false=len(false), hours=hours,  # type: ignore[arg-type]
                          targets=len(targets), latencies=latencies, cpu_per_audio_s=cpu / pipeline.time_s,
                          false_lines=false_lines)
    kept.write_text(json.dumps(result.__dict__))
    return result


def recall_at_rates(runs: list[tuple[Path, Path]]) -> dict[float, float | None]:
    """Recall at each of ``RATES`` false detections per hour over several (model, stream) runs pooled: one
    head threshold for every class and model, the lowest that keeps all the streams together within the
    rate; read off the recorded head scores, so the head alone, without the verifier."""
    loaded = []
    hours = 0.0
    for model_path, stream in runs:
        model = Model.load(model_path)
        trace = np.load(model_path / f"trace_{stream.stem}.npz")
        targets, _ = read_targets(stream)
        loaded.append((model, trace["scores"], trace["times"], targets))
        hours += float(trace["times"][-1]) / 3600

    def replay_at(threshold: float) -> dict[str, object]:
        hit, false, total = 0, 0, 0
        for model, scores, times, targets in loaded:
            detector = Detector(model.labels, DetectorSettings.resolve(
                model.bundle.classes, model.manifest.detection, thresholds=threshold))
            found = [d for s, t in zip(scores, times) for d in detector.update(s, float(t))]
            r = score(found, targets, 1.0)
            false += len(r["false"])  # type: ignore[arg-type]
            hit += round(float(r["recall"]) * len(targets))  # type: ignore[arg-type]
            total += len(targets)
        return {"recall": hit / total, "fa_per_hour": false / hours}

    out: dict[float, float | None] = {}
    for rate in RATES:
        best = lowest_within_rate(list(RATE_GRID), replay_at, rate)
        out[rate] = None if best is None else float(best[1]["recall"])  # type: ignore[arg-type]
    return out


def pct(values: list[float]) -> str:
    return f"mean {np.mean(values):6.2%}  worst {np.min(values):6.2%}" if values else "-"


def tts_folders(work: Path, which: list[str], words: tuple[str, ...]) -> list[Path]:
    """Spoken-word folders (:mod:`hark.trainer.ttswords`, espeak-ng) added to the bank: ``common`` (1000 frequent
    English words, one voice each), ``soundalike`` (40 dictionary words nearest each trained keyword, three
    voices each). Synthetic voices, in training only: no stream holds them."""
    from hark.trainer.ttswords import common_words, soundalike_words, synth_words

    out = []
    if "common" in which:
        out.append(synth_words(common_words(1000, exclude=KEYWORDS), work / "tts" / "common", voices=1))
    if "soundalike" in which:
        out += [synth_words(soundalike_words(w, 40), work / "tts" / f"soundalike_{w}", voices=3) for w in words]
    return out


def negative_folders(args: argparse.Namespace, work: Path, bank: Path, words: tuple[str, ...]) -> str:
    """$HARK_NEGATIVES of a keyword training: the bank speakers, ``--bank-extra`` and the ``--tts`` words."""
    return os.pathsep.join(map(str, [bank, *args.bank_extra, *tts_folders(work, args.tts, words)]))


def bench_keywords(args: argparse.Namespace, work: Path, sides: dict[str, Side], bank: Path) -> None:
    seeds = list(range(1, args.seeds + 1))
    for side_name in args.sides:
        side = sides[side_name]
        clips_acc: dict[str, list[float]] = {}
        runs: dict[int, list[tuple[Path, Path, StreamResult]]] = {seed: [] for seed in seeds}
        for index, words in enumerate(KEYWORD_SETS):
            if index not in args.sets:
                continue
            stream = None if args.no_stream else build_stream(work, side, words, index, args.minutes)
            os.environ["HARK_NEGATIVES"] = negative_folders(args, work, bank, words)
            tests = {w: side.test_pool[w] for w in KEYWORDS}
            for seed in seeds:
                clips = draw(side.train_pool, words, 8, seed)
                model_path, took = train_model(work, f"{side_name}_{'-'.join(words)}_s{seed}", clips,
                                               side.background, base="speech", seed=seed,
                                               heads=args.heads)
                acc = {} if args.no_clips else rule_accuracies(clip_scores(model_path, tests), words)
                trained = "kept" if np.isnan(took) else f"{took:4.0f} s"
                line = (f"{side_name:6} {'+'.join(words):24} seed {seed}: train {trained}; clips "
                        + (", ".join(f"{k} {v:.1%}" for k, v in acc.items()) or "not scored"))
                for k, v in acc.items():
                    clips_acc.setdefault(k, []).append(v)
                if stream is not None:
                    r = run_stream(model_path, stream)
                    runs[seed].append((model_path, stream, r))
                    line += (f"; stream recall {r.recall:.1%}, {r.false} false ({r.false / r.hours:.1f}/h), "
                             f"p95 {np.percentile(r.latencies, 95):.2f} s")
                print(line, flush=True)
                for false in r.false_lines if stream is not None else []:
                    print(f"    false: {false}")
        print(f"\n== {side_name.upper()}: {len(args.sets)} keyword sets x "
              f"{len(seeds)} seeds, 8 clips a keyword")
        for key, values in clips_acc.items():
            print(f"{side_name.upper()} KEYWORD CLIPS {key:<30} {pct(values)}  ({len(values)} trainings)")
        if not args.no_stream:
            print_streams(runs, side_name.upper())
        print(flush=True)


def print_streams(runs: dict[int, list[tuple[Path, Path, StreamResult]]], side: str) -> None:
    """Stream numbers per seed, each seed's streams (one per keyword set) pooled: recall over all their
    targets, false detections over all their hours, so no rate is read off a quarter of an hour."""
    recall, fph, p95, at = [], [], [], []
    for group in runs.values():
        results = [r for _, _, r in group]
        recall.append(sum(r.recall * r.targets for r in results) / sum(r.targets for r in results))
        fph.append(sum(r.false for r in results) / sum(r.hours for r in results))
        p95.append(float(np.percentile([x for r in results for x in r.latencies], 95)))
        at.append(recall_at_rates([(m, s) for m, s, _ in group]))
    first = [r for _, _, r in next(iter(runs.values()))]
    print(f"{side} STREAM: {sum(r.hours for r in first):.2f} h and {sum(r.targets for r in first)} targets a seed")
    print(f"{side} STREAM RECALL                {pct(recall)}")
    print(f"{side} STREAM FALSE DETECTIONS/H    mean {np.mean(fph):6.2f}  worst {np.max(fph):6.2f}")
    print(f"{side} STREAM P95 LATENCY           mean {np.mean(p95):6.2f} s worst {np.max(p95):6.2f} s")
    for rate in RATES:
        values = [a[rate] or 0.0 for a in at]  # a seed that never gets within the rate counts 0
        print(f"{side} STREAM RECALL AT {rate:g}/H       {pct(values)}  (head alone, one threshold for every class)")
    cost = [r.cpu_per_audio_s for group in runs.values() for _, _, r in group]
    print(f"{side} DAEMON CPU PER AUDIO SECOND  {np.mean(cost) * 1000:.1f} ms")


def review_parts(side: Side) -> tuple[Side, Side]:
    """The side split once more for the review round, by hash: stream A (the first days in a home, whose
    captures a person sorts) and stream B (measured before and after); no clip or speaker in both. The
    training pool (the 8 clips) and the background (the home's own room) are the side's."""
    a, b = Side(f"{side.name}-a"), Side(f"{side.name}-b")
    for part in (a, b):
        part.train_pool, part.background = side.train_pool, side.background

    def half(key: str) -> Side:
        return a if side_of(f"review/{key}", (("a", 0.5), ("b", 0.5))) == "a" else b

    for word, clips in side.test_pool.items():
        for clip in clips:
            half(f"kw/{clip.name}").test_pool.setdefault(word, []).append(clip)
    for speaker in side.speakers:
        half(f"speaker/{speaker.name}").speakers.append(speaker)
    for clip in side.esc:  # ESC-10 by source (the name's second field): takes of one source stay together
        half(f"esc/{clip.name.split('-')[1]}").esc.append(clip)
    return a, b


def truth_of(time_s: float, label: str, targets: list[Any]) -> str:
    """``right`` when a target of ``label`` is where the detection fired (the scoring rule), else ``wrong``."""
    hit = any(t.label == label and t.start_s - 0.25 <= time_s <= t.end_s + 1.5 for t in targets)
    return "right" if hit else "wrong"


def review_round(work: Path, model: Path, stream: Path, name: str) -> dict[str, list[Path]]:
    """``hark run --input`` with capture over ``stream``; each capture judged as a person listening would
    (``hark review``'s own operation), into a dataset folder; returns its files per folder."""
    from hark.review import judge, list_captures

    folder = work / "review" / name
    done = folder / "sorted.json"
    dataset = folder / "dataset"
    if not done.exists():
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        config = folder / "hark.yaml"
        config.write_text(
            f"model: {model.resolve()}\nstate_dir: {(folder / 'state').resolve()}\n"
            f"recording:\n  dataset: {dataset.resolve()}\n  captures: {(folder / 'captures').resolve()}\n"
            "  capture: true\n  capture_seconds: 2.0\n  max_per_minute: 600\n")
        run = subprocess.run([sys.executable, "-m", "hark", "run", "-c", str(config), "--input", str(stream)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"bench_quality: hark run over {stream} failed: {run.stderr[-2000:]}")
        targets, _ = read_targets(stream)
        verdicts = {"right": 0, "wrong": 0}
        for capture in list_captures(folder / "captures"):
            verdict = truth_of(float(capture.info["stream_time_s"]), capture.label, targets)
            judge(folder / "captures", dataset, capture.id, verdict)
            verdicts[verdict] += 1
        done.write_text(json.dumps(verdicts))
    if not dataset.is_dir():
        return {}
    return {p.name: sorted(find_audio([p])) for p in sorted(dataset.iterdir()) if p.is_dir()}


def keep_right(reviewed: dict[str, list[Path]], right_max: int | None, seed: int) -> dict[str, list[Path]]:
    """At most ``right_max`` right captures per class, drawn with the training's seed; every wrong one
    (``_unknown_``) is kept. A long review round brings ~170 right captures of three words, which
    outweigh the 8 clips and the background: the model then learns the stream's voices and room."""
    if right_max is None:
        return reviewed
    rng = np.random.default_rng(seed)
    kept = {}
    for label, paths in reviewed.items():
        if label != "_unknown_" and len(paths) > right_max:
            paths = sorted(paths[i] for i in rng.choice(len(paths), right_max, replace=False))
        kept[label] = paths
    return kept


def bench_review(args: argparse.Namespace, work: Path, sides: dict[str, Side], bank: Path) -> None:
    """Issue 20's item 5: train on 8 clips, run the daemon with capture over stream A, sort the captures by the
    truth (right into the class, wrong into ``_unknown_``), retrain, and measure both models on stream B."""
    seeds = list(range(1, args.seeds + 1))
    for side_name in args.sides:
        a, b = review_parts(sides[side_name])
        rows: list[tuple[StreamResult, StreamResult]] = []
        for index, words in enumerate(KEYWORD_SETS):
            if index not in args.sets:
                continue
            stream_a = build_stream(work, a, words, index, REVIEW_MINUTES)
            stream_b = build_stream(work, b, words, index, REVIEW_MINUTES)
            os.environ["HARK_NEGATIVES"] = negative_folders(args, work, bank, words)
            for seed in seeds:
                clips = draw(a.train_pool, words, 8, seed)
                name = f"{side_name}_{'-'.join(words)}_s{seed}"
                before, _ = train_model(work, name, clips, a.background, base="speech", seed=seed, heads=args.heads)
                reviewed = keep_right(review_round(work, before, stream_a, f"{MODELS_TAG}/{name}"),
                                      args.right_max, seed)
                suffix = ("" if args.right_max is None else f"_right{args.right_max}") + (
                    "_whole" if args.whole_captures else "")
                after, _ = train_model(work, f"{name}_reviewed{suffix}", clips, a.background, base="speech", seed=seed,
                                       heads=args.heads, extra=reviewed)
                r0, r1 = run_stream(before, stream_b), run_stream(after, stream_b)
                rows.append((r0, r1))
                moved = {k: len(v) for k, v in reviewed.items()}
                print(f"review {side_name:6} {'+'.join(words):24} seed {seed}: captures sorted {moved}; stream B "
                      f"recall {r0.recall:.1%} -> {r1.recall:.1%}, false/h {r0.false / r0.hours:.1f} -> "
                      f"{r1.false / r1.hours:.1f}, p95 {np.percentile(r0.latencies, 95):.2f} -> "
                      f"{np.percentile(r1.latencies, 95):.2f} s", flush=True)
        if not rows:
            continue
        side = side_name.upper()
        print(f"\n== {side} REVIEW ROUND: stream A {REVIEW_MINUTES:g} min sorted, stream B {REVIEW_MINUTES:g} min "
              f"measured, {len(rows)} trainings")
        for when, k in (("before", 0), ("after", 1)):
            recall = [r[k].recall for r in rows]
            fph = [r[k].false / r[k].hours for r in rows]
            p95 = [float(np.percentile(r[k].latencies, 95)) for r in rows]
            print(f"{side} REVIEW {when:6} recall {pct(recall)}; false/h mean {np.mean(fph):5.2f} worst "
                  f"{np.max(fph):5.2f}; p95 mean {np.mean(p95):.2f} s worst {np.max(p95):.2f} s")
        print(flush=True)


def bench_esc(args: argparse.Namespace, work: Path, sides: dict[str, Side], bank: Path) -> None:
    os.environ["HARK_NEGATIVES"] = str(bank)  # speech only: ESC-10's sounds are the classes under test
    seeds = list(range(1, args.seeds + 1))
    labels = sorted(p.name for p in (REAL / "esc10").iterdir() if p.is_dir())
    background = sides["dev"].background
    folds = {"dev": ("1", "2"), "sealed": ("12", "3")}
    for side_name in args.sides:
        train_folds, test_fold = folds[side_name]
        results = []
        for seed in seeds:
            rng = np.random.default_rng(seed)
            clips, tests = {}, {}
            for label in labels:
                files = find_audio([REAL / "esc10" / label])
                pool = [p for p in files if p.name[0] in train_folds]
                clips[label] = [pool[i] for i in sorted(rng.choice(len(pool), 8, replace=False))]
                tests[label] = [p for p in files if p.name[0] == test_fold]
            model_path, took = train_model(work, f"esc_{side_name}_s{seed}", clips, background, base=args.esc_base,
                                           seed=seed)
            c = clip_scores(model_path, tests)
            acc = float((np.array(c.decided) == np.array(c.truth)).mean())
            argmax = np.array(c.labels)[1 + np.argmax(c.peaks[:, 1:], axis=1)]
            plain = float((argmax == np.array(c.truth)).mean())
            human = [i for i, t in enumerate(c.truth) if t in ("baby_cry", "person_sneeze")]
            hacc = float(np.mean([c.decided[i] == c.truth[i] for i in human]))
            results.append((acc, plain, hacc))
            base = Model.load(model_path).manifest.base
            trained = "kept" if np.isnan(took) else f"{took:.0f} s"
            print(f"esc10 {side_name:6} seed {seed}: base {base}, train {trained}, "
                  f"classify {acc:.1%} (highest peak {plain:.1%}), human sounds {hacc:.1%}", flush=True)
        a = np.array(results)
        print(f"ESC10 {side_name.upper()} folds {train_folds} -> {test_fold}, 8 clips/class, --base {args.esc_base}: "
              f"classify {pct(list(a[:, 0]))}; highest peak {pct(list(a[:, 1]))}; baby_cry+person_sneeze "
              f"{pct(list(a[:, 2]))}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", default=["keywords", "esc"], choices=["keywords", "esc", "review"])
    parser.add_argument("--sides", default="dev,sealed", type=lambda s: s.split(","))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--esc-base", default="auto")
    parser.add_argument("--sets", type=int, nargs="*", default=list(range(len(KEYWORD_SETS))),
                        help="which keyword sets (0-3: the three pairs, then all three)")
    parser.add_argument("--tag", help="models are kept under WORKDIR/models/TAG (default: the commit)")
    parser.add_argument("--tts", default=[], type=lambda s: [x for x in s.split(",") if x],
                        help="spoken words added to the negative bank: common, soundalike (comma-separated)")
    parser.add_argument("--bank-extra", default=[], type=lambda s: [Path(x) for x in s.split(",") if x],
                        metavar="DIR[,DIR]", help="keywords, review: folders of recordings added to the negative bank")
    parser.add_argument("--heads", type=int, default=1, help="heads averaged per training (hark train --heads)")
    parser.add_argument("--no-stream", action="store_true", help="keyword clips only")
    parser.add_argument("--no-clips", action="store_true", help="streams only (the keyword clips take longer)")
    parser.add_argument("--embedding", choices=("float", "int8"), default="float",
                        help="the speech base's embedding to train with (keep the models apart with --tag)")
    parser.add_argument("--right-max", type=int, default=None, metavar="N",
                        help="review: retrain on at most N right captures per class (all wrong ones are kept)")
    parser.add_argument("--speech-check", action=argparse.BooleanOptionalAction, default=True,
                        help="train with hark train's speech check, the default (--no-speech-check: without; "
                             "keep the models apart with --tag)")
    parser.add_argument("--whole-captures", action="store_true",
                        help="review: retrain on whole captures, without where their detections fired")
    parser.add_argument("--workdir", type=Path, default=Path("build/bench/quality"))
    args = parser.parse_args()
    if not REAL.is_dir():
        print(f"bench_quality: {REAL} is not there; nothing to measure")
        return 1
    unknown = set(args.sides) - set(SIDES)
    if unknown:
        parser.error(f"--sides: {', '.join(sorted(unknown))} is not dev or sealed")
    args.workdir.mkdir(parents=True, exist_ok=True)
    global MODELS_TAG, EMBEDDING, WHOLE_CAPTURES, SPEECH_CHECK
    MODELS_TAG = args.tag or code_tag()
    EMBEDDING = args.embedding
    WHOLE_CAPTURES = args.whole_captures
    SPEECH_CHECK = args.speech_check
    print(f"embedding: {EMBEDDING}; models under {args.workdir / 'models' / MODELS_TAG}")
    sides, bank_speakers = splits(args.workdir)
    check_disjoint(sides, bank_speakers)
    bank = bank_folder(args.workdir, bank_speakers)
    for s in sides.values():
        print(f"{s.name}: keyword clips train pool {sum(map(len, s.train_pool.values()))}, test pool "
              f"{sum(map(len, s.test_pool.values()))}; {len(s.speakers)} speakers; {len(s.esc)} ESC-10 clips")
    print(f"negative bank: {len(bank_speakers)} speakers", flush=True)
    if "keywords" in args.what:
        bench_keywords(args, args.workdir, sides, bank)
    if "esc" in args.what:
        bench_esc(args, args.workdir, sides, bank)
    if "review" in args.what:
        bench_review(args, args.workdir, sides, bank)
    return 0


if __name__ == "__main__":
    sys.exit(main())
