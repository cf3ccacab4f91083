"""What the home sounds like to YAMNet: the speech check's ``familiar`` scores.

The speech check (:mod:`hark.speechcheck`) turns a keyword's detection away when YAMNet hears no
speech before it, but only if it also hears something the home does not hold. A word said over the
running tap of the user's kitchen is heard as the tap (YAMNet's "Speech" may stay near 0): the tap is
in the user's background recordings, so it is familiar and the word fires. A dog or a clock the user
never recorded is not familiar, and the detection is turned away.

``familiar`` is each YAMNet class's highest score over the dataset's background recordings (cut into
pieces as long as the check's look-back) and over the user's clips, each as recorded and once over a
piece of the background, as a stream holds them. ``_unknown_`` clips are not familiar: they are what
must not fire.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from hark import SAMPLE_RATE
from hark.speechcheck import CLASSES, SpeechCheck
from hark.trainer.features import in_noise, locate_event

# Background pieces heard at most: spread over the recordings, enough to meet each of their sounds,
# few enough that a long recording does not cost minutes (each piece is 4 runs of YAMNet).
MAX_BACKGROUND_PIECES = 120
DETECTED_AFTER = int(0.3 * SAMPLE_RATE)  # a detection comes about this long after the sound's end


def background_pieces(noises: Sequence[np.ndarray], length: int, *,
                      limit: int = MAX_BACKGROUND_PIECES) -> list[np.ndarray]:
    """Pieces of ``length`` samples from the recordings, half overlapping, at most ``limit`` spread evenly."""
    pieces = [noise[start:start + length] for noise in noises
              for start in range(0, max(1, len(noise) - length + 1), max(1, length // 2))]
    if len(pieces) > limit:
        pieces = [pieces[int(i)] for i in np.linspace(0, len(pieces) - 1, limit)]
    return pieces


def familiar_sounds(check: SpeechCheck, *, clips: Sequence[np.ndarray], noises: Sequence[np.ndarray],
                    rng: np.random.Generator, progress: bool = False) -> np.ndarray:
    """Each YAMNet class's highest score over the background and the clips (as recorded and over the
    background), heard as ``check`` hears the audio before a detection."""
    items: list[np.ndarray] = list(background_pieces(noises, check.lookback))
    for samples in clips:
        event = locate_event(samples)
        # Heard up to where a detection would be: a little after the sound's end, not the clip's.
        heard = samples[:min(len(samples), event[1] + DETECTED_AFTER)]
        items.append(heard)
        if noises:
            items.append(in_noise(rng, heard, event, list(noises)))
    familiar = np.zeros(CLASSES, np.float32)
    for samples in tqdm(items, desc="familiar sounds", unit="piece", leave=False, disable=not progress):
        familiar = np.maximum(familiar, check.scores(samples))
    return familiar
