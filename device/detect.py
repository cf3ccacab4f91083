"""``hark detect``: the streaming pipeline over an audio file, as fast as it runs.

The file goes through exactly what the daemon runs on the microphone (:class:`~hark.audio.FileSource`
in 80 ms chunks, then :class:`~hark.pipeline.Pipeline`), so its detections are the ones
``hark run --input`` finds on the same file. With ``--json`` each detection is one line
``{"label": ..., "score": ..., "time_s": ...}`` (stream time when it fired); otherwise a
readable line each.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hark.audio import SAMPLE_RATE, FileSource
from hark.detector import Detection
from hark.model import Model
from hark.pipeline import Pipeline


def detect_file(model: Model, path: str, **pipeline_options: object) -> list[Detection]:
    """Every detection of the model over the file at ``path`` (flushed at the end)."""
    with FileSource(path) as source:
        return Pipeline(model, **pipeline_options).run(source)  # type: ignore[arg-type]


@contextmanager
def progress_bar(total_s: float, *, show: bool) -> Iterator[Any]:
    """A bar on stderr for a person watching a long file, or None: on a pipe or with ``--json``
    tqdm is not even imported (it brings csv, email and zipfile along, 1.6 MB for nothing)."""
    if not show:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=round(total_s, 1), unit="s", desc="detect", leave=False, file=sys.stderr) as bar:
        yield bar


def main(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    count = 0
    pipeline = Pipeline(model, gate=getattr(args, "gate", "activity"))
    with FileSource(args.audio) as source, \
            progress_bar(source.duration_s, show=sys.stderr.isatty() and not args.json) as bar:
        def emit(detections: list[Detection]) -> None:
            nonlocal count
            for d in detections:
                count += 1
                if args.json:
                    print(json.dumps(d.as_dict()), flush=True)
                elif bar is None:
                    print(d.line(), flush=True)
                else:
                    bar.write(d.line(), file=sys.stdout)

        for chunk in source:
            emit(pipeline.process(chunk))
            if bar is not None:
                bar.update(round(pipeline.time_s - bar.n, 2))
        emit(pipeline.flush())
    if not args.json:
        print(f"{count} detection(s) in {source.samples_out / SAMPLE_RATE:.1f} s of audio")
    return 0
