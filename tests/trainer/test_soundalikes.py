"""The bank's stretches nearest the user's clips are found where they are, nearest first."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hark.trainer.negatives import BankClip
from hark.trainer.soundalikes import PER_CLIP, closest_stretches
from hark.verifier import unit_rows

DIM = 12
ZERO, ONE = np.zeros(DIM, np.float32), np.ones(DIM, np.float32)


def _word(seed: int, length: int = 8) -> np.ndarray:
    """A smooth random trajectory of feature vectors, as in test_verifier."""
    return np.cumsum(np.random.default_rng(seed).standard_normal((length, DIM)), axis=0).astype(np.float32)


def test_the_stretch_that_holds_the_word_comes_first_and_each_clip_gives_a_few() -> None:
    templates = [unit_rows(_word(1), ZERO, ONE), unit_rows(_word(1)[::-1].copy(), ZERO, ONE)]
    bank = [BankClip(Path(f"clip{i}.flac"), _word(10 + i, 40)) for i in range(5)]
    said = np.concatenate([_word(20, 12), _word(1) * 1.5, _word(21, 12)])  # louder, but the same word
    bank.append(BankClip(Path("says-it.flac"), said))
    found = closest_stretches(templates, bank, mean=ZERO, scale=ONE, per_class=8)
    assert len(found) == 8 and [d for d, _, _ in found] == sorted(d for d, _, _ in found)
    distance, index, end = found[0]
    assert bank[index].path.name == "says-it.flac" and end == 19 and distance < 0.3
    for index in range(len(bank)):
        ends = sorted(e for _, i, e in found if i == index)
        assert len(ends) <= PER_CLIP and all(b - a > 8 for a, b in zip(ends, ends[1:]))
