"""The verifier's templates: computed once per clip, shared by the sound-alike search and the verifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hark.dataset import Clip
from hark.frontend import LogMelFrontend
from hark.trainer import templates as T

RATE = 16000


def _clip(name: str, *, tone_s: float, hz: float, seed: int) -> Clip:
    """Quiet noise around a tone burst of ``tone_s``: a clip with one clear sound."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(tone_s * RATE)) / RATE
    burst = 0.5 * np.sin(2 * np.pi * hz * t) * np.hanning(len(t))
    samples = np.concatenate([np.zeros(RATE // 2), burst, np.zeros(RATE // 2)])
    samples = (samples + 0.002 * rng.standard_normal(len(samples))).astype(np.float32)
    return Clip(path=Path(name), label="tone", samples=samples, rate=RATE, channels=1, digest=name,
                clipped=False, silent=False)


def test_a_sound_shorter_than_the_template_start_gives_no_template() -> None:
    fe = LogMelFrontend()
    long_ones = [_clip(f"long{i}.wav", tone_s=0.8, hz=500 + 50 * i, seed=i) for i in range(3)]
    short = _clip("short.wav", tone_s=0.1, hz=600, seed=9)
    found = T.clip_templates(fe, {"tone": [*long_ones, short]}, padding=RATE // 4)
    assert [clip.path.name for clip, _ in found["tone"]] == ["long0.wav", "long1.wav", "long2.wav"]
    for clip, template in found["tone"]:
        assert template.ndim == 2 and template.shape[1] == 40
        # The template spans the sound after START_S, so about 0.5-0.6 s of 10 ms hops.
        assert 40 <= len(template) <= 70
        np.testing.assert_array_equal(template, T.template_of(fe, clip.samples, padding=RATE // 4))


def test_the_verifier_keeps_at_most_max_templates_spread_over_the_clips_and_drops_held_back_ones(
        monkeypatch) -> None:
    fe = LogMelFrontend()
    clips = [_clip(f"c{i}.wav", tone_s=0.8, hz=400 + 40 * i, seed=i) for i in range(5)]
    found = T.clip_templates(fe, {"tone": clips}, padding=RATE // 4)
    monkeypatch.setattr(T, "MAX_TEMPLATES", 3)
    stacked = np.concatenate([t for _, t in found["tone"]])
    built = T.build_verifier(found, fe, mean=stacked.mean(axis=0), scale=stacked.std(axis=0) + 1e-3,
                             region_s=1.5, decision_s=0.15, padding=RATE // 4, noises=[],
                             rng=np.random.default_rng(0), progress=False)
    assert [clip.path.name for clip in built.sources["tone"]] == ["c0.wav", "c2.wav", "c4.wav"]
    assert len(built.spec.templates["tone"]) == 3
    assert 0.0 < built.spec.max_distance["tone"] <= 2.0
    assert built.summary["tone"]["templates"] == 3
    without = built.without([clips[2].samples])
    assert len(without.templates["tone"]) == 2
