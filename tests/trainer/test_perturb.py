"""Speed, pitch and room perturbations change what they should and keep the rest."""

import numpy as np

from hark.trainer.perturb import add_reverb, change_speed, perturb, room_impulse, shift_pitch

SR = 16000


def tone(freq: float = 440.0, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (np.sin(2 * np.pi * freq * t) * np.hanning(len(t))).astype(np.float32)


def peak_hz(x: np.ndarray) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x))) * SR / len(x))


def test_change_speed_shortens_and_raises_pitch():
    out = change_speed(tone(), 1.1)
    assert abs(len(out) - SR / 1.1) < 20
    assert abs(peak_hz(out) - 484.0) < 3


def test_shift_pitch_keeps_duration():
    out = shift_pitch(tone(), 2.0)
    assert len(out) == SR
    assert abs(peak_hz(out) - 440.0 * 2 ** (2 / 12)) < 3


def test_reverb_keeps_length_and_peak_and_spreads_energy():
    rng = np.random.default_rng(0)
    click = np.zeros(SR, np.float32)
    click[1000] = 0.5
    out = add_reverb(click, rng, rt60_s=(0.5, 0.5))
    assert len(out) == SR
    assert np.isclose(np.abs(out).max(), 0.5, atol=1e-3)
    assert np.sum(np.abs(out[1200:]) > 1e-3) > 1000  # a tail follows the click


def test_room_impulse_decays():
    impulse = room_impulse(np.random.default_rng(1), rt60_s=0.4)
    early, late = np.abs(impulse[800:2400]).mean(), np.abs(impulse[-1600:]).mean()
    assert late < early / 5


def test_perturb_is_reproducible_with_a_seed():
    a = perturb(tone(), np.random.default_rng(7))
    b = perturb(tone(), np.random.default_rng(7))
    assert np.array_equal(a, b)
