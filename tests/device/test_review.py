"""hark.review and ``hark review``: captures judged right, wrong or deleted, filed into the dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hark.clipfile import write_json, write_wav
from hark.errors import HarkError
from hark.review import judge, latest, list_captures, mark_latest_wrong, parse_id

ROOT = Path(__file__).resolve().parents[2]


def capture(captures: Path, label: str, stem: str, score: float = 0.9) -> Path:
    folder = captures / label
    folder.mkdir(parents=True, exist_ok=True)
    audio = write_wav(folder / f"{stem}.wav", np.full(1600, 0.1, np.float32))
    write_json(audio.with_suffix(".json"), {"label": label, "score": score, "time": "2026-01-01T10:00:00.000+00:00",
                                            "model": "tones"})
    return audio


@pytest.fixture
def captures(tmp_path: Path) -> Path:
    root = tmp_path / "captures"
    capture(root, "beep", "20260101-100000-000001_0.910", 0.91)
    capture(root, "chirp", "20260101-100005-000001_0.800", 0.80)
    capture(root, "beep", "20260101-100010-000001_0.990", 0.99)
    return root


def test_listed_newest_first_with_their_sidecars(captures: Path) -> None:
    found = list_captures(captures)
    assert [c.id for c in found] == ["beep/20260101-100010-000001_0.990", "chirp/20260101-100005-000001_0.800",
                                     "beep/20260101-100000-000001_0.910"]
    assert found[0].score == 0.99 and found[0].as_dict()["model"] == "tones"
    assert latest(captures) == found[0]


def test_right_wrong_and_delete(captures: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    right = judge(captures, dataset, "beep/20260101-100000-000001_0.910", "right")
    assert right == dataset / "beep" / "20260101-100000-000001_0.910.wav" and right.is_file()
    wrong = judge(captures, dataset, "chirp/20260101-100005-000001_0.800", "wrong")
    assert wrong == dataset / "_unknown_" / "20260101-100005-000001_0.800.wav" and wrong.is_file()
    assert judge(captures, dataset, "beep/20260101-100010-000001_0.990", "delete") is None
    assert list_captures(captures) == []
    assert not list(captures.rglob("*.wav")) and not list(captures.rglob("*.json"))  # sidecars gone too
    log = [json.loads(line) for line in (captures / "reviewed.jsonl").read_text().splitlines()]
    assert [(r["verdict"], r["score"]) for r in log] == [("right", 0.91), ("wrong", 0.8), ("delete", 0.99)]
    assert not list(dataset.rglob("*.json"))  # the dataset holds audio only


def test_nothing_in_the_dataset_is_overwritten(captures: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    (dataset / "_unknown_").mkdir(parents=True)
    taken = dataset / "_unknown_" / "20260101-100010-000001_0.990.wav"
    taken.write_bytes(b"the user's own clip")
    moved = judge(captures, dataset, "beep/20260101-100010-000001_0.990", "wrong")
    assert moved == dataset / "_unknown_" / "20260101-100010-000001_0.990-2.wav"
    assert taken.read_bytes() == b"the user's own clip"


@pytest.mark.parametrize("bad", ["../beep/x", "beep/../../etc/passwd", "beep", "Beep/x", "beep/.hidden",
                                 "_unknown_/x", "beep/x/y", 3, None])
def test_ids_are_checked_before_any_path_is_built(captures: Path, tmp_path: Path, bad: object) -> None:
    with pytest.raises(HarkError, match="not a capture id"):
        parse_id(bad)
    with pytest.raises(HarkError):
        judge(captures, tmp_path / "dataset", bad, "wrong")
    assert len(list_captures(captures)) == 3


def test_unknown_capture_and_verdict(captures: Path, tmp_path: Path) -> None:
    with pytest.raises(HarkError, match="not found"):
        judge(captures, tmp_path / "dataset", "beep/20990101-000000-000000_0.500", "right")
    with pytest.raises(HarkError, match="not one of"):
        judge(captures, tmp_path / "dataset", "beep/20260101-100000-000001_0.910", "maybe")  # type: ignore[arg-type]
    assert len(list_captures(captures)) == 3


def test_mark_latest_wrong(captures: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    assert mark_latest_wrong(captures, dataset) == dataset / "_unknown_" / "20260101-100010-000001_0.990.wav"
    assert mark_latest_wrong(tmp_path / "empty", dataset) is None


def hark(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hark", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=60)


def test_hark_review_by_id_and_list(captures: Path, tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    listed = hark("review", str(captures), "-d", str(dataset), "--list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("beep/20260101-100010-000001_0.990\t0.990")
    done = hark("review", str(captures), "-d", str(dataset), "--wrong", "chirp/20260101-100005-000001_0.800",
                "--right", "beep/20260101-100000-000001_0.910")
    assert done.returncode == 0, done.stderr
    assert (dataset / "_unknown_" / "20260101-100005-000001_0.800.wav").is_file()
    assert (dataset / "beep" / "20260101-100000-000001_0.910.wav").is_file()
    # one bad id: one line, exit 2, and nothing moves (every id is checked first)
    bad = hark("review", str(captures), "-d", str(dataset), "--wrong", "beep/20260101-100010-000001_0.990",
               "--right", "../../etc")
    assert bad.returncode == 2 and bad.stderr.startswith("hark: error: capture '../../etc'")
    assert len(bad.stderr.splitlines()) == 1
    assert [c.id for c in list_captures(captures)] == ["beep/20260101-100010-000001_0.990"]


def test_hark_review_asks_one_by_one(captures: Path, tmp_path: Path) -> None:
    from argparse import Namespace

    from hark.review import main

    answers = iter(["w", "x", "s", "r"])
    args = Namespace(captures=str(captures), dataset=str(tmp_path / "dataset"), list=False, right=None, wrong=None,
                     delete=None)
    assert main(args, ask=lambda prompt: next(answers)) == 0
    assert sorted(p.relative_to(tmp_path / "dataset").as_posix() for p in (tmp_path / "dataset").rglob("*.wav")) == [
        "_unknown_/20260101-100010-000001_0.990.wav", "beep/20260101-100000-000001_0.910.wav"]


def test_the_mqtt_wrong_command_files_the_latest_capture_under_unknown(tone_bundle: Path, broker: Any,
                                                                        tmp_path: Path) -> None:
    """``hark run`` with a real mosquitto: a live ``wrong/set`` moves the newest capture; a retained one does not."""
    from tests.fixtures.broker import Subscriber
    from tests.fixtures.synth import write_stream
    from tests.fixtures.web import Daemon

    stream = write_stream(tmp_path / "stream.wav", [(1.0 + 3.0 * i, "beep") for i in range(10)], seconds=32.0)
    config = tmp_path / "hark.yaml"
    config.write_text(f"model: {tone_bundle}\nstate_dir: {tmp_path / 'state'}\nrecording:\n  capture: true\n"
                      f"  dataset: {tmp_path / 'dataset'}\n  captures: {tmp_path / 'captures'}\n"
                      f"mqtt:\n  host: {broker.host}\n  port: {broker.port}\n  device_id: test\n")
    sub = Subscriber(broker, ["homeassistant/#", "hark/test/state"])
    # a press left retained on the broker is delivered at every connect: it must not count
    sub.client.publish("hark/test/wrong/set", "PRESS", qos=1, retain=True).wait_for_publish(5)
    running = Daemon(config, stream, None, ready="MQTT: connected")
    try:
        docs = sub.wait_for(lambda: {m.topic: m.json() for m in sub.messages if m.topic.startswith("homeassistant/")
                                     and m.topic.endswith("/config")}, timeout=10)
        sub.wait_for(lambda: "homeassistant/button/hark_test/wrong/config" in
                     {m.topic for m in sub.messages}, timeout=5)
        docs = {m.topic: m.json() for m in sub.messages if m.topic.endswith("/config")}
        assert docs["homeassistant/button/hark_test/wrong/config"]["command_topic"] == "hark/test/wrong/set"
        assert docs["homeassistant/sensor/hark_test/model/config"]["value_template"] == "{{ value_json.model }}"
        state = sub.wait_for(lambda: sub.on("hark/test/state"), timeout=5)[-1].json()
        assert state["model"] == "tone" and state["model_created"]
        captures = tmp_path / "captures" / "beep"
        running.wait_for(lambda: len(list(captures.glob("*.wav"))) >= 2, timeout=15, what="two captures")
        assert any("ignored a retained message on hark/test/wrong/set" in line for line in running.log)
        assert not (tmp_path / "dataset").exists()
        sub.client.publish("hark/test/wrong/set", "", qos=1, retain=True).wait_for_publish(5)  # clear it
        time.sleep(0.5)
        newest = max(captures.glob("*.wav"))
        sub.client.publish("hark/test/wrong/set", "PRESS", qos=1).wait_for_publish(5)
        unknown = tmp_path / "dataset" / "_unknown_" / newest.name
        # The audio moves first, then its detection time is written beside it and the sidecar removed.
        running.wait_for(lambda: unknown.is_file() and not newest.with_suffix(".json").exists(), timeout=5,
                         what="the capture in _unknown_, its sidecar gone")
        assert not newest.exists()
        assert "detection_offset_s" in json.loads(unknown.with_suffix(".json").read_text())
    finally:
        sub.close()
        log = running.stop()
    assert "MQTT: that was wrong" in log and "Traceback" not in log


def test_a_filed_capture_keeps_where_its_detection_fired(tmp_path: Path) -> None:
    """Right and wrong captures keep their detection time beside them in the dataset (the trainer uses the
    part around it); an existing file of that name is never overwritten."""
    from hark.dataset import load_dataset

    captures, dataset = tmp_path / "captures", tmp_path / "dataset"
    for n, label in enumerate(("beep", "beep", "chirp")):
        audio = capture(captures, label, f"20260101-10000{n}-000001_0.900")
        write_json(audio.with_suffix(".json"), {"label": label, "score": 0.9, "model": "tones",
                                                "detection_offset_s": 0.05})
    right = judge(captures, dataset, "beep/20260101-100000-000001_0.900", "right")
    wrong = judge(captures, dataset, "chirp/20260101-100002-000001_0.900", "wrong")
    assert right is not None and wrong is not None
    for moved, verdict in ((right, "right"), (wrong, "wrong")):
        record = json.loads(moved.with_suffix(".json").read_text())
        assert record["detection_offset_s"] == 0.05 and record["verdict"] == verdict
    taken = dataset / "beep" / "20260101-100001-000001_0.900.json"
    taken.write_text("the user's notes")
    kept = judge(captures, dataset, "beep/20260101-100001-000001_0.900", "right")
    assert kept is not None and kept.is_file() and taken.read_text() == "the user's notes"
    [clip] = [c for c in load_dataset(dataset, warn=lambda _: None).classes["beep"] if c.path == right]
    assert clip.detection_s == pytest.approx(0.05)
