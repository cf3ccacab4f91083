"""``hark evaluate``: how well a model labels a dataset folder it was not trained on.

Every clip of ``DATASET/<label>/`` is scored as ``hark classify`` scores it; clips of
``_unknown_/`` and 3-second pieces of ``_background_noise_/`` recordings should come out as
``background``. Prints accuracy, a per-class table and the confusion matrix (or one JSON
document with ``--json``). Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np
from tqdm import tqdm

from hark import SAMPLE_RATE
from hark.dataset import load_dataset
from hark.errors import HarkError
from hark.labels import BACKGROUND
from hark.model import Model
from hark.trainer import metrics as M

BACKGROUND_PIECE_S = 3.0


def evaluate(model: Model, dataset_path: str, *, progress: bool = True) -> dict[str, Any]:
    """Accuracy, per-class precision/recall and the confusion matrix of ``model`` on a dataset folder."""
    warned: list[str] = []
    dataset = load_dataset(dataset_path, warn=warned.append)
    unknown_labels = sorted(set(dataset.labels) - set(model.labels))
    if unknown_labels:
        raise HarkError(f"{dataset_path}: classes {', '.join(unknown_labels)} are not labels of the model "
                        f"({', '.join(model.labels[1:])})")
    items: list[tuple[str, np.ndarray, str]] = []
    for label in dataset.labels:
        items += [(label, c.samples, str(c.path)) for c in dataset.classes[label]]
    items += [(BACKGROUND, c.samples, str(c.path)) for c in dataset.unknown]
    piece = int(BACKGROUND_PIECE_S * SAMPLE_RATE)
    for c in dataset.background:
        for s in range(0, max(1, len(c.samples) - piece + 1), piece):
            items.append((BACKGROUND, c.samples[s:s + piece], f"{c.path}@{s / SAMPLE_RATE:.0f}s"))
    if not items:
        raise HarkError(f"{dataset_path}: no clips to evaluate")
    labels = model.labels
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), np.int64)
    mistakes = []
    for truth, samples, name in tqdm(items, desc="classifying", unit="clip", leave=False, disable=not progress,
                                     file=sys.stderr):
        result = model.classify(samples)
        confusion[index[truth], index[result.label]] += 1
        if result.label != truth:
            mistakes.append({"file": name, "label": truth, "predicted": result.label, "score": round(result.score, 4)})
    return {
        "model": str(model.bundle.path),
        "dataset": str(dataset_path),
        **M.summary(confusion, labels),
        "clips": int(confusion.sum()),
        "labels": labels,
        "mistakes": mistakes,
        "warnings": warned,
    }


def format_result(result: dict[str, Any]) -> str:
    labels = result["labels"]
    width = max(len("class"), *(len(label) for label in labels))

    def pct(x: float | None) -> str:
        return "    -" if x is None else f"{x:6.1%}"

    lines = [f"accuracy {result['accuracy']:.1%} on {result['clips']} clips", "",
             f"{'class':<{width}}  precision  recall  support"]
    for label, m in result["per_class"].items():
        lines.append(f"{label:<{width}}  {pct(m['precision']):>9}  {pct(m['recall']):>6}  {m['support']:>7}")
    lines += ["", "confusion (rows: true, columns: predicted)",
              " " * (width + 2) + "  ".join(f"{label[:8]:>8}" for label in labels)]
    for label, row in zip(labels, result["confusion"]):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{v:>8}" for v in row))
    if result["mistakes"]:
        lines += ["", "mistakes:"] + [f"  {m['file']}: {m['label']} -> {m['predicted']} ({m['score']:.2f})"
                                      for m in result["mistakes"][:20]]
        if len(result["mistakes"]) > 20:
            lines.append(f"  ... and {len(result['mistakes']) - 20} more")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    model = Model.load(args.model)
    result = evaluate(model, args.dataset, progress=not args.json)
    if args.json:
        print(json.dumps(result))
    else:
        for message in result["warnings"]:
            print(f"hark: warning: {message}", file=sys.stderr)
        print(format_result(result))
    return 0
