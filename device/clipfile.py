"""Saving recorded clips: unique timestamped names and atomic WAV/JSON writes.

Everything hark records (``hark record``, button and MQTT clips, detection captures) is
written here, so a power cut or a full disk never leaves a half-written clip that the trainer
would later choke on: data goes to a hidden temporary file in the destination folder, is
flushed and fsynced, then ``os.replace`` gives it its final name in one step (rename is atomic
within one file system), and the folder itself is fsynced so the rename survives a power cut.

Names are ``YYYYmmdd-HHMMSS-ffffff`` in local time (sortable, no ``:`` so they also work on
FAT-formatted SD cards and USB sticks); a process never hands out the same stamp twice, even
for clips recorded within the same microsecond.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from hark import SAMPLE_RATE

TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S-%f"
TEMP_PREFIX = ".hark-"
TEMP_SUFFIX = ".tmp"

_stamp_lock = threading.Lock()
_last_stamp: dt.datetime | None = None


def timestamp(now: dt.datetime | None = None) -> str:
    """A file-name stamp for ``now`` (default: the local time), strictly later than any given before.

    Two clips recorded back to back can land in the same microsecond, or the clock can step back
    (NTP on a Pi that booted without network); bumping by a microsecond keeps names unique.
    """
    global _last_stamp
    when = (now or dt.datetime.now()).replace(tzinfo=None)
    with _stamp_lock:
        if _last_stamp is not None and when <= _last_stamp:
            when = _last_stamp + dt.timedelta(microseconds=1)
        _last_stamp = when
    return when.strftime(TIMESTAMP_FORMAT)


def free_path(folder: Path, stem: str, suffix: str) -> Path:
    """``folder/stem+suffix``, or ``stem-2``, ``stem-3``… when another process took that name already."""
    path = folder / f"{stem}{suffix}"
    n = 2
    while path.exists():
        path = folder / f"{stem}-{n}{suffix}"
        n += 1
    return path


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as int16, clipped at full scale instead of wrapping around.

    Scaled by 32768, the inverse of how soundfile and the microphone source turn int16 into float,
    so audio that came in as 16-bit goes back out bit for bit.
    """
    x = np.nan_to_num(np.asarray(samples, dtype=np.float32).ravel()).astype(np.float64)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable; not every file system or OS lets a folder be opened for that.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Any) -> Path:
    """Create ``path`` atomically: ``write(fileobj)`` fills a temporary file beside it, then it is renamed.

    Any ``OSError`` (disk full, read-only folder…) propagates after the temporary file is removed,
    so a failure leaves nothing behind.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
    return path


def write_wav(path: Path, samples: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono ``samples`` (float32 in [-1, 1]) as a 16-bit PCM WAV, atomically."""
    # Encoded in memory first: soundfile writing straight into a file object swallows the OSError of
    # a full disk inside its C callback and fails with an AssertionError, losing the reason.
    buffer = io.BytesIO()
    sf.write(buffer, to_pcm16(samples), sample_rate, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    return write_atomic(path, lambda f: f.write(data))


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as indented JSON, atomically."""
    data = (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()
    return write_atomic(path, lambda f: f.write(data))


MAX_SIDECAR_BYTES = 64 * 1024


def read_sidecar(path: Path) -> dict[str, Any]:
    """The JSON object in a small file written beside a clip (a capture's sidecar or record).

    Its size is checked before it is read: such a file comes from a card someone may have filled
    with anything. :class:`FileNotFoundError` when it is not there, :class:`ValueError` saying
    what is wrong with it otherwise.
    """
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise ValueError(f"larger than {MAX_SIDECAR_BYTES // 1024} KB")
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON ({type(err).__name__})") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


def save_clip(folder: Path, samples: np.ndarray, *, stem: str | None = None,
              sample_rate: int = SAMPLE_RATE) -> Path:
    """Save ``samples`` as ``folder/<stem or timestamp>.wav`` (folder created), atomically; returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return write_wav(free_path(folder, stem or timestamp(), ".wav"), samples, sample_rate=sample_rate)
