"""The demo that ships in the repository: its assets, its config, and scripts/make_demo.py."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.fixtures.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
sys.path.insert(0, str(ROOT / "scripts"))

import make_demo  # noqa: E402


def truth() -> list[tuple[float, float, str]]:
    with (DEMO / "demo.csv").open() as f:
        return [(float(r["start_s"]), float(r["end_s"]), r["label"]) for r in csv.DictReader(f)]


def hark(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, **kwargs)


def test_demo_assets_are_small_and_made_by_us() -> None:
    model_bytes = sum(p.stat().st_size for p in (DEMO / "model").rglob("*") if p.is_file())
    assert model_bytes < 1_000_000
    assert (DEMO / "demo.flac").stat().st_size < 2_000_000
    info = sf.info(DEMO / "demo.flac")
    assert (info.samplerate, info.channels) == (16000, 1)
    assert 30 <= info.duration <= 60
    from hark.model import Model

    model = Model.load(DEMO / "model")
    assert model.manifest.base == "none", "the demo must carry no third-party weights"
    assert model.manifest.base_hashes == {}
    assert set(model.labels) == {"background", *make_demo.WORDS}


def test_demo_model_finds_every_word_in_the_recording() -> None:
    out = hark("detect", "-m", str(DEMO / "model"), str(DEMO / "demo.flac"), "--json")
    assert out.returncode == 0, out.stderr
    detections = [json.loads(line) for line in out.stdout.splitlines()]
    found, total, false = make_demo.score(truth(), detections)
    assert total == 2 * 3
    assert found == total, detections
    assert false <= 2, detections


def test_demo_config_passes_hark_check() -> None:
    out = hark("check", "-c", "config/demo.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "mock" in out.stdout


def test_demo_runs_without_a_broker(tmp_path: Path) -> None:
    # The demo config, pointed at a port where nothing listens: hark must detect, keep the events and exit 0.
    text = (ROOT / "config" / "demo.yaml").read_text()
    text = text.replace("port: 1883", f"port: {free_port()}").replace("flush_s: 3", "flush_s: 0.5")
    text = text.replace("../build/demo-state", str(tmp_path / "state")).replace("../demo/model", str(DEMO / "model"))
    config = tmp_path / "demo.yaml"
    config.write_text(text)
    out = hark("run", "-c", str(config), "--input", str(DEMO / "demo.flac"))
    assert out.returncode == 0, out.stderr
    offline = hark("detect", "-m", str(DEMO / "model"), str(DEMO / "demo.flac"), "--json")
    expected = [json.loads(line)["label"] for line in offline.stdout.splitlines()]
    assert [line.split()[1] for line in out.stdout.splitlines()] == expected
    assert f"{len(expected)} event(s) not yet delivered" in out.stderr
    assert (tmp_path / "state").is_dir()


def test_score_counts_hits_misses_and_false_detections() -> None:
    rows = [(1.0, 1.5, "lights"), (3.0, 3.4, "~light"), (5.0, 5.5, "music")]
    detections = [
        {"label": "lights", "time_s": 1.6},  # hit
        {"label": "lights", "time_s": 1.9},  # the same word again: false
        {"label": "lights", "time_s": 3.4},  # the distractor: false
        {"label": "lights", "time_s": 5.3},  # wrong class at music: false
    ]
    assert make_demo.score(rows, detections) == (1, 2, 3)
    assert make_demo.score(rows, []) == (0, 2, 0)
    assert make_demo.score(rows, [{"label": "music", "time_s": 7.1}]) == (0, 2, 1)  # more than 1.5 s late


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_make_recording_places_words_where_the_list_says(tmp_path: Path) -> None:
    rows = make_demo.make_recording(tmp_path / "r.flac", seconds=20.0, seed=5)
    audio, rate = sf.read(tmp_path / "r.flac", dtype="float32")
    assert rate == 16000 and audio.ndim == 1 and len(audio) == 20 * 16000
    assert rows == sorted(rows) and rows, rows
    assert all(0 < s < e <= 20.0 for s, e, _ in rows)
    assert {label for _, _, label in rows} <= {*make_demo.WORDS, *("~" + w for w in make_demo.DISTRACTORS), "~bleep"}
    quiet = float(abs(audio[: int(rows[0][0] * 16000) - 800]).max())
    for s, e, _ in rows:
        assert float(abs(audio[int(s * 16000): int(e * 16000)]).max()) > 2 * quiet, "a listed sound must be there"
    again = make_demo.make_recording(tmp_path / "r2.flac", seconds=20.0, seed=5)
    assert again == rows, "same seed, same recording"
