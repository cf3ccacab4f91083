"""``hark detect``: the same lines on a terminal and on a pipe, and no progress bar library on a pipe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"

# Runs the command in this process and then reports whether tqdm was loaded.
PROBE = """
import sys
from hark.cli import main
code = main(sys.argv[1:])
print("TQDM", "tqdm" in sys.modules, file=sys.stderr)
sys.exit(code)
"""


def test_on_a_pipe_the_progress_bar_library_is_never_loaded() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, "detect", "-m", str(DEMO / "model"), str(DEMO / "demo.flac"),
                           "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(found) == 7 and {d["label"] for d in found} == {"lights", "music"}
    assert "TQDM False" in proc.stderr


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux's script for a terminal")
def test_a_terminal_gets_the_same_lines_as_a_pipe() -> None:
    command = [sys.executable, "-m", "hark", "detect", "-m", str(DEMO / "model"), str(DEMO / "demo.flac")]
    piped = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert piped.returncode == 0, piped.stderr
    # script(1) runs the command on a pseudo-terminal, where hark shows its progress bar (given a size:
    # the terminal script opens has 0 rows and 0 columns, where tqdm draws nothing).
    shown = subprocess.run(["script", "-qec", "stty rows 24 cols 100; " + " ".join(command), "/dev/null"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert shown.returncode == 0, shown.stdout
    lines = [line.strip() for line in shown.stdout.replace("\r", "\n").splitlines()]
    for line in piped.stdout.splitlines():
        assert line.strip() in lines
    assert "detect:" in shown.stdout  # the bar was there
