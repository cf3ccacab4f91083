"""What the home sounds like to YAMNet: the speech check's ``familiar`` scores.

The speech check (:mod:`hark.speechcheck`) turns a keyword's detection away when YAMNet hears no
speech before it, but only if it also hears something the home does not hold. A word said over the
running tap of the user's kitchen is heard as the tap (YAMNet's "Speech" may stay near 0): the tap is
in the user's background recordings, so it is familiar and the word fires. A dog or a clock the user
never recorded is not familiar, and the detection is turned away.

``familiar`` is each YAMNet class's highest score over the dataset's background recordings (cut into
pieces as long as the check's look-back) and over the user's clips, each as recorded and over pieces
of several recordings, the room as loud against the word as a stream holds it. ``_unknown_`` clips
are not familiar: they are what must not fire.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from hark import SAMPLE_RATE
from hark.speechcheck import CLASSES, SpeechCheck
from hark.trainer.features import STREAM_SNR_DB, locate_event, mix_at_snr, noise_piece

# Background pieces heard at most: spread over the recordings, enough to meet each of their sounds,
# few enough that a long recording does not cost minutes (each piece is 4 runs of YAMNet).
MAX_BACKGROUND_PIECES = 120
# Clips heard a class, spread over its clips: 12 say what a class sounds like as well as 30 do.
MAX_CLIPS_HEARD = 12
DETECTED_AFTER = int(0.3 * SAMPLE_RATE)  # a detection comes about this long after the sound's end
NOISY_COPIES = 3  # each clip over this many background recordings
FAMILIAR_SNR_DB = STREAM_SNR_DB[0]  # the word as quiet against the room as a stream holds it


def spread(items: Sequence[np.ndarray], limit: int) -> list[np.ndarray]:
    """At most ``limit`` of ``items``, evenly spread over them (all of them if there are no more)."""
    if len(items) <= limit:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, limit)]


def heard(samples: np.ndarray) -> np.ndarray:
    """A clip as the check hears it before a detection: up to a little after its sound's end."""
    return samples[:min(len(samples), locate_event(samples)[1] + DETECTED_AFTER)]


def background_pieces(noises: Sequence[np.ndarray], length: int, *,
                      limit: int = MAX_BACKGROUND_PIECES) -> list[np.ndarray]:
    """Pieces of ``length`` samples from the recordings, half overlapping, at most ``limit`` spread evenly."""
    return spread([noise[start:start + length] for noise in noises
                   for start in range(0, max(1, len(noise) - length + 1), max(1, length // 2))], limit)


def familiar_sounds(check: SpeechCheck, *, clips: Sequence[np.ndarray], noises: Sequence[np.ndarray],
                    rng: np.random.Generator, progress: bool = False) -> np.ndarray:
    """Each YAMNet class's highest score over the background and ``clips`` (as recorded and over the
    background), heard as ``check`` hears the audio before a detection. The caller spreads the clips
    (:func:`spread`): every piece costs 4 runs of YAMNet."""
    items: list[np.ndarray] = list(background_pieces(noises, check.lookback))
    for i, samples in enumerate(clips):
        clip = heard(samples)
        items.append(clip)
        event = locate_event(clip)
        # Over several of the recordings in turn, each as loud against the word as a stream holds it:
        # familiar scores are a highest value, and a few random mixtures fell short of what the home
        # sounds like under a word.
        for k in range(min(NOISY_COPIES, len(noises))):
            noise = noise_piece(rng, [noises[(i + k) % len(noises)]], len(clip))
            items.append(mix_at_snr(clip, noise, FAMILIAR_SNR_DB, event))
    familiar = np.zeros(CLASSES, np.float32)
    for samples in tqdm(items, desc="familiar sounds", unit="piece", leave=False, disable=not progress):
        familiar = np.maximum(familiar, check.scores(samples))
    return familiar
