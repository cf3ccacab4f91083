"""``hark listen``: live per-class scores from the microphone, the way Teachable Machine previews a model.

One bar per class, redrawn about ten times a second with plain ANSI escapes: the smoothed
score the detector compares, a ``|`` where the class's threshold is, and the detections as
they happen. When the output is not a terminal (piped to a file), only the detections are
printed, one line each, so ``hark listen ... > log`` stays readable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TextIO

from hark.audio import MicSource
from hark.detector import Detection
from hark.model import Model
from hark.pipeline import Pipeline

BAR_WIDTH = 40
REDRAW_S = 0.1
RECENT = 5


def render_bar(score: float, threshold: float, width: int = BAR_WIDTH) -> str:
    """``score`` as a bar of ``width`` cells with ``|`` at the threshold."""
    filled = max(0, min(width, round(score * width)))
    mark = max(0, min(width - 1, round(threshold * width)))
    cells = ["█" if i < filled else " " for i in range(width)]
    cells[mark] = "|" if cells[mark] == " " else "▌"
    return "".join(cells)


def render(scores: Mapping[str, float], thresholds: Mapping[str, float], recent: Sequence[Detection], *,
           status: str) -> list[str]:
    """The screen: a status line, one bar per class, then the latest detections (newest first)."""
    width = max((len(label) for label in thresholds), default=5)
    lines = [status, ""]
    for label, threshold in thresholds.items():
        score = scores.get(label, 0.0)
        hot = score >= threshold
        bar = render_bar(score, threshold)
        text = f"{label:<{width}} [{bar}] {score:5.2f}"
        lines.append(f"\x1b[1;32m{text}\x1b[0m" if hot else text)
    lines += ["", "detections:"]
    lines += [f"  {d.line()}" for d in reversed(recent)] or ["  (none yet)"]
    return lines


class LiveView:
    """Redraws :func:`render`'s lines in place on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._drawn = 0

    def draw(self, lines: list[str]) -> None:
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        # Clear each line as it is rewritten, and any left over from a longer previous screen.
        body = "".join(f"\x1b[2K{line}\n" for line in lines)
        extra = max(0, self._drawn - len(lines))
        self.out.write(up + body + "\x1b[2K\n" * extra + (f"\x1b[{extra}F" if extra else ""))
        self.out.flush()
        self._drawn = len(lines)


def main(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    pipeline = Pipeline(model)
    thresholds = dict(pipeline.settings.thresholds)
    recent: deque[Detection] = deque(maxlen=RECENT)
    live = sys.stdout.isatty()
    view = LiveView(sys.stdout)
    next_draw = 0.0
    try:
        with MicSource(device=args.device) as mic:
            if not live:
                print(f"listening on {mic.name!r} ({mic.rate} Hz) with {model.bundle.name}", flush=True)
            for chunk in mic:
                for d in pipeline.process(chunk):
                    recent.append(d)
                    if not live:
                        print(d.line(), flush=True)
                if live and time.monotonic() >= next_draw:
                    next_draw = time.monotonic() + REDRAW_S
                    state = "DEVICE LOST, retrying" if mic.lost else "listening"
                    status = (f"hark listen: {model.bundle.name} on {mic.name!r} ({mic.rate} Hz) | {state} | "
                              f"{pipeline.time_s:7.1f} s | overflows {mic.overflows} | Ctrl-C to stop")
                    view.draw(render(pipeline.last_scores, thresholds, list(recent), status=status))
    except KeyboardInterrupt:
        pass
    return 0
