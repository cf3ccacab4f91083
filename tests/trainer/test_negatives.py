"""The negative bank: built from folders through the frontend, cached, unpacked safely."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

from hark.frontend import LogMelFrontend
from hark.trainer import negatives
from hark.trainer.negatives import NegativeSource, bank_features, bank_windows, ensure_source


def write_clips(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        (folder / f"s{i % 3}").mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"s{i % 3}" / f"{i}.wav", rng.standard_normal(8000).astype(np.float32) * 0.1, 16000)


def test_bank_features_are_cached_and_skip_bad_files(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HARK_FEATURE_CACHE", str(tmp_path / "cache"))
    write_clips(tmp_path / "neg", 6)
    (tmp_path / "neg" / "broken.wav").write_bytes(b"not audio")
    frontend = LogMelFrontend()
    first = bank_features(frontend, dirs=[tmp_path / "neg"], progress=False)
    assert len(first) == 6
    assert all(clip.features.shape[1:] == (40,) for clip in first)
    assert sorted(clip.path.name for clip in first) == [f"{i}.wav" for i in range(6)]
    assert "broken.wav" in caplog.text
    cached = list((tmp_path / "cache").glob("negatives-none-*.npz"))
    assert len(cached) == 1
    again = bank_features(frontend, dirs=[tmp_path / "neg"], progress=False)
    assert all(np.array_equal(a.features, b.features) and a.path == b.path for a, b in zip(first, again))


def test_bank_features_lead_with_quiet_so_a_clip_start_reaches_a_window_end(tmp_path, monkeypatch):
    monkeypatch.setenv("HARK_FEATURE_CACHE", str(tmp_path / "cache"))
    write_clips(tmp_path / "neg", 3)
    frontend = LogMelFrontend()
    bare = bank_features(frontend, dirs=[tmp_path / "neg"], progress=False)
    lead = 20 * frontend.hop_samples
    led = bank_features(frontend, dirs=[tmp_path / "neg"], lead_samples=lead, progress=False)
    assert len(list((tmp_path / "cache").glob("negatives-none-*.npz"))) == 2  # one cache per lead
    for without, with_lead in ((a.features, b.features) for a, b in zip(bare, led)):
        assert len(with_lead) == len(without) + 20
        # The quiet lead-in is quieter than the clip, and the clip's own features follow it.
        assert with_lead[:10].mean() < without.mean() - 1.0
        np.testing.assert_allclose(with_lead[-5:], without[-5:], atol=1e-4)


def test_bank_windows_respects_limit_and_shape():
    seqs = [np.random.default_rng(i).standard_normal((50, 4)).astype(np.float32) for i in range(3)]
    windows = bank_windows(seqs, window=10, stride=2, limit=20, rng=np.random.default_rng(0))
    assert windows.shape == (20, 10, 4)


def test_negative_dirs_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HARK_NEGATIVES", str(tmp_path))
    assert negatives.negative_dirs() == [tmp_path]
    monkeypatch.setenv("HARK_NEGATIVES", str(tmp_path / "missing"))
    try:
        negatives.negative_dirs()
    except negatives.HarkError as err:
        assert "missing" in str(err)
    else:
        raise AssertionError("a missing folder must be an error")


def test_ensure_source_downloads_unpacks_only_audio_and_flattens_names(tmp_path):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for name, data in [("LibriSpeech/dev/1/a.flac", b"x"), ("../evil.flac", b"y"), ("README.txt", b"z")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "bank.tar.gz").write_bytes(archive.getvalue())
    digest = hashlib.sha256(archive.getvalue()).hexdigest()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = NegativeSource(name="demo", url=f"http://127.0.0.1:{server.server_address[1]}/bank.tar.gz",
                                sha256=digest, licence="test", suffixes=(".flac",), max_files=10)
        folder = ensure_source(source, root=tmp_path / "cache")
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        assert names == ["LibriSpeech__dev__1__a.flac", "__evil.flac"]
        assert not (tmp_path / "evil.flac").exists()
        assert not (tmp_path / "cache" / "demo.tar.gz").exists()  # the archive is not kept
        server.shutdown()
        assert ensure_source(source, root=tmp_path / "cache") == folder  # complete: no second download
    finally:
        server.shutdown()
        server.server_close()


def test_bank_features_of_an_int8_embedding_are_cached_apart_and_only_the_newest(tmp_path, monkeypatch):
    from hark.basemodels import fetch_base
    from hark.frontend import SpeechFrontend

    monkeypatch.setenv("HARK_FEATURE_CACHE", str(tmp_path / "cache"))
    write_clips(tmp_path / "neg", 3)
    speech = fetch_base("speech")
    float_fe = SpeechFrontend(mel_model=speech["melspectrogram.tflite"],
                              embedding_model=speech["embedding_model.tflite"])
    bank_features(float_fe, dirs=[tmp_path / "neg"], progress=False)
    # Stand-ins for the int8 files of five datasets, each a different file: each gets a cache of its own
    # (keyed by its hash), apart from the float embedding's, and only the newest few are kept.
    for i in range(negatives.KEEP_QUANTIZED_CACHES + 1):
        copy = tmp_path / f"embedding{i}" / "embedding_model_int8.tflite"
        copy.parent.mkdir()
        copy.write_bytes(speech["embedding_model.tflite"].read_bytes() + bytes(i))
        fe = SpeechFrontend(mel_model=speech["melspectrogram.tflite"], embedding_model=copy, embedding="int8")
        bank_features(fe, dirs=[tmp_path / "neg"], progress=False)
    assert len(list((tmp_path / "cache").glob("negatives-speech-int8-*.npz"))) == negatives.KEEP_QUANTIZED_CACHES
    assert len([p for p in (tmp_path / "cache").glob("negatives-speech-*.npz") if "-int8-" not in p.name]) == 1
