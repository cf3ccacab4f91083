"""``hark train``: a dataset folder in, a verified model bundle out.

Steps: check the dataset (the same check as ``hark dataset check``), pick the base, hold out a
stratified validation share of each class's clips (and the last fifth of each background
recording), compute features of the clips and of augmented copies (background mixed in at a
random SNR, gain, sub-hop shifts), fit the head with class-balanced weights and early stopping,
choose per-class thresholds on the validation clips, fit a few more epochs on all clips, export
the head to TFLite and write the bundle and its report.

Validation is scored the way ``hark classify`` scores a clip (the best window of the padded
clip), so the accuracy in the manifest is the accuracy users see.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hark import __version__
from hark.activity import GateSettings, active_hops, hold_samples, open_windows
from hark.audiofile import SAMPLE_RATE
from hark.basemodels import BASE_FILES, BASES, fetch, fetch_base
from hark.bundle import MANIFEST, check_output, write_bundle
from hark.dataset import Clip, Dataset, check_dataset
from hark.errors import HarkError
from hark.frontend import Frontend, build_frontend
from hark.labels import BACKGROUND
from hark.manifest import (
    BASE_DIR,
    DEFAULT_DECISION_S,
    EMBEDDING_FILES,
    EMBEDDINGS,
    ClassifySpec,
    HeadSpec,
    Manifest,
    SpeechCheckSection,
    read_manifest,
)
from hark.trainer import features as F
from hark.trainer import metrics as M
from hark.trainer.negatives import BankClip
from hark.trainer.perturb import perturb
from hark.verifier import VERIFIER_FILE, Verifier, VerifierSpec

log = logging.getLogger(__name__)

TRAINER_VERSION = __version__
VALIDATION_SHARE = 0.25
MAX_EPOCHS = 60
PATIENCE = 8
# Early stopping watches the validation loss only from this epoch on when some class has fewer than
# WARMUP_BELOW_CLIPS held back. With two held-back clips a class the first epochs' loss is noise, and
# stopping on it can keep a head from its first epoch (training accuracy well under 0.9) that misses
# keywords later. With more, validation can be trusted and training stays shorter.
WARMUP_EPOCHS = 3
WARMUP_BELOW_CLIPS = 4
BATCH = 128
# Augmented copies per clip: enough that a class has about TARGET_COPIES examples in all.
TARGET_COPIES = 48
BACKGROUND_SEGMENT_S = 30.0
GROUP_S = 3.0  # background is scored in pieces this long, like clips
PERTURB_SHARE = 0.5
# The user's own negatives (``_unknown_/``, moved captures) count more than the generic bank: they
# are the sounds of this home that fired or must not fire.
UNKNOWN_WEIGHT = 3.0
# What ``--embedding`` is when not given (docs/cost.md has the measurements behind the choice).
DEFAULT_TRAIN_EMBEDDING = "float"
HARD_WEIGHT = 2.0  # bank windows the first fit scored high, added again
# The speech check (hark.speechcheck): a spoken class's detection needs YAMNet's "Speech" score to reach
# this, or else nothing but the home's familiar sounds. The barks and clocks that fired a keyword scored
# 0.07 and below.
SPEECH_CHECK_FILE = "yamnet.tflite"
SPEECH_CHECK_THRESHOLD = 0.1
SPEECH_CHECK_LOOKBACK_S = 2.0  # a clip is heard over as long as the check looks back before a detection
# A class is checked when this share of its own clips reach the threshold: its sound is speech.
SPEECH_CLASS_SHARE = 0.9


def clips_to_hear(dataset: Dataset, label: str) -> list[np.ndarray]:
    """The clips of ``label`` the speech check's measures hear: at most ``MAX_CLIPS_HEARD``, spread."""
    from hark.trainer.familiar import MAX_CLIPS_HEARD, spread

    return spread([c.samples for c in dataset.usable(label)], MAX_CLIPS_HEARD)


def spoken_classes(dataset: Dataset, yamnet: Path) -> list[str]:
    """The classes whose clips are speech by the speech check's own measure (``SPEECH_CLASS_SHARE`` of
    them reach ``SPEECH_CHECK_THRESHOLD``): only their detections are checked for speech."""
    from hark.speechcheck import SpeechCheck
    from hark.trainer.familiar import heard

    check = SpeechCheck(yamnet, threshold=SPEECH_CHECK_THRESHOLD, lookback_s=SPEECH_CHECK_LOOKBACK_S, xnnpack=True)
    spoken = []
    for label in dataset.labels:
        clips = clips_to_hear(dataset, label)
        passed = sum(check.score(heard(c)) >= SPEECH_CHECK_THRESHOLD for c in clips)
        if clips and passed >= SPEECH_CLASS_SHARE * len(clips):
            spoken.append(label)
    return spoken


def speech_check_section(dataset: Dataset, yamnet: Path, speech_classes: Sequence[str], *, lookback_s: float,
                         seed: int, progress: bool = False) -> SpeechCheckSection:
    """The manifest's speech check for ``speech_classes``, with the sounds familiar in this dataset's home."""
    from hark.speechcheck import SpeechCheck
    from hark.trainer.familiar import familiar_sounds

    check = SpeechCheck(yamnet, threshold=SPEECH_CHECK_THRESHOLD, lookback_s=lookback_s, xnnpack=True)
    clips = [samples for label in dataset.labels for samples in clips_to_hear(dataset, label)]
    # A generator of its own: the heads are the same with the check and without it.
    familiar = familiar_sounds(check, clips=clips, noises=[c.samples for c in dataset.background],
                               rng=np.random.default_rng([seed, 1]), progress=progress)
    return SpeechCheckSection(file=f"{BASE_DIR}/{SPEECH_CHECK_FILE}", threshold=SPEECH_CHECK_THRESHOLD,
                              lookback_s=lookback_s, classes=tuple(speech_classes),
                              familiar=tuple(float(x) for x in familiar))


@dataclass
class Split:
    """Windows and labels for fitting, and whole clips (as windows) for clip-level scoring."""

    x: list[np.ndarray] = field(default_factory=list)
    y: list[np.ndarray] = field(default_factory=list)
    w: list[np.ndarray] = field(default_factory=list)  # how much each window counts (before class balance)
    groups: list[tuple[int, np.ndarray, str]] = field(default_factory=list)  # (label index, windows, name)
    clips: list[tuple[int, np.ndarray]] = field(default_factory=list)  # held-back clips' audio, for calibration
    noise: list[np.ndarray] = field(default_factory=list)  # held-back background audio, for calibration

    def add(self, windows: np.ndarray, label: int, weight: float = 1.0) -> None:
        if len(windows):
            self.x.append(windows)
            self.y.append(np.full(len(windows), label, np.int64))
            self.w.append(np.full(len(windows), weight, np.float32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.x), np.concatenate(self.y)

    def weights(self) -> np.ndarray:
        return np.concatenate(self.w)


@dataclass(frozen=True)
class TrainOptions:
    base: str = "auto"
    seed: int = 0
    report: bool = True
    negatives: bool = True
    progress: bool = True
    false_alarms_per_hour: float = 1.0
    verifier: bool = True
    speech_check: bool = True  # --no-speech-check turns it off (hark.speechcheck, docs/quality.md)
    # The speech base's embedding: the pretrained float file or an int8 copy made here (:mod:`hark.trainer.quantize`).
    embedding: str = DEFAULT_TRAIN_EMBEDDING
    heads: int = 1  # members averaged into the one head file


@dataclass
class Member:
    """One head of the ensemble, with the windows it is fitted on (its own hard negatives added)."""

    model: Any
    epochs: int  # epochs its early-stopped weights were trained for
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


MAX_HEADS = 5
MEMBER_SEED_STEP = 1000  # member k starts from seed + k * this: member 0 is the single head of heads=1


def choose_base(dataset: Dataset, requested: str, *, seed: int = 0,
                say: Callable[[str], None] = print) -> tuple[str, str]:
    """The base to train on and why; ``auto`` compares the bases by cross-validation (:mod:`hark.trainer.autobase`)."""
    if requested != "auto":
        return requested, "chosen with --base"
    from hark.trainer.autobase import choose_auto

    return choose_auto(dataset, rng=np.random.default_rng(seed), say=say)


def warmup_epochs(held_back: list[int], n_labels: int) -> int:
    """Epochs early stopping waits before watching, given the label of each held-back clip."""
    fewest = min((held_back.count(label) for label in range(1, n_labels)), default=0)
    return WARMUP_EPOCHS if fewest < WARMUP_BELOW_CLIPS else 0


def early_stopping(warmup: int) -> Any:
    """Keras' early stopping as the head is trained: the validation loss watched from epoch
    ``warmup + 1`` on, the weights of its lowest restored (``best_epoch`` says which)."""
    from hark.trainer import head as H

    return H.keras.callbacks.EarlyStopping(monitor="val_loss", patience=PATIENCE, min_delta=1e-3,
                                           restore_best_weights=True, start_from_epoch=warmup)


def stratified_split(clips: list[Clip], rng: np.random.Generator) -> tuple[list[Clip], list[Clip]]:
    order = rng.permutation(len(clips))
    n_val = max(1, int(round(VALIDATION_SHARE * len(clips))))
    val = {int(i) for i in order[:n_val]}
    return [c for i, c in enumerate(clips) if i not in val], [c for i, c in enumerate(clips) if i in val]


class Extractor:
    """Turns clips into labelled windows for one recipe and frontend."""

    def __init__(self, recipe: F.Recipe, frontend: Frontend, noises: list[np.ndarray], rng: np.random.Generator):
        self.recipe, self.fe, self.noises, self.rng = recipe, frontend, noises, rng
        # Window phases come from a stream of their own (spawning leaves ``rng`` where it was):
        # they are drawn after all the audio is made, and must not shift with how much there is.
        self.phases = rng.spawn(1)[0]
        self.span = F.span_samples(frontend, recipe.window)
        self.needed = F.needed_samples(frontend, recipe.window, recipe.stride)

    def padded(self, samples: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        x, offset = F.pad_clip(samples, needed=self.needed, pad=self.recipe.clip_padding_samples)
        s, e = F.locate_event(samples)
        return x, (s + offset, e + offset)

    def thin(self, idx: list[int]) -> list[int]:
        """Every ``stride``-th window (from a random phase): neighbours at 10 ms apart add little."""
        step = self.recipe.stride
        if step <= 1 or not idx:
            return idx
        phase = int(self.phases.integers(step))
        return [i for i in idx if (i + phase) % step == 0] or idx[:1]

    def copies(self, samples: np.ndarray, copies: int) -> Iterator[tuple[np.ndarray, Piece]]:
        """The clip padded, then ``copies - 1`` augmented copies of it (the randomness drawn here, in order);
        each as its audio and what labelling its windows needs."""
        x0, event0 = self.padded(samples)
        for c in range(copies):
            if c == 0:
                x, event = x0, event0
            else:
                # Half the copies also change speed, pitch or room (the sound is located again).
                xp, eventp = self.padded(perturb(samples, self.rng)) if self.rng.random() < PERTURB_SHARE else (
                    x0, event0)
                x, event = F.augment(self.rng, xp, eventp, self.noises, max_shift=self.fe.hop_samples)
                start, end = self.positive_span(len(x), event)
                x, event = x[start:end], (max(0, event[0] - start), event[1] - start)
            levels = F.frame_db(x) if self.recipe.mode != "event" else None
            yield x, Piece(event=event, levels=levels, clean=c == 0)

    def piece_windows(self, piece: Piece, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A copy's positive windows, and (of the clean copy only, whole) the room around the sound."""
        p, n = F.label_windows(self.recipe, self.fe, features, piece.event, levels=piece.levels)
        w = self.recipe.window
        pos = F.stack_windows(features, self.thin(p), w)
        if not piece.clean:
            return pos, np.zeros((0, w, *self.fe.feature_shape), np.float32)
        return pos, F.stack_windows(features, self.thin(n), w)

    def positive_span(self, length: int, event: tuple[int, int]) -> tuple[int, int]:
        """The part of a copy its positive windows come from (all of it for textures).

        Windows end up to ``end_tolerance_s`` after the sound and are ``needed`` samples long; the
        rest of an augmented copy would only cost feature time (the clean copy gives the room).
        """
        if self.recipe.mode != "event":
            return 0, length
        tail = int(self.recipe.end_tolerance_s * SAMPLE_RATE) + 2 * self.fe.hop_samples
        return max(0, event[1] - self.needed - tail), min(length, event[1] + tail)

    def classify_padded(self, samples: np.ndarray) -> np.ndarray:
        """The clip padded as :meth:`hark.model.Model.clip_scores` pads it."""
        return F.pad_clip(samples, needed=self.needed, pad=self.recipe.clip_padding_samples)[0]

    def classify_windows(self, features: np.ndarray) -> np.ndarray:
        """The windows :meth:`hark.model.Model.clip_scores` would score, from :meth:`classify_padded`'s features."""
        n = len(features) - self.recipe.window + 1
        starts = [s for s in range(max(0, n)) if (s + self.recipe.window) % self.recipe.stride == 0]
        return F.stack_windows(features, starts, self.recipe.window)

    def all_windows(self, features: np.ndarray, step: int) -> np.ndarray:
        n = len(features) - self.recipe.window + 1
        phase = int(self.phases.integers(step))
        return F.stack_windows(features, range(phase % max(1, n), max(0, n), step), self.recipe.window)


@dataclass(frozen=True)
class Piece:
    """What labelling the windows of one copy of a clip needs (its audio is gone by then)."""

    event: tuple[int, int]
    levels: np.ndarray | None  # frame_db of the audio, for textures
    clean: bool  # the unaugmented copy, whose room around the sound gives background windows


def _cat(parts: list[np.ndarray], window: int, fe: Frontend) -> np.ndarray:
    parts = [p for p in parts if len(p)]
    return np.concatenate(parts) if parts else np.zeros((0, window, *fe.feature_shape), np.float32)


AUGMENTED = ("train", "val", "unknown")  # the kinds of example job whose clip is copied and augmented


def build_examples(dataset: Dataset, labels: list[str], recipe: F.Recipe, fe: Frontend,
                   rng: np.random.Generator, progress: bool) -> tuple[Split, Split, dict[str, int]]:
    """Training and validation windows, and the validation clips as classify would see them."""
    train, val = Split(), Split()
    splits = {label: stratified_split(dataset.usable(label), rng) for label in labels[1:]}
    # Background recordings: the first 80% of each trains, the rest validates.
    bg_train, bg_val = [], []
    for clip in dataset.background:
        cut = int(len(clip.samples) * (1 - VALIDATION_SHARE))
        bg_train.append(clip.samples[:cut])
        bg_val.append(clip.samples[cut:])
    ex = Extractor(recipe, fe, bg_train, rng)
    jobs: list[tuple[str, int, np.ndarray, str]] = []
    for i, label in enumerate(labels[1:], start=1):
        tr, va = splits[label]
        copies = int(np.clip(np.ceil(TARGET_COPIES / max(1, len(tr))), 2, 6))
        jobs += [("train", i, c.samples, str(copies)) for c in tr]
        jobs += [("val", i, c.samples, "2") for c in va]
        jobs += [("valclip", i, c.samples, c.path.name) for c in va]
    for clip in dataset.unknown:
        jobs.append(("unknown", 0, clip.samples, "2"))
    # Background: segments of at most BACKGROUND_SEGMENT_S, up to the recipe's cap in all.
    budget = recipe.background_cap_s * SAMPLE_RATE
    total = sum(len(b) for b in bg_train) or 1
    share = min(1.0, budget / total)
    seg = int(BACKGROUND_SEGMENT_S * SAMPLE_RATE)
    for b in bg_train:
        take = int(len(b) * share)
        start = int(rng.integers(0, len(b) - take + 1))
        piece = b[start:start + take]
        for s in range(0, len(piece), seg):
            if len(piece[s:s + seg]) >= ex.needed:
                jobs.append(("bgtrain", 0, piece[s:s + seg], ""))
    for b in bg_val:
        g = int(GROUP_S * SAMPLE_RATE)
        for s in range(0, len(b) - g + 1, g):
            jobs.append(("bgval", 0, b[s:s + g], "background"))
    counts = {label: len(splits[label][0]) + len(splits[label][1]) for label in labels[1:]}
    val.noise = bg_val
    bg_step = max(1, recipe.stride)
    # The audio of every job is made first, in order (all the randomness of augmenting), while its
    # features are computed on every core; each job's windows are then taken from them, in order.
    made: list[tuple[int, Piece | None]] = []  # the job each piece of audio belongs to

    def audio() -> Iterator[np.ndarray]:
        for j, (kind, _, samples, extra) in enumerate(jobs):
            if kind in AUGMENTED:
                for x, piece in ex.copies(samples, int(extra)):
                    made.append((j, piece))
                    yield x
            else:
                made.append((j, None))
                yield ex.classify_padded(samples) if kind in ("valclip", "bgval") else samples

    pieces = sum(int(extra) if kind in AUGMENTED else 1 for kind, _, _, extra in jobs)
    bar = tqdm(total=pieces, desc="extracting features", unit="clip", leave=False, disable=not progress,
               file=sys.stderr)
    features = fe.transform_many(audio(), done=bar.update)
    bar.close()
    of_job: dict[int, list[tuple[Piece | None, np.ndarray]]] = {}
    for (j, piece), feats in zip(made, features):
        of_job.setdefault(j, []).append((piece, feats))
    for j, (kind, label, samples, extra) in enumerate(jobs):
        if kind in AUGMENTED:
            windows = [ex.piece_windows(piece, feats) for piece, feats in of_job[j] if piece]
            pos = _cat([p for p, _ in windows], recipe.window, fe)
            neg = _cat([n for _, n in windows], recipe.window, fe)
            if kind == "unknown":
                train.add(np.concatenate([pos, neg]), 0, UNKNOWN_WEIGHT)
            else:
                split = train if kind == "train" else val
                split.add(pos, label)
                split.add(neg, 0)
            continue
        feats = of_job[j][0][1]
        if kind == "valclip":
            val.groups.append((label, ex.classify_windows(feats), extra))
            val.clips.append((label, samples))
        elif kind == "bgtrain":
            train.add(ex.all_windows(feats, bg_step), 0)
        elif kind == "bgval":
            windows = ex.classify_windows(feats)
            val.add(windows, 0)
            val.groups.append((0, windows, extra))
    return train, val, counts


def class_weights(y: np.ndarray, n: int, w: np.ndarray | None = None) -> np.ndarray:
    """Per-window weights: each class counts as much as any other in all, ``w`` shares within a class."""
    w = np.ones(len(y), np.float64) if w is None else w.astype(np.float64)
    totals = np.bincount(y, weights=w, minlength=n)
    weights = np.where(totals > 0, w.sum() / (n * np.maximum(totals, 1e-9)), 0.0)
    return (weights[y] * w).astype(np.float32)


def choose_thresholds(peaks: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Per class, the threshold in the middle of the range that best separates its clips from the rest."""
    grid = np.round(np.arange(0.2, 0.951, 0.01), 2)
    out = {}
    for i, label in enumerate(labels[1:], start=1):
        pos, neg = peaks[truth == i, i], peaks[truth != i, i]
        if len(pos) == 0:
            out[label] = 0.5
            continue
        score = np.array([(pos >= t).mean() + ((neg < t).mean() if len(neg) else 1.0) for t in grid])
        best = np.flatnonzero(score >= score.max() - 1e-9)
        out[label] = float(grid[best[len(best) // 2]])
    return out


def decide(peaks: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """Label index per clip, as :meth:`hark.model.Model.classify` decides."""
    t = np.array([1.0] + [thresholds[label] for label in labels[1:]])
    best = np.argmax(peaks[:, 1:], axis=1) + 1
    ok = peaks[np.arange(len(peaks)), best] >= t[best]
    return np.where(ok, best, 0)


def clip_metrics(pred: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, precision and recall per class and the confusion matrix of clip decisions."""
    return M.summary(M.confusion_matrix(truth, pred, len(labels)), labels)


def group_peaks(model: Any, groups: list[tuple[int, np.ndarray, str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    from hark.trainer import head as H

    peaks, truth = [], []
    for label, windows, _ in groups:
        probs = H.scores(model, windows) if len(windows) else np.zeros((1, n))
        peaks.append(probs.max(axis=0))
        truth.append(label)
    return np.array(peaks), np.array(truth)


BANK_WINDOWS = 6000  # generic negatives per training: enough variety, bounded time
POOL_WINDOWS = 30000  # bank windows the first fit scores to find hard negatives
HARD_WINDOWS = 1500
HARD_SCORE = 0.2  # a bank window scoring this for any class is a hard negative
SOUNDALIKES_PER_CLASS = 20  # bank stretches nearest each class's clips (trainer.soundalikes)
SOUNDALIKE_COPIES = 2  # ... each also over the user's background, this many times
# The device's default activity gate (hark.activity): calibration scores what it would skip as background.
CALIBRATION_GATE = GateSettings()
HELD_OUT_EVERY = 5  # every 5th bank clip is kept for calibration, never trained on
CALIBRATION_BANK_S = 1800.0
CALIBRATION_COPIES = 12  # positives per class in the calibration stream (held-back clips, varied)


@dataclass
class Bank:
    """The negative bank's windows for one training: to fit on, to mine, and held out for calibration."""

    train: np.ndarray
    pool: np.ndarray
    held: list[BankClip]
    trained: list[BankClip]  # the clips ``train`` and ``pool`` are drawn from
    clips: int

    def summary(self, hard_windows: int, soundalikes: list[float]) -> dict[str, Any]:
        return {"clips": self.clips, "train_windows": int(len(self.train)), "held_out_clips": len(self.held),
                "hard_windows": hard_windows, "soundalikes": len(soundalikes),
                "soundalike_distance_max": round(max(soundalikes), 4) if soundalikes else None}


def bank_clips(fe: Frontend, recipe: F.Recipe, *, progress: bool) -> list[BankClip]:
    """The generic negative bank's clips (:mod:`hark.trainer.negatives`) with features for this recipe."""
    from hark.trainer.negatives import bank_features, negative_dirs

    try:
        dirs = negative_dirs()
    except HarkError as err:
        raise HarkError(f"negative bank: {err}; set HARK_NEGATIVES to folders of recordings of other speech "
                        "and sounds, or train with --no-negatives") from None
    lead = F.needed_samples(fe, recipe.window, recipe.stride)
    clips = [c for c in bank_features(fe, dirs=dirs, lead_samples=lead, progress=progress)
             if len(c.features) >= recipe.window]
    if not clips:
        raise HarkError(f"negative bank: no recording under {', '.join(map(str, dirs))} is long enough "
                        "for a head window; add longer ones, or train with --no-negatives")
    return clips


def load_bank(fe: Frontend, recipe: F.Recipe, rng: np.random.Generator, *, progress: bool) -> Bank:
    """The generic negative bank, split into training and held-out clips."""
    from hark.trainer.negatives import bank_windows

    clips = bank_clips(fe, recipe, progress=progress)
    held_idx = set(range(HELD_OUT_EVERY - 1, len(clips), HELD_OUT_EVERY)) if len(clips) >= 2 else set()
    if len(clips) >= 2 and not held_idx:
        held_idx = {len(clips) - 1}
    held, seconds = [], 0.0
    for i in sorted(held_idx):
        if seconds < CALIBRATION_BANK_S:
            held.append(clips[i])
            seconds += len(clips[i].features) * fe.hop_samples / SAMPLE_RATE
    trained = [c for i, c in enumerate(clips) if i not in held_idx]
    sequences = [c.features for c in trained]
    step = max(1, recipe.stride)
    return Bank(train=bank_windows(sequences, window=recipe.window, stride=step, limit=BANK_WINDOWS, rng=rng),
                pool=bank_windows(sequences, window=recipe.window, stride=step, limit=POOL_WINDOWS, rng=rng),
                held=held, trained=trained, clips=len(clips))


def mine_hard(model: Any, pool: np.ndarray, *, limit: int) -> np.ndarray:
    """The bank windows that score at least ``HARD_SCORE`` for some class, highest first."""
    from hark.trainer import head as H

    if not len(pool):
        return pool
    top = H.scores(model, pool)[:, 1:].max(axis=1)
    idx = np.flatnonzero(top >= HARD_SCORE)
    return pool[idx[np.argsort(-top[idx])][:limit]]


def stream_scores(model: Any, recipe: F.Recipe, fe: Frontend, features: np.ndarray,
                  active: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Head scores and their stream times (s) over a recording's features, windows as the pipeline forms them.

    Given the recording's ``active`` hops (:func:`hark.activity.active_hops`), the windows the
    device's activity gate would not run are scored as background, as the device scores them.
    """
    n = len(features) - recipe.window + 1
    starts = [s for s in range(max(0, n)) if (s + recipe.window) % max(1, recipe.stride) == 0]
    if not starts:
        return np.zeros((0, 1)), np.zeros(0)
    from hark.trainer import head as H

    scores = H.scores(model, F.stack_windows(features, starts, recipe.window))
    ends = np.array([fe.feature_end(s + recipe.window - 1) for s in starts])
    if active is not None:
        hold = hold_samples(CALIBRATION_GATE, F.span_samples(fe, recipe.window))
        closed = ~open_windows(active, ends, hold_samples=hold)
        scores[closed] = 0.0
        scores[closed, 0] = 1.0  # background, as the pipeline scores a window it skips
    return scores, ends / SAMPLE_RATE


def calibrate_head(model: Any, recipe: F.Recipe, fe: Frontend, labels: list[str], val: Split, bank: Bank | None,
                   *, rng: np.random.Generator, refractory_s: float, budget_per_hour: float,
                   verifier: VerifierSpec | None = None) -> Any:
    """Thresholds and smoothing per class within the false-alarm budget (:mod:`hark.trainer.calibrate`).

    The stream: held-back clips (padded as on the device, mixed into held-back background, some
    perturbed), the bank's held-out clips and the held-back background, scored by the head. With
    ``verifier`` (templates of the training clips only) each detection is first put to it, as the
    device does: thresholds then buy recall with what the verifier turns away.
    """
    from hark.trainer.calibrate import THRESHOLD_GRID, Segment, calibrate

    segments: list[Segment] = []
    needed = F.needed_samples(fe, recipe.window, recipe.stride)
    per_label: dict[int, list[np.ndarray]] = {}
    for label, samples in val.clips:
        per_label.setdefault(label, []).append(samples)
    events: list[tuple[int, tuple[float, float]]] = []  # label and sound (s) of each positive made

    def positives() -> Iterator[np.ndarray]:
        for label, clips in per_label.items():
            for k in range(max(len(clips), CALIBRATION_COPIES)):
                samples = clips[k % len(clips)]
                if k >= len(clips) and rng.random() < PERTURB_SHARE:
                    samples = perturb(samples, rng)
                x, offset = F.pad_clip(samples, needed=needed, pad=recipe.clip_padding_samples)
                s, e = F.locate_event(samples)
                if k >= len(clips) or val.noise:
                    x = F.in_noise(rng, x, (s + offset, e + offset), val.noise)
                events.append((label, ((s + offset) / SAMPLE_RATE, (e + offset) / SAMPLE_RATE)))
                heard.append(active_hops(x, CALIBRATION_GATE))
                yield x

    heard: list[np.ndarray] = []  # each recording's active hops, for the activity gate (in the order made)
    for features, (label, event), active in zip(fe.transform_many(positives()), events, heard):
        scores, times = stream_scores(model, recipe, fe, features, active)
        segments.append(Segment(scores=scores, times=times, target=labels[label], features=features, event=event))

    def negatives() -> Iterator[np.ndarray]:
        for clip in bank.held if bank is not None else []:
            # As a stream would hold it: after other sound, over the held-back background.
            try:
                samples = clip.samples()
            except HarkError as err:
                log.warning("negative bank: %s; left out of calibration", err)
                continue
            x, offset = F.pad_clip(samples, needed=needed, pad=recipe.clip_padding_samples)
            x = F.in_noise(rng, x, (offset, offset + len(samples)), val.noise)
            heard.append(active_hops(x, CALIBRATION_GATE))
            yield x
        chunk = int(BACKGROUND_SEGMENT_S * SAMPLE_RATE)
        for b in val.noise:
            for i in range(0, len(b), chunk):
                heard.append(active_hops(b[i:i + chunk], CALIBRATION_GATE))
                yield b[i:i + chunk]

    heard.clear()
    for features, active in zip(fe.transform_many(negatives()), heard):
        scores, times = stream_scores(model, recipe, fe, features, active)
        if len(times):
            segments.append(Segment(scores=scores, times=times, features=features))
    hours = sum(seg.duration_s for seg in segments) / 3600
    # Segments where no class ever reaches the lowest threshold cannot fire: replaying them only costs time.
    kept = [seg for seg in segments if seg.target is not None or seg.scores[:, 1:].max() >= THRESHOLD_GRID.min()]
    return calibrate(kept, labels, budget_per_hour=budget_per_hour, negative_hours=hours, refractory_s=refractory_s,
                     confirm=_segment_confirm(verifier, fe) if verifier is not None else None)


def _segment_confirm(spec: VerifierSpec, fe: Frontend) -> Callable[[Any, float, str], bool]:
    """:class:`hark.verifier.Verifier`'s judgement at a moment of a calibration segment (its distances
    remembered: each threshold tried asks again about the same moments)."""
    measured: dict[tuple[int, float], dict[str, float]] = {}

    def confirm(segment: Any, time_s: float, label: str) -> bool:
        key = (id(segment), round(time_s, 4))
        if key not in measured:
            verifier = Verifier(spec, hop_samples=fe.hop_samples)
            ends = F.feature_ends(fe, segment.features)
            for feature in segment.features[ends <= time_s * SAMPLE_RATE + 0.5]:
                verifier.push(feature)
            measured[key] = verifier.distances()
        return spec.confirms(label, measured[key])

    return confirm


def train(dataset_path: str | Path, output: str | Path, options: TrainOptions = TrainOptions()) -> Manifest:
    """Train a bundle at ``output`` from the dataset folder; returns the manifest written."""
    started = time.monotonic()
    say = (lambda m: print(m, file=sys.stderr)) if options.progress else (lambda m: None)
    if options.embedding not in EMBEDDINGS:
        raise HarkError(f"--embedding: {options.embedding!r} is not one of {', '.join(EMBEDDINGS)}")
    output = check_output(output, dataset=dataset_path)  # before any work: nothing the user did not ask to replace
    dataset = check_dataset(dataset_path, progress=options.progress)
    base, why = choose_base(dataset, options.base, seed=options.seed, say=say)
    say(f"hark: base {base} ({why})")
    recipe = F.RECIPES[base]
    base_files = fetch_base(base)
    speech_classes: list[str] = []
    if base == "speech" and options.verifier and options.speech_check:
        # The speech check (hark.speechcheck) is for the classes whose own clips are speech; its network
        # goes into the bundle with the base only if there are any (a clap trained on words' base is not).
        yamnet = fetch(SPEECH_CHECK_FILE)
        speech_classes = spoken_classes(dataset, yamnet)
        if speech_classes:
            base_files = {**base_files, SPEECH_CHECK_FILE: yamnet}
        say(f"hark: speech check for {', '.join(speech_classes) or 'no class (no class of clips is speech)'}")
    with tempfile.TemporaryDirectory(prefix="hark-train-") as scratch:
        embedding = None
        if base == "speech" and options.embedding != "float":
            embedding = make_embedding(dataset, base_files, Path(scratch), say=say)
            base_files = {**{n: p for n, p in base_files.items() if n != EMBEDDING_FILES["float"]},
                          embedding.path.name: embedding.path}
        fe = build_frontend({**recipe.frontend_params, "embedding": "int8" if embedding else "float"}, base_files)
        return _train(dataset, output, options, base=base, why=why, recipe=recipe, base_files=base_files, fe=fe,
                      embedding=embedding, started=started, say=say, speech_classes=speech_classes)


def make_embedding(dataset: Dataset, base_files: dict[str, Path], folder: Path, *,
                   say: Callable[[str], None]) -> Any:
    """The int8 copy of the speech embedding, calibrated on this dataset's audio (:mod:`hark.trainer.quantize`)."""
    from hark.trainer import quantize as Q

    say("hark: making the int8 speech embedding (calibrating on the dataset's audio)")
    float_fe = build_frontend({"name": "speech"}, base_files)
    clips = [c.samples for label in dataset.labels for c in dataset.usable(label)] + \
        [c.samples for c in dataset.unknown]
    windows = Q.representative_windows(float_fe, clips, [c.samples for c in dataset.background])
    made = Q.int8_embedding(base_files[EMBEDDING_FILES["float"]], windows, folder)
    say(f"hark: int8 speech embedding calibrated on {made.windows} windows of the dataset's audio "
        f"(cosine to the float embedding {made.cosine_mean:.4f} on average, {made.cosine_min:.4f} at worst)")
    return made


def _train(dataset: Dataset, output: Path, options: TrainOptions, *, base: str, why: str, recipe: F.Recipe,
           base_files: dict[str, Path], fe: Frontend, embedding: Any, started: float,
           say: Callable[[str], None], speech_classes: Sequence[str] = ()) -> Manifest:
    labels = [BACKGROUND, *dataset.labels]
    rng = np.random.default_rng(options.seed)
    train_split, val_split, counts = build_examples(dataset, labels, recipe, fe, rng, options.progress)
    bank = load_bank(fe, recipe, rng, progress=options.progress) if options.negatives else None
    if bank is not None:
        train_split.add(bank.train, 0)
    x_train, y_train = train_split.arrays()
    w_train = train_split.weights()
    soundalikes: list[float] = []
    templates_of = None
    if recipe.verify and (bank is not None or options.verifier):
        from hark.trainer.templates import clip_templates

        templates_of = clip_templates(fe, {label: dataset.usable(label) for label in labels[1:]},
                                      padding=recipe.clip_padding_samples)
    if bank is not None and templates_of is not None:
        from hark.trainer.soundalikes import soundalike_windows

        # Found with the verifier's measure, on a provisional standardisation of the features.
        flat = x_train.reshape(-1, x_train.shape[-1])
        alike, soundalikes = soundalike_windows(
            fe, recipe, {label: [t for _, t in pairs] for label, pairs in templates_of.items()}, bank.trained,
            mean=flat.mean(axis=0), scale=np.sqrt(flat.var(axis=0) + 1e-6),
            noises=[c.samples for c in dataset.background], rng=rng, per_class=SOUNDALIKES_PER_CLASS,
            copies=SOUNDALIKE_COPIES)
        x_train, y_train = np.concatenate([x_train, alike]), np.concatenate([y_train, np.zeros(len(alike), np.int64)])
        w_train = np.concatenate([w_train, np.ones(len(alike), np.float32)])
    x_val, y_val = val_split.arrays()
    features_s = time.monotonic() - started

    from hark.trainer import head as H  # TensorFlow only now (with an int8 embedding: already, to make it)

    H.set_seed(options.seed)
    flat = x_train.reshape(-1, x_train.shape[-1])
    mean, var = flat.mean(axis=0), flat.var(axis=0) + 1e-6
    n = len(labels)

    # The speech check's familiar sounds are heard by YAMNet on a thread while the heads are fitted: a
    # small head leaves a core partly idle, and TFLite lets go of the GIL while it runs.
    span_s = round(F.span_samples(fe, recipe.window) / SAMPLE_RATE, 3)
    pool = ThreadPoolExecutor(1)  # its thread starts with the first task, if there is one
    checking = pool.submit(speech_check_section, dataset, base_files[SPEECH_CHECK_FILE], speech_classes,
                           lookback_s=span_s, seed=options.seed) if speech_classes else None
    pool.shutdown(wait=False)  # the submitted work still runs; no more is taken

    # Each member fits the same windows from its own start: the stretches of other speech one fit
    # takes for a keyword depend on the run, so the mean of a few members keeps what they agree on.
    members: list[Member] = []
    histories: list[dict[str, list[float]]] = []
    for k in range(options.heads):
        H.set_seed(options.seed + MEMBER_SEED_STEP * k)
        member = H.build_head(base, window=recipe.window, feature_shape=fe.feature_shape, n_outputs=n,
                              norm_mean=mean, norm_var=var)
        stopper = early_stopping(warmup_epochs([label for label, _ in val_split.clips], n))
        bar = _EpochBar(MAX_EPOCHS, "training head" + (f" {k + 1}/{options.heads}" if options.heads > 1 else ""),
                        options.progress)
        history = member.fit(x_train, y_train, sample_weight=class_weights(y_train, n, w_train), batch_size=BATCH,
                             epochs=MAX_EPOCHS, validation_data=(x_val, y_val, class_weights(y_val, n)),
                             callbacks=[stopper, bar.callback], verbose=0, shuffle=True)
        bar.close()
        # How many epochs the restored weights were trained for; the report plots the first member's curves.
        members.append(Member(member, stopper.best_epoch + 1, x_train, y_train, w_train))
        histories.append(history.history)
    best_epochs = max(m.epochs for m in members)
    model = H.average([m.model for m in members], window=recipe.window, feature_shape=fe.feature_shape)
    peaks, truth = group_peaks(model, val_split.groups, n)
    thresholds = choose_thresholds(peaks, truth, labels)
    pred = decide(peaks, labels, thresholds)
    metrics = clip_metrics(pred, truth, labels)
    clip_truth = truth != 0
    metrics["clip_accuracy"] = float((pred[clip_truth] == truth[clip_truth]).mean()) if clip_truth.any() else None
    metrics["background_false_alarm_rate"] = float((pred[~clip_truth] != 0).mean()) if (~clip_truth).any() else None
    hard_windows = 0
    if bank is not None:
        # Hard negatives: the bank windows a member already takes for a class, taught to it again.
        for k, m in enumerate(members):
            hard = mine_hard(m.model, bank.pool, limit=HARD_WINDOWS)
            hard_windows = max(hard_windows, len(hard))
            if len(hard):
                m.x = np.concatenate([m.x, hard])
                m.y = np.concatenate([m.y, np.zeros(len(hard), np.int64)])
                m.w = np.concatenate([m.w, np.full(len(hard), HARD_WEIGHT, np.float32)])
                again = max(3, m.epochs // 3)
                bar = _EpochBar(again, "hard negatives" + (f" {k + 1}/{len(members)}" if len(members) > 1 else ""),
                                options.progress)
                m.model.fit(m.x, m.y, sample_weight=class_weights(m.y, n, m.w), batch_size=BATCH,
                            epochs=again, callbacks=[bar.callback], verbose=0, shuffle=True)
                bar.close()
    verifier, verifier_summary, verifier_calibrating = None, None, None
    if options.verifier and templates_of is not None:
        from hark.trainer.templates import REGION_EXTRA_S, build_verifier

        built = build_verifier(
            templates_of, fe, mean=mean, scale=np.sqrt(var),
            region_s=F.span_samples(fe, recipe.window) / SAMPLE_RATE + REGION_EXTRA_S,
            decision_s=DEFAULT_DECISION_S, padding=recipe.clip_padding_samples,
            noises=[c.samples for c in dataset.background], rng=rng, progress=options.progress)
        if built.spec.max_distance:  # else no class has two clips to compare: nothing to verify with
            verifier, verifier_summary = built.spec, built.summary
            verifier_calibrating = built.without([samples for _, samples in val_split.clips])
    refractory_s = 1.0 if recipe.mode == "event" else 2.0
    calibration = calibrate_head(model, recipe, fe, labels, val_split, bank, rng=rng, refractory_s=refractory_s,
                                 budget_per_hour=options.false_alarms_per_hour, verifier=verifier_calibrating)
    # Then fit on every clip for a third of the epochs validation chose: with 8 clips a class
    # the held-out two matter. Continuing (not refitting from scratch) reuses the traced graph.
    for k, m in enumerate(members):
        x_all, y_all = np.concatenate([m.x, x_val]), np.concatenate([m.y, y_val])
        w_all = np.concatenate([m.w, val_split.weights()])
        extra = max(2, m.epochs // 3)
        bar = _EpochBar(extra, "final fit" + (f" {k + 1}/{len(members)}" if len(members) > 1 else ""),
                        options.progress)
        m.model.fit(x_all, y_all, sample_weight=class_weights(y_all, n, w_all), batch_size=BATCH, epochs=extra,
                    callbacks=[bar.callback], verbose=0, shuffle=True)
        bar.close()
    head_bytes = H.export_tflite(model, window=recipe.window, feature_shape=fe.feature_shape)
    speech_check = checking.result() if checking is not None else None
    output = Path(output)
    recall = {label: metrics["per_class"][label]["recall"] for label in labels[1:]}
    manifest = Manifest(
        name=output.name,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        trainer_version=TRAINER_VERSION,
        base=base,
        base_choice=why,
        frontend=fe.spec(),
        head=HeadSpec(window=recipe.window, stride=recipe.stride, clip_padding_samples=recipe.clip_padding_samples,
                      positives=recipe.mode),
        labels=tuple(labels),
        # One sound, one detection: other classes wait while the detected sound is in the window.
        detection=calibration.detection_spec(refractory_s=refractory_s, hold_others_s=span_s),
        # Whole clips (hark classify, evaluate) keep the thresholds that best separate the
        # validation clips: a stream's false-alarm budget would turn quiet clips into background.
        classify=ClassifySpec(thresholds=thresholds, expected_recall=recall),
        verifier=verifier.manifest_block() if verifier is not None else None,
        # A word must be speech, or only the home's familiar sounds: looked for over what the head heard,
        # the window before the detection.
        speech_check=speech_check,
        # The pinned files the bundle's base came from (an int8 embedding: the float file it was made from).
        base_hashes={name: BASE_FILES[name].sha256 for name in BASES[base]},
        metrics={
            "validation_accuracy": metrics["accuracy"],
            "validation_clip_accuracy": metrics["clip_accuracy"],
            "validation_background_false_alarm_rate": metrics["background_false_alarm_rate"],
            "per_class": metrics["per_class"],
            "confusion": metrics["confusion"],
            "epochs": best_epochs,
            "train_windows": int(len(members[0].y)),
            "heads": len(members),
            "validation_windows": int(len(y_val)),
            "negative_bank": bank.summary(hard_windows, soundalikes) if bank is not None else None,
            "verifier": verifier_summary,
            "embedding": embedding.summary() if embedding is not None else None,
            "feature_seconds": round(features_s, 1),
            "train_seconds": round(time.monotonic() - started, 1),
        },
        dataset={
            "clips": counts,
            "background_s": round(dataset.background_s, 1),
            "unknown_clips": len(dataset.unknown),
            "seed": options.seed,
        },
    )
    written = write_bundle(output, manifest=manifest, head_tflite=head_bytes, base_files=base_files,
                           extra_files={VERIFIER_FILE: verifier.to_bytes()} if verifier is not None else None)
    manifest = read_manifest(written / MANIFEST)
    if options.report:
        from hark.trainer.report import write_report

        write_report(output, manifest=manifest, history=histories[0], dataset=dataset, frontend=fe,
                     calibration=calibration)
    return manifest


class _EpochBar:
    """A tqdm bar over epochs, as a Keras callback."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        from hark.trainer.head import keras

        outer = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                logs = logs or {}
                outer.bar.update(1)
                outer.bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items() if "loss" in k or "acc" in k})

        self.bar = tqdm(total=total, desc=desc, unit="epoch", leave=False, disable=not enabled, file=sys.stderr)
        self.callback = Callback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.callback, name)

    def close(self) -> None:
        self.bar.close()


def summary_lines(manifest: Manifest, output: Path) -> list[str]:
    """What ``hark train`` prints: the model, then each class's two thresholds named as the report
    names them, and advice where calibration could not keep to the false-alarm budget."""
    m, det = manifest.metrics, manifest.detection
    acc = m.get("validation_accuracy")
    lines = [f"wrote {output}: base {manifest.base}, labels {', '.join(manifest.classes)}"
             + (f", validation accuracy {acc:.1%}" if acc is not None else "")
             + (f" ({m['train_seconds']:.0f} s)" if m.get("train_seconds") is not None else "")]
    budget = det.false_alarms_per_hour_budget
    clip = manifest.clip_thresholds()
    lines.append("  clip threshold: what hark classify needs on a whole clip (the report's validation table); "
                 "detection threshold: what the device needs on a stream, calibrated to the false-alarm budget "
                 "(its detection table)")
    over: list[str] = []
    for label in manifest.classes:
        recall = det.expected_recall.get(label)
        rate = det.expected_false_alarms_per_hour.get(label)
        line = (f"  {label}: clip threshold {clip[label]:.2f}, detection threshold {det.thresholds[label]:.2f} "
                f"(smoothing {det.smoothing[label]})")
        if rate is not None and budget is not None:
            line += (f", expected recall {recall:.0%}" if recall is not None else "") + \
                f" at {rate:.2f} false alarms/h"
            if rate > budget + 1e-9:
                line += f", over the budget of {budget:g}"
                over.append(label)
            else:
                line += f" (budget {budget:g})"
        lines.append(line)
    if over:
        lines.append(f"  {', '.join(over)} {'misses' if len(over) == 1 else 'miss'} the false-alarm budget of "
                     f"{budget:g}/h: add background recordings of the room it will "
                     "listen in (DATASET/_background_noise_/) or more clips, or raise --false-alarms-per-hour")
    return lines


def main(args: argparse.Namespace) -> int:
    if not args.false_alarms_per_hour > 0:
        raise HarkError(f"--false-alarms-per-hour: {args.false_alarms_per_hour} must be above 0")
    if not 1 <= args.heads <= MAX_HEADS:
        raise HarkError(f"--heads: {args.heads} must be between 1 and {MAX_HEADS}")
    embedding = args.embedding or DEFAULT_TRAIN_EMBEDDING
    if args.embedding not in (None, "float") and args.base in ("sounds", "none"):
        raise HarkError(f"--embedding {args.embedding}: the {args.base} base has no speech embedding to quantize; "
                        "use it with --base speech or auto")
    options = TrainOptions(base=args.base, seed=args.seed, report=not args.no_report,
                           negatives=not args.no_negatives, false_alarms_per_hour=args.false_alarms_per_hour,
                           verifier=not args.no_verifier, heads=args.heads, embedding=embedding,
                           speech_check=args.speech_check)
    manifest = train(args.dataset, args.output, options)
    for line in summary_lines(manifest, Path(args.output)):
        print(line)
    if options.report:
        print(f"report: {Path(args.output) / 'report.html'}")
    return 0
