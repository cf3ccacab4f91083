"""``hark classify``: label audio files with a model bundle.

Each clip is scored the way the trainer validated it (:meth:`hark.model.Model.classify`): the
class scoring highest over the clip's windows, ``background`` when none reaches its threshold.
A file that cannot be read is reported on stderr and skipped; the others are still labelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hark.audiofile import find_audio, read_audio
from hark.errors import AudioError, HarkError
from hark.model import ClipResult, Model


def classify_paths(model: Model, paths: list[str]) -> list[tuple[Path, ClipResult | None, str | None]]:
    """``(path, result, error)`` per audio file under ``paths``; ``result`` is None when unreadable."""
    out: list[tuple[Path, ClipResult | None, str | None]] = []
    for path in find_audio(paths):
        try:
            samples = read_audio(path)
        except AudioError as err:
            out.append((path, None, str(err)))
            continue
        out.append((path, model.classify(samples), None))
    return out


def main(args: argparse.Namespace) -> int:
    """Print one line per clip (``--json``: one JSON object per line); exit 1 if any file was unreadable."""
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise HarkError(f"{missing[0]}: no such file or folder")
    model = Model.load(args.model)
    results = classify_paths(model, list(args.paths))
    if not results:
        raise HarkError(f"no audio files (.wav, .flac, .ogg) under {', '.join(args.paths)}")
    failed = 0
    for path, result, error in results:
        if result is None:
            failed += 1
            print(f"hark: warning: {error}; skipped", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"file": str(path), "label": result.label, "score": round(result.score, 4),
                              "scores": {k: round(v, 4) for k, v in result.scores.items()}}), flush=True)
        else:
            print(f"{path}\t{result.label}\t{result.score:.3f}", flush=True)
    return 1 if failed else 0
