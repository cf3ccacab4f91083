"""hark.verifier: template matching by subsequence DTW, the confirm rule, and its bundle file."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from hark.errors import BundleError
from hark.manifest import VerifierSection
from hark.verifier import METHOD, Verifier, VerifierSpec, distance_by_end, sequence_distance, unit_rows

DIM = 12
ZERO, ONE = np.zeros(DIM, np.float32), np.ones(DIM, np.float32)


def _word(seed: int, length: int = 8) -> np.ndarray:
    """A smooth random trajectory of feature vectors: a 'word' of ``length`` frames."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((length, DIM)).astype(np.float32)
    return np.cumsum(steps, axis=0)


def _rows(x: np.ndarray) -> np.ndarray:
    return unit_rows(x, ZERO, ONE)


def test_unit_rows_standardise_and_normalise() -> None:
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)  # features of any shape are flattened
    rows = unit_rows(x, np.full(12, 1.0), np.full(12, 2.0))
    assert rows.shape == (2, 12) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rows[0], _rows((x[:1].reshape(1, -1) - 1.0) / 2.0)[0], rtol=1e-5)


def test_a_template_is_found_anywhere_in_the_region_and_at_other_speeds() -> None:
    word, other = _rows(_word(1)), _rows(_word(2))
    filler = _rows(_word(3, 10))
    assert sequence_distance(word, word) == pytest.approx(0.0, abs=1e-5)
    assert sequence_distance(word, np.concatenate([filler, word, filler])) == pytest.approx(0.0, abs=1e-5)
    slow = np.repeat(word, 2, axis=0)  # said twice as slowly
    assert sequence_distance(word, np.concatenate([filler, slow])) == pytest.approx(0.0, abs=1e-5)
    fast = word[::2]  # twice as fast: every template frame still finds its neighbour
    assert sequence_distance(word, fast) < 0.5 * sequence_distance(word, other)
    assert sequence_distance(word, other) > 0.3
    assert sequence_distance(word, word[::-1]) > sequence_distance(word, word[: len(word) // 2])


def test_end_within_judges_only_what_was_just_heard() -> None:
    word, filler = _rows(_word(1)), _rows(_word(3, 10))
    earlier = np.concatenate([word, filler])  # the word, then ten frames of something else
    assert sequence_distance(word, earlier) == pytest.approx(0.0, abs=1e-5)
    assert sequence_distance(word, earlier, end_within=4) > 0.2
    assert sequence_distance(word, earlier, end_within=11) == pytest.approx(0.0, abs=1e-5)


def test_distance_by_end_is_the_verifiers_distance_at_each_end() -> None:
    template = _rows(_word(1))
    region = _rows(np.concatenate([_word(3, 10), _word(1), _word(4, 6)]))
    by_end = distance_by_end(template, region)
    assert by_end.shape == (len(region),)
    assert int(np.argmin(by_end)) == 17 and by_end[17] == pytest.approx(0.0, abs=1e-5)  # the word ends at frame 17
    assert by_end.min() == pytest.approx(sequence_distance(template, region), abs=1e-6)
    assert by_end[-1] == pytest.approx(sequence_distance(template, region, end_within=1), abs=1e-6)


def test_empty_template_or_region_is_infinitely_far() -> None:
    word = _rows(_word(1))
    assert sequence_distance(word, word[:0]) == math.inf
    assert sequence_distance(word[:0], word) == math.inf


def _spec(**limits: float) -> VerifierSpec:
    templates = {"up": [_rows(_word(s)) for s in (10, 11, 12)], "down": [_rows(_word(s)) for s in (20, 21, 22)]}
    return VerifierSpec(templates=templates, mean=ZERO, scale=ONE, region_s=1.0, nearest=1,
                        max_distance=limits or {"up": 0.1, "down": 0.1})


def _listen(verifier: Verifier, frames: np.ndarray) -> None:
    for frame in frames:
        verifier.push(frame)


def test_confirms_the_class_whose_template_was_heard_and_no_other() -> None:
    verifier = Verifier(_spec(), hop_samples=1280)
    _listen(verifier, np.concatenate([_word(5, 3), _word(11), _word(6, 2)]))  # "up" template 11, then 0.2 s more
    assert verifier.confirm("up")
    assert verifier.last_distances["up"] < 1e-4 < verifier.last_distances["down"]
    assert not verifier.confirm("down")
    assert verifier.rejections == 1


def test_rejects_what_matches_no_template_closely_enough() -> None:
    verifier = Verifier(_spec(), hop_samples=1280)
    _listen(verifier, _word(99, 12))
    assert not verifier.confirm("up") and not verifier.confirm("down")
    loose = Verifier(_spec(up=2.0, down=2.0), hop_samples=1280)
    _listen(loose, _word(99, 12))
    # With no limit to speak of, the closest class is still the only one confirmed.
    assert [loose.confirm("up"), loose.confirm("down")].count(True) == 1


def test_keeps_only_the_region_and_forgets_on_reset() -> None:
    verifier = Verifier(_spec(), hop_samples=1600)  # region 1.0 s = 10 frames of 0.1 s (+1)
    _listen(verifier, np.concatenate([_word(11), _word(7, 11)]))  # the word has scrolled out
    assert not verifier.confirm("up")
    _listen(verifier, _word(11))
    assert verifier.confirm("up")
    verifier.reset()
    assert verifier.distances() == {"up": math.inf, "down": math.inf}


def test_a_class_without_a_limit_is_not_checked() -> None:
    verifier = Verifier(_spec(down=0.1), hop_samples=1280)
    _listen(verifier, _word(99, 12))
    assert verifier.confirm("up") and verifier.rejections == 0


def _save(tmp_path: Path, spec: VerifierSpec) -> tuple[Path, VerifierSection]:
    path = tmp_path / "verifier.npz"
    path.write_bytes(spec.to_bytes())
    return path, spec.manifest_block()


def test_spec_round_trips_through_its_file(tmp_path: Path) -> None:
    spec = _spec()
    path, section = _save(tmp_path, spec)
    assert section.method == METHOD and section.templates == {"up": 3, "down": 3}
    loaded = VerifierSpec.load(path, section, feature_size=DIM)
    assert loaded.max_distance == {"up": 0.1, "down": 0.1} and loaded.region_s == 1.0 and loaded.nearest == 1
    for label in ("up", "down"):
        for a, b in zip(spec.templates[label], loaded.templates[label], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("change", "feature_size", "message"), [
    ({"templates": {"up": 4, "down": 3}}, DIM, "unreadable verifier templates"),
    ({}, DIM + 1, f"mean must be {DIM + 1} finite numbers"),
])
def test_templates_that_disagree_with_the_section_are_one_line(tmp_path: Path, change: dict, feature_size: int,
                                                               message: str) -> None:
    path, section = _save(tmp_path, _spec())
    with pytest.raises(BundleError) as err:
        VerifierSpec.load(path, dataclasses.replace(section, **change), feature_size=feature_size)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_the_ratio_test_rejects_a_sound_half_way_between_two_classes() -> None:
    # "up" 0.30 away and "down" 0.32: "up" is the nearest, but not clearly.
    spec = dataclasses.replace(_spec(up=0.5, down=0.5), ratio=0.9)
    assert not spec.confirms("up", {"up": 0.30, "down": 0.32})
    assert spec.confirms("up", {"up": 0.25, "down": 0.32})
    assert dataclasses.replace(spec, ratio=1.0).confirms("up", {"up": 0.30, "down": 0.32})
    assert spec.confirms("up", {"up": 0.30})  # a single class has nothing to be confused with
