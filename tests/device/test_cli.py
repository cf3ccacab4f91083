"""The ``hark`` command line: trainer commands on an install without the trainer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fixtures.synth import write_dataset

ROOT = Path(__file__).resolve().parents[2]

# A device install, as far as Python can tell: a None entry in sys.modules makes the import system
# report TensorFlow as not installed (the Pi's `.[device]` venv has no TensorFlow at all).
WITHOUT_TENSORFLOW = (
    "import sys; sys.modules['tensorflow'] = None; from hark.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_train_without_tensorflow_is_one_line_before_any_work(tmp_path):
    data = write_dataset(tmp_path / "data", per_class=8, seed=1)
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, "train", str(data), "-o", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hark: error: 'hark train' needs the trainer (tensorflow is missing): pip install 'hark[trainer]' on a desktop"
    ]
    assert not out.exists()
