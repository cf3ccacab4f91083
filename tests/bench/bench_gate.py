"""What the activity gate costs in detection: the same trained model over the same stream, gated and ungated.

    nice -n 5 .venv/bin/python tests/bench/bench_gate.py [--sides dev,sealed] [--seeds 1]
        [--workdir build/bench/gate] [--hold-s 1.0 ...]

- dev: ``bench_streaming.py``'s model (8 clips a keyword, seed 0) and its 30-minute stream;
- sealed: ``bench_quality.py``'s sealed side: a model trained on 8 clips of each of the three
  keywords from the sealed training pool (seeds 0.. ``--seeds``-1) and the sealed 15-minute stream
  of that keyword set (other speakers, ESC-10 fold 3, the second half of each background recording).

Each model runs through ``Pipeline`` (what ``hark detect`` and the daemon run) with the default
gate (:mod:`hark.activity`), without it, and with each ``--hold-s`` given. Printed per run: recall,
false detections per hour and p95 latency at the model's own thresholds; the recall at 2 false
detections per hour read off each run's head scores (one threshold for all classes, head alone);
the share of windows gated and of base-network runs saved. Targets: recall within 0.5 points of
the ungated pipeline; p95 latency not worse than 0.34 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_quality as Q  # noqa: E402
import bench_streaming as S  # noqa: E402

from hark.audio import FileSource  # noqa: E402
from hark.detector import Detection, Detector, DetectorSettings  # noqa: E402
from hark.model import Model  # noqa: E402
from hark.pipeline import Pipeline  # noqa: E402


def run(model: Model, stream: Path, gate: object) -> dict[str, object]:
    targets, _ = S.read_targets(stream)
    pipeline = Pipeline(model, gate=gate)
    trace: list[tuple[np.ndarray, float]] = []
    update = pipeline.detector.update

    def recording(scores: np.ndarray, time_s: float) -> list[Detection]:
        trace.append((np.array(scores), time_s))
        return update(scores, time_s)

    pipeline.detector.update = recording  # type: ignore[method-assign]
    cpu = time.process_time()
    with FileSource(stream) as source:
        found = pipeline.run(source)
    cpu = time.process_time() - cpu
    hours = pipeline.time_s / 3600
    result = S.score(found, targets, hours)

    def replay_at(threshold: float) -> dict[str, object]:
        detector = Detector(model.labels, DetectorSettings.resolve(model.bundle.classes,
                                                                    model.manifest.detection,
                                                                    thresholds=threshold))
        return S.score([d for s, t in trace for d in detector.update(s, t)], targets, hours)

    at2 = S.lowest_within_rate(list(Q.RATE_GRID), replay_at, 2.0)
    windows = pipeline.head_runs + pipeline.gated_windows
    return {**result, "recall_at_2": None if at2 is None else at2[1]["recall"], "cpu_s": cpu,
            "audio_s": pipeline.time_s, "gated_share": pipeline.gated_windows / max(1, windows),
            "features": pipeline.frontend_features, "targets": len(targets)}


def report(side: str, name: str, stream: Path, model_path: Path, gates: dict[str, object]) -> None:
    model = Model.load(model_path)
    print(f"\n{side}: model {model_path}, stream {stream.name}")
    print(f"{'gate':<16} {'recall':>7} {'false/h':>8} {'p95 s':>6} {'rec@2/h':>8} {'gated':>6} "
          f"{'base runs':>9} {'audio-s/CPU-s':>14}")
    results = {}
    for label, gate in gates.items():
        r = results[label] = run(model, stream, gate)
        at2 = "-" if r["recall_at_2"] is None else f"{r['recall_at_2']:.1%}"
        print(f"{label:<16} {r['recall']:>7.1%} {r['fa_per_hour']:>8.2f} {r['p95_latency']:>6.2f} {at2:>8} "
              f"{r['gated_share']:>6.0%} {r['features']:>9} {r['audio_s'] / r['cpu_s']:>14.0f}", flush=True)
    off, on = results["off"], results["activity"]
    delta = (float(on["recall"]) - float(off["recall"])) * 100  # type: ignore[arg-type]
    print(f"GATE RECALL COST {side.upper()} {name}  {delta:+.2f} points ({on['recall']:.1%} gated, "
          f"{off['recall']:.1%} ungated, {on['targets']} targets; target within 0.5); p95 latency "
          f"{on['p95_latency']:.2f} s gated, {off['p95_latency']:.2f} s ungated (target <= 0.34 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("build/bench/gate"))
    parser.add_argument("--sides", default="dev,sealed", type=lambda s: s.split(","))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=15.0, help="the sealed stream's length")
    parser.add_argument("--hold-s", type=float, nargs="*", default=[], help="also try these gate hold_s")
    args = parser.parse_args()
    gates: dict[str, object] = {"off": False, "activity": None, "silence": "silence"}
    gates.update({f"hold_s {h:g}": {"hold_s": h} for h in args.hold_s})
    if "dev" in args.sides:
        for seed in range(args.seeds):
            model_path, stream = S.prepare(args.workdir / "streaming", minutes=30.0, per_class=8, base="speech",
                                           fresh=False, seed=seed)
            report("dev", f"seed {seed}", stream, model_path, gates)
    if "sealed" in args.sides:
        work = args.workdir / "quality"
        work.mkdir(parents=True, exist_ok=True)
        Q.MODELS_TAG = Q.code_tag()
        sides, bank = Q.splits(work)
        Q.check_disjoint(sides, bank)
        side = sides["sealed"]
        stream = Q.build_stream(work, side, Q.KEYWORDS, len(Q.KEYWORD_SETS) - 1, args.minutes)
        for seed in range(args.seeds):
            clips = Q.draw(side.train_pool, Q.KEYWORDS, 8, seed)
            os.environ["HARK_NEGATIVES"] = str(Q.bank_folder(work, bank))
            model_path, _ = Q.train_model(work, f"sealed_all_seed{seed}", clips, side.background, base="speech",
                                          seed=seed)
            report("sealed", f"seed {seed}", stream, model_path, gates)
    return 0


if __name__ == "__main__":
    sys.exit(main())
