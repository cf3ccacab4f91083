"""Config loading: defaults, paths, and one error line naming file, line and key path."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from hark.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "hark.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_minimal_config_has_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model: models/tones\n"))
    assert config.model == (tmp_path / "models" / "tones").resolve()
    assert config.mqtt is None
    assert not config.gpio.enabled and not config.gpio.mock
    assert config.detection.thresholds == {}
    assert config.recording.clip_seconds == 1.0 and config.recording.capture is False


def test_full_config_and_relative_paths(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    text = """
model: ../model
state_dir: state
audio: {device: USB, rate: 48000}
detection:
  thresholds: {beep: 0.8}
  refractory_s: {chirp: 2}
gpio:
  mock: true
  active_high: false
  leds: {beep: 17, chirp: GPIO27}
  buzzer:
    pin: 22
    tonal: true
    patterns:
      default: [{tone: A5, seconds: 0.1}, {tone: off, seconds: 0.05}, {tone: 1000, seconds: 0.1}]
  status_led: BOARD29
  buttons:
    - {pin: 6, label: beep}
mqtt:
  host: broker.lan
  device_id: kitchen
  username: hark
  password_file: secret.txt
  tls: {ca_file: ca.pem}
  binary_sensor: true
  off_delay: 3
recording:
  dataset: ~/data
  capture: true
"""
    config = load_config(write(sub, text))
    assert config.model == tmp_path / "model"
    assert config.state_dir == sub / "state"
    assert config.audio.device == "USB" and config.audio.rate == 48000
    assert config.detection.thresholds == {"beep": 0.8}
    assert config.detection.refractory_s == {"chirp": 2.0}
    assert config.gpio.leds == {"beep": 17, "chirp": "GPIO27"}
    assert config.gpio.buzzer is not None and config.gpio.buzzer.tonal
    steps = config.gpio.buzzer.patterns["default"]
    assert [s.silent for s in steps] == [False, True, False] and steps[2].tone == 1000.0
    assert config.gpio.buttons[0].label == "beep"
    assert config.mqtt is not None
    assert config.mqtt.password_file == sub / "secret.txt"
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == sub / "ca.pem"
    assert config.mqtt.effective_port == 8883 and config.mqtt.topic_root == "hark/kitchen"
    assert config.recording.dataset == Path.home() / "data"
    assert config.lines["mqtt.off_delay"] == text.splitlines().index("  off_delay: 3") + 1


@pytest.mark.parametrize(("text", "line", "key", "problem"), [
    ("model: m\nfoo: 1\n", 2, "foo", "unknown key"),
    ("model: m\ngpio:\n  mock: yes please\n", 3, "gpio.mock", "expected true or false"),
    ("model: m\nmqtt:\n  host: h\n  port: 99999\n", 4, "mqtt.port", "out of range 1..65535"),
    ("model: m\nmqtt:\n  qos: 0\n", 3, "mqtt.qos", "out of range"),
    ("model: m\ndetection:\n  thresholds:\n    beep: 1.5\n", 4, "detection.thresholds.beep", "out of range"),
    ("model: m\ndetection:\n  thresholds:\n    ../x: 0.5\n", 4, "detection.thresholds.../x", "not a valid class label"),
    ("model: m\ngpio:\n  leds: {beep: 99}\n", 3, "gpio.leds.beep", "out of range"),
    ("model: m\ngpio:\n  led: GPIOX\n", 3, "gpio.led", "is not a pin"),
    ("model: m\ngpio:\n  led_mode: flash\n", 3, "gpio.led_mode", "not one of on, blink"),
    ("model: m\ngpio:\n  buttons:\n    - {pin: 5}\n", 4, "gpio.buttons.0.label", "required"),
    ("model: m\ngpio:\n  buzzer:\n    pin: 4\n    patterns:\n      beep: [{tone: Z9}]\n", 6,
     "gpio.buzzer.patterns.beep.0.tone", "not a tone"),
    ("model: m\ngpio:\n  led: 17\n  status_led: GPIO17\n", 4, "gpio.status_led", "already used by gpio.led"),
    ("model: m\ngpio:\n  led: 17\n  leds: {beep: 4}\n", 3, "gpio.led", "not both"),
    ("model: m\nmqtt:\n  device_id: kitchen/1\n", 3, "mqtt.device_id", "may only hold"),
    ("model: m\nmqtt:\n  base_topic: hark/#\n", 3, "mqtt.base_topic", "topic levels"),
    ("model: m\nmqtt:\n  password: x\n", 3, "mqtt.password", "needs a 'username'"),
    ("model: m\nrecording:\n  clip_seconds: [1]\n", 3, "recording.clip_seconds", "expected a single value"),
    ("model: m\naudio: 5\n", 2, "audio", "expected a mapping"),
    ("model: m\ndetection:\n  gate:\n    mode: sometimes\n", 4, "detection.gate.mode", "not one of activity"),
    ("model: m\ndetection:\n  gate:\n    margin_db: -1\n", 4, "detection.gate.margin_db", "out of range"),
    ("model: m\ndetection:\n  gate:\n    hold_s: 0\n", 4, "detection.gate.hold_s", "out of range"),
    ("model:\n", 1, "model", "must not be empty"),
    ("gpio: {}\n", 1, "model", "required"),
    ("model: m\nmodel: n\n", 2, "model", "given twice"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {key}: "), message
    assert problem in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"hark.yaml:3: not valid YAML: .* \(while parsing a flow .* at line 2\)"):
        load_config(write(tmp_path, "model: m\ngpio: [1\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"hark.yaml:1: model: required"):
        load_config(write(tmp_path, ""))


def test_password_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    config = load_config(write(tmp_path, "model: m\nmqtt:\n  username: u\n  password: hunter2secret\n"))
    assert config.mqtt is not None and config.mqtt.read_password() == "hunter2secret"
    assert "hunter2secret" not in repr(config)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "model: m\nmqtt:\n  username: u\n  password: [hunter2secret]\n"))
    assert "hunter2secret" not in str(err.value)
    assert "hunter2secret" not in caplog.text


def test_password_file_read_at_connect(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    config = load_config(write(tmp_path, "model: m\nmqtt:\n  username: u\n  password_file: pw\n"))
    assert config.mqtt is not None and config.mqtt.read_password() == "s3cret"


def test_labels_checked_against_the_model(tmp_path: Path) -> None:
    ok = load_config(write(tmp_path, "model: m\ngpio:\n  mock: true\n  leds:\n    beep: 17\n"))
    ok.check_labels(["background", "beep", "chirp"])
    config = load_config(write(tmp_path, "model: m\ngpio:\n  mock: true\n  leds:\n    beep: 17\n    dog: 27\n"))
    config2 = load_config(write(tmp_path, "model: m\ndetection:\n  thresholds: {dog: 0.5}\n"))
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'hark.yaml'}:3: detection.thresholds.dog: "
                                                    "the model has no class 'dog'")):
        config2.check_labels(["background", "beep", "chirp"])
    with pytest.raises(ConfigError, match="gpio.leds.dog"):
        config.check_labels(["background", "beep"])


def test_state_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(write(tmp_path, "model: m\nstate_dir: st\n"))
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/hark")
    assert config.resolve_state_dir() == Path("/var/lib/hark")
    monkeypatch.delenv("STATE_DIRECTORY")
    assert config.resolve_state_dir() == tmp_path / "st"
    bare = load_config(write(tmp_path, "model: m\n"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert bare.resolve_state_dir() == Path(os.path.expanduser("~/.local/state/hark"))


def test_shipped_example_config_loads() -> None:
    config = load_config(ROOT / "config" / "hark.yaml")
    assert config.model.name
    assert config.mqtt is not None


def test_gate_settings_reach_the_pipeline_settings(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, "model: m\n")).detection.gate.settings()
    assert default.mode == "activity" and default.hold_s == 1.0
    config = load_config(write(tmp_path, "model: m\ndetection:\n  gate: {mode: silence, margin_db: 12, hold_s: 1.5}\n"))
    settings = config.detection.gate.settings()
    assert (settings.mode, settings.margin_db, settings.hold_s) == ("silence", 12.0, 1.5)


@pytest.mark.parametrize(("text", "line", "key", "problem"), [
    ("model: !!python/name:os.system\n", 1, "model", "the tag tag:yaml.org,2002:python/name:os.system is not allowed"),
    ("model: m\nmqtt: !!python/object/apply:os.system [ls]\n", 2, "mqtt", "python/object/apply:os.system"),
    ("model: !custom m\n", 1, "model", "the tag !custom is not allowed"),
    ("model: m\naudio: {rate: !!int abc}\n", 2, "audio.rate", "'abc' is not a valid int"),
])
def test_yaml_tags_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int,
                                key: str, problem: str) -> None:
    from hark.cli import main

    path = write(tmp_path, text)
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"hark: error: {path}:{line}: {key}: ") and problem in err, err
