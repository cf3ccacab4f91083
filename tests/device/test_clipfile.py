"""Clip files: unique timestamps, exact PCM16 WAVs, atomic writes that leave nothing behind on failure."""

from __future__ import annotations

import datetime as dt
import errno
import os

import numpy as np
import pytest
import soundfile as sf

from hark import clipfile
from hark.clipfile import (
    MAX_SIDECAR_BYTES,
    free_path,
    read_sidecar,
    save_clip,
    timestamp,
    to_pcm16,
    write_json,
    write_wav,
)


def test_timestamps_are_unique_and_sortable_even_in_the_same_microsecond(monkeypatch):
    monkeypatch.setattr(clipfile, "_last_stamp", None)  # independent of stamps other tests handed out
    now = dt.datetime(2001, 5, 6, 7, 8, 9, 123456)
    stamps = [timestamp(now) for _ in range(5)]
    assert stamps[0] == "20010506-070809-123456"
    assert len(set(stamps)) == 5
    assert stamps == sorted(stamps)
    # A clock stepping back (NTP after boot) still gives later names.
    assert timestamp(now - dt.timedelta(hours=1)) > stamps[-1]


def test_free_path_does_not_reuse_a_taken_name(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"x")
    (tmp_path / "a-2.wav").write_bytes(b"x")
    assert free_path(tmp_path, "a", ".wav") == tmp_path / "a-3.wav"
    assert free_path(tmp_path, "b", ".wav") == tmp_path / "b.wav"


def test_pcm16_clips_instead_of_wrapping():
    pcm = to_pcm16(np.array([0.0, 0.5, 1.0, 1.7, -1.0, -3.0, np.nan], dtype=np.float32))
    assert pcm.tolist() == [0, 16384, 32767, 32767, -32768, -32768, 0]


def test_16_bit_audio_goes_back_out_bit_for_bit(tmp_path):
    pcm = np.arange(-32768, 32768, 7, dtype=np.int16)
    sf.write(tmp_path / "in.wav", pcm, 16000, subtype="PCM_16")
    x, _ = sf.read(tmp_path / "in.wav", dtype="float32")
    np.testing.assert_array_equal(to_pcm16(x), pcm)


def test_write_wav_is_16k_mono_pcm16_with_the_samples(tmp_path):
    x = (0.5 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    path = write_wav(tmp_path / "c.wav", x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    back, _ = sf.read(path, dtype="int16")
    np.testing.assert_array_equal(back, to_pcm16(x))
    assert os.listdir(tmp_path) == ["c.wav"]


def test_save_clip_creates_the_folder_and_names_by_time(tmp_path):
    folder = tmp_path / "ds" / "dog"
    paths = [save_clip(folder, np.zeros(100, np.float32)) for _ in range(3)]
    assert len(set(paths)) == 3
    assert all(p.parent == folder and p.suffix == ".wav" for p in paths)
    assert sorted(os.listdir(folder)) == sorted(p.name for p in paths)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch, code):
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(clipfile.os, "replace", refuse)
    with pytest.raises(OSError) as err:
        write_wav(tmp_path / "c.wav", np.zeros(1600, np.float32))
    assert err.value.errno == code
    assert os.listdir(tmp_path) == []


def test_interrupted_write_keeps_the_old_file_whole(tmp_path):
    path = write_json(tmp_path / "s.json", {"a": 1})

    def crash(f):
        f.write(b'{"a": ')
        raise KeyboardInterrupt  # a kill in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        clipfile.write_atomic(path, crash)
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert os.listdir(tmp_path) == ["s.json"]


def test_a_sidecar_is_read_back_and_a_bad_one_is_named_for_what_is_wrong(tmp_path):
    good = write_json(tmp_path / "a.json", {"label": "up", "detection_offset_s": 1.5})
    assert read_sidecar(good) == {"label": "up", "detection_offset_s": 1.5}
    with pytest.raises(FileNotFoundError):
        read_sidecar(tmp_path / "missing.json")
    cases = {"list.json": (b"[1, 2]", "not a JSON object"), "text.json": (b"{oops", "not JSON"),
             "latin1.json": (b'{"a": "\xe9"}', "not JSON"),
             "huge.json": (b" " * (MAX_SIDECAR_BYTES + 1) + b"{}", "larger than 64 KB")}
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=why):
            read_sidecar(tmp_path / name)
