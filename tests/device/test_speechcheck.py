"""hark.speechcheck: YAMNet's "Speech" score tells a spoken word from a bark or a tone, and the
pipeline turns away a keyword model's detection that has no speech before it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.audiofile import find_audio, read_audio
from hark.manifest import SpeechCheckSection
from hark.model import Model
from hark.pipeline import Pipeline
from hark.speechcheck import SpeechCheck
from tests.fixtures.synth import SR, write_stream

EVENTS = [(1.0, "beep"), (4.0, "chirp"), (7.0, "beep")]


@pytest.fixture(scope="module")
def yamnet(shared_dir: Path) -> Path:
    return shared_dir / "models" / "yamnet.tflite"


def test_speech_passes_and_a_tone_or_noise_does_not(yamnet: Path, shared_dir: Path) -> None:
    check = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0)
    assert check._net is None  # nothing loaded before the first candidate
    spoken = read_audio(find_audio([shared_dir / "data" / "real" / "speech"])[0])[: 2 * SR]
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    hiss = (0.05 * rng.standard_normal(2 * SR)).astype(np.float32)
    assert check.score(spoken) > 0.5
    assert check.score(tone) < 0.05 and check.score(hiss) < 0.05
    assert check.passes(spoken) and not check.passes(tone) and not check.passes(hiss)
    assert (check.runs, check.turned_away) == (3, 2)
    assert check.score(spoken[: SR // 2]) >= 0.0  # shorter than a window: padded, not refused


def with_speech_check(bundle: Path, target: Path, yamnet: Path, classes: tuple[str, ...] = ("beep", "chirp")) -> Path:
    """``bundle`` copied with the speech check a keyword model's trainer adds."""
    out = Path(shutil.copytree(bundle, target))
    shutil.copyfile(yamnet, out / "base" / "yamnet.tflite")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["base/yamnet.tflite"] = hashlib.sha256((out / "base" / "yamnet.tflite").read_bytes()).hexdigest()
    manifest["speech_check"] = SpeechCheckSection(file="base/yamnet.tflite", threshold=0.1, lookback_s=2.0,
                                                  classes=tuple(classes)).to_json()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_detection_without_speech_is_turned_away(speech_tone_bundle: Path, yamnet: Path, tmp_path: Path) -> None:
    """The tone model's beeps and chirps are no speech: with the check nothing fires, without it they do."""
    model = Model.load(with_speech_check(speech_tone_bundle, tmp_path / "model", yamnet))
    audio = sf.read(write_stream(tmp_path / "stream.wav", EVENTS, seconds=10.0, seed=3), dtype="float32")[0]
    checked, unchecked = Pipeline(model), Pipeline(model, verify=False)
    assert checked.speech_check is not None and unchecked.speech_check is None
    assert len(unchecked.run(iter([audio]))) == len(EVENTS)
    assert checked.run(iter([audio])) == []
    assert checked.speech_check.runs >= len(EVENTS) and checked.speech_check.turned_away == checked.speech_check.runs


def test_only_the_classes_of_spoken_clips_are_checked(speech_tone_bundle: Path, yamnet: Path, tmp_path: Path) -> None:
    """A model may hold words and other sounds: the check applies to the classes the trainer found spoken."""
    model = Model.load(with_speech_check(speech_tone_bundle, tmp_path / "model", yamnet, classes=("chirp",)))
    audio = sf.read(write_stream(tmp_path / "stream.wav", EVENTS, seconds=10.0, seed=3), dtype="float32")[0]
    found = Pipeline(model).run(iter([audio]))
    assert [d.label for d in found] == ["beep", "beep"]


def test_a_bundle_without_the_check_runs_as_before(speech_tone_bundle: Path) -> None:
    assert Pipeline(Model.load(speech_tone_bundle)).speech_check is None
