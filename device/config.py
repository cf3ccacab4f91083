"""The daemon's settings: frozen dataclasses read from one YAML file, checked key by key.

Every setting the daemon has lives here with its default, so a config holding only
``model:`` runs. The YAML is composed to nodes first (not loaded straight to dicts) so that
every problem -- an unknown key, a wrong type, a value out of range -- is reported as one
line ``CONFIG:LINE: key.path: problem`` that points the user at the exact place to fix.
Relative paths are resolved against the config file's folder, so a config and its model can
be moved together. Secrets (the MQTT password) are kept out of ``repr`` and out of errors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from hark.errors import HarkError
from hark.labels import BACKGROUND, is_valid_label

Pin = Union[int, str]  # noqa: UP007 - the builder below inspects this alias at runtime
PIN_PATTERN = re.compile(r"(GPIO|BCM|BOARD|WPI|J8:|P1:)?[0-9]{1,3}", re.IGNORECASE)
TOPIC_PART = re.compile(r"[A-Za-z0-9_-]+")
NOTE_PATTERN = re.compile(r"[A-Ga-g][#b♭♯]?[0-9]")


class ConfigError(HarkError):
    """A config file that cannot be used; the message names file, line and key path."""


def _meta(*, minimum: float | None = None, maximum: float | None = None,
          check: Callable[[Any], str | None] | None = None, key: Callable[[Any], str | None] | None = None,
          secret: bool = False, doc: str = "") -> dict[str, Any]:
    return {"min": minimum, "max": maximum, "check": check, "key": key, "secret": secret, "doc": doc}


def _check_label_key(value: Any) -> str | None:
    if not is_valid_label(value):
        return f"{str(value)!r} is not a valid class label"
    return None


def _check_pin(value: Any) -> str | None:
    if isinstance(value, bool):
        return "a pin is a GPIO number (17) or a name ('GPIO17', 'BOARD11')"
    if isinstance(value, int):
        return None if 0 <= value <= 53 else f"GPIO number {value} is out of range 0..53"
    if isinstance(value, str) and PIN_PATTERN.fullmatch(value):
        return None
    return f"{value!r} is not a pin (a GPIO number like 17 or a name like 'GPIO17' or 'BOARD11')"


def _check_topic_part(value: Any) -> str | None:
    if value is None or TOPIC_PART.fullmatch(value):
        return None
    return f"{value!r} may only hold letters, digits, '_' and '-' (it becomes part of MQTT topics)"


def _check_host(value: Any) -> str | None:
    """A host name or address: not empty, no blanks or URL parts (paho wants the bare name)."""
    if not value.strip():
        return "must not be empty (the broker's host name or address)"
    if len(value) > 253 or any(c.isspace() for c in value) or "://" in value or "/" in value:
        return f"{value!r:.60} is not a host name or address (no blanks, scheme or path; the port goes in mqtt.port)"
    return None


def _check_base_topic(value: Any) -> str | None:
    parts = value.split("/")
    if not value or any(not TOPIC_PART.fullmatch(p) for p in parts):
        return f"{value!r} must be topic levels of letters, digits, '_' and '-' separated by '/'"
    return None


def _check_tone(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 20 <= value <= 20000:
        return None
    if isinstance(value, str) and (value.lower() in ("off", "rest") or NOTE_PATTERN.fullmatch(value)):
        return None
    return f"{value!r} is not a tone (a note like 'A5', a frequency in Hz, or off)"


def _check_audio_device(value: Any) -> str | None:
    if isinstance(value, bool) or (isinstance(value, int) and value < 0):
        return f"{value!r} is not an input device (a name substring or an index >= 0)"
    return None


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class AudioConfig:
    """Where sound comes from."""

    device: int | str | None = field(default=None, metadata=_meta(check=_check_audio_device))
    rate: int | None = field(default=None, metadata=_meta(minimum=8000, maximum=192000))


@dataclass(frozen=True)
class GateConfig:
    """The activity gate (:mod:`hark.activity`): what counts as nothing happening, so nothing is computed."""

    # activity: judged against the room's own noise floor; silence: only digital silence (-70 dBFS); off.
    mode: Literal["activity", "silence", "off"] = "activity"
    margin_db: float = field(default=9.0, metadata=_meta(minimum=0.0, maximum=60.0))
    hold_s: float | None = field(default=1.0, metadata=_meta(minimum=0.08, maximum=30.0))

    def settings(self) -> Any:
        """As :class:`hark.activity.GateSettings` (the pipeline's)."""
        from hark.activity import GateSettings

        return GateSettings(mode=self.mode, margin_db=self.margin_db, hold_s=self.hold_s)


@dataclass(frozen=True)
class DetectionConfig:
    """Overrides of the thresholds and refractory periods the trainer chose, the second opinion, the gate."""

    thresholds: dict[str, float] = field(default_factory=dict,
                                         metadata=_meta(minimum=0.0, maximum=1.0, key=_check_label_key))
    refractory_s: dict[str, float] = field(default_factory=dict,
                                           metadata=_meta(minimum=0.0, maximum=600.0, key=_check_label_key))
    verify: bool = True
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class BuzzerStep:
    """One step of a buzzer pattern: a tone (or silence) held for some seconds."""

    # YAML reads a bare ``off`` as false, so false means silence too.
    tone: bool | float | str | None = field(default="A5", metadata=_meta(check=_check_tone))
    seconds: float = field(default=0.1, metadata=_meta(minimum=0.01, maximum=10.0))

    @property
    def silent(self) -> bool:
        return self.tone in (None, False) or (isinstance(self.tone, str) and self.tone.lower() in ("off", "rest"))


@dataclass(frozen=True)
class BuzzerConfig:
    """A buzzer: ``tonal: false`` for an active buzzer (on/off), ``true`` for a passive one (PWM tones)."""

    pin: Pin = field(metadata=_meta(check=_check_pin))
    tonal: bool = False
    mid_tone: float | str = field(default="A5", metadata=_meta(check=_check_tone))
    octaves: int = field(default=1, metadata=_meta(minimum=1, maximum=3))
    patterns: dict[str, tuple[BuzzerStep, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ButtonConfig:
    """A button that records a clip of ``label``; held for ``long_press_s`` it records background."""

    pin: Pin = field(metadata=_meta(check=_check_pin))
    label: str = field(metadata=_meta(check=_check_label_key))


@dataclass(frozen=True)
class GpioConfig:
    """LEDs, buzzer, status LED and buttons (BCM numbers or gpiozero pin names)."""

    mock: bool = False
    active_high: bool = True
    led: Pin | None = field(default=None, metadata=_meta(check=_check_pin))
    leds: dict[str, Pin] = field(default_factory=dict, metadata=_meta(key=_check_label_key, check=_check_pin))
    led_mode: Literal["on", "blink"] = "blink"
    led_seconds: float = field(default=2.0, metadata=_meta(minimum=0.05, maximum=600.0))
    buzzer: BuzzerConfig | None = None
    status_led: Pin | None = field(default=None, metadata=_meta(check=_check_pin))
    buttons: tuple[ButtonConfig, ...] = ()
    long_press_s: float = field(default=1.5, metadata=_meta(minimum=0.2, maximum=30.0))
    bounce_s: float = field(default=0.05, metadata=_meta(minimum=0.0, maximum=1.0))
    # "That was wrong": moves the latest detection's capture into the dataset's _unknown_ folder.
    wrong_button: Pin | None = field(default=None, metadata=_meta(check=_check_pin))

    @property
    def enabled(self) -> bool:
        return bool(self.led is not None or self.leds or self.buzzer or self.status_led is not None or self.buttons
                    or self.wrong_button is not None)


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the broker; ``ca_file`` empty means the system's CAs."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False


@dataclass(frozen=True)
class MqttConfig:
    """The broker and how hark appears on it (and in Home Assistant)."""

    host: str = field(default="localhost", metadata=_meta(check=_check_host))
    port: int | None = field(default=None, metadata=_meta(minimum=1, maximum=65535))
    device_id: str | None = field(default=None, metadata=_meta(check=_check_topic_part))
    name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False, metadata=_meta(secret=True))
    password_file: Path | None = None
    tls: TlsConfig | None = None
    # QoS 0 could drop events without anyone knowing, so events go at 1 (at least once) or 2.
    qos: int = field(default=1, metadata=_meta(minimum=1, maximum=2))
    keepalive: int = field(default=30, metadata=_meta(minimum=2, maximum=3600))
    base_topic: str = field(default="hark", metadata=_meta(check=_check_base_topic))
    discovery: bool = True
    discovery_prefix: str = field(default="homeassistant", metadata=_meta(check=_check_base_topic))
    binary_sensor: bool = False
    off_delay: float = field(default=5.0, metadata=_meta(minimum=0.1, maximum=3600.0))
    outbox_max: int = field(default=10000, metadata=_meta(minimum=1, maximum=1_000_000))
    flush_s: float = field(default=10.0, metadata=_meta(minimum=0.0, maximum=600.0))
    reconnect_min_s: float = field(default=1.0, metadata=_meta(minimum=0.1, maximum=60.0))
    reconnect_max_s: float = field(default=60.0, metadata=_meta(minimum=0.1, maximum=3600.0))
    # No PUBACK for the event in flight this long: reconnect, and it is sent again.
    ack_timeout_s: float = field(default=30.0, metadata=_meta(minimum=1.0, maximum=3600.0))
    # Events stuck this long on a connected broker: stop pinging the systemd watchdog (a restart follows).
    stuck_s: float = field(default=300.0, metadata=_meta(minimum=1.0, maximum=86400.0))

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls else 1883)

    @property
    def effective_device_id(self) -> str:
        if self.device_id:
            return self.device_id
        host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "hark"
        return host.lower()

    @property
    def topic_root(self) -> str:
        return f"{self.base_topic}/{self.effective_device_id}"

    def read_password(self) -> str | None:
        """The password, from the config or its file (read when connecting, never logged)."""
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            try:
                return self.password_file.read_text(encoding="utf-8").strip()
            except OSError as err:
                raise HarkError(f"{self.password_file}: cannot read the MQTT password file ({err.strerror})") from None
        return None


@dataclass(frozen=True)
class RecordingConfig:
    """Where button/MQTT recordings and detection captures go."""

    dataset: Path | None = None
    clip_seconds: float = field(default=1.0, metadata=_meta(minimum=0.2, maximum=30.0))
    background_seconds: float = field(default=20.0, metadata=_meta(minimum=1.0, maximum=600.0))
    max_seconds: float = field(default=60.0, metadata=_meta(minimum=1.0, maximum=600.0))
    capture: bool = False
    capture_seconds: float = field(default=3.0, metadata=_meta(minimum=0.5, maximum=30.0))
    captures: Path | None = None
    # What a remote request (MQTT record/set, a button) may ask for: the model's classes and these
    # new labels (a new class to train); the shortest clip; how many clips a minute.
    labels: tuple[str, ...] = field(default=(), metadata=_meta(check=_check_label_key))
    min_seconds: float = field(default=0.5, metadata=_meta(minimum=0.1, maximum=30.0))
    max_per_minute: int = field(default=10, metadata=_meta(minimum=1, maximum=600))
    # Recording (clips and captures) stops with one warning once the dataset and captures folders hold this much.
    max_dataset_mb: float = field(default=1000.0, metadata=_meta(minimum=1.0, maximum=1_000_000.0))


LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class WebTlsConfig:
    """HTTPS for the page: a certificate chain and its private key (PEM files)."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class WebConfig:
    """The device's own page (:mod:`hark.web`); off unless the config has a ``web:`` section."""

    port: int = field(default=8080, metadata=_meta(minimum=1, maximum=65535))
    bind: str = "127.0.0.1"
    password_file: Path | None = None
    tls: WebTlsConfig | None = None
    upload_max_mb: float = field(default=200.0, metadata=_meta(minimum=1.0, maximum=4096.0))
    session_hours: float = field(default=24.0 * 7, metadata=_meta(minimum=0.1, maximum=24.0 * 365))

    @property
    def loopback(self) -> bool:
        return self.bind in LOOPBACK_BINDS

    def read_password(self) -> str | None:
        """The page's password from ``password_file`` (first line, blanks stripped), never logged."""
        if self.password_file is None:
            return None
        try:
            text = self.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise HarkError(f"{self.password_file}: cannot read the web password file ({reason})") from None
        password = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not password:
            raise HarkError(f"{self.password_file}: the web password file is empty")
        return password


@dataclass(frozen=True)
class Config:
    """Everything ``hark run`` needs; built by :func:`load_config`."""

    model: Path
    state_dir: Path | None = None
    audio: AudioConfig = field(default_factory=AudioConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    mqtt: MqttConfig | None = None
    recording: RecordingConfig = field(default_factory=RecordingConfig)
    web: WebConfig | None = None
    source: Path = field(default=Path("hark.yaml"), compare=False, metadata=_meta(doc="internal"))
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False, metadata=_meta(doc="internal"))

    def error(self, key_path: str, problem: str) -> ConfigError:
        """A :class:`ConfigError` pointing at ``key_path``'s line (or the file when it has none)."""
        probe = key_path
        line = self.lines.get(probe)
        while line is None and "." in probe:
            probe = probe.rsplit(".", 1)[0]
            line = self.lines.get(probe)
        where = f"{self.source}:{line}" if line else f"{self.source}"
        return ConfigError(f"{where}: {key_path}: {problem}")

    def resolve_state_dir(self) -> Path:
        """``$STATE_DIRECTORY`` (systemd) first, then ``state_dir`` of the config, else ``~/.local/state/hark``."""
        env = os.environ.get("STATE_DIRECTORY")
        if env:
            return Path(env.split(":")[0])
        if self.state_dir is not None:
            return self.state_dir
        return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "hark"

    def check_labels(self, labels: list[str]) -> None:
        """Raise when an override, LED, pattern or button names a class the model does not have."""
        known = set(labels) - {BACKGROUND}
        named: list[tuple[str, str]] = []
        named += [(f"detection.thresholds.{k}", k) for k in self.detection.thresholds]
        named += [(f"detection.refractory_s.{k}", k) for k in self.detection.refractory_s]
        named += [(f"gpio.leds.{k}", k) for k in self.gpio.leds]
        if self.gpio.buzzer:
            named += [(f"gpio.buzzer.patterns.{k}", k) for k in self.gpio.buzzer.patterns if k != "default"]
        named += [(f"gpio.buttons.{i}.label", b.label) for i, b in enumerate(self.gpio.buttons)]
        for key_path, label in named:
            if label not in known:
                raise self.error(key_path, f"the model has no class {label!r} (it has {', '.join(sorted(known))})")


# ---------------------------------------------------------------- loading

_PLAIN_TAG = "tag:yaml.org,2002:"  # YAML's own tags (str, int, map...); anything else is refused


class _Builder:
    """Turns composed YAML nodes into the dataclasses above, recording the line of every key."""

    def __init__(self, source: Path, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.base = source.parent
        self.loader = loader
        self.lines: dict[str, int] = {}

    def fail(self, node: yaml.Node, path: str, problem: str) -> ConfigError:
        where = f"{self.source}:{node.start_mark.line + 1}"
        return ConfigError(f"{where}: {path or '(top level)'}: {problem}")

    def scalar(self, node: yaml.Node, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            raise self.fail(node, path, f"expected a single value, got {kind}")
        try:
            return self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            # A malformed value of an explicit tag (``!!int abc``): one line, not a traceback.
            kind = node.tag.removeprefix(_PLAIN_TAG)
            raise self.fail(node, path, f"{node.value!r:.60} is not a valid {kind}") from None

    def build(self, kind: Any, node: yaml.Node, path: str, meta: dict[str, Any]) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if not node.tag.startswith(_PLAIN_TAG) or node.tag.startswith(_PLAIN_TAG + "python/"):
            raise self.fail(node, path, f"the tag {node.tag} is not allowed; hark configs hold plain values only")
        origin = typing.get_origin(kind)
        args = typing.get_args(kind)
        if origin in (Union, types.UnionType):
            options = [a for a in args if a is not type(None)]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                if type(None) in args:
                    return None
                raise self.fail(node, path, "must not be empty")
            if len(options) == 1:
                return self.build(options[0], node, path, meta)
            value = self.scalar(node, path)
            return self.check(self.any_of(options, value, node, path, meta), node, path, meta)
        if dataclasses.is_dataclass(kind):
            return self.dataclass(kind, node, path)
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            raise self.fail(node, path, "must not be empty")
        if origin is dict:
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(node, path, "expected a mapping of key: value")
            out = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node, path)
                sub = f"{path}.{key}"
                if meta.get("key") and (problem := meta["key"](key)):
                    raise self.fail(key_node, sub, problem)
                if key in out:
                    raise self.fail(key_node, sub, "given twice")
                self.lines[sub] = key_node.start_mark.line + 1
                out[key] = self.build(args[1], value_node, sub, meta)
            return out
        if origin is tuple:
            if not isinstance(node, yaml.SequenceNode):
                raise self.fail(node, path, "expected a list")
            return tuple(self.build(args[0], item, f"{path}.{i}", meta) for i, item in enumerate(node.value))
        if origin is Literal:
            value = self.scalar(node, path)
            if value not in args:
                raise self.fail(node, path, f"{value!r} is not one of {', '.join(map(str, args))}")
            return value
        value = self.scalar(node, path)
        return self.check(self.any_of([kind], value, node, path, meta), node, path, meta)

    def any_of(self, kinds: list[Any], value: Any, node: yaml.Node, path: str, meta: dict[str, Any]) -> Any:
        for kind in kinds:
            if kind is bool and isinstance(value, bool):
                return value
            if kind is int and isinstance(value, int) and not isinstance(value, bool):
                return value
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if kind is str and isinstance(value, str):
                return value
            if kind is Path and isinstance(value, str) and value:
                return (self.base / Path(value).expanduser()).resolve()
        names = {bool: "true or false", int: "a whole number", float: "a number", str: "text", Path: "a path"}
        wanted = " or ".join(names.get(k, str(k)) for k in kinds)
        shown = "(hidden)" if meta.get("secret") else repr(value)
        raise self.fail(node, path, f"expected {wanted}, got {shown}")

    def check(self, value: Any, node: yaml.Node, path: str, meta: dict[str, Any]) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            # YAML's .nan and .inf pass every range comparison; no setting means them.
            raise self.fail(node, path, f"{value} is not a finite number")
        low, high = meta.get("min"), meta.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                (low is not None and value < low) or (high is not None and value > high)):
            raise self.fail(node, path, f"{value} is out of range {low}..{high}")
        if meta.get("check") and (problem := meta["check"](value)):
            raise self.fail(node, path, problem)
        return value

    def dataclass(self, cls: Any, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        if not isinstance(node, yaml.MappingNode):
            what = cls.__name__.removesuffix("Config").lower() or "top-level"
            raise self.fail(node, path, f"expected a mapping of {what} settings (key: value)")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("doc") != "internal"}
        values: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, path)
            sub = f"{path}.{key}" if path else str(key)
            if key not in fields:
                raise self.fail(key_node, sub, f"unknown key (known here: {', '.join(fields)})")
            if key in values:
                raise self.fail(key_node, sub, "given twice")
            self.lines[sub] = key_node.start_mark.line + 1
            values[key] = self.build(hints[key], value_node, sub, dict(fields[key].metadata))
        for name, f in fields.items():
            if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise self.fail(node, f"{path}.{name}" if path else name, "required")
        return cls(**values)


def load_config(path: str | Path) -> Config:
    """Read and check the config at ``path``; :class:`ConfigError` naming file, line and key on any problem."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{source}: cannot read the config ({err})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else 0
        context = f" ({err.context} at line {err.context_mark.line + 1})" if err.context and err.context_mark else ""
        raise ConfigError(f"{source}:{line}: not valid YAML: {err.problem}{context}") from None
    finally:
        loader.dispose()
    if node is None:
        raise ConfigError(f"{source}:1: model: required (the config is empty)")
    builder = _Builder(source, loader)
    config = builder.dataclass(Config, node, "")
    config = dataclasses.replace(config, source=source, lines=builder.lines)
    _cross_check(config)
    return config


def _cross_check(config: Config) -> None:
    """Rules between keys: one LED style, one password source, no pin used twice."""
    gpio = config.gpio
    if gpio.led is not None and gpio.leds:
        raise config.error("gpio.led", "give either one 'led' for every class or 'leds' per class, not both")
    pins: dict[str, str] = {}

    def claim(pin: Pin | None, key_path: str) -> None:
        if pin is None:
            return
        name = f"GPIO{pin}" if isinstance(pin, int) else str(pin).upper().replace("BCM", "GPIO")
        if name in pins:
            raise config.error(key_path, f"pin {pin} is already used by {pins[name]}")
        pins[name] = key_path

    claim(gpio.led, "gpio.led")
    for label, pin in gpio.leds.items():
        claim(pin, f"gpio.leds.{label}")
    claim(gpio.status_led, "gpio.status_led")
    if gpio.buzzer:
        claim(gpio.buzzer.pin, "gpio.buzzer.pin")
        for name in gpio.buzzer.patterns:
            if name != "default" and not is_valid_label(name):
                raise config.error(f"gpio.buzzer.patterns.{name}", "a pattern is named 'default' or after a class")
    for i, button in enumerate(gpio.buttons):
        claim(button.pin, f"gpio.buttons.{i}.pin")
    claim(gpio.wrong_button, "gpio.wrong_button")
    mqtt = config.mqtt
    if mqtt is not None:
        if mqtt.password is not None and mqtt.password_file is not None:
            raise config.error("mqtt.password_file", "give either 'password' or 'password_file', not both")
        if (mqtt.password is not None or mqtt.password_file is not None) and not mqtt.username:
            raise config.error("mqtt.password" if mqtt.password is not None else "mqtt.password_file",
                               "a password needs a 'username'")
        if mqtt.reconnect_max_s < mqtt.reconnect_min_s:
            raise config.error("mqtt.reconnect_max_s", "must not be below reconnect_min_s")
        if mqtt.tls and (mqtt.tls.cert_file is None) != (mqtt.tls.key_file is None):
            raise config.error("mqtt.tls", "a client certificate needs both cert_file and key_file")
    if config.recording.min_seconds > min(config.recording.clip_seconds, config.recording.background_seconds):
        raise config.error("recording.min_seconds", "must not be above recording.clip_seconds or background_seconds")
    if config.recording.capture_seconds > config.recording.max_seconds:
        raise config.error("recording.capture_seconds", "must not be above recording.max_seconds")
    web = config.web
    if web is not None and not web.loopback and web.password_file is None:
        # The page controls a microphone in someone's home: open to the network only with a password.
        raise config.error("web.bind", f"{web.bind!r} opens the page to the network: a web.password_file is "
                           "required (the page controls the microphone)")
