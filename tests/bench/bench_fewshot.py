"""Few-shot accuracy and training time of ``hark train`` on real recordings; prints the numbers.

    python tests/bench/bench_fewshot.py [keywords] [esc] [time] [--seeds 5]

- keywords: 8 clips per keyword of ../shared/data/real/keywords (chosen by
  ``make_stream.py split --per-class 8 --seed S``) + ../shared/data/real/background, ``--base speech``;
  accuracy of ``Model.classify`` (what ``hark classify`` does) on every other clip; mean of the seeds.
- esc: 8 clips per class of ../shared/data/real/esc10 from folds 1-2, tested on all of fold 3, ``--base sounds``.
- sounds5: 5 human and household sounds of ESC-10 (baby_cry, person_sneeze, dog_bark, rooster,
  clock_tick), 8 clips per class from folds 1-2, tested on fold 3, ``--base auto``.
- time: wall time of training 3 keywords x 30 clips + background (``--base speech``), with the
  negative bank (its features cached by an earlier training); then of the whole command
  ``hark train DATASET -o MODEL`` with its defaults (``--base auto``), imports included.

The negative bank ($HARK_NEGATIVES, unless already set) is ../shared/data/real/speech (LibriSpeech
speakers): never ESC-10, whose sounds are the classes under test here.

Datasets are folders of symbolic links in a temporary directory; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("HARK_CACHE_DIR", str(SHARED / "models"))
os.environ.setdefault("HARK_NEGATIVES", str(SHARED / "data" / "real" / "speech"))
sys.path.insert(0, str(ROOT))

from hark.audiofile import find_audio, read_audio  # noqa: E402
from hark.model import Model  # noqa: E402
from hark.trainer import metrics as M  # noqa: E402
from hark.trainer.train import TrainOptions, train  # noqa: E402

REAL = SHARED / "data" / "real"


def link_dataset(root: Path, clips: dict[str, list[Path]], background: Path | None = REAL / "background") -> Path:
    for label, paths in clips.items():
        (root / label).mkdir(parents=True)
        for p in paths:
            os.symlink(p, root / label / p.name)
    if background is not None:
        (root / "_background_noise_").mkdir()
        for p in find_audio([background]):
            os.symlink(p, root / "_background_noise_" / p.name)
    return root


def accuracy(model_dir: Path, tests: dict[str, list[Path]]) -> tuple[float, dict[str, float]]:
    """Clip accuracy and each class's recall, from the confusion matrix (hark.trainer.metrics)."""
    model = Model.load(model_dir)
    index = {label: i for i, label in enumerate(model.labels)}
    truth = [index[label] for label, paths in tests.items() for _ in paths]
    predicted = [index[model.classify(read_audio(p)).label] for paths in tests.values() for p in paths]
    confusion = M.confusion_matrix(truth, predicted, len(model.labels))
    recall = M.per_class(confusion, model.labels)
    return float(M.accuracy(confusion) or 0.0), {label: recall[label]["recall"] for label in tests}


def split(folder: Path, per_class: int, seed: int) -> list[Path]:
    out = subprocess.run([sys.executable, str(SHARED / "data" / "make_stream.py"), "split", str(folder),
                          "--per-class", str(per_class), "--seed", str(seed)],
                         check=True, capture_output=True, text=True).stdout
    return [Path(line) for line in out.splitlines() if line.strip()]


def train_and_score(train_clips: dict[str, list[Path]], tests: dict[str, list[Path]], *, base: str,
                    seed: int) -> tuple[dict, float, float, dict[str, float]]:
    """Train on ``train_clips`` (linked, not copied) and score ``tests``: manifest, seconds, accuracy, per class."""
    with tempfile.TemporaryDirectory() as tmp:
        data = link_dataset(Path(tmp) / "data", train_clips)
        started = time.monotonic()
        manifest = train(data, Path(tmp) / "model", TrainOptions(base=base, seed=seed, report=False, progress=False))
        took = time.monotonic() - started
        acc, per = accuracy(Path(tmp) / "model", tests)
    return manifest, took, acc, per


def bench_keywords(seeds: list[int], base: str) -> None:
    folder = REAL / "keywords"
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir())
    results = []
    for seed in seeds:
        chosen = set(split(folder, 8, seed))
        train_clips = {label: sorted(p for p in chosen if p.parent.name == label) for label in labels}
        tests = {label: [p for p in find_audio([folder / label]) if p not in chosen] for label in labels}
        manifest, took, acc, per = train_and_score(train_clips, tests, base=base, seed=seed)
        results.append(acc)
        print(f"keywords seed {seed}: accuracy {acc:.2%} on {sum(map(len, tests.values()))} clips "
              f"({', '.join(f'{k} {v:.0%}' for k, v in per.items())}); base {manifest.base}, "
              f"train {took:.0f} s, thresholds {dict(manifest.detection.thresholds)}", flush=True)
    print(f"KEYWORDS --base {base}, 8 clips/class: mean accuracy {np.mean(results):.2%} over seeds {seeds} "
          f"(min {np.min(results):.2%})", flush=True)


SOUNDS5 = ("baby_cry", "person_sneeze", "dog_bark", "rooster", "clock_tick")


def bench_esc(seeds: list[int], base: str, classes: tuple[str, ...] | None = None) -> None:
    folder = REAL / "esc10"
    labels = sorted(classes or (p.name for p in folder.iterdir() if p.is_dir()))
    results = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        train_clips, tests = {}, {}
        for label in labels:
            files = find_audio([folder / label])
            pool = [p for p in files if p.name[0] in "12"]
            train_clips[label] = [pool[i] for i in sorted(rng.choice(len(pool), 8, replace=False))]
            tests[label] = [p for p in files if p.name[0] == "3"]
        manifest, took, acc, per = train_and_score(train_clips, tests, base=base, seed=seed)
        results.append(acc)
        worst = sorted(per.items(), key=lambda kv: kv[1])[:3]
        print(f"esc10 seed {seed}: accuracy {acc:.2%} on {sum(map(len, tests.values()))} fold-3 clips; "
              f"base {manifest.base}, train {took:.0f} s; weakest {worst}", flush=True)
    name = "SOUNDS5" if classes else "ESC10"
    print(f"{name} --base {base}, {len(labels)} classes, 8 clips/class folds 1-2 -> fold 3: mean accuracy "
          f"{np.mean(results):.2%} over seeds {seeds}", flush=True)


def bench_time(base: str, heads: int = 1) -> None:
    folder = REAL / "keywords"
    labels = sorted(p.name for p in folder.iterdir() if p.is_dir())
    chosen = split(folder, 30, 1)
    clips = {label: sorted(p for p in chosen if p.parent.name == label) for label in labels}
    from hark.basemodels import fetch_base
    from hark.frontend import build_frontend
    from hark.trainer.features import RECIPES
    from hark.trainer.train import bank_clips

    # What is timed is a user's second training: the bank's features are computed once per base.
    recipe = RECIPES[base]
    bank_clips(build_frontend(recipe.frontend_params, fetch_base(base)), recipe, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        data = link_dataset(Path(tmp) / "data", clips)
        started = time.monotonic()
        train(data, Path(tmp) / "model", TrainOptions(base=base, seed=0, progress=False, heads=heads))
        took = time.monotonic() - started
        print(f"TIME --base {base} --heads {heads}: 3 classes x 30 clips + background + negative bank "
              f"(features cached), report included: {took:.1f} s wall (in-process, TensorFlow imported before)",
              flush=True)
        # What a user waits for: the command, its imports and the default --base auto included.
        hark = Path(sys.executable).with_name("hark")
        command = [str(hark) if hark.exists() else "hark", "train", str(data), "-o", str(Path(tmp) / "cli"),
                   "--heads", str(heads)]
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        took = time.monotonic() - started
        base_chosen = json.loads((Path(tmp) / "cli" / "manifest.json").read_text())["base"]
    print(f"TIME `hark train DATASET -o MODEL` (defaults: --base auto chose {base_chosen}): {took:.1f} s wall",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="*", default=["keywords", "esc", "sounds5", "time"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--base-keywords", default="speech")
    parser.add_argument("--base-esc", default="sounds")
    parser.add_argument("--heads", type=int, default=1, help="heads averaged per training, for `time`")
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    if "keywords" in args.what:
        bench_keywords(seeds, args.base_keywords)
    if "esc" in args.what:
        bench_esc(seeds, args.base_esc)
    if "sounds5" in args.what:
        bench_esc(seeds, "auto", SOUNDS5)
    if "time" in args.what:
        bench_time(args.base_keywords, args.heads)


if __name__ == "__main__":
    main()
