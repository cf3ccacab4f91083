"""hark's device side: everything the Raspberry Pi runs, and what the trainer shares with it.

The data takes one road: audio source -> frontend (:mod:`hark.frontend`) -> head
(:mod:`hark.model`) -> detector -> sinks. The trainer imports the same frontend and
bundle code, so a model runs on the Pi exactly as it was trained and evaluated.
"""

__version__ = "0.1.0"

# Every model hears 16 kHz mono: the frontends, the bundle (its manifest's sample_rate), the
# microphone's resampler and the trainer all count samples at this one rate.
SAMPLE_RATE = 16000
