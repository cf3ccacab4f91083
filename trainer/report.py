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

from device.dataset import Dataset  # noqa: E402
from device.frontend import Frontend, LogMelFrontend  # noqa: E402

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
            feats = mel.transform(clip.samples[: 16000 * 6])
            ax.imshow(feats.T, origin="lower", aspect="auto", cmap="magma",
                      extent=(0, len(feats) * 0.01, 0, feats.shape[1]))
            ax.set_title(clip.path.name, fontsize=8)
            ax.set_xlabel("s")
            ax.set_yticks([])
        out.append((label, _png(fig)))
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def write_report(bundle: Path, *, manifest: dict[str, Any], history: dict[str, list[float]], dataset: Dataset,
                 frontend: Frontend) -> Path:
    """Write ``bundle/report.html`` and return its path."""
    metrics = manifest["metrics"]
    labels = manifest["labels"]
    thresholds = manifest["detection"]["thresholds"]
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{_fmt(m['precision'])}</td><td>{_fmt(m['recall'])}</td>"
        f"<td>{m['support']}</td><td>{thresholds.get(label, '-')}</td>"
        f"<td>{manifest['dataset']['clips'].get(label, '-')}</td></tr>"
        for label, m in metrics["per_class"].items()
    )
    spectrograms = "".join(
        f"<h3>{html.escape(label)}</h3><img src='{src}' alt='spectrograms of {html.escape(label)}'>"
        for label, src in spectrogram_pictures(dataset)
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in dataset.warnings) or "<li>none</li>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hark model {html.escape(manifest['name'])}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}
td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>hark model <code>{html.escape(manifest['name'])}</code></h1>
<p>Base <b>{html.escape(manifest['base'])}</b> ({html.escape(manifest.get('base_choice', ''))}); frontend
{html.escape(frontend.name)}, head window {manifest['head']['window']} features, trained
{html.escape(manifest['created'])} by hark {html.escape(manifest['trainer_version'])} in
{metrics['train_seconds']} s.</p>
<h2>Validation</h2>
<p>Accuracy on held-out clips and background pieces, scored as <code>hark classify</code> does:
<b>{_fmt(metrics['validation_accuracy'])}</b> (word/sound clips only: {_fmt(metrics['validation_clip_accuracy'])};
background pieces labelled as a class: {_fmt(metrics['validation_background_false_alarm_rate'])}).</p>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>validation clips</th><th>threshold</th>
<th>clips</th></tr>{rows}</table>
<p><img src="{confusion_picture(metrics['confusion'], labels)}" alt="confusion matrix"></p>
<h2>Training curves</h2>
<p><img src="{curves_picture(history)}" alt="training curves"></p>
<h2>Example spectrograms</h2>{spectrograms}
<h2>Dataset warnings</h2><ul>{warnings}</ul>
</body></html>
"""
    path = Path(bundle) / REPORT
    path.write_text(page, encoding="utf-8")
    return path
