"""Run a benchmark as on a CPU without AVX-512: the runtimes' kernels for AVX2, on this CPU's cores.

The inference runtimes choose their kernels from CPUID at start-up (XNNPACK in LiteRT, MLAS in
onnxruntime, numpy's own dispatch). :func:`reexec_hidden` builds ``hide_avx512.c`` and runs the
same command again with it preloaded into every process: CPUID then reports no AVX-512, AVX-VNNI or
AMX, and the libraries pick what such a CPU runs, while every instruction still runs natively.
It needs x86-64, gcc and the kernel's CPUID faulting (the CPU flag ``cpuid_fault``, which KVM
guests commonly have). It is how ``bench_cost.py`` and ``bench_embedding.py`` measure "a CPU
without AVX-512" on a machine that has it; a KVM guest with another CPU model would do the same,
but needs hardware KVM that can run such a guest.

What it does not change: the cores, caches and clock stay this CPU's, so the figures are this
CPU's with AVX2 kernels, not another CPU's.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).with_name("hide_avx512.c")
BUILD = Path(__file__).resolve().parents[2] / "build" / "bench"
MARK = "HARK_BENCH_HIDDEN_CPU_FEATURES"
HIDDEN = "AVX-512, AVX-VNNI, AMX"
# glibc reads CPUID before any preload runs; its tunables hide the same from its string functions.
GLIBC_TUNABLES = "glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-AVX_VNNI"


def active() -> bool:
    """Whether this process runs with the features hidden."""
    return bool(os.environ.get(MARK))


def why_not() -> str | None:
    """Why the features cannot be hidden on this machine, or None if they can."""
    if platform.machine() != "x86_64":
        return f"it is for x86-64 CPUs; this one is {platform.machine()}"
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "cpuid_fault" not in flags:
        return "this CPU (or its hypervisor) has no CPUID faulting (no cpuid_fault in /proc/cpuinfo)"
    if shutil.which("gcc") is None:
        return "gcc is not installed (apt-get install gcc)"
    return None


def build(directory: Path = BUILD) -> Path:
    """``hide_avx512.so`` in ``directory``, rebuilt when the source is newer."""
    directory.mkdir(parents=True, exist_ok=True)
    library = directory / "hide_avx512.so"
    if not library.exists() or library.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True)
    return library


def reexec_hidden(*, program: str) -> None:
    """Run this command again with the features hidden, unless it already is; exit 2 if it cannot be."""
    if active():
        return
    reason = why_not()
    if reason is not None:
        print(f"{program}: error: --hide-avx512: {reason}", file=sys.stderr)
        raise SystemExit(2)
    library = build()
    preload = " ".join(p for p in (str(library.resolve()), os.environ.get("LD_PRELOAD", "")) if p)
    env = {**os.environ, "LD_PRELOAD": preload, "GLIBC_TUNABLES": GLIBC_TUNABLES, MARK: "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def cpu_features_numpy_sees() -> dict[str, bool]:
    """numpy's view of the CPU, read from CPUID when it was imported."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1
        from numpy.core._multiarray_umath import __cpu_features__
    return dict(__cpu_features__)


def check_hidden() -> str:
    """The line that says the features are hidden, after checking that numpy indeed saw no AVX-512."""
    seen = cpu_features_numpy_sees()
    if seen.get("AVX512F") or seen.get("AVX512_SPR"):
        raise SystemExit(f"{MARK} is set but numpy still sees AVX-512: the preload did not take effect")
    return (f"hidden from the programs: {HIDDEN} (CPUID faulting, tests/bench/hide_avx512.c); "
            "they run the kernels of a CPU without them, on the cores above")
