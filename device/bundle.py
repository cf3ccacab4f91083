"""The model bundle: the one thing the trainer hands the device.

A bundle is a folder::

    MODEL/
      manifest.json     format version, frontend, head, labels, thresholds, hashes, metrics
      head.tflite       the trained head
      base/*.tflite     the pretrained base files the frontend needs (none for --base none)
      verifier.npz      templates of the user's clips for the second opinion (:mod:`hark.verifier`), optional

Every file the device reads is listed in the manifest with its sha256, and checked on load:
a missing, truncated or altered file, or a manifest of another format version, is one
:class:`~hark.errors.BundleError` line naming the file and the problem. The device reads
nothing else, so a bundle copied to the Pi with ``scp -r`` runs as it was trained.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hark.basemodels import sha256_of
from hark.errors import BundleError
from hark.labels import BACKGROUND, is_valid_label

FORMAT = "hark-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
HEAD_FILE = "head.tflite"
BASE_DIR = "base"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, parsed manifest and the paths of its files."""

    path: Path
    manifest: dict[str, Any]
    head_path: Path
    base_files: dict[str, Path]
    files: dict[str, Path]  # every verified file, by its path in the bundle

    @property
    def labels(self) -> list[str]:
        """Head output order; index 0 is ``background``."""
        return list(self.manifest["labels"])

    @property
    def classes(self) -> list[str]:
        """The labels that can be detected (all but ``background``)."""
        return [label for label in self.labels if label != BACKGROUND]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)


def _require(manifest: dict[str, Any], key: str, kind: type | tuple[type, ...], where: Path) -> Any:
    if key not in manifest:
        raise BundleError(f"{where}: manifest has no {key!r}")
    if not isinstance(manifest[key], kind):
        raise BundleError(f"{where}: manifest key {key!r} has the wrong type")
    return manifest[key]


def load_bundle(path: str | Path) -> Bundle:
    """Read and verify the bundle at ``path``; :class:`BundleError` on anything amiss."""
    folder = Path(path)
    if not folder.exists():
        raise BundleError(f"{folder}: model bundle not found")
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a model bundle (expected a folder holding {MANIFEST})")
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: missing; is {folder} a hark model bundle?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{manifest_path}: unreadable or truncated ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{manifest_path}: not a hark model manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: format version {version!r}, this hark reads version {FORMAT_VERSION}; "
            "retrain or upgrade hark"
        )
    labels = _require(manifest, "labels", list, manifest_path)
    if not labels or labels[0] != BACKGROUND or not all(is_valid_label(x) for x in labels[1:]):
        raise BundleError(f"{manifest_path}: invalid labels {labels!r}")
    _require(manifest, "frontend", dict, manifest_path)
    head = _require(manifest, "head", dict, manifest_path)
    files = _require(manifest, "files", dict, manifest_path)
    verified: dict[str, Path] = {}
    for relative, expected in files.items():
        file_path = (folder / relative).resolve()
        if folder.resolve() not in file_path.parents:
            raise BundleError(f"{manifest_path}: file entry {relative!r} points outside the bundle")
        if not file_path.is_file():
            raise BundleError(f"{folder / relative}: missing from the bundle")
        if sha256_of(file_path) != expected:
            raise BundleError(f"{folder / relative}: sha256 does not match the manifest (truncated or altered)")
        verified[relative] = file_path
    head_file = head.get("file", HEAD_FILE)
    if head_file not in verified:
        raise BundleError(f"{manifest_path}: the head file {head_file!r} is not listed with a hash")
    base_files = {Path(rel).name: p for rel, p in verified.items() if rel.startswith(BASE_DIR + "/")}
    return Bundle(path=folder, manifest=manifest, head_path=verified[head_file], base_files=base_files,
                  files=verified)


def write_bundle(
    path: str | Path,
    *,
    manifest: dict[str, Any],
    head_tflite: bytes,
    base_files: dict[str, Path],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a bundle folder atomically: built beside ``path``, then renamed over it.

    ``manifest`` gets ``format``, ``format_version`` and ``files`` (every file with its
    sha256) filled in here; the caller supplies the rest. ``extra_files`` are further files
    (name to contents) written beside the head, such as the verifier's templates.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        # mkdtemp makes the folder private (0700); a bundle is read by the daemon's own user.
        staging.chmod(0o755)
        (staging / HEAD_FILE).write_bytes(head_tflite)
        files = {HEAD_FILE: sha256_of(staging / HEAD_FILE)}
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
            files[name] = sha256_of(staging / name)
        if base_files:
            (staging / BASE_DIR).mkdir()
        for name, source in sorted(base_files.items()):
            shutil.copyfile(source, staging / BASE_DIR / name)
            files[f"{BASE_DIR}/{name}"] = sha256_of(staging / BASE_DIR / name)
        full = {"format": FORMAT, "format_version": FORMAT_VERSION, **manifest, "files": files}
        full["head"] = {**full.get("head", {}), "file": HEAD_FILE}
        (staging / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
