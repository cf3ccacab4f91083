"""The trainer's example making (no TensorFlow): locating sounds, labelling windows, padding, auto base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hark.dataset import check_dataset
from hark.frontend import LogMelFrontend
from hark.labels import BACKGROUND
from hark.model import Model
from hark.trainer import features as F
from hark.trainer.train import WARMUP_EPOCHS, build_examples, choose_thresholds, decide, warmup_epochs
from tests.fixtures.synth import SR, beep, link_class, noise, write_dataset


def test_locate_event_finds_the_sound() -> None:
    rng = np.random.default_rng(0)
    x = noise(rng, 3.0)
    x[int(1.2 * SR):int(1.2 * SR) + int(0.4 * SR)] += 0.5 * beep(rng)
    s, e = F.locate_event(x)
    # The Hann envelope makes the edges quiet, so the located span sits inside the tone.
    assert 1.1 * SR <= s <= 1.35 * SR and 1.45 * SR <= e <= 1.65 * SR


def test_positive_windows_end_just_after_the_sound() -> None:
    recipe = F.RECIPES["none"]
    fe = LogMelFrontend()
    rng = np.random.default_rng(1)
    x = noise(rng, 3.0)
    x[SR:SR + int(0.4 * SR)] += 0.5 * beep(rng)
    event = F.locate_event(x)
    feats = fe.transform(x)
    pos, neg = F.label_windows(recipe, fe, feats, event)
    starts, ends = F.window_bounds(fe, len(feats), recipe.window)
    assert pos and neg and not set(pos) & set(neg)
    tol = recipe.end_tolerance_s * SR
    assert all(event[1] <= ends[i] <= event[1] + tol and starts[i] <= event[0] for i in pos)
    assert all(ends[i] <= event[0] or starts[i] >= event[1] for i in neg)


def test_training_padding_matches_the_model(trained_tone_bundle: Path) -> None:
    model = Model.load(trained_tone_bundle)
    clip = np.ones(3000, np.float32)
    needed = F.needed_samples(model.frontend, model.window, model.stride)
    ours, offset = F.pad_clip(clip, needed=needed, pad=model.manifest.head.clip_padding_samples)
    np.testing.assert_array_equal(ours, model.pad_clip(clip))
    assert ours[offset] == 1 and ours[offset - 1] == 0
    # A window ends at every point of a short clip: its first sample included.
    assert len(model.windows_of(model.frontend.transform(ours))) >= 1


def test_unknown_clips_become_background_examples(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=8, background_s=10.0)
    dataset = check_dataset(data, warn=lambda m: None)
    labels = [BACKGROUND, *dataset.labels]
    recipe, fe = F.RECIPES["none"], LogMelFrontend()
    before, _, _ = build_examples(dataset, labels, recipe, fe, np.random.default_rng(0), False)
    (data / "_unknown_").mkdir()
    rng = np.random.default_rng(5)
    for i in range(3):
        sf.write(data / "_unknown_" / f"u{i}.wav", noise(rng, 1.0, level=0.2), SR)
    dataset = check_dataset(data, warn=lambda m: None)
    assert len(dataset.unknown) == 3 and dataset.labels == ["beep", "chirp"]
    after, _, counts = build_examples(dataset, labels, recipe, fe, np.random.default_rng(0), False)
    (_, y0), (_, y1) = before.arrays(), after.arrays()
    assert np.bincount(y1)[0] > np.bincount(y0)[0]
    assert np.bincount(y1)[1:].tolist() == np.bincount(y0)[1:].tolist()
    assert counts == {"beep": 8, "chirp": 8}


def test_thresholds_separate_and_decide_like_classify() -> None:
    labels = ["background", "a", "b"]
    peaks = np.array([[0.9, 0.95, 0.1], [0.9, 0.2, 0.97], [1.0, 0.3, 0.1], [0.8, 0.92, 0.96]])
    truth = np.array([1, 2, 0, 2])
    thresholds = choose_thresholds(peaks, truth, labels)
    assert 0.3 < thresholds["a"] <= 0.95 and 0.1 < thresholds["b"] <= 0.96
    # The highest score wins, background only when it is under its threshold.
    assert decide(peaks, labels, thresholds).tolist() == [1, 2, 0, 2]
    assert decide(peaks, labels, {"a": 0.99, "b": 0.99}).tolist() == [0, 0, 0, 0]


def test_auto_base_prefers_what_separates(tone_dataset: Path, shared_dir: Path) -> None:
    from hark.trainer.autobase import choose_auto

    dataset = check_dataset(tone_dataset, warn=lambda m: None)
    said: list[str] = []
    base, why = choose_auto(dataset, rng=np.random.default_rng(0), say=said.append)
    assert base in ("speech", "sounds") and "leave-one-out" in why and "speech" in why and "sounds" in why
    # One-second clips separated perfectly by both: the tie goes to the word-length default.
    assert base == "speech"


@pytest.mark.parametrize("base", ["speech", "sounds", "none"])
def test_recipes_are_complete(base: str) -> None:
    recipe = F.RECIPES[base]
    assert recipe.base == base and recipe.window >= 1 and recipe.stride >= 1 and recipe.mode in ("event", "texture")


def test_the_warm_up_is_for_few_held_back_clips():
    assert warmup_epochs([1, 1, 2, 2], 3) == WARMUP_EPOCHS  # 8 clips a class: two held back
    assert warmup_epochs([1] * 8 + [2] * 3, 3) == WARMUP_EPOCHS  # the class with fewest decides
    assert warmup_epochs([1] * 8 + [2] * 8, 3) == 0  # 30 clips a class: validation is trusted


def test_the_speech_check_is_for_the_classes_whose_clips_are_speech(tmp_path: Path, shared_dir: Path) -> None:
    """A keyword is checked for speech; a tone (or a clap) trained on the same base is not."""
    from hark.trainer.train import spoken_classes

    data = write_dataset(tmp_path / "data", per_class=8, background_s=10.0)
    words = sorted((shared_dir / "data" / "real" / "keywords" / "jarvis").glob("*.flac"))[:8]
    link_class(data, "jarvis", words)
    dataset = check_dataset(data, warn=lambda m: None)
    assert dataset.labels == ["beep", "chirp", "jarvis"]
    assert spoken_classes(dataset, shared_dir / "models" / "yamnet.tflite") == ["jarvis"]
