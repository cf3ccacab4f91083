"""Draw docs/images/wiring.png: the LEDs, buzzer and buttons on the pins config/hark.yaml uses.

    .venv/bin/python docs/images/make_wiring.py   # needs matplotlib (the trainer extra)

The picture is a schematic, not a breadboard photo: each part on its own row between the Pi's pin
(BCM number, physical header pin in brackets) and the ground bus, so it reads at a glance which
wire goes where.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch, Polygon  # noqa: E402

OUT = Path(__file__).with_name("wiring.png")
SIGNAL, POWER, GROUND = "#1f4e9c", "#c0392b", "#222222"
GND_X = 17.6  # the ground bus
PI_RIGHT = 2.6  # where the pin stubs leave the Pi


def wire(ax, xs, ys, color=SIGNAL, lw=2.2, zorder=2):
    ax.plot(xs, ys, color=color, lw=lw, solid_capstyle="round", zorder=zorder)


def dot(ax, x, y, color=GROUND):
    ax.add_patch(Circle((x, y), 0.09, color=color, zorder=4))


def resistor(ax, x0, x1, y, label):
    """A zigzag resistor from x0 to x1 at height y, with its value above."""
    n = 6
    xs = np.linspace(x0 + 0.15, x1 - 0.15, 2 * n + 1)
    ys = [y] + [y + (0.22 if k % 2 else -0.22) for k in range(1, 2 * n)] + [y]
    wire(ax, [x0, x0 + 0.15], [y, y])
    wire(ax, xs, ys)
    wire(ax, [x1 - 0.15, x1], [y, y])
    ax.text((x0 + x1) / 2, y + 0.38, label, ha="center", va="bottom", fontsize=11)


def led(ax, x, y, color, label):
    """An LED pointing right (anode left, cathode right), 0.8 wide, with its light arrows."""
    ax.add_patch(Polygon([[x, y - 0.3], [x, y + 0.3], [x + 0.6, y]], closed=True, fc=color, ec=GROUND,
                         lw=1.6, zorder=3))
    wire(ax, [x + 0.6, x + 0.6], [y - 0.3, y + 0.3], color=GROUND, lw=2.2)
    for dx in (0.15, 0.4):
        ax.annotate("", xy=(x + dx + 0.35, y + 0.75), xytext=(x + dx, y + 0.38),
                    arrowprops=dict(arrowstyle="->", color=color, lw=1.5))
    ax.text(x + 1.0, y + 0.12, label, ha="left", va="bottom", fontsize=10.5)


def ground_tap(ax, x, y):
    wire(ax, [x, GND_X], [y, y], color=GROUND)
    dot(ax, GND_X, y)


def main() -> None:
    fig, ax = plt.subplots(figsize=(15.5, 9.2))
    ax.set_xlim(-1.3, 18.4)
    ax.set_ylim(-1.9, 12.6)
    ax.set_aspect("equal")
    ax.axis("off")

    # The Pi: the pins used, in an order that keeps wires from crossing.
    pins = {  # row name: (label at the stub, y)
        "led1": ("GPIO17 (pin 11)", 10.6),
        "led2": ("GPIO27 (pin 13)", 9.0),
        "status": ("GPIO5 (pin 29)", 7.4),
        "5v": ("5V (pin 2)", 5.9),
        "buzzer": ("GPIO22 (pin 15)", 3.9),
        "button": ("GPIO6 (pin 31)", 1.9),
        "wrong": ("GPIO21 (pin 40)", 0.7),
        "gnd": ("GND (pin 39)", -0.6),
    }
    ax.add_patch(FancyBboxPatch((-1.0, -1.1), PI_RIGHT + 0.3, 12.5, boxstyle="round,pad=0.1", fc="#e8f5e9",
                                ec="#2e7d32", lw=2, zorder=1))
    ax.text(0.65, 11.75, "Raspberry Pi", ha="center", va="center", fontsize=14, weight="bold", color="#1b5e20")
    ax.text(0.65, 11.3, "BCM number (header pin)", ha="center", va="center", fontsize=9.5, color="#1b5e20")
    for name, (label, y) in pins.items():
        color = POWER if name == "5v" else GROUND if name == "gnd" else SIGNAL
        ax.add_patch(Circle((PI_RIGHT - 0.55, y), 0.13, fc="#fdd835", ec=GROUND, lw=1.2, zorder=3))
        ax.text(PI_RIGHT - 0.8, y, label, ha="right", va="center", fontsize=10.5, weight="bold", color=color)

    # Ground bus, back to the Pi's GND.
    wire(ax, [GND_X, GND_X], [pins["gnd"][1], pins["led1"][1]], color=GROUND, lw=3)
    wire(ax, [PI_RIGHT - 0.42, GND_X], [pins["gnd"][1]] * 2, color=GROUND, lw=3)
    dot(ax, GND_X, pins["gnd"][1])
    ax.text(GND_X + 0.2, pins["led1"][1] + 0.15, "GND", fontsize=12, weight="bold", va="bottom", ha="center")

    # LEDs: pin -> 330 ohm -> LED (long leg, anode) -> ground (short leg, cathode).
    for name, color, label in [("led1", "#e53935", "LED for knock  (leds: {knock: 17})"),
                               ("led2", "#fb8c00", "LED for doorbell  (leds: {doorbell: 27})"),
                               ("status", "#43a047", "status LED  (status_led: 5)")]:
        y = pins[name][1]
        wire(ax, [PI_RIGHT - 0.42, 4.2], [y, y])
        resistor(ax, 4.2, 6.4, y, "330 Ω")
        wire(ax, [6.4, 8.2], [y, y])
        led(ax, 8.2, y, color, label)
        ground_tap(ax, 8.8, y)

    # Buzzer through an NPN transistor: the Pi's pin gives 3.3 V and a few mA; the buzzer draws
    # 20-30 mA from 5 V, switched on the low side.
    yb = pins["buzzer"][1]
    y5 = pins["5v"][1]
    bx = 9.0  # the transistor's centre
    wire(ax, [PI_RIGHT - 0.42, 4.2], [yb, yb])
    resistor(ax, 4.2, 6.4, yb, "1 kΩ")
    wire(ax, [6.4, bx - 0.35], [yb, yb])
    ax.add_patch(Circle((bx, yb), 0.55, fc="white", ec=GROUND, lw=1.6, zorder=3))
    wire(ax, [bx - 0.15, bx - 0.15], [yb - 0.32, yb + 0.32], color=GROUND, lw=3, zorder=5)  # base bar
    wire(ax, [bx - 0.55, bx - 0.15], [yb, yb], color=SIGNAL, zorder=5)
    wire(ax, [bx - 0.15, bx + 0.3], [yb + 0.15, yb + 0.5], color=GROUND, zorder=5)  # collector
    ax.annotate("", xy=(bx + 0.3, yb - 0.5), xytext=(bx - 0.15, yb - 0.15), zorder=5,
                arrowprops=dict(arrowstyle="-|>", color=GROUND, lw=2))  # emitter
    ax.text(bx + 0.75, yb, "NPN transistor\n2N2222 or BC547", ha="left", va="center", fontsize=10.5)
    ax.text(bx - 0.3, yb + 0.05, "B", fontsize=8, ha="right", va="bottom")
    ax.text(bx + 0.42, yb + 0.45, "C", fontsize=8, va="bottom")
    ax.text(bx + 0.42, yb - 0.5, "E", fontsize=8, va="top")
    # collector up to the buzzer's minus, buzzer's plus to 5 V
    wire(ax, [bx + 0.3, bx + 0.3], [yb + 0.5, yb + 0.9], color=GROUND)
    buzz_y = (yb + 0.9 + y5) / 2
    ax.add_patch(Circle((bx + 0.3, buzz_y), 0.42, fc="#424242", ec=GROUND, lw=1.6, zorder=3))
    ax.text(bx + 0.3, buzz_y, "BZ", color="white", ha="center", va="center", fontsize=10, weight="bold", zorder=4)
    wire(ax, [bx + 0.3, bx + 0.3], [yb + 0.9, buzz_y - 0.42], color=GROUND)
    wire(ax, [bx + 0.3, bx + 0.3], [buzz_y + 0.42, y5], color=POWER)
    ax.text(bx + 0.85, buzz_y + 0.25, "buzzer +", fontsize=10, va="bottom", color=POWER)
    ax.text(bx + 0.85, buzz_y - 0.25, "buzzer −", fontsize=10, va="top")
    ax.text(bx + 2.4, buzz_y, "active buzzer, 5 V  (buzzer: {pin: 22})", fontsize=10.5, va="center")
    wire(ax, [PI_RIGHT - 0.42, bx + 0.3], [y5, y5], color=POWER)
    dot(ax, bx + 0.3, y5, color=POWER)
    # emitter to ground
    wire(ax, [bx + 0.3, bx + 0.3], [yb - 0.5, yb - 0.9], color=GROUND)
    ground_tap(ax, bx + 0.3, yb - 0.9)

    # Buttons: between the pin and ground; hark turns on the Pi's own pull-up, so no resistor.
    for name, label in [("button", "record button  (buttons: [{pin: 6, label: knock}])"),
                        ("wrong", "\"that was wrong\" button  (wrong_button: 21)")]:
        yt = pins[name][1]
        wire(ax, [PI_RIGHT - 0.42, 7.6], [yt, yt])
        dot(ax, 7.6, yt, color=SIGNAL)
        dot(ax, 9.0, yt, color=GROUND)
        wire(ax, [7.6, 8.95], [yt, yt + 0.45], color=GROUND, lw=2)  # the open contact
        wire(ax, [8.3, 8.3], [yt + 0.25, yt + 0.7], color=GROUND, lw=1.6)
        wire(ax, [8.0, 8.6], [yt + 0.7, yt + 0.7], color=GROUND, lw=2.5)
        ax.text(9.4, yt + 0.12, label, ha="left", va="bottom", fontsize=10.5)
        ground_tap(ax, 9.0, yt)

    ax.text(9.0, -1.3, "3.3 V logic: 330 Ω gives a red LED about 4 mA. The buttons need no resistor (hark turns on the "
            "Pi's pull-up).\nA magnetic (not piezo) buzzer wants a 1N4148 diode across it, cathode to +5 V.",
            ha="center", va="top", fontsize=10, color="#555555")
    fig.savefig(OUT, dpi=100, bbox_inches="tight", facecolor="white")
    print(OUT)


if __name__ == "__main__":
    main()
