"""The bundle's manifest as typed, validated settings: the one contract between trainer and device.

The trainer builds a :class:`Manifest` and writes it with :meth:`Manifest.to_json`; the device
reads ``manifest.json`` with :func:`read_manifest`, which checks everything before any of it is
used: the file's size (before it is read), the JSON's nesting depth, every key's type, every
number's bounds and how the sections agree with one another (thresholds name classes of the
model, the head's input shape is ``[window, *feature_shape]``). What only the head file can tell
(its real input and output tensors) is checked by :class:`hark.model.Model` when it loads it.
Every violation is one :class:`~hark.errors.BundleError` line naming the file and the key, such as
``MODEL/manifest.json: head.window: missing``.

Defaults live here and nowhere else: a key an older trainer did not write (``hold_others_s``,
``decision_s``, ``classify``, ``verifier``) reads as the value it had before the key existed.
Keys this hark does not know are ignored, so a newer trainer may add informative keys without
a new format version; a change an older reader would misread raises :data:`FORMAT_VERSION`.
The format is described for people in ``docs/bundle-format.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hark import SAMPLE_RATE
from hark.errors import BundleError
from hark.labels import BACKGROUND, is_valid_label

FORMAT = "hark-model"
FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)
MANIFEST = "manifest.json"
HEAD_FILE = "head.tflite"
VERIFIER_FILE = "verifier.npz"
VERIFIER_METHOD = "subsequence-dtw-cosine"
BASE_DIR = "base"

# The speech frontend's embedding: the pretrained float file, or an int8 copy the trainer made from
# it (calibrated on the user's recordings) that the bundle carries. A bundle without the key is float.
EMBEDDING_FILES = {"float": "embedding_model.tflite", "int8": "embedding_model_int8.tflite"}
EMBEDDINGS = tuple(EMBEDDING_FILES)
DEFAULT_EMBEDDING = "float"

# Bounds of the file itself: a trainer writes a few kilobytes, nested five deep.
MAX_MANIFEST_BYTES = 1 << 20
MAX_DEPTH = 16

# Defaults of keys a bundle may leave out (and what the device uses where a class has no value).
DEFAULT_THRESHOLD = 0.5
DEFAULT_SMOOTHING = 1
DEFAULT_REFRACTORY_S = 1.0
DEFAULT_DECISION_S = 0.15
DEFAULT_HOLD_OTHERS_S = 0.0
DEFAULT_STRIDE = 1
DEFAULT_CLIP_PADDING_SAMPLES = 8000
DEFAULT_VERIFIER_END_S = 1.0
DEFAULT_VERIFIER_RATIO = 1.0  # bundles before the ratio test: merely the nearest class
SPEECH_CHECK_METHOD = "yamnet-speech"  # YAMNet's class 0, "Speech", in the audio before a detection
YAMNET_CLASSES = 521  # the speech check's familiar scores: one per YAMNet class
DEFAULT_SPEECH_CHECK_MARGIN = 0.3

# Bounds of every number: wide enough for any model the trainer makes, narrow enough that
# nothing derived from them (buffers, filter banks, loops) can exhaust a Pi's memory.
FRONTENDS = ("speech", "sounds", "none")
MAX_LABELS = 64
MAX_HOP_SAMPLES = 10 * SAMPLE_RATE
MAX_RECEPTIVE_SAMPLES = 10 * SAMPLE_RATE
MAX_FEATURE_DIMS = 3
MAX_FEATURE_SIZE = 4096  # values in one feature vector (YAMNet's is 1024)
MAX_WINDOW = 1000  # features per head input
MAX_HEAD_INPUT = 1 << 20  # values in one head input: window x feature size
MAX_STRIDE = 1000
MAX_CLIP_PADDING_SAMPLES = 10 * SAMPLE_RATE
MAX_N_FFT = 8192
MAX_SMOOTHING = 100
MAX_REFRACTORY_S = 3600.0
MAX_DECISION_S = 5.0
MAX_HOLD_OTHERS_S = 10.0
MAX_FILES = 64
MAX_TEMPLATES = 1000
MAX_NEAREST = 100


# ------------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class FrontendSpec:
    """How the device rebuilds the trainer's frontend (:func:`hark.frontend.build_frontend`)."""

    name: str  # speech | sounds | none
    hop_samples: int
    receptive_samples: int
    feature_shape: tuple[int, ...]
    # The numpy log-mel frontend's settings (``none``); the pretrained bases fix their own.
    n_fft: int = 512
    fmin: float = 20.0
    fmax: float = 7600.0
    # ``speech`` only: which embedding the head was trained on (:data:`EMBEDDING_FILES`).
    embedding: str = DEFAULT_EMBEDDING

    @property
    def embedding_file(self) -> str | None:
        """The base file of the speech embedding this frontend runs (None for the other frontends)."""
        return EMBEDDING_FILES[self.embedding] if self.name == "speech" else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "hop_samples": self.hop_samples,
                               "receptive_samples": self.receptive_samples, "feature_shape": list(self.feature_shape)}
        if self.name == "none":
            out.update(n_fft=self.n_fft, fmin=self.fmin, fmax=self.fmax)
        if self.name == "speech":
            out["embedding"] = self.embedding
        return out


@dataclass(frozen=True)
class HeadSpec:
    """The trained head: ``window`` features in, one probability per label out, run every ``stride``."""

    window: int
    stride: int = DEFAULT_STRIDE
    clip_padding_samples: int = DEFAULT_CLIP_PADDING_SAMPLES  # quiet room added around a whole clip
    positives: str = "event"  # how the trainer chose positive windows: event | texture
    file: str = HEAD_FILE

    def input_shape(self, frontend: FrontendSpec) -> tuple[int, ...]:
        """One head input: ``[window, *feature_shape]``."""
        return (self.window, *frontend.feature_shape)


@dataclass(frozen=True)
class DetectionSpec:
    """The stream detector's calibrated defaults (:mod:`hark.detector`), one value per class.

    The ``expected_*``, budget and hours are what calibration measured, shown to the user; the
    device decides with the thresholds, smoothing, refractory, decision and hold.
    """

    thresholds: Mapping[str, float]
    smoothing: Mapping[str, int]
    refractory_s: Mapping[str, float]
    decision_s: float = DEFAULT_DECISION_S
    hold_others_s: float = DEFAULT_HOLD_OTHERS_S
    expected_recall: Mapping[str, float | None] = field(default_factory=dict)
    expected_false_alarms_per_hour: Mapping[str, float] = field(default_factory=dict)
    false_alarms_per_hour_budget: float | None = None
    calibration_hours: float | None = None

    @classmethod
    def defaults(cls, classes: Sequence[str]) -> DetectionSpec:
        """What a bundle without a ``detection`` section detects with."""
        return cls(thresholds=dict.fromkeys(classes, DEFAULT_THRESHOLD),
                   smoothing=dict.fromkeys(classes, DEFAULT_SMOOTHING),
                   refractory_s=dict.fromkeys(classes, DEFAULT_REFRACTORY_S))

    @classmethod
    def from_json(cls, data: Any, classes: Sequence[str], *, where: Path | str = MANIFEST) -> DetectionSpec:
        """A ``detection`` section on its own, checked as :func:`read_manifest` checks it."""
        return _detection(_Reader(where, {"detection": data}), classes)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"thresholds": dict(self.thresholds), "smoothing": dict(self.smoothing),
                               "refractory_s": dict(self.refractory_s), "decision_s": self.decision_s,
                               "hold_others_s": self.hold_others_s}
        if self.expected_recall:
            out["expected_recall"] = dict(self.expected_recall)
        if self.expected_false_alarms_per_hour:
            out["expected_false_alarms_per_hour"] = dict(self.expected_false_alarms_per_hour)
        if self.false_alarms_per_hour_budget is not None:
            out["false_alarms_per_hour_budget"] = self.false_alarms_per_hour_budget
        if self.calibration_hours is not None:
            out["calibration_hours"] = self.calibration_hours
        return out


@dataclass(frozen=True)
class ClassifySpec:
    """Whole-clip thresholds (``hark classify``, evaluation): the ones that best separate the
    validation clips. A stream's thresholds answer a false-alarm budget and would call quiet clips
    background."""

    thresholds: Mapping[str, float]
    expected_recall: Mapping[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "expected_recall": dict(self.expected_recall)}


@dataclass(frozen=True)
class VerifierSection:
    """The second opinion's settings (:mod:`hark.verifier`); its templates are in ``file``."""

    file: str
    method: str
    region_s: float
    nearest: int
    max_distance: Mapping[str, float]
    templates: Mapping[str, int]  # templates per class, in the file's class order
    end_s: float = DEFAULT_VERIFIER_END_S
    ratio: float = DEFAULT_VERIFIER_RATIO

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "method": self.method, "region_s": self.region_s, "end_s": self.end_s,
                "nearest": self.nearest, "ratio": self.ratio, "max_distance": dict(self.max_distance),
                "templates": dict(self.templates)}


@dataclass(frozen=True)
class SpeechCheckSection:
    """A word must be speech (:mod:`hark.speechcheck`): for a detection of one of ``classes`` (those
    whose own clips are speech), a detection is turned away when YAMNet's "Speech" score in the
    ``lookback_s`` before it stays under ``threshold`` and some other class scores more than ``margin``
    above ``familiar`` (its highest over the user's background and clips; without ``familiar``, every
    detection under ``threshold`` is turned away)."""

    file: str
    threshold: float
    lookback_s: float
    classes: tuple[str, ...]
    method: str = SPEECH_CHECK_METHOD
    familiar: tuple[float, ...] | None = None  # one score per YAMNet class
    margin: float = DEFAULT_SPEECH_CHECK_MARGIN

    def to_json(self) -> dict[str, Any]:
        out = {"method": self.method, "file": self.file, "threshold": self.threshold, "lookback_s": self.lookback_s,
               "classes": list(self.classes)}
        if self.familiar is not None:
            out |= {"margin": self.margin, "familiar": [round(float(x), 4) for x in self.familiar]}
        return out


@dataclass(frozen=True)
class Manifest:
    """Everything ``manifest.json`` says. ``metrics`` and ``dataset`` are the trainer's record for
    people (the report, ``hark train``'s summary): JSON objects the device never decides by."""

    name: str
    base: str
    frontend: FrontendSpec
    head: HeadSpec
    labels: tuple[str, ...]  # head output order, background first
    detection: DetectionSpec
    classify: ClassifySpec | None = None
    verifier: VerifierSection | None = None
    speech_check: SpeechCheckSection | None = None
    files: Mapping[str, str] = field(default_factory=dict)  # path in the bundle -> sha256
    base_hashes: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    trainer_version: str = ""
    base_choice: str = ""
    sample_rate: int = SAMPLE_RATE
    metrics: Mapping[str, Any] = field(default_factory=dict)
    dataset: Mapping[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels that can be detected (all but ``background``)."""
        return tuple(label for label in self.labels if label != BACKGROUND)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.head.input_shape(self.frontend)

    def clip_thresholds(self) -> dict[str, float]:
        """Whole-clip thresholds: the ``classify`` section's, the stream's where it has none."""
        chosen = self.classify.thresholds if self.classify is not None else {}
        return {c: float(chosen.get(c, self.detection.thresholds[c])) for c in self.classes}

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``manifest.json`` holds (files as given; :func:`hark.bundle.write_bundle` fills them)."""
        head = {"window": self.head.window, "stride": self.head.stride,
                "clip_padding_samples": self.head.clip_padding_samples,
                "input_shape": list(self.input_shape), "positives": self.head.positives, "file": self.head.file}
        out: dict[str, Any] = {
            "format": FORMAT, "format_version": self.format_version, "name": self.name, "created": self.created,
            "trainer_version": self.trainer_version, "sample_rate": self.sample_rate, "base": self.base,
            "base_choice": self.base_choice, "frontend": self.frontend.to_json(), "head": head,
            "labels": list(self.labels), "detection": self.detection.to_json(),
        }
        if self.classify is not None:
            out["classify"] = self.classify.to_json()
        if self.verifier is not None:
            out["verifier"] = self.verifier.to_json()
        if self.speech_check is not None:
            out["speech_check"] = self.speech_check.to_json()
        out.update(base_hashes=dict(self.base_hashes), metrics=dict(self.metrics), dataset=dict(self.dataset),
                   files=dict(self.files))
        return out


# ------------------------------------------------------------------------------- reading


def read_manifest(path: str | Path) -> Manifest:
    """``manifest.json`` at ``path`` parsed and validated; :class:`BundleError` naming the key otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BundleError(f"{path}: missing; is {path.parent} a hark model bundle?") from None
    except OSError as err:
        raise BundleError(f"{path}: unreadable ({err.strerror})") from None
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: {size} bytes, more than a manifest's limit of {MAX_MANIFEST_BYTES} "
                          "(a trainer writes a few kilobytes); not a hark manifest")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: grew past a manifest's limit of {MAX_MANIFEST_BYTES} bytes while read")
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise BundleError(f"{path}: JSON nested too deep (a manifest is at most {MAX_DEPTH} levels)") from None
    except OSError as err:
        raise BundleError(f"{path}: unreadable ({err.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{path}: unreadable or truncated ({err})") from None
    return parse_manifest(data, where=path)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


class _Reader:
    """Typed access to one JSON object, each problem one line naming ``where: key``."""

    def __init__(self, where: Path | str, data: Mapping[str, Any], prefix: str = "") -> None:
        self.where, self.data, self.prefix = where, data, prefix

    def fail(self, key: str, problem: str) -> BundleError:
        return BundleError(f"{self.where}: {self.prefix}{key}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def raw(self, key: str, default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        return self.data[key]

    def section(self, key: str) -> _Reader:
        value = self.raw(key)
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object, not {_shown(value)}")
        return _Reader(self.where, value, f"{self.prefix}{key}.")

    def mapping(self, key: str, default: Any = ...) -> dict[str, Any]:
        value = self.raw(key, default)
        if value is default and default is not ...:
            return default
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object, not {_shown(value)}")
        return value

    def text(self, key: str, default: Any = ..., *, choices: Sequence[str] | None = None,
             max_length: int = 200) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str) or len(value) > max_length:
            raise self.fail(key, f"expected text of at most {max_length} characters, not {_shown(value)}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def integer(self, key: str, default: Any = ..., *, low: int, high: int) -> int:
        return _integer(self.raw(key, default), low=low, high=high, fail=lambda p: self.fail(key, p))

    def number(self, key: str, default: Any = ..., *, low: float, high: float, low_open: bool = False) -> float:
        return _number(self.raw(key, default), low=low, high=high, low_open=low_open,
                       fail=lambda p: self.fail(key, p))

    def optional_number(self, key: str, *, low: float, high: float) -> float | None:
        return self.number(key, low=low, high=high) if self.has(key) else None

    def per_class(self, key: str, classes: Sequence[str], default: float, *, low: float, high: float,
                  integer: bool = False, low_open: bool = False, allow_single: bool = True,
                  complete: bool = False) -> dict[str, Any]:
        """A number per class, from a mapping (or one number for all); unknown classes refused."""
        value = self.raw(key, None)
        check = _integer if integer else _number
        bounds: dict[str, Any] = {"low": low, "high": high}
        if not integer:
            bounds["low_open"] = low_open
        if value is None:
            return dict.fromkeys(classes, default)
        if allow_single and not isinstance(value, (dict, list, str)):
            one = check(value, fail=lambda p: self.fail(key, p), **bounds)
            return dict.fromkeys(classes, one)
        if not isinstance(value, dict):
            raise self.fail(key, f"expected an object of class to number, not {_shown(value)}")
        for name in value:
            if name not in classes:
                raise self.fail(f"{key}.{name}", f"not a class of this model ({', '.join(classes)})")
        missing = [c for c in classes if c not in value]
        if complete and missing:
            raise self.fail(f"{key}.{missing[0]}", "missing")
        return {c: check(value[c], fail=lambda p, c=c: self.fail(f"{key}.{c}", p), **bounds) if c in value
                else default for c in classes}


def _shown(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (dict, list, str, bool)) or value is None else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(value: Any, *, low: int, high: int, fail: Any) -> int:
    # JSON integers only; 8.0 from a hand edit is taken as 8, 8.5 is not an integer.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) <= 2 ** 53:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"expected a whole number, not {_shown(value)}")
    if not low <= value <= high:
        raise fail(f"{value} is out of range (must be {low} to {high})")
    return value


def _number(value: Any, *, low: float, high: float, fail: Any, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"expected a number, not {_shown(value)}")
    value = float(value)
    if not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = f"{'above' if low_open else 'from'} {low:g} {'up ' if low_open else ''}to {high:g}"
        raise fail(f"{value:g} is out of range (must be {bound})")
    return value


def _labels(reader: _Reader) -> tuple[str, ...]:
    labels = reader.raw("labels")
    if not isinstance(labels, list) or not 2 <= len(labels) <= MAX_LABELS:
        raise reader.fail("labels", f"expected a list of 2 to {MAX_LABELS} labels, not {_shown(labels)}")
    if labels[0] != BACKGROUND:
        raise reader.fail("labels", f"the first label must be {BACKGROUND!r}, not {_shown(labels[0])}")
    for i, label in enumerate(labels[1:], start=1):
        if not is_valid_label(label):
            raise reader.fail(f"labels[{i}]", f"{_shown(label)} is not a valid class label")
    if len(set(labels)) != len(labels):
        raise reader.fail("labels", "a label is listed twice")
    return tuple(labels)


def _frontend(reader: _Reader) -> FrontendSpec:
    fe = reader.section("frontend")
    name = fe.text("name", choices=FRONTENDS)
    shape = fe.raw("feature_shape")
    if not isinstance(shape, list) or not 1 <= len(shape) <= MAX_FEATURE_DIMS:
        raise fe.fail("feature_shape", f"expected a list of 1 to {MAX_FEATURE_DIMS} sizes, not {_shown(shape)}")
    dims = tuple(_integer(v, low=1, high=MAX_FEATURE_SIZE, fail=lambda p, i=i: fe.fail(f"feature_shape[{i}]", p))
                 for i, v in enumerate(shape))
    if math.prod(dims) > MAX_FEATURE_SIZE:
        raise fe.fail("feature_shape", f"{list(dims)} holds more than {MAX_FEATURE_SIZE} values a feature")
    embedding = fe.text("embedding", DEFAULT_EMBEDDING, choices=EMBEDDINGS)
    if name != "speech" and embedding != DEFAULT_EMBEDDING:
        raise fe.fail("embedding", f"{embedding!r}, but only the speech frontend has an embedding to choose")
    spec = FrontendSpec(
        name=name,
        hop_samples=fe.integer("hop_samples", low=1, high=MAX_HOP_SAMPLES),
        receptive_samples=fe.integer("receptive_samples", low=1, high=MAX_RECEPTIVE_SAMPLES),
        feature_shape=dims,
        embedding=embedding,
    )
    if name != "none":
        return spec
    n_fft = fe.integer("n_fft", 512, low=16, high=MAX_N_FFT)
    if spec.receptive_samples > n_fft:
        raise fe.fail("receptive_samples", f"{spec.receptive_samples} is longer than n_fft ({n_fft})")
    if len(dims) != 1 or dims[0] > n_fft // 2:
        raise fe.fail("feature_shape", f"the log-mel frontend has one dimension of at most n_fft / 2 = "
                      f"{n_fft // 2} bands, not {list(dims)}")
    fmin = fe.number("fmin", 20.0, low=0.0, high=SAMPLE_RATE / 2)
    fmax = fe.number("fmax", 7600.0, low=0.0, high=SAMPLE_RATE / 2)
    if fmax <= fmin:
        raise fe.fail("fmax", f"{fmax:g} must be above fmin ({fmin:g})")
    return FrontendSpec(name=name, hop_samples=spec.hop_samples, receptive_samples=spec.receptive_samples,
                        feature_shape=dims, n_fft=n_fft, fmin=fmin, fmax=fmax)


def _head(reader: _Reader, frontend: FrontendSpec) -> HeadSpec:
    hd = reader.section("head")
    head = HeadSpec(
        window=hd.integer("window", low=1, high=MAX_WINDOW),
        stride=hd.integer("stride", DEFAULT_STRIDE, low=1, high=MAX_STRIDE),
        clip_padding_samples=hd.integer("clip_padding_samples", DEFAULT_CLIP_PADDING_SAMPLES, low=0,
                                        high=MAX_CLIP_PADDING_SAMPLES),
        positives=hd.text("positives", "event", choices=("event", "texture")),
        file=hd.text("file", HEAD_FILE),
    )
    expected = head.input_shape(frontend)
    if math.prod(expected) > MAX_HEAD_INPUT:
        raise hd.fail("window", f"{head.window} features of {list(frontend.feature_shape)} are more than "
                      f"{MAX_HEAD_INPUT} values a head input")
    if hd.has("input_shape"):
        given = hd.raw("input_shape")
        if not isinstance(given, list) or tuple(given) != expected:
            raise hd.fail("input_shape", f"{_shown(given)} disagrees with [window, *frontend.feature_shape] = "
                          f"{list(expected)}")
    return head


def _detection(reader: _Reader, classes: Sequence[str]) -> DetectionSpec:
    if not reader.has("detection"):
        return DetectionSpec.defaults(classes)
    det = reader.section("detection")
    recall = det.per_class("expected_recall", classes, None, low=0.0, high=1.0, allow_single=False) \
        if det.has("expected_recall") and not _all_null(det.raw("expected_recall")) else {}
    return DetectionSpec(
        thresholds=det.per_class("thresholds", classes, DEFAULT_THRESHOLD, low=0.0, high=1.0),
        smoothing=det.per_class("smoothing", classes, DEFAULT_SMOOTHING, low=1, high=MAX_SMOOTHING, integer=True),
        refractory_s=det.per_class("refractory_s", classes, DEFAULT_REFRACTORY_S, low=0.0, high=MAX_REFRACTORY_S),
        decision_s=det.number("decision_s", DEFAULT_DECISION_S, low=0.0, high=MAX_DECISION_S),
        hold_others_s=det.number("hold_others_s", DEFAULT_HOLD_OTHERS_S, low=0.0, high=MAX_HOLD_OTHERS_S),
        expected_recall=recall,
        expected_false_alarms_per_hour=det.per_class("expected_false_alarms_per_hour", classes, None, low=0.0,
                                                     high=1e9, allow_single=False)
        if det.has("expected_false_alarms_per_hour") else {},
        false_alarms_per_hour_budget=det.optional_number("false_alarms_per_hour_budget", low=0.0, high=1e9),
        calibration_hours=det.optional_number("calibration_hours", low=0.0, high=1e9),
    )


def _all_null(value: Any) -> bool:
    return isinstance(value, dict) and all(v is None for v in value.values())


def _classify(reader: _Reader, classes: Sequence[str]) -> ClassifySpec | None:
    if not reader.has("classify"):
        return None
    cl = reader.section("classify")
    recall: dict[str, float | None] = {}
    if cl.has("expected_recall"):
        given = cl.mapping("expected_recall")
        for name, value in given.items():
            if name not in classes:
                raise cl.fail(f"expected_recall.{name}", f"not a class of this model ({', '.join(classes)})")
            recall[name] = None if value is None else _number(
                value, low=0.0, high=1.0, fail=lambda p, n=name: cl.fail(f"expected_recall.{n}", p))
    thresholds = cl.per_class("thresholds", classes, DEFAULT_THRESHOLD, low=0.0, high=1.0, allow_single=False)
    return ClassifySpec(thresholds=thresholds, expected_recall=recall)


def _section_of_method(reader: _Reader, key: str, method: str) -> _Reader | None:
    """The optional section ``key``, whose ``method`` must be the one this hark knows."""
    if not reader.has(key):
        return None
    section = reader.section(key)
    found = section.text("method")
    if found != method:
        raise section.fail("method", f"unknown method {found!r}, this hark knows {method!r}")
    return section


def _verifier(reader: _Reader, classes: Sequence[str], method: str) -> VerifierSection | None:
    vf = _section_of_method(reader, "verifier", method)
    if vf is None:
        return None
    counts = vf.mapping("templates")
    templates = {}
    for name, count in counts.items():
        if name not in classes:
            raise vf.fail(f"templates.{name}", f"not a class of this model ({', '.join(classes)})")
        templates[name] = _integer(count, low=0, high=MAX_TEMPLATES,
                                   fail=lambda p, n=name: vf.fail(f"templates.{n}", p))
    limits = vf.mapping("max_distance")
    for name in limits:
        if name not in templates:
            raise vf.fail(f"max_distance.{name}", "a class without templates")
    max_distance = {name: _number(v, low=0.0, high=2.0, low_open=True,
                                  fail=lambda p, n=name: vf.fail(f"max_distance.{n}", p)) for name, v in limits.items()}
    region_s = vf.number("region_s", low=0.1, high=10.0)
    return VerifierSection(
        file=vf.text("file"), method=method, region_s=region_s,
        end_s=vf.number("end_s", DEFAULT_VERIFIER_END_S, low=0.01, high=region_s),
        nearest=vf.integer("nearest", low=1, high=MAX_NEAREST),
        ratio=vf.number("ratio", DEFAULT_VERIFIER_RATIO, low=0.0, high=1.0, low_open=True),
        max_distance=max_distance, templates=templates,
    )


def _speech_check(reader: _Reader, files: Mapping[str, str], classes: Sequence[str]) -> SpeechCheckSection | None:
    sc = _section_of_method(reader, "speech_check", SPEECH_CHECK_METHOD)
    if sc is None:
        return None
    name_of_file = sc.text("file")
    if name_of_file != f"{BASE_DIR}/yamnet.tflite" or name_of_file not in files:
        raise sc.fail("file", f"{name_of_file!r}: expected {BASE_DIR}/yamnet.tflite, listed in files with its sha256")
    checked = sc.raw("classes")
    if not isinstance(checked, list) or not checked or len(checked) > len(classes):
        raise sc.fail("classes", "expected a non-empty list of the model's classes")
    for i, name in enumerate(checked):
        if name not in classes or checked.index(name) != i:
            raise sc.fail(f"classes[{i}]", f"{str(name)[:40]!r} is not a class of this model, or listed twice")
    familiar = None
    if sc.has("familiar"):
        scores = sc.raw("familiar")
        if not isinstance(scores, list) or len(scores) != YAMNET_CLASSES:
            raise sc.fail("familiar", f"expected a list of {YAMNET_CLASSES} scores, one per YAMNet class")
        familiar = tuple(_number(x, low=0.0, high=1.0, low_open=False,
                                 fail=lambda p, i=i: sc.fail(f"familiar[{i}]", p)) for i, x in enumerate(scores))
    return SpeechCheckSection(file=name_of_file, method=SPEECH_CHECK_METHOD,
                              threshold=sc.number("threshold", low=0.0, high=1.0),
                              lookback_s=sc.number("lookback_s", low=0.975, high=5.0), classes=tuple(checked),
                              familiar=familiar, margin=sc.number("margin", DEFAULT_SPEECH_CHECK_MARGIN,
                                                                  low=0.0, high=1.0))


def _hashes(reader: _Reader, key: str, *, default: Any = ...) -> dict[str, str]:
    value = reader.mapping(key, default)
    if len(value) > MAX_FILES:
        raise reader.fail(key, f"{len(value)} entries, more than {MAX_FILES}")
    for name, digest in value.items():
        if not isinstance(digest, str) or len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise reader.fail(f"{key}.{name}", f"expected a sha256 in hex, not {_shown(digest)}")
    return dict(value)


def parse_manifest(data: Any, *, where: Path | str = MANIFEST) -> Manifest:
    """A parsed JSON value as a :class:`Manifest`, every key checked (see the module's docstring)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BundleError(f"{where}: not a hark model manifest (no \"format\": \"{FORMAT}\")")
    if _depth(data) > MAX_DEPTH:
        raise BundleError(f"{where}: JSON nested too deep (a manifest is at most {MAX_DEPTH} levels)")
    version = data.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(f"{where}: format version {_shown(version)}, this hark reads version "
                          f"{', '.join(map(str, READABLE_VERSIONS))}; retrain or upgrade hark")
    top = _Reader(where, data)
    top.integer("sample_rate", SAMPLE_RATE, low=SAMPLE_RATE, high=SAMPLE_RATE)
    labels = _labels(top)
    classes = labels[1:]
    frontend = _frontend(top)
    head = _head(top, frontend)
    files = _hashes(top, "files")
    for name in files:
        if not isinstance(name, str) or not name or name.startswith("/") or ".." in Path(name).parts:
            raise top.fail(f"files.{name}", "points outside the bundle")
    if head.file not in files:
        raise top.fail("head.file", f"{head.file!r} is not listed in files with its sha256")
    if frontend.embedding_file is not None and f"{BASE_DIR}/{frontend.embedding_file}" not in files:
        # What was trained is what runs: never another embedding than the one the head learnt on.
        raise top.fail("frontend.embedding", f"{frontend.embedding!r}, but {BASE_DIR}/{frontend.embedding_file} "
                       "is not listed in files with its sha256")
    verifier = _verifier(top, classes, VERIFIER_METHOD)
    if verifier is not None and verifier.file not in files:
        raise top.fail("verifier.file", f"{verifier.file!r} is not listed in files with its sha256")
    return Manifest(
        format_version=version,
        name=top.text("name", "", max_length=255),
        created=top.text("created", ""),
        trainer_version=top.text("trainer_version", ""),
        sample_rate=SAMPLE_RATE,
        base=top.text("base", frontend.name, choices=FRONTENDS),
        base_choice=top.text("base_choice", "", max_length=1000),
        frontend=frontend,
        head=head,
        labels=labels,
        detection=_detection(top, classes),
        classify=_classify(top, classes),
        verifier=verifier,
        speech_check=_speech_check(top, files, classes),
        base_hashes=_hashes(top, "base_hashes", default={}),
        metrics=top.mapping("metrics", {}) if top.has("metrics") else {},
        dataset=top.mapping("dataset", {}) if top.has("dataset") else {},
        files=files,
    )
