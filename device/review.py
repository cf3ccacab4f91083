"""Reviewing captures: what the detector heard, judged by a person and filed into the dataset.

With ``recording.capture: true`` the daemon saves each detection's audio as
``CAPTURES/<label>/<stamp>_<score>.wav`` with a JSON sidecar (:mod:`hark.recorder`). Here a
capture is judged:

* *right*: the audio moves into ``DATASET/<label>/`` (one more clip of that class);
* *wrong*: it moves into ``DATASET/_unknown_/`` (a sound that must not be detected: the next
  ``hark train`` learns from it, openWakeWord's "recycle false activations");
* *delete*: audio and sidecar are removed.

The same functions back ``hark review``, the page's Review tab, the "that was wrong" GPIO
button and the MQTT ``wrong/set`` command, so every way of judging files the same way. A
capture is named by its id ``<label>/<stem>``, checked before any path is built from it. Files
are moved, never overwritten (a name taken in the dataset gets ``-2``, ``-3``…); the sidecar's
facts (score, time, model) are appended to ``CAPTURES/reviewed.jsonl`` with the decision, so
nothing the user judged is forgotten. A filed clip keeps a short record beside it
(``<name>.json``: where in it the detection fired, and the verdict): the trainer uses the part of
a capture around its detection (:mod:`hark.dataset`), since a room's other sounds may be louder
than the one that fired.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from hark.clipfile import free_path, read_sidecar, write_json
from hark.dataset import RECORD_SUFFIX
from hark.errors import HarkError
from hark.labels import UNKNOWN_DIR, is_valid_label

log = logging.getLogger(__name__)

Verdict = Literal["right", "wrong", "delete"]
VERDICTS: tuple[Verdict, ...] = ("right", "wrong", "delete")
REVIEWED_LOG = "reviewed.jsonl"
STEM_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,120}")


@dataclass(frozen=True)
class Capture:
    """One capture on disk: its id, audio file and what its sidecar says (empty when it has none)."""

    id: str
    label: str
    audio: Path
    sidecar: Path
    info: dict[str, Any]

    @property
    def score(self) -> float | None:
        value = self.info.get("score")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def time(self) -> str:
        """When it was heard (ISO 8601 from the sidecar, else the file's modification time)."""
        value = self.info.get("time")
        if isinstance(value, str) and len(value) < 64:
            return value
        return datetime.fromtimestamp(self.audio.stat().st_mtime).astimezone().isoformat(timespec="seconds")

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "score": self.score, "time": self.time,
                "model": self.info.get("model") if isinstance(self.info.get("model"), str) else None,
                "duration_s": self.info.get("duration_s"),
                "detection_offset_s": self.info.get("detection_offset_s")}


def _read_sidecar(path: Path) -> dict[str, Any]:
    """What a capture's sidecar says; nothing when it is missing or unusable (the audio is what counts)."""
    try:
        return read_sidecar(path)
    except (OSError, ValueError):
        return {}


def parse_id(capture_id: object) -> tuple[str, str]:
    """``(label, stem)`` of a capture id ``<label>/<stem>``; :class:`HarkError` for anything else."""
    if not isinstance(capture_id, str) or capture_id.count("/") != 1:
        raise HarkError(f"capture {str(capture_id)[:80]!r}: not a capture id (expected <label>/<name>)")
    label, stem = capture_id.split("/")
    if not is_valid_label(label) or not STEM_PATTERN.fullmatch(stem) or ".." in stem:
        raise HarkError(f"capture {capture_id[:80]!r}: not a capture id (expected <label>/<name>)")
    return label, stem


def find(captures_dir: str | Path, capture_id: object) -> Capture:
    """The capture ``capture_id`` under ``captures_dir``; :class:`HarkError` when it is not there."""
    label, stem = parse_id(capture_id)
    audio = Path(captures_dir) / label / f"{stem}.wav"
    if not audio.is_file() or audio.is_symlink():
        raise HarkError(f"capture {label}/{stem}: not found in {captures_dir}")
    sidecar = audio.with_suffix(".json")
    return Capture(id=f"{label}/{stem}", label=label, audio=audio, sidecar=sidecar, info=_read_sidecar(sidecar))


def list_captures(captures_dir: str | Path, *, limit: int | None = None) -> list[Capture]:
    """Every capture under ``captures_dir``, newest first (by the time-stamped name, then the file's time)."""
    root = Path(captures_dir)
    if not root.is_dir():
        return []
    found: list[tuple[str, float, Path, str]] = []
    for folder in root.iterdir():
        if not folder.is_dir() or not is_valid_label(folder.name):
            continue
        for audio in folder.glob("*.wav"):
            if STEM_PATTERN.fullmatch(audio.stem) and audio.is_file() and not audio.is_symlink():
                with contextlib.suppress(OSError):
                    found.append((audio.stem, audio.stat().st_mtime, audio, folder.name))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    if limit is not None:
        found = found[:limit]
    return [Capture(id=f"{label}/{audio.stem}", label=label, audio=audio, sidecar=audio.with_suffix(".json"),
                    info=_read_sidecar(audio.with_suffix(".json"))) for _, _, audio, label in found]


def latest(captures_dir: str | Path) -> Capture | None:
    """The newest capture (the latest detection's, once its audio is on disk), or None."""
    newest = list_captures(captures_dir, limit=1)
    return newest[0] if newest else None


def _keep_detection(capture: Capture, target: Path, verdict: Verdict) -> None:
    """Beside a filed clip, where its detection fired (``hark.dataset`` reads it); never over another file."""
    offset = capture.info.get("detection_offset_s")
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not 0.0 <= offset <= 3600.0:
        return
    record = target.with_suffix(RECORD_SUFFIX)
    if record.exists():
        log.warning("review: %s is there already; %s is filed without its detection time", record, target.name)
        return
    try:
        write_json(record, {"detection_offset_s": float(offset), "label": capture.label, "verdict": verdict,
                            **{k: capture.info.get(k) for k in ("score", "time", "model")}})
    except OSError as err:
        log.warning("review: could not write %s (%s); the whole clip will be trained on", record, err.strerror)


def judge(captures_dir: str | Path, dataset_dir: str | Path, capture_id: object, verdict: Verdict) -> Path | None:
    """Apply ``verdict`` to one capture; returns where its audio went (None for delete).

    *right* moves it to ``DATASET/<label>/``, *wrong* to ``DATASET/_unknown_/``; nothing in the
    dataset is overwritten. A :class:`HarkError` (unknown id, unwritable dataset) changes nothing.
    """
    if verdict not in VERDICTS:
        raise HarkError(f"review: {str(verdict)[:40]!r} is not one of {', '.join(VERDICTS)}")
    capture = find(captures_dir, capture_id)
    record = {"id": capture.id, "verdict": verdict, **{k: capture.info.get(k) for k in ("score", "time", "model")},
              "reviewed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    target: Path | None = None
    if verdict == "delete":
        try:
            capture.audio.unlink()
        except OSError as err:
            raise HarkError(f"{capture.audio}: cannot delete ({err.strerror})") from None
    else:
        folder = Path(dataset_dir) / (capture.label if verdict == "right" else UNKNOWN_DIR)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            target = free_path(folder, capture.audio.stem, ".wav")
            # shutil.move: a rename on one file system, a copy and delete across (SD card to USB stick).
            shutil.move(str(capture.audio), str(target))
        except OSError as err:
            raise HarkError(f"{folder}: cannot move {capture.id} there ({err.strerror})") from None
        record["moved_to"] = str(target)
        _keep_detection(capture, target, verdict)
    with contextlib.suppress(FileNotFoundError):
        capture.sidecar.unlink()
    try:
        with (Path(captures_dir) / REVIEWED_LOG).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        log.warning("review: could not note %s in %s (%s)", capture.id, REVIEWED_LOG, err.strerror)
    log.info("review: %s %s%s", capture.id, verdict, f" -> {target}" if target else "")
    return target


def mark_latest_wrong(captures_dir: str | Path, dataset_dir: str | Path) -> Path | None:
    """The "that was wrong" button and MQTT command: the newest capture goes to ``_unknown_``.

    Returns where it went, or None (logged) when there is no capture to mark.
    """
    capture = latest(captures_dir)
    if capture is None:
        log.warning("that was wrong: no capture to mark in %s (is recording.capture on?)", captures_dir)
        return None
    return judge(captures_dir, dataset_dir, capture.id, "wrong")


# ---------------------------------------------------------------- hark review

def _interactive(captures_dir: Path, dataset_dir: Path, ask: Callable[[str], str]) -> int:
    captures = list_captures(captures_dir)
    if not captures:
        print(f"no captures in {captures_dir}")
        return 0
    done = 0
    for i, capture in enumerate(captures):
        score = f"{capture.score:.3f}" if capture.score is not None else "?"
        print(f"[{i + 1}/{len(captures)}] {capture.id}  score {score}  {capture.time}  {capture.audio}")
        while True:
            answer = ask("  (r)ight, (w)rong, (d)elete, (s)kip, (q)uit? ").strip().lower()[:1]
            if answer in ("r", "w", "d", "s", "q", ""):
                break
        if answer == "q":
            break
        if answer in ("s", ""):
            continue
        verdict = {"r": "right", "w": "wrong", "d": "delete"}[answer]
        target = judge(captures_dir, dataset_dir, capture.id, verdict)  # type: ignore[arg-type]
        print(f"  {verdict}{f': {target}' if target else ''}")
        done += 1
    print(f"reviewed {done} capture(s)")
    return 0


def main(args: argparse.Namespace, *, ask: Callable[[str], str] = input) -> int:
    """``hark review CAPTURES -d DATASET``: list, judge by id (--right/--wrong/--delete) or ask one by one."""
    captures_dir, dataset_dir = Path(args.captures), Path(args.dataset)
    if not captures_dir.is_dir():
        raise HarkError(f"{captures_dir}: captures folder not found")
    if dataset_dir.exists() and not dataset_dir.is_dir():
        raise HarkError(f"{dataset_dir}: not a folder")
    chosen = [(cid, verdict) for verdict in VERDICTS for cid in (getattr(args, verdict) or [])]
    if args.list:
        for capture in list_captures(captures_dir):
            score = f"{capture.score:.3f}" if capture.score is not None else "    ?"
            print(f"{capture.id}\t{score}\t{capture.time}")
        return 0
    if chosen:
        for cid, _ in chosen:
            find(captures_dir, cid)  # every id checked before anything moves
        for cid, verdict in chosen:
            target = judge(captures_dir, dataset_dir, cid, verdict)  # type: ignore[arg-type]
            print(f"{cid}: {verdict}{f' -> {target}' if target else ''}")
        return 0
    if not sys.stdin.isatty() and ask is input:
        raise HarkError("hark review: give --right/--wrong/--delete IDS or --list when not on a terminal")
    return _interactive(captures_dir, dataset_dir, ask)
