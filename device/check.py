"""``hark check -c CONFIG``: everything ``hark run`` would refuse, found before it starts.

Checks the config (every key, type and range), the model bundle (hashes, format), that the
config's labels are the model's classes, the pins (built on gpiozero's MockFactory, so names,
clashes and buzzer tones are checked without touching a running daemon's pins), the MQTT
settings through the very function ``hark run`` uses (password file, the TLS context built
from the CA, certificate and key), the audio device when one is named, and the state
directory. Then it connects to the broker once, with its own client id: a broker it cannot
reach is a ``warn`` line with the reason (it may just be down), as is a password file that
other users can read. Prints one line per check; the first failure is the usual one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
from pathlib import Path

from hark.config import Config, load_config
from hark.errors import HarkError


def _ok(what: str, detail: str) -> None:
    print(f"ok    {what:<8} {detail}", flush=True)


def _pins(config: Config, classes: list[str]) -> str:
    from gpiozero import Device

    from hark.gpio import open_gpio, use_mock_factory

    gpio_cfg = config.gpio
    if not gpio_cfg.enabled:
        return "none configured"
    previous = Device.pin_factory
    use_mock_factory()
    try:
        gpio = open_gpio(config, classes=classes, strict=True)
        gpio.close()
    finally:
        Device.pin_factory.close()
        Device.pin_factory = previous
    parts = [f"{label} LED {pin}" for label, pin in gpio_cfg.leds.items()]
    if gpio_cfg.led is not None:
        parts.append(f"LED {gpio_cfg.led} for every class")
    if gpio_cfg.status_led is not None:
        parts.append(f"status LED {gpio_cfg.status_led}")
    if gpio_cfg.buzzer is not None:
        parts.append(f"{'tonal ' if gpio_cfg.buzzer.tonal else ''}buzzer {gpio_cfg.buzzer.pin}")
    parts += [f"button {b.pin} records {b.label}" for b in gpio_cfg.buttons]
    if gpio_cfg.mock:
        where = "mock pins"
    elif any(Path("/dev").glob("gpiochip*")):
        where = "GPIO chip found"
    else:
        where = "no GPIO chip here: hark run will go on without GPIO"
    return f"{', '.join(parts)} ({where})"


def _warn(what: str, detail: str) -> None:
    print(f"warn  {what:<8} {detail}", flush=True)


def secret_file_warning(path: Path, key: str) -> str | None:
    """Why the secret file ``path`` (config key ``key``) is exposed, or None: a password file others
    can read (or write) gives the broker login or the web page to anyone on the machine."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # a missing or unreadable file is an error of its own, raised where it is read
    if mode & stat.S_IRWXO:
        return (f"{key}: {path} can be read by every user of this machine (mode {stat.filemode(mode)}); "
                f"chmod o-rwx {path}")
    return None


def secret_files(config: Config) -> list[tuple[str, Path]]:
    """Every ``*password_file`` the config names, with its key (any section, so new ones are checked too)."""
    found: list[tuple[str, Path]] = []

    def walk(obj: object, prefix: str) -> None:
        if not dataclasses.is_dataclass(obj):
            return
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            key = f"{prefix}{f.name}"
            if f.name.endswith("password_file") and isinstance(value, Path):
                found.append((key, value))
            elif dataclasses.is_dataclass(value):
                walk(value, f"{key}.")

    walk(config, "")
    return found


def _mqtt(config: Config) -> str:
    from hark.mqtt import validate

    mqtt = config.mqtt
    if mqtt is None:
        return "off (no mqtt section)"
    validate(config)  # the password file, the TLS context: what hark run refuses, refused here the same way
    auth = "anonymous"
    if mqtt.username:
        auth = f"user {mqtt.username}, password {'from file' if mqtt.password_file else 'inline'} (not shown)"
    return (f"{mqtt.host}:{mqtt.effective_port}{' (TLS)' if mqtt.tls else ''}, {auth}, topics {mqtt.topic_root}/..., "
            f"discovery {'under ' + mqtt.discovery_prefix if mqtt.discovery else 'off'}")


def _state_dir(config: Config) -> str:
    path = config.resolve_state_dir()
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    if not os.access(probe, os.W_OK):
        raise HarkError(f"{path}: state directory is not writable (hark keeps its MQTT outbox there)")
    return f"{path}{'' if path.exists() else ' (will be created)'}"


def run_checks(config_path: str | Path) -> Config:
    """Run every check, printing a line each; raises :class:`HarkError` on the first problem."""
    config = load_config(config_path)
    _ok("config", str(config_path))
    from hark.daemon import load_pipeline

    pipeline = load_pipeline(config)  # exactly what hark run loads: manifest, head, frontend, labels, overrides
    model = pipeline.model
    classes = model.bundle.classes
    thresholds = pipeline.settings.thresholds
    _ok("model", f"{model.bundle.name} ({config.model}): "
        + ", ".join(f"{c} >= {thresholds[c]:.2f}" for c in classes))
    _ok("labels", "every label in the config is a class of the model")
    _ok("pins", _pins(config, classes))
    _ok("mqtt", _mqtt(config))
    if config.mqtt is not None:
        from hark.mqtt import probe_broker

        # The broker may be down while the config is right: its reason is a warning, not an error.
        reason = probe_broker(config.mqtt)
        if reason is None:
            _ok("broker", f"{config.mqtt.host}:{config.mqtt.effective_port} accepted the connection")
        else:
            _warn("broker", f"{reason}; hark run will keep trying")
    for key, path in secret_files(config):
        problem = secret_file_warning(path, key)
        if problem:
            _warn("secrets", problem)
    from hark.web import check_web

    _ok("web", check_web(config))
    if config.audio.device is not None:
        from hark.audio import find_input_device

        try:
            index = find_input_device(config.audio.device)
        except HarkError as err:
            raise config.error("audio.device", str(err)) from None
        _ok("audio", f"input device {config.audio.device!r} is #{index}")
    _ok("state", _state_dir(config))
    return config


def main(args: argparse.Namespace) -> int:
    run_checks(args.config)
    print("config, model and pins are fine", flush=True)
    return 0
