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
from dataclasses import dataclass, replace
from pathlib import Path

from hark.basemodels import sha256_of
from hark.errors import BundleError
from hark.manifest import FORMAT, FORMAT_VERSION, HEAD_FILE, MANIFEST, Manifest, parse_manifest, read_manifest

__all__ = ["BASE_DIR", "FORMAT", "FORMAT_VERSION", "HEAD_FILE", "MANIFEST", "Bundle", "load_bundle", "write_bundle"]

BASE_DIR = "base"


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, validated manifest and the paths of its files."""

    path: Path
    manifest: Manifest
    head_path: Path
    base_files: dict[str, Path]
    files: dict[str, Path]  # every verified file, by its path in the bundle

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def labels(self) -> list[str]:
        """Head output order; index 0 is ``background``."""
        return list(self.manifest.labels)

    @property
    def classes(self) -> list[str]:
        """The labels that can be detected (all but ``background``)."""
        return list(self.manifest.classes)

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name


def load_bundle(path: str | Path) -> Bundle:
    """Read, validate and verify the bundle at ``path``; :class:`BundleError` on anything amiss."""
    folder = Path(path)
    if not folder.exists():
        raise BundleError(f"{folder}: model bundle not found")
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a model bundle (expected a folder holding {MANIFEST})")
    manifest_path = folder / MANIFEST
    manifest = read_manifest(manifest_path)
    verified: dict[str, Path] = {}
    for relative, expected in manifest.files.items():
        file_path = (folder / relative).resolve()
        if folder.resolve() not in file_path.parents:
            raise BundleError(f"{manifest_path}: files.{relative}: points outside the bundle")
        if not file_path.is_file():
            raise BundleError(f"{folder / relative}: missing from the bundle")
        if sha256_of(file_path) != expected:
            raise BundleError(f"{folder / relative}: sha256 does not match the manifest (truncated or altered)")
        verified[relative] = file_path
    base_files = {Path(rel).name: p for rel, p in verified.items() if rel.startswith(BASE_DIR + "/")}
    return Bundle(path=folder, manifest=manifest, head_path=verified[manifest.head.file], base_files=base_files,
                  files=verified)


def write_bundle(
    path: str | Path,
    *,
    manifest: Manifest,
    head_tflite: bytes,
    base_files: dict[str, Path],
    extra_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a bundle folder atomically: built beside ``path``, then renamed over it.

    ``manifest`` gets its ``files`` (every file with its sha256) and the head's file name filled
    in here; the caller supplies the rest. ``extra_files`` are further files
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
        full = replace(manifest, head=replace(manifest.head, file=HEAD_FILE), files=files)
        parse_manifest(full.to_json(), where=staging / MANIFEST)  # never write what the device would refuse
        (staging / MANIFEST).write_text(json.dumps(full.to_json(), indent=2) + "\n", encoding="utf-8")
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
