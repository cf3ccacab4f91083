"""tests/bench/hidden_cpu_features.py: the preload that lets the cost benches run as on a CPU without
AVX-512 hides it from CPUID, and changes nothing else a process does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import hidden_cpu_features  # noqa: E402

REASON = hidden_cpu_features.why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"cannot hide CPU features here: {REASON}")

SEEN = ("import hidden_cpu_features as h, numpy as np; f = h.cpu_features_numpy_sees(); "
        "a = np.arange(12.0).reshape(3, 4); "
        "print(int(f['AVX2']), int(f['AVX512F']), float((a @ a.T).sum()))")


def run(code: str, library: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests" / "bench")}
    if library is not None:
        env.update(LD_PRELOAD=str(library), GLIBC_TUNABLES=hidden_cpu_features.GLIBC_TUNABLES)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_a_preloaded_process_sees_avx2_but_no_avx512_and_computes_the_same(tmp_path: Path) -> None:
    library = hidden_cpu_features.build(tmp_path)
    plain, hidden = run(SEEN, None), run(SEEN, library)
    assert plain.returncode == 0 and hidden.returncode == 0, hidden.stderr
    avx2, avx512, total = hidden.stdout.split()
    assert (avx2, avx512) == ("1", "0")
    assert total == plain.stdout.split()[2]
    if "avx512f" in Path("/proc/cpuinfo").read_text():
        assert plain.stdout.split()[1] == "1"  # so the 0 above is the preload's doing


def test_a_real_fault_still_kills_the_process(tmp_path: Path) -> None:
    """The handler answers CPUID only; any other SIGSEGV takes its default course (no hang, no loop)."""
    library = hidden_cpu_features.build(tmp_path)
    crashed = run("import ctypes; ctypes.string_at(0)", library)
    assert crashed.returncode == -11


def test_the_bench_says_in_one_line_when_it_cannot_hide_them(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to("/usr/bin/git")
    env = {**os.environ, "PATH": str(bin_dir)}  # no gcc to build the preload with
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "bench" / "bench_embedding.py"), "--runs",
                           "--hide-avx512"], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "bench_embedding: error: --hide-avx512: gcc is not installed (apt-get install gcc)"]
