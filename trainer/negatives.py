"""The generic negative bank: many people saying other things (and the sounds a user adds).

A few clips of a word and some background do not tell a head what the word is *not*; without
negatives it fires on "smart mirror" for "marvin". Every training adds windows from this bank
as background (unless ``--no-negatives``). The bank's audio comes from:

- ``$HARK_NEGATIVES`` (folders separated by ``os.pathsep``), searched recursively: recordings
  that must not fire, such as the radio, the TV, the household (benchmarks point it at recordings
  kept out of the repository);
- otherwise the official sources below, downloaded once with pinned hashes and unpacked into
  the cache (``$HARK_CACHE_DIR/negatives``).

Features are computed once per frontend and cached (``$HARK_FEATURE_CACHE``, default
``~/.cache/hark/features``), keyed by the frontend's parameters and the list of files, so the
next training pays nothing for them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from hark.audiofile import SAMPLE_RATE, find_audio, read_audio
from hark.basemodels import cache_dir, download_verified, sha256_of
from hark.errors import AudioError, HarkError
from hark.frontend import Frontend
from hark.model import pad_clip

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NegativeSource:
    """A public recording collection the bank is built from, with its pinned archive hash."""

    name: str
    url: str
    sha256: str
    licence: str
    suffixes: tuple[str, ...]
    max_files: int


GENERIC_SOURCES: tuple[NegativeSource, ...] = (
    NegativeSource(
        name="librispeech-dev-clean",
        url="https://www.openslr.org/resources/12/dev-clean.tar.gz",
        sha256="76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
        licence="LibriSpeech (V. Panayotov et al., from LibriVox) is CC BY 4.0.",
        suffixes=(".flac",),
        max_files=1200,
    ),
)

MAX_CLIP_S = 10.0
# Bank features of an int8 embedding are kept for the few newest ones only: each dataset makes its
# own embedding, and every training would otherwise leave tens of MB behind.
KEEP_QUANTIZED_CACHES = 4


@dataclass(frozen=True)
class BankClip:
    """One clip of the bank: where it is, and its features ``[n, *feature_shape]``."""

    path: Path
    features: np.ndarray

    def samples(self) -> np.ndarray:
        """The clip's audio as the features saw it (without the lead-in)."""
        return read_clip(self.path)


def read_clip(path: Path) -> np.ndarray:
    """A bank recording's first ``MAX_CLIP_S`` seconds: the bank does not need more of one voice."""
    # A second more than is kept, so the resampler's edge falls outside what is kept.
    return read_audio(path, first_seconds=MAX_CLIP_S + 1.0)[: int(MAX_CLIP_S * SAMPLE_RATE)]


def feature_cache_dir() -> Path:
    env = os.environ.get("HARK_FEATURE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hark" / "features"


def spread(items: Sequence[T], count: int) -> list[T]:
    """``count`` items taken evenly across a sorted list (so across speakers and classes)."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


def ensure_source(source: NegativeSource, *, root: Path | None = None) -> Path:
    """The unpacked folder of ``source``, downloading and unpacking it on first use."""
    folder = (root or cache_dir() / "negatives") / source.name
    done = folder / ".complete"
    if done.is_file():
        return folder
    archive = download_verified(source.url, folder.parent / f"{source.name}.tar.gz", sha256=source.sha256,
                                official_url=source.url, licence=source.licence)
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(source.suffixes)),
                         key=lambda m: m.name)
        for member in tqdm(spread(members, source.max_files), desc=f"unpacking {source.name}", unit="file"):
            # Flattened, sanitised names: nothing from the archive decides where a file is written.
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in member.name.replace("/", "__"))
            extracted = tar.extractfile(member)
            if extracted is not None:
                (folder / safe.lstrip(".")).write_bytes(extracted.read())
    archive.unlink(missing_ok=True)
    done.write_text(source.url + "\n")
    return folder


def negative_dirs() -> list[Path]:
    """Where the bank's audio is: ``$HARK_NEGATIVES`` or the unpacked official sources."""
    env = os.environ.get("HARK_NEGATIVES")
    if env:
        dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
        missing = [str(d) for d in dirs if not d.is_dir()]
        if missing:
            raise HarkError(f"HARK_NEGATIVES: no such folder {', '.join(missing)}")
        return dirs
    return [ensure_source(source) for source in GENERIC_SOURCES]


def bank_files(dirs: Iterable[Path], *, max_files: int) -> list[Path]:
    """The bank's clips: at most ``max_files``, spread evenly over the sorted list."""
    return spread(find_audio(sorted(dirs)), max_files)


def _cache_key(frontend: Frontend, files: list[Path], lead_samples: int) -> str:
    listing = [(str(p.resolve()), p.stat().st_size) for p in files]
    params = frontend.params()
    if params.get("embedding", "float") == "float":
        params.pop("embedding", None)  # the float embedding's features, cached before the key existed
    else:
        # An int8 embedding is made for each dataset: its features are its own.
        params["embedding_sha256"] = sha256_of(frontend.embedding_model)  # type: ignore[attr-defined]
    blob = json.dumps({"frontend": params, "files": listing, "max_clip_s": MAX_CLIP_S,
                       "lead_samples": lead_samples}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def bank_features(frontend: Frontend, *, dirs: Iterable[Path] | None = None, max_files: int = 1200,
                  lead_samples: int = 0, progress: bool = True) -> list[BankClip]:
    """The bank's clips with their features, computed once and cached.

    Every window of every sequence is a negative. ``lead_samples`` of silence go before each clip,
    so that a clip's first sound also lands at the end of a window, where the head looks for its
    sound: without them a word that opens a recording ("Chapter seven...") is never taught as
    "not the keyword", though in a stream it follows other sound like any word. Unreadable files
    are skipped with a warning.
    """
    files = bank_files(negative_dirs() if dirs is None else dirs, max_files=max_files)
    if not files:
        raise HarkError("the negative bank is empty: no audio files under " + ", ".join(map(str, dirs or [])))
    kind = frontend.params().get("embedding", "float")
    prefix = f"negatives-{frontend.name}-" + (f"{kind}-" if kind != "float" else "")
    cache = feature_cache_dir() / f"{prefix}{_cache_key(frontend, files, lead_samples)}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                paths = [Path(p) for p in stored["paths"]]
                return [BankClip(path, stored[str(i)]) for i, path in enumerate(paths)]
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s: unreadable feature cache (%s); computing again", cache, err)
    clips: list[BankClip] = []
    for path in tqdm(files, desc=f"negative bank ({frontend.name})", unit="clip", disable=not progress):
        try:
            samples = read_clip(path)
        except AudioError as err:
            log.warning("skipped: %s", err)
            continue
        features = frontend.transform(pad_clip(samples, needed=lead_samples, pad=0)[0])
        if len(features):
            clips.append(BankClip(path, features.astype(np.float32)))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".negatives-", suffix=".npz", dir=cache.parent)
        with os.fdopen(fd, "wb") as out:
            np.savez(out, paths=np.array([str(c.path) for c in clips]),
                     **{str(i): c.features for i, c in enumerate(clips)})
        os.replace(tmp, cache)
        if kind != "float":
            _forget_older(cache.parent, prefix, keep=KEEP_QUANTIZED_CACHES)
    except OSError as err:
        log.warning("cannot cache negative-bank features in %s (%s); they will be computed again", cache.parent, err)
    return clips


def _forget_older(folder: Path, prefix: str, *, keep: int) -> None:
    """Delete all but the ``keep`` newest cached feature files starting with ``prefix``."""
    kept = sorted(folder.glob(f"{prefix}*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in kept[keep:]:
        old.unlink(missing_ok=True)


def bank_windows(sequences: list[np.ndarray], *, window: int, stride: int, limit: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Up to ``limit`` head windows drawn evenly at random from the bank's sequences."""
    index = [(i, s) for i, seq in enumerate(sequences) for s in range(0, len(seq) - window + 1, stride)]
    if not index:
        shape = sequences[0].shape[1:] if sequences else ()
        return np.zeros((0, window, *shape), np.float32)
    chosen = rng.choice(len(index), size=min(limit, len(index)), replace=False)
    return np.stack([sequences[index[c][0]][index[c][1]:index[c][1] + window] for c in sorted(chosen)])
