"""Unpacking an uploaded model bundle (zip or tar) without trusting a byte of it.

Every member is checked before anything is written (:func:`check_members`): regular files and
folders only (no symbolic or hard links, devices or FIFOs), relative names without ``..``,
at most :data:`MAX_MEMBERS` of them and at most ``max_bytes`` once unpacked (a zip bomb is
refused from its headers, and the bytes actually written are counted too). Only then are the
files written, into a new staging folder that the caller verifies as a bundle and either
keeps or removes, so a rejected upload changes nothing.
"""

from __future__ import annotations

import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from hark.errors import HarkError

MAX_MEMBERS = 256
COPY_BLOCK = 1 << 16


@dataclass(frozen=True)
class Member:
    """One archive member that passed the checks: its relative parts, kind and declared size."""

    parts: tuple[str, ...]
    is_dir: bool
    size: int
    source: object  # the ZipInfo or TarInfo to read it from


def _parts(name: str, where: str) -> tuple[str, ...]:
    if not name or "\x00" in name or "\\" in name:
        raise HarkError(f"{where}: member {name[:80]!r} has an unusable name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise HarkError(f"{where}: member {name[:80]!r} is an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p not in ("", "."))
    if ".." in parts:
        raise HarkError(f"{where}: member {name[:80]!r} points outside the archive (..)")
    if not parts:
        raise HarkError(f"{where}: member {name[:80]!r} has an empty name")
    return parts


def _zip_members(archive: zipfile.ZipFile, where: str) -> Iterator[Member]:
    for info in archive.infolist():
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if info.is_dir():
            yield Member(_parts(info.filename, where), True, 0, info)
            continue
        if kind not in (0, stat.S_IFREG):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise HarkError(f"{where}: member {info.filename[:80]!r} is {what}")
        if info.flag_bits & 0x1:
            raise HarkError(f"{where}: member {info.filename[:80]!r} is encrypted")
        yield Member(_parts(info.filename, where), False, int(info.file_size), info)


def _tar_members(archive: tarfile.TarFile, where: str) -> Iterator[Member]:
    for info in archive:
        if info.isdir():
            yield Member(_parts(info.name, where), True, 0, info)
        elif info.isreg():
            yield Member(_parts(info.name, where), False, int(info.size), info)
        else:
            what = ("a symbolic link" if info.issym() else "a hard link" if info.islnk() else
                    "a FIFO" if info.isfifo() else "a device" if info.isdev() else "not a regular file")
            raise HarkError(f"{where}: member {info.name[:80]!r} is {what}")


def check_members(members: Iterator[Member], *, where: str, max_bytes: int) -> list[Member]:
    """All members, checked; the bundle's single top folder (``model/manifest.json``) is stripped."""
    out: list[Member] = []
    total = 0
    for member in members:
        out.append(member)
        if len(out) > MAX_MEMBERS:
            raise HarkError(f"{where}: more than {MAX_MEMBERS} members; a model bundle has a handful")
        total += member.size
        if total > max_bytes:
            raise HarkError(f"{where}: unpacks to more than {max_bytes // (1 << 20)} MB")
    files = [m for m in out if not m.is_dir]
    if not files:
        raise HarkError(f"{where}: the archive holds no files")
    tops = {m.parts[0] for m in out}
    if len(tops) == 1 and all(len(m.parts) > 1 for m in files):
        out = [Member(m.parts[1:], m.is_dir, m.size, m.source) for m in out if len(m.parts) > 1]
    seen: set[tuple[str, ...]] = set()
    for m in out:
        if not m.is_dir:
            if m.parts in seen:
                raise HarkError(f"{where}: member {'/'.join(m.parts)!r} is given twice")
            seen.add(m.parts)
    if ("manifest.json",) not in seen:
        raise HarkError(f"{where}: no manifest.json at the top; is this a hark model bundle?")
    return out


@contextmanager
def _open(path: Path, where: str) -> Iterator[tuple[str, zipfile.ZipFile | tarfile.TarFile]]:
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                yield "zip", archive
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
            raise HarkError(f"{where}: damaged zip archive ({err})") from None
        return
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError, EOFError):
        raise HarkError(f"{where}: not a zip or tar archive (.zip, .tar, .tar.gz, .tar.xz or .tar.bz2)") from None
    try:
        with archive:
            yield "tar", archive
    except (tarfile.TarError, EOFError, OSError) as err:
        raise HarkError(f"{where}: damaged tar archive ({str(err).splitlines()[0] if str(err) else err})") from None


def unpack(path: Path, target: Path, *, where: str, max_bytes: int) -> None:
    """Check every member of the archive at ``path``, then write them under the new folder ``target``.

    ``target`` must not exist; on any problem it is removed again and :class:`HarkError` raised.
    """
    with _open(path, where) as (kind, archive):
        if kind == "zip":
            members = check_members(_zip_members(archive, where), where=where,  # type: ignore[arg-type]
                                    max_bytes=max_bytes)
        else:
            members = check_members(_tar_members(archive, where), where=where,  # type: ignore[arg-type]
                                    max_bytes=max_bytes)
        target.mkdir(mode=0o755)
        try:
            written = 0
            for member in members:
                dest = target.joinpath(*member.parts)
                if member.is_dir:
                    dest.mkdir(mode=0o755, parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source: IO[bytes] | None = (
                    archive.open(member.source) if kind == "zip"  # type: ignore[union-attr, arg-type]
                    else archive.extractfile(member.source))  # type: ignore[union-attr, arg-type]
                if source is None:
                    raise HarkError(f"{where}: member {'/'.join(member.parts)!r} cannot be read")
                with source, dest.open("xb") as out:
                    while block := source.read(COPY_BLOCK):
                        written += len(block)
                        if written > max_bytes:
                            raise HarkError(f"{where}: unpacks to more than {max_bytes // (1 << 20)} MB")
                        out.write(block)
                dest.chmod(0o644)
        except HarkError:
            shutil.rmtree(target, ignore_errors=True)
            raise
        except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as err:
            shutil.rmtree(target, ignore_errors=True)
            raise HarkError(f"{where}: cannot unpack ({str(err).splitlines()[0] if str(err) else err})") from None
