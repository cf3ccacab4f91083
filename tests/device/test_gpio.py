"""GPIO through gpiozero's own MockFactory: pin state sequences for detections, status and buttons."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from gpiozero import Device

from hark.config import ButtonConfig, BuzzerConfig, BuzzerStep, GpioConfig
from hark.errors import HarkError
from hark.gpio import Gpio, default_pattern

CLASSES = ["background", "beep", "chirp"]


@pytest.fixture(autouse=True)
def fresh_factory() -> Iterator[None]:
    yield
    if Device.pin_factory is not None:
        Device.pin_factory.close()
    Device.pin_factory = None


def states(pin_number: int) -> list[bool]:
    """The pin's level history as booleans (PWM pins record 0.0 .. 1.0)."""
    return [bool(s.state) for s in Device.pin_factory.pin(pin_number).states]


def durations(pin_number: int) -> list[float]:
    """How long each recorded level lasted before the next change."""
    return [s.timestamp for s in Device.pin_factory.pin(pin_number).states][1:]


def wait_until(condition, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_detection_blinks_its_own_led_and_beeps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hark.gpio")
    config = GpioConfig(mock=True, leds={"beep": 17, "chirp": 27}, led_seconds=0.4,
                        buzzer=BuzzerConfig(pin=22, patterns={"beep": (
                            BuzzerStep(tone="A5", seconds=0.05), BuzzerStep(tone=None, seconds=0.05),
                            BuzzerStep(tone="A5", seconds=0.1))}))
    gpio = Gpio(config, classes=CLASSES)
    assert gpio.available
    gpio.detection("beep")
    wait_until(lambda: len(states(17)) == 5 and len(states(22)) == 5)
    time.sleep(0.15)
    assert states(17) == [False, True, False, True, False]  # two 0.1 s blinks in 0.4 s
    assert states(27) == [False], "the other class's LED stays dark"
    assert states(22) == [False, True, False, True, False]
    on1, off1, on2 = durations(22)[1:4]
    # generous bounds: other jobs share the CPU; the pattern's shape (short, short, longer) still shows
    assert 0.03 <= on1 < 0.2 and 0.03 <= off1 < 0.2 and 0.08 <= on2 < 0.3
    assert "mock pin GPIO17 -> on" in caplog.text  # mock mode logs pin changes
    gpio.close()


def test_steady_led_one_led_for_all_and_default_beeps() -> None:
    config = GpioConfig(mock=True, led=5, led_mode="on", led_seconds=0.2, buzzer=BuzzerConfig(pin=6))
    gpio = Gpio(config, classes=CLASSES)
    gpio.detection("chirp")
    wait_until(lambda: len(states(5)) == 3 and len(states(6)) == 5)
    assert states(5) == [False, True, False]
    assert durations(5)[1] == pytest.approx(0.2, abs=0.08)
    assert states(6) == [False, True, False, True, False]  # chirp is the 2nd class: two beeps
    assert default_pattern(0) == (BuzzerStep(tone="A5", seconds=0.08),)
    gpio.close()


def test_tonal_buzzer_plays_the_pattern_tones(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hark.gpio")
    config = GpioConfig(mock=True, buzzer=BuzzerConfig(pin=12, tonal=True, patterns={"default": (
        BuzzerStep(tone="A5", seconds=0.05), BuzzerStep(tone=False, seconds=0.03), BuzzerStep(tone=1000, seconds=0.05),
    )}))
    gpio = Gpio(config, classes=CLASSES)
    gpio.detection("beep")
    wait_until(lambda: len(states(12)) == 5)
    assert states(12) == [False, True, False, True, False]
    tones = [r.getMessage() for r in caplog.records if "GPIO12 -> tone" in r.getMessage()]
    assert tones == ["mock pin GPIO12 -> tone 880 Hz", "mock pin GPIO12 -> tone 1000 Hz"]
    gpio.close()


def test_tone_outside_the_buzzer_range_is_refused() -> None:
    config = GpioConfig(mock=True, buzzer=BuzzerConfig(pin=12, tonal=True, mid_tone="A4", octaves=1, patterns={
        "beep": (BuzzerStep(tone="A7", seconds=0.05),)}))
    with pytest.raises(HarkError, match=r"gpio.buzzer.patterns.beep.0.tone: A7 .* outside the buzzer's range"):
        Gpio(config, classes=CLASSES, strict=True)


def test_active_low_led_drives_the_pin_low() -> None:
    gpio = Gpio(GpioConfig(mock=True, active_high=False, status_led=23), classes=CLASSES)
    assert states(23) == [False, True]  # off means high when active-low
    gpio.set_status("listening")
    assert states(23)[-1] is False
    gpio.close()


def test_status_led_listening_recording_error_muted() -> None:
    gpio = Gpio(GpioConfig(mock=True, status_led=23), classes=CLASSES)
    gpio.set_status("listening")
    assert states(23) == [False, True]
    Device.pin_factory.pin(23).clear_states()
    gpio.set_status("recording")
    time.sleep(0.55)
    fast = len(states(23))
    assert fast >= 5, "recording blinks fast (0.1 s)"
    Device.pin_factory.pin(23).clear_states()
    gpio.set_status("error")
    time.sleep(1.3)
    assert 2 <= len(states(23)) <= 4, "error blinks slowly (1 s on, 1 s off)"
    gpio.set_status("muted")
    assert states(23)[-1] is False
    gpio.close()


def test_button_press_records_its_label_and_long_press_background() -> None:
    asked: list[str | None] = []
    config = GpioConfig(mock=True, buttons=(ButtonConfig(pin=16, label="beep"),), long_press_s=0.3, bounce_s=0)
    gpio = Gpio(config, classes=CLASSES, on_button=asked.append)
    pin = Device.pin_factory.pin(16)
    pin.drive_low()
    time.sleep(0.05)
    pin.drive_high()
    wait_until(lambda: asked == ["beep"])
    pin.drive_low()
    time.sleep(0.5)
    pin.drive_high()
    wait_until(lambda: asked == ["beep", None])
    time.sleep(0.1)
    assert asked == ["beep", None], "a long press is background only, not also a clip of the label"
    gpio.close()


def test_the_wrong_button_calls_its_handler_once_a_press() -> None:
    pressed: list[bool] = []
    gpio = Gpio(GpioConfig(mock=True, wrong_button=20, bounce_s=0), classes=CLASSES,
                on_wrong=lambda: pressed.append(True))
    pin = Device.pin_factory.pin(20)
    pin.drive_low()
    time.sleep(0.05)
    pin.drive_high()
    wait_until(lambda: pressed == [True])
    time.sleep(0.1)
    assert pressed == [True]
    gpio.close()


def test_not_on_a_pi_and_not_mock_goes_on_without_gpio(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    Device.pin_factory = None
    config = GpioConfig(leds={"beep": 17})
    try:
        import lgpio  # noqa: F401
        pytest.skip("a real GPIO library is installed; this test is for machines without GPIO")
    except ImportError:
        pass
    gpio = Gpio(config, classes=CLASSES)
    assert not gpio.available
    assert "GPIO not available" in caplog.text and "gpio.mock: true" in caplog.text
    gpio.detection("beep")  # a no-op, not an error
    gpio.set_status("listening")
    gpio.close()
    with pytest.raises(HarkError, match="GPIO not available"):
        Gpio(config, classes=CLASSES, strict=True)


def test_nothing_configured_touches_no_pins() -> None:
    gpio = Gpio(GpioConfig(), classes=CLASSES)
    assert not gpio.available and Device.pin_factory is None
    gpio.detection("beep")
    gpio.close()


def test_one_pin_under_two_names_is_refused_in_run_as_in_check() -> None:
    """GPIO17 and BOARD11 are one pin: a config mistake, refused whether or not strict (hark run is not)."""
    from hark.config import GpioConfig
    from hark.errors import HarkError
    from hark.gpio import Gpio

    cfg = GpioConfig(mock=True, leds={"beep": "GPIO17", "chirp": "BOARD11"})
    for strict in (False, True):
        with pytest.raises(HarkError, match=r"^gpio.leds.chirp: GPIO17 is already used by gpio.leds.beep"):
            Gpio(cfg, classes=["background", "beep", "chirp"], strict=strict)
