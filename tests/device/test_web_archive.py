"""hark.web.archive: uploads checked member by member before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from hark.errors import HarkError
from hark.web.archive import MAX_MEMBERS, unpack

MB = 1 << 20


def make_zip(path: Path, members: dict[str, bytes], *, symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            z.writestr(info, "/etc/passwd")
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for info in members:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
                t.addfile(info, io.BytesIO(payload))
            else:
                t.addfile(info)
    return path


def file_info(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def test_a_bundle_zip_unpacks_and_its_top_folder_is_stripped(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/manifest.json": b"{}", "model/head.tflite": b"x",
                                            "model/base/a.tflite": b"y"})
    unpack(archive, tmp_path / "out", where="upload", max_bytes=MB)
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "base", "base/a.tflite", "head.tflite", "manifest.json"]


def test_a_tar_gz_unpacks(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "m.tar.gz", [file_info("manifest.json"), file_info("head.tflite")],
                       {"manifest.json": b"{}", "head.tflite": b"x"})
    unpack(archive, tmp_path / "out", where="upload", max_bytes=MB)
    assert (tmp_path / "out" / "head.tflite").read_bytes() == b"x"


@pytest.mark.parametrize(("name", "problem"), [
    ("/etc/cron.d/evil", "absolute path"),
    ("../evil", "outside the archive"),
    ("model/../../evil", "outside the archive"),
    ("C:/evil", "absolute path"),
    ("a\\..\\evil", "unusable name"),
])
def test_zip_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str, problem: str) -> None:
    archive = make_zip(tmp_path / "m.zip", {"manifest.json": b"{}", name: b"x"})
    with pytest.raises(HarkError, match=problem):
        unpack(archive, tmp_path / "out", where="upload", max_bytes=MB)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zip"]  # nothing written anywhere


def test_zip_symlinks_are_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"manifest.json": b"{}"}, symlink="head.tflite")
    with pytest.raises(HarkError, match="symbolic link"):
        unpack(archive, tmp_path / "out", where="upload", max_bytes=MB)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("kind", "problem"), [
    (tarfile.SYMTYPE, "symbolic link"), (tarfile.LNKTYPE, "hard link"), (tarfile.CHRTYPE, "device"),
    (tarfile.BLKTYPE, "device"), (tarfile.FIFOTYPE, "a FIFO"),
])
def test_tar_links_devices_and_fifos_are_refused(tmp_path: Path, kind: bytes, problem: str) -> None:
    odd = file_info("head.tflite")
    odd.type = kind
    odd.linkname = "/etc/passwd"
    archive = make_tar(tmp_path / "m.tar.gz", [file_info("manifest.json"), odd], {"manifest.json": b"{}"})
    with pytest.raises(HarkError, match=problem):
        unpack(archive, tmp_path / "out", where="upload", max_bytes=MB)
    assert not (tmp_path / "out").exists()


def test_too_big_unpacked_and_too_many_members_are_refused(tmp_path: Path) -> None:
    # 3 MB of zeros compresses to a few kB: the declared size is what counts
    bomb = make_zip(tmp_path / "bomb.zip", {"manifest.json": b"{}", "head.tflite": bytes(3 * MB)})
    assert bomb.stat().st_size < 100_000
    with pytest.raises(HarkError, match="unpacks to more than 2 MB"):
        unpack(bomb, tmp_path / "out", where="upload", max_bytes=2 * MB)
    many = make_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(MAX_MEMBERS + 1)})
    with pytest.raises(HarkError, match="more than"):
        unpack(many, tmp_path / "out", where="upload", max_bytes=MB)
    assert not (tmp_path / "out").exists()


def test_not_an_archive_and_no_manifest_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not an archive" * 100)
    with pytest.raises(HarkError, match="not a zip or tar archive"):
        unpack(junk, tmp_path / "out", where="upload", max_bytes=MB)
    bare = make_zip(tmp_path / "bare.zip", {"head.tflite": b"x"})
    with pytest.raises(HarkError, match="no manifest.json"):
        unpack(bare, tmp_path / "out", where="upload", max_bytes=MB)
    twice = make_zip(tmp_path / "twice.zip", {"manifest.json": b"{}", "./manifest.json": b"{}"})
    with pytest.raises(HarkError, match="given twice"):
        unpack(twice, tmp_path / "out", where="upload", max_bytes=MB)
    assert not (tmp_path / "out").exists()
