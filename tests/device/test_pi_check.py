"""scripts/pi-check's refusals (one line, exit 2, before any work) and its comparison of detections;
scripts/setup's refusal of 32-bit systems.

The check itself (two emulated roots, about an hour) runs in CI with HARK_PI_CHECK=1 (.ci/run).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PI_CHECK = ROOT / "scripts" / "pi-check"


def load_pi_check():
    loader = importlib.machinery.SourceFileLoader("pi_check", str(PI_CHECK))
    spec = importlib.util.spec_from_loader("pi_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pi_check"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


def run(args: list[str], *, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, str(PI_CHECK), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def fake_bin(tmp_path: Path, *names: str, real: tuple[str, ...] = ()) -> str:
    """A PATH folder with stand-ins for ``names`` and links to the real ``real`` tools."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)
    for name in real:
        found = shutil.which(name)
        if found:
            (folder / name).symlink_to(found)
    return str(folder)


def one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pi-check: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.stdout == ""  # nothing was started
    return lines[0]


def test_missing_debootstrap_is_one_line(tmp_path: Path) -> None:
    proc = run(["--cache", str(tmp_path / "cache"), "--x86-hark", sys.executable], path=fake_bin(tmp_path))
    one_error_line(proc, "debootstrap is not installed", "apt-get install debootstrap")
    assert not (tmp_path / "cache").exists()


def test_missing_qemu_is_one_line(tmp_path: Path) -> None:
    proc = run(["--cache", str(tmp_path / "cache"), "--x86-hark", sys.executable],
               path=fake_bin(tmp_path, "debootstrap"))
    one_error_line(proc, "qemu-user-static is not installed", "apt-get install qemu-user-static")


def test_unknown_release(tmp_path: Path) -> None:
    one_error_line(run(["--os", "bookworm,jessie", "--cache", str(tmp_path)]), "unknown release jessie",
                   "bookworm, trixie")


def test_missing_x86_hark(tmp_path: Path) -> None:
    one_error_line(run(["--cache", str(tmp_path), "--x86-hark", str(tmp_path / "nothing")]),
                   "no x86 hark to compare with", "scripts/setup device")


def test_shell_needs_a_built_root(tmp_path: Path) -> None:
    one_error_line(run(["--shell", "trixie", "--cache", str(tmp_path), "--", "uname", "-m"]),
                   "no cached root for trixie", "--os trixie")


def test_shell_needs_a_command(tmp_path: Path) -> None:
    root = tmp_path / "trixie" / "etc"
    root.mkdir(parents=True)
    (root / "hark-pi-check.json").write_text("{}\n")
    one_error_line(run(["--shell", "trixie", "--cache", str(tmp_path)]), "--shell needs a command")


def tools_ready() -> bool:
    entry = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    return os.geteuid() == 0 and entry.is_file() and "enabled" in entry.read_text()


@pytest.mark.skipif(not tools_ready(), reason="needs root and qemu-aarch64 registered with binfmt_misc")
def test_unreachable_mirror_is_one_line(tmp_path: Path) -> None:
    path = fake_bin(tmp_path, "debootstrap", "qemu-aarch64-static", real=("unshare", "chroot"))
    proc = run(["--cache", str(tmp_path / "cache"), "--x86-hark", sys.executable,
                "--mirror", "http://127.0.0.1:9/debian"], path=path)
    one_error_line(proc, "no network for Debian's mirror", "127.0.0.1:9")


@pytest.mark.skipif(not tools_ready(), reason="needs root and qemu-aarch64 registered with binfmt_misc")
def test_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (cache / "trixie" / "etc").mkdir(parents=True)
    (cache / "trixie" / "etc" / "hark-pi-check.json").write_text("{}\n")  # a built root: no mirror needed
    path = fake_bin(tmp_path, "qemu-aarch64-static", real=("unshare", "chroot"))
    proc = run(["--os", "trixie", "--cache", str(cache), "--x86-hark", sys.executable,
                "--index-url", "http://127.0.0.1:9/simple/"], path=path)
    one_error_line(proc, "no network for the package registry", "--index-url")


def test_detections_compare_labels_and_times_not_last_digits() -> None:
    pi_check = load_pi_check()
    x86 = pi_check.parse_detections("00:01.855  music                1.000\n00:04.815  lights               0.641\n"
                                    "2 detection(s) in 45.0 s of audio\n")
    assert x86 == [("00:01.855", "music", 1.0), ("00:04.815", "lights", 0.641)]
    same, text = pi_check.compare(x86, [("00:01.855", "music", 0.999), ("00:04.815", "lights", 0.643)])
    assert same and "equal" in text
    moved, text = pi_check.compare(x86, [("00:01.855", "music", 1.0), ("00:04.895", "lights", 0.641)])
    assert not moved and "DIFFERENT" in text and "00:04.895" in text
    missing, _ = pi_check.compare(x86, x86[:1])
    assert not missing
    relabelled, _ = pi_check.compare(x86, [("00:01.855", "lights", 1.0), ("00:04.815", "lights", 0.641)])
    assert not relabelled
    far, text = pi_check.compare(x86, [("00:01.855", "music", 0.9), ("00:04.815", "lights", 0.641)])
    assert not far and "scores differ" in text


def test_root_packages_are_read_from_setup() -> None:
    packages = load_pi_check().setup_packages()
    assert "portaudio19-dev" in packages and "libsndfile1" in packages


@pytest.mark.parametrize("arch", ["armhf", "armel"])
def test_setup_refuses_32_bit_raspberry_pi_os_in_one_line(tmp_path: Path, arch: str) -> None:
    # A copy of the script, so that were the refusal to fail, nothing would touch the repository's .venv.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup", tmp_path / "scripts" / "setup")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg").write_text(f"#!/bin/sh\n[ \"$1\" = --print-architecture ] && echo {arch}\n")
    (bin_dir / "dpkg").chmod(0o755)
    proc = subprocess.run(["bash", str(tmp_path / "scripts" / "setup"), "device"], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"hark: error: 32-bit Raspberry Pi OS ({arch}) is not supported")
    assert "64-bit" in lines[0]
    assert not (tmp_path / ".venv").exists()


@pytest.mark.skipif(not tools_ready(), reason="needs root and qemu-aarch64 registered with binfmt_misc")
def test_a_root_in_use_is_one_line_not_a_second_run(tmp_path: Path) -> None:
    import fcntl

    (tmp_path / "trixie" / "etc").mkdir(parents=True)
    (tmp_path / "trixie" / "etc" / "hark-pi-check.json").write_text("{}\n")
    path = fake_bin(tmp_path, "qemu-aarch64-static", real=("unshare", "chroot"))
    with open(tmp_path / ".trixie.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a check of trixie is running
        proc = run(["--shell", "trixie", "--cache", str(tmp_path), "--", "true"], path=path)
        one_error_line(proc, "another scripts/pi-check is using the trixie root")
        proc = run(["--os", "trixie", "--cache", str(tmp_path), "--x86-hark", sys.executable], path=path)
        one_error_line(proc, "another scripts/pi-check is using the trixie root")
