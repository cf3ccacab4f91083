"""``report.html``: what a training run learned, readable without hark.

Written into the bundle folder but not listed in the manifest's ``files``: the device never reads
it and it does not take part in the bundle's hashes, so it can be deleted or kept. One
self-contained file (pictures embedded as base64 PNG), made with matplotlib's Agg backend so it
needs no display.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hark import SAMPLE_RATE  # noqa: E402
from hark.dataset import Dataset  # noqa: E402
from hark.frontend import Frontend, LogMelFrontend  # noqa: E402
from hark.manifest import Manifest  # noqa: E402

REPORT = "report.html"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_picture(confusion: list[list[int]], labels: list[str]) -> str:
    matrix = np.array(confusion)
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(labels), 1.0 + 0.6 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title("validation clips")
    return _png(fig)


def curves_picture(history: dict[str, list[float]]) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for key, ax in (("loss", axes[0]), ("accuracy", axes[1])):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix or "train_").rstrip("_"))
        ax.set_xlabel("epoch")
        ax.set_title(key + " (windows)")
        ax.legend()
    return _png(fig)


def spectrogram_pictures(dataset: Dataset, per_class: int = 2) -> list[tuple[str, str]]:
    """A log-mel picture of the first clips of each class (and of the background)."""
    mel = LogMelFrontend()
    out = []
    groups = [(label, dataset.usable(label)) for label in dataset.labels]
    groups.append(("background", dataset.background))
    for label, clips in groups:
        chosen = clips[:per_class]
        if not chosen:
            continue
        fig, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 2.2), squeeze=False)
        for ax, clip in zip(axes[0], chosen):
            feats = mel.transform(clip.samples[: SAMPLE_RATE * 6])
            ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, len(feats) * 0.01, 0, feats.shape[1]))
            ax.set_title(clip.path.name, fontsize=8)
            ax.set_xlabel("s")
            ax.set_yticks([])
        out.append((label, _png(fig)))
    return out


def calibration_picture(calibration: Any) -> str:
    """Recall against false alarms per hour, one curve per class and smoothing chosen, the pick marked."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, c in calibration.per_class.items():
        points = sorted(c.curve, key=lambda p: p[2])
        line, = ax.plot([max(p[2], 0.05) for p in points], [p[1] for p in points], "-", label=label)
        ax.plot([max(c.false_alarms_per_hour, 0.05)], [c.recall], "o", color=line.get_color())
    ax.axvline(calibration.budget_per_hour, color="grey", linestyle="--", label="budget")
    ax.set_xscale("log")
    ax.set_xlabel("false alarms per hour (calibration stream)")
    ax.set_ylabel("recall")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.set_title("recall vs false alarms (dots: chosen thresholds)")
    return _png(fig)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def write_report(bundle: Path, *, manifest: Manifest, history: dict[str, list[float]], dataset: Dataset,
                 frontend: Frontend, calibration: Any = None) -> Path:
    """Write ``bundle/report.html`` and return its path."""
    metrics = manifest.metrics
    labels = list(manifest.labels)
    clip_thresholds = manifest.clip_thresholds()
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_fmt(m['precision'])}</td><td>{_fmt(m['recall'])}</td>"
        f"<td>{m['support']}</td><td>{clip_thresholds.get(label, '-')}</td>"
        f"<td>{manifest.dataset['clips'].get(label, '-')}</td></tr>"
        for label, m in metrics["per_class"].items()
    )
    spectrograms = "".join(
        f"<h3>{html.escape(label)}</h3><img src='{src}' alt='spectrograms of {html.escape(label)}'>"
        for label, src in spectrogram_pictures(dataset)
    )
    detection = manifest.detection
    calibrated = ""
    if calibration is not None:
        bank = metrics.get("negative_bank")
        bank_text = (f"the negative bank's {bank['held_out_clips']} held-out clips (never trained on; "
                     f"{bank['train_windows']} windows of its other clips were trained on, "
                     f"{bank['hard_windows']} of them again as hard negatives)") if bank else "no negative bank"
        cal_rows = "".join(
            f"<tr><td>{html.escape(label)}</td><td>{detection.thresholds[label]:.3f}</td>"
            f"<td>{detection.smoothing[label]}</td><td>{_fmt(detection.expected_recall[label])}</td>"
            f"<td>{detection.expected_false_alarms_per_hour[label]:.2f}</td></tr>"
            for label in labels[1:]
        )
        calibrated = f"""<h2>Detection on a stream</h2>
<p>Thresholds and smoothing calibrated to at most <b>{detection.false_alarms_per_hour_budget:g}</b> false
alarms per hour on a {(detection.calibration_hours or 0) * 60:.1f}-minute calibration stream (held-back clips in
background, {bank_text}, held-back background), replayed through the device's own detector.</p>
<table><tr><th>class</th><th>detection threshold</th><th>smoothing</th><th>expected recall</th>
<th>false alarms/h</th></tr>{cal_rows}</table>
<p><img src="{calibration_picture(calibration)}" alt="recall versus false alarms per hour"></p>"""
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in dataset.warnings) or "<li>none</li>"
    made = metrics.get("embedding") or {}
    embedding_text = (f" with the <b>int8</b> speech embedding (calibrated on {made.get('representative_windows')} "
                      f"windows of your recordings; cosine to the float embedding "
                      f"{made.get('cosine_to_float_mean', 0):.3f} on average, "
                      f"{made.get('cosine_to_float_min', 0):.3f} at worst)") if made else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hark model {html.escape(manifest.name)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>hark model <code>{html.escape(manifest.name)}</code></h1>
<p>Base <b>{html.escape(manifest.base)}</b> ({html.escape(manifest.base_choice)}); frontend
{html.escape(frontend.name)}{embedding_text}, head window {manifest.head.window} features, trained
{html.escape(manifest.created)} by hark {html.escape(manifest.trainer_version)} in
{metrics['train_seconds']} s.</p>
<h2>Validation</h2>
<p>Accuracy on held-out clips and background pieces, scored as <code>hark classify</code> does:
<b>{_fmt(metrics['validation_accuracy'])}</b> (word/sound clips only: {_fmt(metrics['validation_clip_accuracy'])};
background pieces labelled as a class: {_fmt(metrics['validation_background_false_alarm_rate'])}).</p>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>validation clips</th><th>clip threshold</th>
<th>clips</th></tr>{rows}</table>
<p><img src="{confusion_picture(metrics['confusion'], labels)}" alt="confusion matrix"></p>
{calibrated}
<h2>Training curves</h2>
<p><img src="{curves_picture(history)}" alt="training curves"></p>
<h2>Example spectrograms</h2>{spectrograms}
<h2>Dataset warnings</h2><ul>{warnings}</ul>
</body></html>
"""
    path = Path(bundle) / REPORT
    path.write_text(page, encoding="utf-8")
    return path
