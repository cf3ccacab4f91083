"""hark.trainer.familiar: the speech check's familiar scores hold what the home's background and the
user's clips sound like to YAMNet, so a word over the home's own noise still fires and a sound the
home never held is turned away."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hark.audiofile import read_audio
from hark.dataset import check_dataset
from hark.speechcheck import CLASSES, SpeechCheck
from hark.trainer.familiar import MAX_BACKGROUND_PIECES, background_pieces, familiar_sounds
from tests.fixtures.synth import SR, link_class, write_dataset


@pytest.fixture(scope="module")
def yamnet(shared_dir: Path) -> Path:
    return shared_dir / "models" / "yamnet.tflite"


def test_background_pieces_are_bounded_and_spread_over_every_recording() -> None:
    short, long = np.zeros(10 * SR, np.float32), np.ones(1000 * SR, np.float32)
    pieces = background_pieces([short, long], 2 * SR)
    assert len(pieces) == MAX_BACKGROUND_PIECES and all(len(p) == 2 * SR for p in pieces)
    assert not pieces[0].any() and pieces[-1].all()  # the first recording's start, the last one's end
    assert len(background_pieces([short], 2 * SR)) == 9  # half overlapping: 0, 1, ..., 8 s
    assert [len(p) for p in background_pieces([short[:SR]], 2 * SR)] == [SR]  # shorter than a piece: whole


def test_the_homes_sounds_are_familiar_and_others_are_not(yamnet: Path, shared_dir: Path) -> None:
    real = shared_dir / "data" / "real"
    bark = read_audio(sorted((real / "esc10" / "dog_bark").glob("*.flac"))[0])
    tap = read_audio(real / "background" / "running_tap.flac")[: 20 * SR]
    words = [read_audio(p) for p in sorted((real / "keywords" / "jarvis").glob("*.flac"))[:3]]
    check = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0)
    rng = np.random.default_rng(0)
    kitchen = familiar_sounds(check, clips=words, noises=[tap], rng=rng)
    assert kitchen.shape == (CLASSES,) and kitchen[0] > 0.9  # the clips are speech
    kennel = familiar_sounds(check, clips=words, noises=[tap, bark], rng=rng)
    barking = bark[: 2 * SR]
    heard = check.scores(barking)
    top = 13 + int(heard[13:].argmax())  # the bark's own class (not a voice's)
    assert kennel[top] > kitchen[top] + 0.2
    in_kitchen = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=kitchen)
    in_kennel = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=kennel)
    assert not in_kitchen.passes(barking) and in_kennel.passes(barking)
    assert in_kitchen.passes(tap[-2 * SR:])  # the tap itself: no speech, but the home holds it


def test_the_trainer_writes_the_familiar_scores_of_clips_and_background_not_unknown(
        tmp_path: Path, yamnet: Path, shared_dir: Path) -> None:
    from hark.trainer.train import speech_check_section

    data = write_dataset(tmp_path / "data", per_class=8, background_s=6.0)
    barks = sorted((shared_dir / "data" / "real" / "esc10" / "dog_bark").glob("*.flac"))[:3]
    link_class(data, "_unknown_", barks)
    dataset = check_dataset(data, warn=lambda m: None)
    section = speech_check_section(dataset, yamnet, ["beep"], lookback_s=2.0, seed=0)
    assert section.classes == ("beep",) and section.familiar is not None and len(section.familiar) == CLASSES
    # The user's _unknown_ barks are what must not fire: they do not make a bark familiar.
    check = SpeechCheck(yamnet, threshold=0.1, lookback_s=2.0, familiar=section.familiar)
    assert not check.passes(read_audio(barks[0])[: 2 * SR])
    # The same dataset gives the same scores: the section depends on the seed only.
    again = speech_check_section(dataset, yamnet, ["beep"], lookback_s=2.0, seed=0)
    assert again.familiar == section.familiar
