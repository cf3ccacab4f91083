"""Frontends give the same features streamed or batched; base files are fetched and verified.

The base files come from ``$HARK_CACHE_DIR`` (../shared/models in tests). The download path is
exercised for real against an HTTP server on 127.0.0.1 serving one of those files.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from hark.basemodels import BASE_FILES, fetch, fetch_base
from hark.errors import BaseModelError
from hark.frontend import Frontend, build_frontend
from hark.manifest import EMBEDDING_FILES
from hark.runtime import load_interpreter

INT8_BUNDLE = Path(__file__).parents[1] / "fixtures" / "bundles" / "speech_tone_int8"


def _frontend(name: str) -> Frontend:
    return build_frontend({"name": name}, fetch_base(name))


def _audio(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 700 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
    return (tone + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("name", ["none", "speech", "sounds"])
def test_streaming_equals_batch(name: str, shared_dir: Path) -> None:
    audio = _audio(4.3)
    fe = _frontend(name)
    batch = fe.transform(audio)
    fe.reset()
    rng = np.random.default_rng(1)
    pieces, i = [], 0
    while i < len(audio):  # odd chunk sizes, some smaller than a hop, some of several hops
        n = int(rng.choice([1, 37, 160, 511, 1280, 4000, 9000]))
        pieces.append(fe.push(audio[i:i + n]))
        i += n
    streamed = np.concatenate(pieces)
    assert streamed.shape == batch.shape and len(batch) > 0
    np.testing.assert_array_equal(streamed, batch)
    # The timing contract: feature k ends at feature_end(k), within the audio.
    assert fe.feature_end(len(batch) - 1) <= len(audio) < fe.feature_end(len(batch))
    assert batch.shape[1:] == fe.feature_shape


def test_speech_long_clip_is_exact_in_blocks(shared_dir: Path) -> None:
    """More windows than one embedding block: the blocked batch equals one-window-at-a-time."""
    audio = _audio(5.0, seed=2)
    fe = _frontend("speech")
    batch = fe.transform(audio)
    assert len(batch) > fe.EMBEDDING_BLOCK
    fe.reset()
    streamed = np.concatenate([fe.push(audio[i:i + 1280]) for i in range(0, len(audio), 1280)])
    np.testing.assert_array_equal(streamed, batch)


@pytest.mark.parametrize("embedding", ["float", "int8"])
def test_speech_embeddings_of_one_run_equal_each_window_run_alone(embedding: str, shared_dir: Path) -> None:
    """Consecutive windows go through the embedding in one run over their frames; each result must be
    what the network gives for that window alone, at the file's own input shape."""
    files = dict(fetch_base("speech"))
    if embedding == "int8":
        files[EMBEDDING_FILES["int8"]] = INT8_BUNDLE / "base" / EMBEDDING_FILES["int8"]
    fe = build_frontend({"name": "speech", "embedding": embedding}, files)
    audio = _audio(3.0, seed=3)
    together = fe.transform(audio)
    alone = load_interpreter(files[EMBEDDING_FILES[embedding]])
    alone.allocate_tensors()
    windows = fe.embedding_inputs(audio)
    assert len(windows) == len(together) > 20
    for k, window in enumerate(windows):
        alone.set_tensor(alone.get_input_details()[0]["index"], window[None, :, :, None])
        alone.invoke()
        np.testing.assert_array_equal(together[k], alone.get_tensor(alone.get_output_details()[0]["index"]).reshape(96))


def test_a_stream_keeps_the_networks_inputs_small_and_a_clip_runs_in_large_blocks(shared_dir: Path) -> None:
    """An interpreter keeps the memory planned for the largest input it ran: streamed audio, however
    much comes at once, never makes the daemon's larger than a run of STREAM_BLOCK windows."""
    fe = _frontend("speech")
    audio = _audio(6.0, seed=4)
    streamed = fe.push(audio)  # 6 s in one piece, as after a long pause of the activity gate

    def input_sizes() -> tuple[int, int]:
        return (int(fe._mel.get_input_details()[0]["shape"][1]),
                int(fe._embedding.get_input_details()[0]["shape"][1]))

    assert input_sizes() <= (fe.CHUNK + fe.OVERLAP, 76 + 8 * (fe.STREAM_BLOCK - 1))
    np.testing.assert_array_equal(streamed, fe.transform(audio))
    clip = fe.transform(audio[:3 * 16000])  # 28 windows: one run of the network
    assert fe.STREAM_BLOCK < len(clip) <= fe.EMBEDDING_BLOCK
    mel_span = (3 * 16000 - fe.OVERLAP) // fe.CHUNK * fe.CHUNK + fe.OVERLAP  # the clip's whole groups of 8 frames
    assert input_sizes() == (mel_span, 76 + 8 * (len(clip) - 1))


@pytest.mark.parametrize(("error", "together"), [(0.0, True), (3e-7, True), (1e-3, False)])
def test_longer_runs_are_used_where_they_differ_from_single_windows_by_rounding_only(
        error: float, together: bool, shared_dir: Path) -> None:
    """ARM's kernels round a longer run differently in the last bits (3e-7 of the largest value on a
    Cortex-A72); that is still the window's embedding. A file computing something else is run alone."""
    from hark.frontend import SpeechFrontend

    class Rounding(SpeechFrontend):
        def _run_embedding_block(self, frames: np.ndarray, count: int) -> np.ndarray:
            out = super()._run_embedding_block(frames, count)
            return out + error * float(np.abs(out).max())

    files = fetch_base("speech")
    fe = Rounding(mel_model=files["melspectrogram.tflite"], embedding_model=files["embedding_model.tflite"])
    assert fe.runs_together is together


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("name", ["none", "speech"])
def test_transform_many_equals_transform_in_order(name: str, shared_dir: Path) -> None:
    """Clips of many lengths (some too short for a feature) on every core: each result is transform's."""
    fe = _frontend(name)
    clips = [_audio(seconds, seed=k) for k, seconds in enumerate([0.01, 2.5, 0.9, 4.0, 1.3, 0.3, 3.1, 1.7])]
    expected = [_frontend(name).transform(clip) for clip in clips]
    finished = []
    many = fe.transform_many(clips, done=lambda: finished.append(1))
    assert len(many) == len(clips) and len(finished) == len(clips)
    for got, want in zip(many, expected):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert len(many[0]) == 0 and len(many[3]) > len(many[2])
    np.testing.assert_array_equal(fe.transform(clips[4]), expected[4])  # the frontend itself still works alone


def test_transform_many_advances_a_generator_in_order() -> None:
    """The audio a generator makes with a random generator is the audio a plain loop would make."""
    fe = _frontend("none")
    made: list[np.ndarray] = []

    def clips(rng: np.random.Generator) -> Iterator[np.ndarray]:
        for _ in range(12):
            clip = (0.1 * rng.standard_normal(int(rng.integers(400, 16000)))).astype(np.float32)
            made.append(clip)
            yield clip

    many = fe.transform_many(clips(np.random.default_rng(5)))
    plain = [fe.transform(clip) for clip in clips(np.random.default_rng(5))]
    assert [len(m) for m in made[:12]] == [len(m) for m in made[12:]]
    for got, want in zip(many, plain, strict=True):
        np.testing.assert_array_equal(got, want)


def test_transform_many_raises_what_the_clips_raise() -> None:
    def clips() -> Iterator[np.ndarray]:
        yield np.zeros(4000, np.float32)
        raise ValueError("clip 2 is unreadable")

    with pytest.raises(ValueError, match="clip 2"):
        _frontend("none").transform_many(clips())


def test_clone_is_the_same_frontend_with_its_own_state(shared_dir: Path) -> None:
    fe = _frontend("speech")
    fe.push(_audio(1.0))
    twin = fe.clone()
    assert type(twin) is type(fe) and twin.params() == fe.params() and twin.features_emitted == 0
    np.testing.assert_array_equal(twin.transform(_audio(2.0)), _frontend("speech").transform(_audio(2.0)))


@pytest.fixture()
def served(tmp_path: Path, shared_dir: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on a free loopback port serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_and_verifies(served: tuple[str, Path], tmp_path: Path, shared_dir: Path) -> None:
    base_url, www = served
    name = "melspectrogram.tflite"
    (www / name).write_bytes((shared_dir / "models" / name).read_bytes())
    cache = tmp_path / "cache"
    said: list[str] = []
    path = fetch(name, directory=cache, url=f"{base_url}/{name}", say=said.append)
    assert path == cache / name and path.read_bytes() == (www / name).read_bytes()
    assert any("licence" in line and "NON-COMMERCIAL" in line for line in said)
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no temporary file left
    # Cached and verified: no second download.
    said.clear()
    assert fetch(name, directory=cache, url=f"{base_url}/missing", say=said.append) == path and said == []


def test_hash_mismatch_is_refused_and_leaves_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    base_url, www = served
    name = "yamnet.tflite"
    (www / name).write_bytes(b"not the model you are looking for" * 100)
    cache = tmp_path / "cache"
    with pytest.raises(BaseModelError) as err:
        fetch(name, directory=cache, url=f"{base_url}/{name}", say=lambda m: None)
    message = str(err.value)
    assert "\n" not in message and "sha256" in message and BASE_FILES[name].sha256 in message
    assert str(cache / name) in message  # says where to put the right file
    assert list(cache.iterdir()) == []


def test_offline_error_says_which_file_to_put_where(tmp_path: Path) -> None:
    name = "embedding_model.tflite"
    with pytest.raises(BaseModelError) as err:
        # Port 9 on loopback: nothing listens, the connection is refused at once.
        fetch(name, directory=tmp_path, url=f"http://127.0.0.1:9/{name}", say=lambda m: None, timeout_s=5)
    message = str(err.value)
    assert "\n" not in message
    assert f"put {name}" in message and str(tmp_path / name) in message and BASE_FILES[name].url in message
    assert list(tmp_path.iterdir()) == []


def test_unknown_base_and_file() -> None:
    with pytest.raises(BaseModelError, match="unknown base"):
        fetch_base("music")
    with pytest.raises(BaseModelError, match="unknown base file"):
        fetch("nothing.tflite")
