"""hark.speechcheck: YAMNet's "Speech" score tells a spoken word from a bark or a tone, and the
pipeline turns away a keyword model's detection that has no speech before it, unless what was heard
instead is one of the home's familiar sounds."""

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
from hark.speechcheck import CLASSES, MAX_GAIN, SPEECH, SpeechCheck, leveled
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


def test_a_word_costs_one_run_of_yamnet_and_a_sound_without_speech_four(yamnet: Path, shared_dir: Path) -> None:
    """The check stops at the first window that holds speech, the latest first: a real word, which
    ends just before its detection, is heard once; a tone is heard over the whole look-back."""
    spoken = read_audio(find_audio([shared_dir / "data" / "real" / "speech"])[0])[: 2 * SR]
    tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(2 * SR) / SR)).astype(np.float32)
    check = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=np.ones(CLASSES))
    assert check.passes(spoken) and check.windows == 1
    assert check.passes(tone) and check.windows == 1 + 4  # familiar everywhere: passes, after all four
    assert check.scores(spoken)[SPEECH] > 0.5 and check.windows == 1 + 4 + 4  # scores hears them all


def test_a_word_said_softly_is_still_speech(yamnet: Path, shared_dir: Path) -> None:
    """YAMNet takes quiet audio for "Silence"; the check hears it at one level."""
    check = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0)
    spoken = read_audio(find_audio([shared_dir / "data" / "real" / "speech"])[0])[: 2 * SR]
    soft = spoken * np.float32(0.003 / np.abs(spoken).max())  # peaks at -50 dBFS: "Silence" to YAMNet as it is
    assert check.score(soft) > 0.9 and check.passes(soft)
    net = check._load()  # heard as it is, the same audio is no speech
    net.set_tensor(check._in, soft[-15600:])
    net.invoke()
    assert net.get_tensor(check._out).reshape(-1, CLASSES)[:, SPEECH].max() < 0.1
    assert np.abs(leveled(spoken)).max() == pytest.approx(0.5) and np.abs(leveled(soft)).max() == pytest.approx(0.3)
    # Near-silence is not raised into a sound: the gain has a ceiling, and digital zeros stay zeros.
    assert np.abs(leveled(np.full(100, 1e-6, np.float32))).max() == pytest.approx(1e-6 * MAX_GAIN)
    assert not leveled(np.zeros(100, np.float32)).any()


def test_a_sound_without_speech_fires_only_if_the_home_holds_it(yamnet: Path) -> None:
    """A word over the home's running tap is heard as the tap: familiar, so it passes. A sound the
    familiar scores do not hold by more than the margin is turned away."""
    t = np.arange(2 * SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    heard = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0).scores(tone)
    assert heard.shape == (CLASSES,) and heard[SPEECH] < 0.1
    home = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=heard, margin=0.2)
    quiet_home = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=np.zeros(CLASSES), margin=0.2)
    assert home.passes(tone) and home.turned_away == 0
    assert not quiet_home.passes(tone) and quiet_home.turned_away == 1
    index, excess = quiet_home.unfamiliar(heard)
    assert index >= 13 and excess == pytest.approx(heard[13:].max()) and excess > 0.2
    # Within the margin of what the home held: still familiar.
    near = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=np.clip(heard - 0.15, 0, 1), margin=0.2)
    assert near.passes(tone)
    with pytest.raises(ValueError, match="521 scores"):
        SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=np.zeros(10))


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
