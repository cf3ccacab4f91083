"""Do something in the room: LEDs, a buzzer, a status LED and record buttons, through gpiozero.

* A detection lights its class's LED (``gpio.leds``) or the one LED (``gpio.led``): steady
  (``led_mode: on``) or blinking (``blink``) for ``led_seconds``; and plays the buzzer pattern
  for its class (``gpio.buzzer.patterns.<label>``, else ``default``, else ``n`` short beeps for
  the ``n``-th class so classes can be told apart by ear).
* The status LED: steady while listening, fast blink while recording, slow blink on an error,
  off while muted.
* A button records a clip of its label; held for ``long_press_s`` it records background.

gpiozero's own background threads do the LED timing; the buzzer has one worker thread, so a
detection never waits for a pattern to finish (a pattern still playing is cut short by the next).
``mock: true`` puts gpiozero on its :class:`~gpiozero.pins.mock.MockFactory` (PWM-capable pins,
for the tonal buzzer) and logs every pin change: the demo and the tests use it. On a machine
without GPIO and without ``mock``, :class:`Gpio` says so once and does nothing, and the daemon
goes on detecting and publishing.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal

from hark.config import BuzzerStep, Config, GpioConfig
from hark.detector import Detection
from hark.errors import HarkError
from hark.labels import BACKGROUND

log = logging.getLogger(__name__)

Status = Literal["listening", "recording", "error", "muted", "off"]
BLINK_S = 0.1  # LED blink half-period for a detection
BEEP_S = 0.08


def _logging_pin_class() -> type:
    """A PWM-capable mock pin that logs each change (the mock factory's only output is the log)."""
    from gpiozero.pins.mock import MockPWMPin

    class LoggingMockPin(MockPWMPin):
        def _change_state(self, value: Any) -> bool:
            changed = bool(super()._change_state(value))
            if changed and self._function == "output":
                log.info("mock pin %s -> %s", self.info.name, _shown_state(value, self._frequency))
            return changed

        def _set_frequency(self, value: Any) -> None:
            if value != self._frequency and value is not None:
                log.info("mock pin %s frequency %.0f Hz", self.info.name, value)
            super()._set_frequency(value)

    return LoggingMockPin


def _shown_state(value: Any, frequency: float | None) -> str:
    if frequency is not None and 0 < float(value) < 1:
        return f"tone {frequency:.0f} Hz"
    return "on" if value else "off"


def default_pattern(index: int) -> tuple[BuzzerStep, ...]:
    """``index + 1`` short beeps: the first class beeps once, the second twice, ..."""
    steps: list[BuzzerStep] = []
    for i in range(index + 1):
        if i:
            steps.append(BuzzerStep(tone=None, seconds=BEEP_S))
        steps.append(BuzzerStep(tone="A5", seconds=BEEP_S))
    return tuple(steps)


def use_mock_factory() -> Any:
    """Put gpiozero on a fresh logging MockFactory and return it."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = MockFactory(pin_class=_logging_pin_class())
    return Device.pin_factory


class _ConfigMistake(Exception):
    """A pin the config got wrong (used twice under two names, not on this board): refused in run and check alike."""


class Gpio:
    """The LEDs, buzzer, status LED and buttons of a :class:`~hark.config.GpioConfig`.

    ``classes``: the model's classes in order (for default beep patterns). ``on_button(label)``
    is called from gpiozero's thread when a button asks for a clip (``None``: background).
    ``strict``: raise :class:`HarkError` when the pins cannot be used instead of carrying on
    without them (``hark check`` uses it).
    """

    def __init__(self, config: GpioConfig, *, classes: list[str],
                 on_button: Callable[[str | None], None] | None = None, strict: bool = False,
                 on_wrong: Callable[[], None] | None = None) -> None:
        self.config = config
        self.classes = [c for c in classes if c != BACKGROUND]
        self.on_button = on_button
        self.on_wrong = on_wrong
        self.wrong_button: Any = None
        self.available = False
        self.leds: dict[str, Any] = {}
        self.led: Any = None
        self.status_led: Any = None
        self.buzzer: Any = None
        self.buttons: list[Any] = []
        self._devices: list[Any] = []
        self._keyed: list[tuple[str, Any]] = []
        self._status: Status = "off"
        self._beeps: queue.Queue[tuple[BuzzerStep, ...] | None] = queue.Queue(maxsize=1)
        self._cut = threading.Event()
        self._worker: threading.Thread | None = None
        if not config.enabled and not config.mock:
            return
        try:
            self._open(strict)
        except HarkError:
            self.close()
            raise

    # ------------------------------------------------------------ opening

    def _open(self, strict: bool) -> None:
        try:
            import gpiozero
            from gpiozero.exc import GPIOZeroError
        except ImportError:
            self._unavailable("gpiozero is not installed (pip install 'hark[device]')", strict)
            return
        if self.config.mock:
            use_mock_factory()
            log.info("GPIO: mock pins (gpiozero MockFactory); pin changes are logged")
        fallbacks: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as fallbacks:
                # gpiozero warns once per pin library it could not load; the reasons go into our one message.
                warnings.simplefilter("always", gpiozero.PinFactoryFallback)
                self._open_devices(gpiozero)
        except _ConfigMistake as err:
            # The same pin under two names (GPIO17 and BOARD11), a name the board does not have: the
            # config is wrong wherever it runs, so hark run refuses it exactly as hark check does.
            self.close()
            raise HarkError(str(err)) from None
        except (GPIOZeroError, ValueError, OSError, RuntimeError) as err:
            # gpiozero says why in its own words (no pin factory, no GPIO chip, a pin another process holds).
            self.close()
            tried = "; ".join(str(w.message) for w in fallbacks)
            self._unavailable(f"{type(err).__name__}: {err}" + (f" {tried}" if tried else ""), strict)
            return
        self.available = True
        if self.buzzer is not None:
            self._worker = threading.Thread(target=self._buzz_loop, name="hark-buzzer", daemon=True)
            self._worker.start()
        log.info("GPIO: %d LED(s), %s, status LED %s, %d button(s)",
                 len(self.leds) + (self.led is not None), "buzzer" if self.buzzer else "no buzzer",
                 "on" if self.status_led else "none", len(self.buttons))

    def _open_devices(self, gpiozero: Any) -> None:
        """Create every configured device; a gpiozero error leaves the ones made so far for close()."""
        cfg = self.config
        high = cfg.active_high
        for label, pin in cfg.leds.items():
            self.leds[label] = self._add(f"gpio.leds.{label}", lambda p=pin: gpiozero.LED(p, active_high=high))
        if cfg.led is not None:
            self.led = self._add("gpio.led", lambda: gpiozero.LED(cfg.led, active_high=high))
        if cfg.status_led is not None:
            self.status_led = self._add("gpio.status_led", lambda: gpiozero.LED(cfg.status_led, active_high=high))
        if cfg.buzzer is not None:
            b = cfg.buzzer
            if b.tonal:
                from gpiozero.tones import Tone

                self.buzzer = self._add("gpio.buzzer.pin", lambda: gpiozero.TonalBuzzer(
                    b.pin, mid_tone=Tone(b.mid_tone), octaves=b.octaves))
                self._check_tones()
            else:
                self.buzzer = self._add("gpio.buzzer.pin", lambda: gpiozero.Buzzer(b.pin, active_high=high))
        for i, button_cfg in enumerate(cfg.buttons):
            button = self._add(f"gpio.buttons.{i}.pin", lambda c=button_cfg: gpiozero.Button(
                c.pin, pull_up=True, bounce_time=cfg.bounce_s or None, hold_time=cfg.long_press_s))
            self._wire_button(button, button_cfg.label)
            self.buttons.append(button)
        if cfg.wrong_button is not None:
            self.wrong_button = self._add("gpio.wrong_button", lambda: gpiozero.Button(
                cfg.wrong_button, pull_up=True, bounce_time=cfg.bounce_s or None))
            self.wrong_button.when_pressed = self._wrong_pressed

    def _wrong_pressed(self) -> None:
        log.info("button %s pressed: that was wrong", self.wrong_button.pin)
        if self.on_wrong is None:
            return
        try:
            self.on_wrong()
        except Exception:  # gpiozero's thread must not die with the handler
            log.exception("'that was wrong' handler failed")

    def _unavailable(self, why: str, strict: bool) -> None:
        message = f"GPIO not available ({why}); set gpio.mock: true to try without a Raspberry Pi"
        if strict:
            raise HarkError(message)
        log.warning("%s; going on without LEDs, buzzer and buttons", message)

    def _add(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` the device for config key ``key``; a pin the config got wrong is a :class:`_ConfigMistake`."""
        from gpiozero.exc import GPIOPinInUse, PinInvalidPin

        try:
            device = make()
        except GPIOPinInUse as err:
            used = re.search(r"pin (\S+) is already in use", str(err))
            pin = used.group(1) if used else "this pin"
            owner = next((k for k, d in self._keyed if str(getattr(d, "pin", "")) == pin), None)
            raise _ConfigMistake(f"{key}: {pin} is already used by {owner or 'another device'} "
                                 "(the same pin under two names?)") from None
        except PinInvalidPin as err:
            raise _ConfigMistake(f"{key}: {err}") from None
        self._devices.append(device)
        self._keyed.append((key, device))
        return device

    def _check_tones(self) -> None:
        """Every tone of every pattern must lie in the tonal buzzer's range (mid_tone +- octaves)."""
        from gpiozero.tones import Tone

        low, high = self.buzzer.min_tone.frequency, self.buzzer.max_tone.frequency
        for name, steps in self.patterns_by_name().items():
            for i, step in enumerate(steps):
                if step.silent:
                    continue
                try:
                    freq = Tone(step.tone).frequency
                except ValueError as err:
                    raise HarkError(f"gpio.buzzer.patterns.{name}.{i}.tone: {err}") from None
                if not low - 0.5 <= freq <= high + 0.5:
                    raise HarkError(
                        f"gpio.buzzer.patterns.{name}.{i}.tone: {step.tone} ({freq:.0f} Hz) is outside the buzzer's "
                        f"range {low:.0f}..{high:.0f} Hz (set gpio.buzzer.mid_tone / octaves)")

    def _wire_button(self, button: Any, label: str) -> None:
        held = threading.Event()

        def on_held() -> None:
            held.set()
            log.info("button %s held: record background", button.pin)
            self._ask(None)

        def on_released() -> None:
            if held.is_set():
                held.clear()
                return
            log.info("button %s pressed: record %r", button.pin, label)
            self._ask(label)

        button.when_held = on_held
        button.when_released = on_released

    def _ask(self, label: str | None) -> None:
        if self.on_button is None:
            return
        try:
            self.on_button(label)
        except Exception:  # a failing handler must not kill gpiozero's event thread
            log.exception("button handler failed")

    # ------------------------------------------------------------ acting

    def patterns_by_name(self) -> dict[str, tuple[BuzzerStep, ...]]:
        patterns = dict(self.config.buzzer.patterns) if self.config.buzzer else {}
        for i, label in enumerate(self.classes):
            patterns.setdefault(label, patterns.get("default") or default_pattern(i))
        return patterns

    def pattern_for(self, label: str) -> tuple[BuzzerStep, ...]:
        patterns = self.config.buzzer.patterns if self.config.buzzer else {}
        if label in patterns:
            return patterns[label]
        if "default" in patterns:
            return patterns["default"]
        index = self.classes.index(label) if label in self.classes else 0
        return default_pattern(index)

    def on_detection(self, detection: Detection) -> None:
        """The :class:`hark.sinks.Sink` call: :meth:`detection` for its label."""
        self.detection(detection.label)

    def detection(self, label: str) -> None:
        """Light ``label``'s LED and start its beep pattern; returns at once."""
        if not self.available:
            return
        led = self.leds.get(label, self.led)
        if led is not None:
            seconds = self.config.led_seconds
            if self.config.led_mode == "on":
                led.blink(on_time=seconds, off_time=0, n=1)
            else:
                led.blink(on_time=BLINK_S, off_time=BLINK_S, n=max(1, round(seconds / (2 * BLINK_S))))
        if self.buzzer is not None:
            self._cut.set()  # a newer detection cuts the pattern still playing
            with contextlib.suppress(queue.Empty):
                self._beeps.get_nowait()
            self._beeps.put_nowait(self.pattern_for(label))

    def _buzz_loop(self) -> None:
        while True:
            pattern = self._beeps.get()
            if pattern is None:
                return
            self._cut.clear()
            try:
                for step in pattern:
                    self._sound(step)
                    if self._cut.wait(step.seconds):
                        break
            finally:
                self._silence()

    def _sound(self, step: BuzzerStep) -> None:
        if step.silent:
            self._silence()
        elif self.config.buzzer and self.config.buzzer.tonal:
            from gpiozero.tones import Tone

            self.buzzer.play(Tone(step.tone))
        else:
            self.buzzer.on()

    def _silence(self) -> None:
        if self.config.buzzer and self.config.buzzer.tonal:
            self.buzzer.stop()
        else:
            self.buzzer.off()

    def set_status(self, status: Status) -> None:
        """Show ``listening`` (on), ``recording`` (fast blink), ``error`` (slow blink), ``muted``/``off`` (off)."""
        if status == self._status:
            return
        self._status = status
        led = self.status_led
        if not self.available or led is None:
            return
        if status == "listening":
            led.on()
        elif status == "recording":
            led.blink(on_time=0.1, off_time=0.1)
        elif status == "error":
            led.blink(on_time=1.0, off_time=1.0)
        else:
            led.off()

    @property
    def status(self) -> Status:
        return self._status

    def close(self) -> None:
        """Stop the buzzer thread and release every pin (outputs end off)."""
        if self._worker is not None:
            self._cut.set()
            with contextlib.suppress(queue.Empty):
                self._beeps.get_nowait()
            self._beeps.put(None)
            self._worker.join(timeout=2)
            self._worker = None
        for device in reversed(self._devices):
            try:
                device.close()
            except Exception as err:  # closing must go on for the other pins
                log.debug("closing %r: %s", device, err)
        self._devices.clear()
        self.available = False


def open_gpio(config: Config, *, classes: list[str], on_button: Callable[[str | None], None] | None = None,
              strict: bool = False, on_wrong: Callable[[], None] | None = None) -> Gpio:
    """:class:`Gpio` for a whole config: a problem with a ``gpio.*`` key is reported at its line in the file."""
    try:
        return Gpio(config.gpio, classes=classes, on_button=on_button, strict=strict, on_wrong=on_wrong)
    except HarkError as err:
        key, sep, problem = str(err).partition(": ")
        if sep and key.startswith("gpio."):
            raise config.error(key, problem) from None
        raise
