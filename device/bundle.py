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
from hark.manifest import (
    BASE_DIR,
    FORMAT,
    FORMAT_VERSION,
    HEAD_FILE,
    MANIFEST,
    Manifest,
    parse_manifest,
    read_manifest,
)

__all__ = ["BASE_DIR", "FORMAT", "FORMAT_VERSION", "HEAD_FILE", "MANIFEST", "Bundle", "load_bundle", "write_bundle"]


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


REPORT_FILE = "report.html"  # written beside the bundle's files by the trainer; not read by the device


def check_output(path: str | Path, *, dataset: str | Path | None = None) -> Path:
    """The folder ``hark train -o PATH`` may write, resolved; :class:`BundleError` otherwise, before any work.

    A bundle replaces its folder as a whole, so the folder must be missing, empty, or a hark bundle
    (its manifest and the files a bundle holds, nothing else): a folder of clips, the dataset, a
    folder inside the dataset or one that holds it, and the current folder or one above it (the
    shell would be left in a deleted folder) are refused, naming what would have been lost.
    """
    shown = Path(path)
    target = shown.expanduser().resolve()
    if target.parent == target or not target.name:
        raise BundleError(f"-o {shown}: a bundle needs a folder of its own, not {target}")
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise BundleError(f"-o {shown}: the bundle replaces the whole folder {target}, and the current folder is "
                          f"{'it' if target == cwd else 'inside it'}; give a new folder (-o mymodel)")
    if dataset is not None:
        data = Path(dataset).expanduser().resolve()
        if target == data or data in target.parents:
            raise BundleError(f"-o {shown}: the bundle may not go {'into' if target != data else 'over'} "
                              f"the dataset {data}; give a folder outside it (-o mymodel)")
        if target in data.parents:
            raise BundleError(f"-o {shown}: {target} holds the dataset {data}, and writing the bundle replaces "
                              "the whole folder; give a new folder (-o mymodel)")
    if not target.exists() and not target.is_symlink():
        return target
    if not target.is_dir() or target.is_symlink():
        raise BundleError(f"-o {shown}: {target} is not a folder; give a new folder (-o mymodel)")
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return target
    listed = _bundle_entries(target)
    if not listed:
        shown_entries = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise BundleError(f"-o {shown}: {target} is not empty and not a hark bundle (it holds {shown_entries}); "
                          "hark train writes only to a new or empty folder or replaces an earlier bundle")
    foreign = [e for e in entries if e not in listed | {MANIFEST, REPORT_FILE}]
    if foreign:
        raise BundleError(f"-o {shown}: the bundle {target} also holds {', '.join(foreign[:3])}, which replacing "
                          "it would delete; move that away first")
    return target


def _bundle_entries(folder: Path) -> set[str]:
    """The top-level names a bundle's manifest lists (empty when ``folder`` holds no hark manifest).

    A bundle of an older format still counts: its manifest only has to be a small JSON object
    with a ``files`` table, so retraining over it works.
    """
    try:
        return {name.split("/")[0] for name in read_manifest(folder / MANIFEST).files}
    except (BundleError, OSError, ValueError):
        pass
    try:
        if (folder / MANIFEST).stat().st_size > 1 << 20:
            return set()
        document = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return set()
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict) or not files:
        return set()
    return {str(name).split("/")[0] for name in files}
