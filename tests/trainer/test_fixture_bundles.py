"""The bundles the device tests use are what the trainer makes: trained again, they are equivalent.

``tests/fixtures/bundles/`` is committed so that ``tests/device`` runs without TensorFlow; this
test trains them again with ``tests/fixtures/make_bundles.py`` and holds the committed ones to the
result, so a change to the trainer or the manifest that the fixtures no longer reflect fails here
(then run ``python -m tests.fixtures.make_bundles`` and commit what it writes).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from hark.audiofile import find_audio, read_audio
from hark.bundle import load_bundle
from hark.manifest import Manifest
from hark.model import Model
from tests.fixtures.make_bundles import BUNDLES, SPECS, train_bundle


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPECS))
def test_regenerated_fixture_is_equivalent_to_the_committed_one(name: str, tone_dataset: Path, tmp_path: Path,
                                                               speech_tone_bundle: Path, tone_bundle: Path,
                                                               speech_tone_int8_bundle: Path) -> None:
    fresh_path = train_bundle(tone_dataset, tmp_path / name, SPECS[name])
    committed_path = {"speech_tone": speech_tone_bundle, "speech_tone_int8": speech_tone_int8_bundle}.get(
        name, tone_bundle)
    if (committed_path / "base").is_dir():  # the fresh one needs the pinned base files too, as the fixture adds them
        shutil.copytree(committed_path / "base", fresh_path / "base", dirs_exist_ok=True,
                        ignore=lambda folder, names: [n for n in names if (fresh_path / "base" / n).exists()])
    fresh_manifest = load_bundle(fresh_path).manifest
    committed = load_bundle(committed_path).manifest
    assert committed.name == (BUNDLES / name).name

    # The same shape of model: what the device reads to build the frontend, the head and the detector.
    def shape(m: Manifest) -> dict:
        d = dataclasses.asdict(m)
        return {k: d[k] for k in ("format_version", "base", "frontend", "head", "labels", "sample_rate")} | {
            "classes": sorted(m.detection.thresholds), "verifier": m.verifier is not None, "files": sorted(m.files)}

    assert shape(fresh_manifest) == shape(committed)
    # And the same answers: every clip of the dataset gets the same label from both.
    fresh, old = Model.load(fresh_path), Model.load(committed_path)
    for path in find_audio([tone_dataset]):
        clip = read_audio(path)
        assert fresh.classify(clip).label == old.classify(clip).label, path
