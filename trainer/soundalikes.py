"""Sound-alikes: the stretches of the negative bank that sound most like the user's own clips.

A random sample of the bank teaches a head what the keyword is *not* in general; it seldom holds
the few stretches that come closest, and those are what fire in a home ("chapter seven" for
``jarvis``: a random draw of windows rarely holds the one chapter opening that comes that close).
This module searches the whole bank with the
verifier's own measure (:func:`hark.verifier.distance_by_end`: subsequence DTW, cosine distance)
for the ``per_class`` stretches closest to each class's clips, and returns the head windows that
end on them, clean and mixed into the user's background as a stream would hold them, to be taught
as background. It takes about half a second for 300 bank clips, plus the noisy copies' features.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from hark.audiofile import SAMPLE_RATE
from hark.frontend import Frontend
from hark.model import pad_clip
from hark.trainer import features as F
from hark.trainer.negatives import BankClip
from hark.trainer.templates import NEAREST
from hark.verifier import distance_by_end, unit_rows

PER_CLIP = 3  # at most this many stretches from one bank clip, for variety
APART = 8  # features between two stretches of one clip
AFTER = 6  # windows ending this many features after the stretch still hold it
EVENT_S = 0.8  # how much sound before a stretch's end the noisy copy's level is set by


def closest_stretches(templates: Sequence[np.ndarray], bank: Sequence[BankClip], *, mean: np.ndarray,
                      scale: np.ndarray, per_class: int) -> list[tuple[float, int, int]]:
    """The ``per_class`` (distance, bank clip index, end feature) nearest to ``templates`` (unit rows)."""
    found: list[tuple[float, int, int]] = []
    for index, clip in enumerate(bank):
        region = unit_rows(clip.features, mean, scale)
        by_end = np.sort(np.stack([distance_by_end(t, region) for t in templates]), axis=0)[:NEAREST].mean(axis=0)
        taken: list[int] = []
        for end in np.argsort(by_end):
            if len(taken) == PER_CLIP:
                break
            if all(abs(int(end) - t) > APART for t in taken):
                taken.append(int(end))
                found.append((float(by_end[end]), index, int(end)))
    return sorted(found)[:per_class]


def soundalike_windows(fe: Frontend, recipe: F.Recipe, templates_of: Mapping[str, Sequence[np.ndarray]],
                       bank: Sequence[BankClip], *, mean: np.ndarray, scale: np.ndarray,
                       noises: list[np.ndarray], rng: np.random.Generator, per_class: int,
                       copies: int) -> tuple[np.ndarray, list[float]]:
    """Head windows on the bank's stretches closest to each class's clips: clean, and ``copies``
    times over the background; also each stretch's distance (for the report).

    ``templates_of``: per class, the raw templates of its clips (:func:`hark.trainer.templates.clip_templates`).
    """
    windows: list[np.ndarray] = []
    distances: list[float] = []
    noisy: list[tuple[int, int, int, int, int]] = []  # where its windows go, bank clip; start, first, last sample
    lead = F.needed_samples(fe, recipe.window, recipe.stride)
    span = F.span_samples(fe, recipe.window)
    stretches = []
    for raw in templates_of.values():
        templates = [unit_rows(t, mean, scale) for t in raw]  # clip_templates leaves out empty ones
        if templates:
            stretches += closest_stretches(templates, bank, mean=mean, scale=scale, per_class=per_class)
    for distance, index, end in stretches:
        distances.append(distance)
        features = bank[index].features
        last = min(end + AFTER, len(features) - 1)
        ends = range(max(end, recipe.window - 1), last + 1)
        windows.append(F.stack_windows(features, [e - recipe.window + 1 for e in ends], recipe.window))
        first_sample, last_sample = fe.feature_end(end), fe.feature_end(last)
        start = max(0, first_sample - span - lead)
        for _ in range(copies if noises else 0):
            noisy.append((len(windows), index, start, first_sample, last_sample))
            windows.append(windows[-1][:0])  # the copy's windows, once its features are computed

    def noisy_copies() -> Iterator[np.ndarray]:
        # The stretch's audio as the features heard it (after the bank's lead-in), over the background.
        for _, index, start, first_sample, last_sample in noisy:
            padded = pad_clip(bank[index].samples(), needed=lead, pad=0)[0]
            event = (max(0, first_sample - start - int(EVENT_S * SAMPLE_RATE)), first_sample - start)
            yield F.in_noise(rng, padded[start:last_sample + 1], event, noises)

    for (slot, _, start, first_sample, last_sample), features in zip(noisy, fe.transform_many(noisy_copies())):
        noisy_ends = F.feature_ends(fe, features) + start
        keep = [k for k in range(recipe.window - 1, len(features)) if first_sample <= noisy_ends[k] <= last_sample]
        windows[slot] = F.stack_windows(features, [k - recipe.window + 1 for k in keep], recipe.window)
    shape = (0, recipe.window, *fe.feature_shape)
    return (np.concatenate(windows).astype(np.float32) if windows else np.zeros(shape, np.float32)), distances
