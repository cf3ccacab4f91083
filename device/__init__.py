"""hark's device side: everything the Raspberry Pi runs, and what the trainer shares with it.

The data takes one road: audio source -> frontend (:mod:`hark.frontend`) -> head
(:mod:`hark.model`) -> detector -> sinks. The trainer imports the same frontend and
bundle code, so a model runs on the Pi exactly as it was trained and evaluated.
"""

__version__ = "0.1.0"
