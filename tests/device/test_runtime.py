"""hark.runtime: the TFLite file check that runs before a runtime maps a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from hark.errors import BundleError
from hark.runtime import check_tflite_file

ROOT = Path(__file__).resolve().parents[2]
HEAD = ROOT / "demo" / "model" / "head.tflite"


def test_whole_models_pass(tmp_path: Path) -> None:
    check_tflite_file(HEAD)
    for base in (ROOT.parent / "shared" / "models").glob("*.tflite"):
        check_tflite_file(base)


@pytest.mark.parametrize("fraction", [0.05, 0.25, 0.4, 0.5, 0.75, 0.9, 0.99])
def test_a_model_cut_short_is_refused_before_it_is_mapped(tmp_path: Path, fraction: float) -> None:
    data = HEAD.read_bytes()
    cut = tmp_path / "head.tflite"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BundleError, match="head.tflite: a damaged TFLite model"):
        check_tflite_file(cut)


def test_bytes_that_are_not_a_model_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "head.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(BundleError, match="not a TFLite model"):
        check_tflite_file(junk)


def test_a_reference_pointing_outside_the_file_is_refused(tmp_path: Path) -> None:
    data = bytearray(HEAD.read_bytes())
    data[0:4] = (len(data) + 100).to_bytes(4, "little")  # the root table offset
    bad = tmp_path / "head.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="damaged"):
        check_tflite_file(bad)
