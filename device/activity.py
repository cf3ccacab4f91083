"""The activity gate: run the base network and head only when something is happening in the room.

A detector listens all day to a room that is mostly its own steady noise (a fridge, a fan, a
tap, traffic). Running the speech embedding over that noise every 80 ms is most of the device's
CPU, and it cannot find a sound that is not there. The gate judges every 80 ms of audio (a
*hop*) against the room's own noise floor and tells the pipeline which head windows hold
something new; the others are scored as background without running anything.

The floor is tracked per frequency band (16 mel bands, 100 Hz-7 kHz, of a Hann-windowed FFT
of the hop): it falls at once towards a quieter hop and rises at most ``rise_db_per_s``, so a
steady sound becomes the floor within seconds while a word (a second or two) barely moves it.
A hop is *active* when at least ``min_bands`` bands stand ``margin_db`` above their floor, or
during the first ``warmup_s`` of a stream (the floor is not known yet). A hop whose peak is
below ``silence_dbfs`` (-70 dBFS, digital silence, a muted input) is never active. With
``mode="silence"`` only that last rule applies: the gate of hark's earlier versions.

A head window ending at sample ``e`` is run when some active hop lies in its last ``hold_s``
(``[e - hold_s, e)``, at most the window's span; ``None``: the whole span). 1 s by default: a
sound is decided within a few tenths of a second of its end (p95 latency 0.30-0.43 s on the
streaming benchmarks), and a window whose newest second is the room's floor only holds the tail
of something already decided. Measured on the dev and sealed streams, gated and ungated on the same
model: the same recall and no more false detections, a third of the windows skipped on a stream
with a sound every few seconds; 0.6 s fired false detections (the re-arming rule saw the score
fall and rise again), see docs/cost.md. The features a window needs are computed when it is run, from the audio the
pipeline keeps, so the first window that hears an onset is scored as soon as its audio is there:
the gate costs no latency. :func:`open_windows` gives the same decisions for a whole recording,
which is how the trainer's calibration puts the gate in its loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from hark import SAMPLE_RATE
from hark.errors import HarkError

HOP = 1280  # the gate judges 80 ms at a time
BANDS = 16
MODES = ("activity", "silence", "off")


@dataclass(frozen=True)
class GateSettings:
    """How the pipeline tells that nothing is happening (see the module's notes)."""

    mode: Literal["activity", "silence", "off"] = "activity"
    margin_db: float = 9.0
    min_bands: int = 2
    rise_db_per_s: float = 3.0
    warmup_s: float = 1.0
    silence_dbfs: float = -70.0
    hold_s: float | None = 1.0  # None: the head window's whole span

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise HarkError(f"gate mode {self.mode!r}: must be one of {', '.join(MODES)}")
        checks = (("margin_db", self.margin_db, 0.0, 60.0), ("min_bands", self.min_bands, 1, BANDS),
                  ("rise_db_per_s", self.rise_db_per_s, 0.0, 100.0), ("warmup_s", self.warmup_s, 0.0, 60.0),
                  ("silence_dbfs", self.silence_dbfs, -140.0, 0.0))
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise HarkError(f"gate {name}: {value!r} must be a number from {low:g} to {high:g}")
        if self.hold_s is not None and (isinstance(self.hold_s, bool) or not isinstance(self.hold_s, (int, float))
                                        or not 0.08 <= self.hold_s <= 30.0):
            raise HarkError(f"gate hold_s: {self.hold_s!r} must be a number of seconds from 0.08 to 30")

    @classmethod
    def of(cls, value: GateSettings | Mapping[str, Any] | str | bool | None) -> GateSettings:
        """Settings from what a caller gives: settings, a mapping of them, a mode name, or True/False/None."""
        if isinstance(value, GateSettings):
            return value
        if value is None or value is True:
            return cls()
        if value is False:
            return cls(mode="off")
        if isinstance(value, str):
            return cls(mode=value if value != "default" else "activity")  # type: ignore[arg-type]
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(cls.__dataclass_fields__))
            if unknown:
                raise HarkError(f"gate: unknown setting {unknown[0]!r}")
            return cls(**value)
        raise HarkError(f"gate: {value!r} is not a gate setting")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ActivityGate:
    """Judges a stream hop by hop; feed it with :meth:`push`, read :attr:`judged` and :attr:`active`."""

    def __init__(self, settings: GateSettings) -> None:
        from hark.frontend import mel_filterbank

        self.settings = settings
        self._filters = mel_filterbank(n_mels=BANDS, n_fft=HOP, fmin=100.0, fmax=7000.0).T.astype(np.float64)
        self._window = np.hanning(HOP).astype(np.float32)
        self._silence = 10 ** (settings.silence_dbfs / 20)
        self._rise = settings.rise_db_per_s * HOP / SAMPLE_RATE
        self._warmup_hops = int(np.ceil(settings.warmup_s * SAMPLE_RATE / HOP))
        self.reset()

    def reset(self) -> None:
        """A new stream: forget the floor and the audio."""
        self._pending = np.zeros(0, dtype=np.float32)
        self._floor: np.ndarray | None = None
        self.judged = 0  # stream samples judged so far (a multiple of HOP)
        self.hops = 0
        self.active_hops = 0
        self.active: deque[int] = deque()  # start samples of recent active hops (trimmed by the caller's forget)

    def push(self, samples: np.ndarray) -> int | None:
        """Judge the hops these samples complete; the start sample of the first active one among them, or None."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32).reshape(-1)])
        first = None
        while len(self._pending) >= HOP:
            hop, self._pending = self._pending[:HOP], self._pending[HOP:]
            if self._judge(hop):
                self.active.append(self.judged)
                self.active_hops += 1
                if first is None:
                    first = self.judged
            self.judged += HOP
            self.hops += 1
        return first

    def forget(self, before: int) -> None:
        """Drop active hops that end at or before sample ``before`` (no window still to judge can reach them)."""
        while self.active and self.active[0] + HOP <= before:
            self.active.popleft()

    def any_active(self, start: int, end: int) -> bool:
        """Whether an active hop overlaps samples ``[start, end)``."""
        return any(h < end and h + HOP > start for h in self.active)

    def _judge(self, hop: np.ndarray) -> bool:
        if self.settings.mode == "off":
            return True
        if float(np.abs(hop).max()) < self._silence:
            return False  # digital silence: never active, and no floor to learn from it
        if self.settings.mode == "silence":
            return True
        power = np.abs(np.fft.rfft(hop * self._window)) ** 2
        # einsum rather than a matrix product: a product this small goes to OpenBLAS, whose worker
        # threads spin on a busy core and cost ten times the arithmetic (measured).
        level = 10.0 * np.log10(np.einsum("f,fb->b", power, self._filters) + 1e-12)
        if self._floor is None:
            self._floor = level.copy()
        above = int(np.count_nonzero(level - self._floor > self.settings.margin_db))
        # Down at once (half-way each hop), up slowly: the floor is the room, not what happens in it.
        step = level - self._floor
        self._floor += np.where(step < 0, 0.5 * step, np.minimum(step, self._rise))
        return self.hops < self._warmup_hops or above >= self.settings.min_bands


def active_hops(samples: np.ndarray, settings: GateSettings) -> np.ndarray:
    """Start samples of the active hops of a whole recording, judged by a fresh gate (a last partial
    hop judged as if padded with silence, as :meth:`hark.pipeline.Pipeline.flush` does)."""
    x = np.asarray(samples, np.float32).reshape(-1)
    if settings.mode == "off":
        return np.arange(0, len(x), HOP, dtype=np.int64)
    gate = ActivityGate(settings)
    gate.push(np.concatenate([x, np.zeros((-len(x)) % HOP, np.float32)]))
    return np.array(gate.active, dtype=np.int64)


def open_windows(active: np.ndarray, window_ends: np.ndarray, *, hold_samples: int) -> np.ndarray:
    """Which head windows (ending at these samples) the pipeline runs, given the active hops' starts.

    A window is run when an active hop ``[h, h + HOP)`` overlaps its last ``hold_samples``; the
    pipeline's streaming decisions are the same (a test holds them to it), and the trainer's
    calibration scores the windows it would skip as background, as the device does.
    """
    ends = np.asarray(window_ends, dtype=np.int64)
    starts = np.asarray(active, dtype=np.int64)
    if not len(starts):
        return np.zeros(len(ends), dtype=bool)
    first_after = np.searchsorted(starts, ends, side="left")  # hops starting at or after the end do not count
    last = starts[np.maximum(first_after - 1, 0)]
    return (first_after > 0) & (last + HOP > ends - hold_samples)


def hold_samples(settings: GateSettings, span_samples: int) -> int:
    """How far back from a window's end an active hop keeps it open: ``hold_s``, at most the window's span."""
    return span_samples if settings.hold_s is None else min(span_samples, round(settings.hold_s * SAMPLE_RATE))
