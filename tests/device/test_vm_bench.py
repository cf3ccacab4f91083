"""scripts/vm-bench's refusals: one line, exit 2, before any guest is built or booted.

The measurement itself (a KVM guest running bench_cost or bench_embedding) is a benchmark, run by hand:
``tests/bench/bench_cost.py --vm-cpu EPYC-Rome``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VM_BENCH = ROOT / "scripts" / "vm-bench"


def run(args: list[str], *, path: str | None = None, fake: str = "") -> subprocess.CompletedProcess:
    """scripts/vm-bench ARGS, with PATH replaced if given; ``fake`` tells the stand-in qemu how to answer."""
    env = {**os.environ, "FAKE_QEMU": fake}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, str(VM_BENCH), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vm-bench: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.stdout == ""  # nothing was started
    return lines[0]


def test_a_command_is_needed(tmp_path: Path) -> None:
    one_error_line(run(["--cache", str(tmp_path / "cache")]), "no command", "--build")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("cpu", ["EPYC-Rome; reboot", "", "host,,-avx512f", "-enable-kvm"])
def test_cpu_model_is_checked_before_anything_runs(tmp_path: Path, cpu: str) -> None:
    one_error_line(run([f"--cpu={cpu}", "--cache", str(tmp_path / "cache"), "--", "true"]),
                   "not a qemu CPU model", "EPYC-Rome")
    assert not (tmp_path / "cache").exists()


def test_memory_size(tmp_path: Path) -> None:
    one_error_line(run(["--memory", "lots", "--cache", str(tmp_path), "--", "true"]), "--memory lots", "2G")


@pytest.mark.parametrize("inside", ["/etc/passwd", "../outside", "repo/x", "run"])
def test_copy_stays_on_the_data_disk(tmp_path: Path, inside: str) -> None:
    source = tmp_path / "stream.wav"
    source.write_bytes(b"RIFF")
    one_error_line(run(["--copy", f"{source}:{inside}", "--cache", str(tmp_path / "cache"), "--", "true"]),
                   f"--copy {source}:{inside}", "relative to /mnt/data")


def test_copy_of_a_missing_file(tmp_path: Path) -> None:
    one_error_line(run(["--copy", str(tmp_path / "gone.wav"), "--cache", str(tmp_path), "--", "true"]),
                   "gone.wav does not exist")


def test_missing_tools_are_named_with_their_packages(tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    folder.mkdir()
    found = shutil.which("git")
    if found:
        (folder / "git").symlink_to(found)
    line = one_error_line(run(["--cache", str(tmp_path / "cache"), "--", "true"], path=str(folder)),
                          "missing tools: apt-get install", "qemu-system-x86", "debootstrap")
    assert "e2fsprogs" in line
    assert not (tmp_path / "cache").exists()


# What the script checks first: root, and a /dev/kvm it can open. Past that, a stand-in qemu answers.
KVM_READY = os.geteuid() == 0 and os.access("/dev/kvm", os.R_OK | os.W_OK)
needs_kvm = pytest.mark.skipif(not KVM_READY, reason="vm-bench refuses earlier without root and /dev/kvm")

# A stand-in for qemu-system-x86_64: lists two CPU models; FAKE_QEMU=refuse answers like a KVM that
# lacks AVX (qemu's own words with -cpu MODEL,enforce); otherwise it hangs like a guest that never boots.
FAKE_QEMU = """#!/bin/sh
case "$*" in
  "-cpu help") printf 'x86 EPYC-Rome  (alias configured by machine type)\\nx86 Haswell-noTSX  x\\n'; exit 0 ;;
esac
if [ "$FAKE_QEMU" = refuse ]; then
  echo "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.avx [bit 28]" >&2
  echo "qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.07H:EBX.avx2 [bit 5]" >&2
  echo "qemu-system-x86_64: Host doesn't support requested features" >&2
  exit 1
fi
exec sleep 600
"""


def fake_qemu(tmp_path: Path) -> str:
    """A PATH whose qemu-system-x86_64 is the stand-in, the rest this machine's.

    The build tools this machine lacks are stand-ins that fail if run, so that the script's check
    for them passes and the test reaches what it is about (nothing here may get as far as a build).
    """
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    qemu = folder / "qemu-system-x86_64"
    qemu.write_text(FAKE_QEMU)
    qemu.chmod(0o755)
    for tool in ("debootstrap", "mkfs.ext4", "unshare"):
        if shutil.which(tool) is None:
            stand_in = folder / tool
            stand_in.write_text(f"#!/bin/sh\necho 'the stand-in {tool} was run' >&2\nexit 97\n")
            stand_in.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def built_guest(cache: Path) -> Path:
    """A cache that looks built (the files of CACHE/bookworm), so that no build starts."""
    folder = cache / "bookworm"
    folder.mkdir(parents=True)
    for name in ("root.img", "vmlinuz", "initrd.img", "guest.json"):
        (folder / name).write_text("")
    return cache


@needs_kvm
def test_unknown_cpu_model_is_named(tmp_path: Path) -> None:
    cache = built_guest(tmp_path / "cache")
    one_error_line(run(["--cpu", "Pentium-Pro-9000", "--cache", str(cache), "--", "true"], path=fake_qemu(tmp_path)),
                   "Pentium-Pro-9000", "-cpu help")


@needs_kvm
@pytest.mark.parametrize("args", [["--build"], ["--", "true"]])
def test_a_model_kvm_cannot_give_is_refused_before_any_build(tmp_path: Path, args: list[str]) -> None:
    cache = tmp_path / "cache"
    line = one_error_line(run(["--cpu", "EPYC-Rome", "--cache", str(cache), *args], path=fake_qemu(tmp_path),
                              fake="refuse"),
                          "cannot give a guest the CPU model EPYC-Rome", "missing avx, avx2")
    assert "enforce" in line
    assert not cache.exists()


@needs_kvm
@pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="the data disk needs mkfs.ext4 (e2fsprogs)")
def test_a_guest_that_does_not_boot_is_stopped(tmp_path: Path) -> None:
    cache = built_guest(tmp_path / "cache")
    started = time.monotonic()
    proc = run(["--cpu", "EPYC-Rome", "--boot-timeout", "1", "--cache", str(cache), "--", "true"],
               path=fake_qemu(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did not boot within 1 s" in proc.stdout
    assert time.monotonic() - started < 40  # not the stand-in's 600 s
    assert not list(cache.glob("run-*"))  # the data disk is removed
