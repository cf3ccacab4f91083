"""The pretrained base models: where they come from, their pinned hashes and licences.

Base files are fetched on first use from their official addresses into a cache
(``$HARK_CACHE_DIR``, default ``~/.cache/hark``), checked against the sha256 pinned here,
and written atomically (a temporary name, then a rename), so an interrupted download never
leaves a file that looks whole. Each licence is shown when its file is first downloaded.
Offline, the error says which file to put where.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hark.errors import BaseModelError

OPENWAKEWORD_LICENCE = (
    "openWakeWord's code is Apache-2.0; its released models, this file among them, are CC BY-NC-SA 4.0: "
    "NON-COMMERCIAL use only. For commercial use train with --base sounds or --base none."
)


@dataclass(frozen=True)
class BaseFile:
    """One pretrained file: its name in the cache, official address, pinned hash and licence."""

    name: str
    url: str
    sha256: str
    licence: str


BASE_FILES: dict[str, BaseFile] = {
    f.name: f
    for f in (
        BaseFile(
            name="melspectrogram.tflite",
            url="https://github.com/dscripka/openWakeWord/releases/download/v0.5.1/melspectrogram.tflite",
            sha256="96fa0adccb6e8cf95cb14465409a1a2898ee4a96a85bb9ed3c7eb0e68bf163e8",
            licence=OPENWAKEWORD_LICENCE,
        ),
        BaseFile(
            name="embedding_model.tflite",
            url="https://github.com/dscripka/openWakeWord/releases/download/v0.5.1/embedding_model.tflite",
            sha256="c0aea21eb84a4ce90a08c870da41b7a7173b45269e6a3207c71d67c40f3a59d8",
            licence=OPENWAKEWORD_LICENCE
            + " (Google's original speech embedding, arXiv 2002.01322, is Apache-2.0.)",
        ),
        BaseFile(
            name="yamnet.tflite",
            url="https://tfhub.dev/google/lite-model/yamnet/tflite/1?lite-format=tflite",
            sha256="687f226c147a2caab4706fbbab5e9cecb14b9a368264bf61108078b1fddf68f5",
            licence="YAMNet (Google, trained on AudioSet) is Apache-2.0.",
        ),
    )
}

# Which files each --base needs; "none" has no third-party weights at all.
BASES: dict[str, tuple[str, ...]] = {
    "speech": ("melspectrogram.tflite", "embedding_model.tflite"),
    "sounds": ("yamnet.tflite",),
    "none": (),
}


def cache_dir() -> Path:
    """Where base files live: ``$HARK_CACHE_DIR`` or ``~/.cache/hark``."""
    env = os.environ.get("HARK_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hark"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def download_verified(
    url: str,
    target: Path,
    *,
    sha256: str,
    official_url: str,
    licence: str,
    say: Callable[[str], None] = _say,
    timeout_s: float = 60.0,
) -> Path:
    """Download ``url`` to ``target`` atomically, keeping it only if its sha256 is ``sha256``.

    The licence is shown before the download; every failure is a :class:`BaseModelError`
    that says which file to put where, for machines that cannot reach the address.
    """
    name = target.name
    folder = target.parent
    where = f"put {name} (sha256 {sha256}) at {target}, from {official_url}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BaseModelError(f"cannot create the model cache {folder}: {err.strerror}; {where}") from None
    say(f"hark: downloading {name} from {url}")
    say(f"hark: licence of {name}: {licence}")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    except OSError as err:
        raise BaseModelError(f"cannot write to the model cache {folder}: {err.strerror}; {where}") from None
    tmp = Path(tmp_name)
    # Imported here: only a download needs them, and the daemon, which finds its models in the
    # cache, stays about 2 MB smaller without them.
    import urllib.request

    from tqdm import tqdm

    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout_s) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=total is None or total < 1 << 22,
                      file=sys.stderr) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    digest.update(block)
                    out.write(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise BaseModelError(
                f"{name} downloaded from {url} has sha256 {digest.hexdigest()}, expected {sha256}; "
                f"not used. {where[0].upper()}{where[1:]}"
            )
        os.replace(tmp, target)
    except (OSError, ValueError) as err:  # urllib's URLError is an OSError
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or err
        raise BaseModelError(f"cannot download {name} from {url} ({reason}); {where}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(
    name: str,
    *,
    directory: Path | None = None,
    url: str | None = None,
    say: Callable[[str], None] = _say,
    timeout_s: float = 60.0,
) -> Path:
    """The path of base file ``name`` in the cache, downloading and verifying it if needed.

    A cached file whose hash does not match is not trusted: it is downloaded again.
    ``url`` overrides the official address (tests serve the file over loopback).
    """
    try:
        spec = BASE_FILES[name]
    except KeyError:
        raise BaseModelError(f"unknown base file {name!r}") from None
    target = (directory or cache_dir()) / name
    if target.is_file() and sha256_of(target) == spec.sha256:
        return target
    return download_verified(url or spec.url, target, sha256=spec.sha256, official_url=spec.url,
                             licence=spec.licence, say=say, timeout_s=timeout_s)


def fetch_base(base: str, **kwargs: object) -> dict[str, Path]:
    """All files of ``base`` (``speech``, ``sounds`` or ``none``), fetched and verified."""
    if base not in BASES:
        raise BaseModelError(f"unknown base {base!r}: choose one of {', '.join(BASES)}")
    return {name: fetch(name, **kwargs) for name in BASES[base]}  # type: ignore[arg-type]
