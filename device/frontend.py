"""Frontends: 16 kHz audio in, one feature vector per hop out, the same streaming or batched.

A frontend is the frozen part of a model: the spectrogram and, for the pretrained bases,
the base network. The trainer computes features of whole clips with :meth:`Frontend.transform`;
the daemon feeds the microphone through :meth:`Frontend.push` a chunk at a time. Both give the
same vectors for the same audio (a test holds them to it), so what was trained is what runs.

Feature ``k`` of a stream (counting from 0 after :meth:`Frontend.reset`) covers the samples
``[end - receptive_samples, end)`` where ``end = first_end + k * hop_samples``.

Three frontends, chosen by the bundle's ``frontend.name``:

- ``speech``: openWakeWord's log-mel model (32 bins per 10 ms) and Google's speech embedding
  (one 96-d vector per 80 ms over 76 frames, 775 ms).
- ``sounds``: YAMNet's 1024-d embedding (its global-average-pool layer) of 0.975 s windows.
- ``none``: a log-mel spectrogram computed in numpy (40 bins per 10 ms), no third-party weights.
"""

from __future__ import annotations

import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hark import SAMPLE_RATE, runtime
from hark.errors import BundleError
from hark.manifest import DEFAULT_EMBEDDING, EMBEDDING_FILES, FrontendSpec
from hark.runtime import load_interpreter

log = logging.getLogger(__name__)


class Frontend(ABC):
    """Turns 16 kHz mono float32 audio in [-1, 1] into feature vectors, incrementally."""

    name: str
    hop_samples: int
    receptive_samples: int
    feature_shape: tuple[int, ...]

    MAX_WORKERS = 8
    #: Whether several consecutive features cost little more than one when pushed together
    #: (the pipeline then runs head windows in small batches, see :mod:`hark.pipeline`).
    runs_together = False

    def __init__(self, **options: Any) -> None:
        self._options = options  # what clone() builds another of this frontend from
        self._clones: list[Frontend] = []
        self._pending = np.zeros(0, dtype=np.float32)
        self.features_emitted = 0

    def clone(self) -> Frontend:
        """Another frontend like this one (same kind, options and weights) with a state of its own."""
        return type(self)(**self._options)

    @property
    def first_end(self) -> int:
        """Sample index just past the span of the first feature."""
        return self.receptive_samples

    def feature_end(self, index: int) -> int:
        """Sample index just past the span of feature ``index``."""
        return self.first_end + index * self.hop_samples

    def reset(self) -> None:
        """Forget all audio: the next sample pushed is sample 0 of a new stream."""
        self._pending = np.zeros(0, dtype=np.float32)
        self.features_emitted = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Features completed by these samples, shape ``[n, *feature_shape]`` (``n`` may be 0)."""
        self._pending = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        out = self._consume()
        self.features_emitted += len(out)
        return out

    def transform(self, samples: np.ndarray) -> np.ndarray:
        """Features of a whole clip from a fresh state; equal to ``reset()`` then ``push(samples)``."""
        self.reset()
        return self.push(samples)

    def transform_many(self, clips: Iterable[np.ndarray], *,
                       done: Callable[[], object] | None = None) -> list[np.ndarray]:
        """``[transform(clip) for clip in clips]``, the clips shared among one frontend per core.

        For the trainer, which computes features of thousands of clips: TFLite releases the GIL
        while a model runs, so copies of this frontend on threads work side by side (1.7 times as
        fast on 2 cores). Each result is exactly what :meth:`transform` gives, in the order of
        ``clips``. ``clips`` may be a generator: it is advanced by one thread at a time, in order,
        so the audio it makes (with a random generator, say) is the same as in a plain loop, and
        only a clip a thread is held in memory. ``done`` is called after each clip (from a worker
        thread), for a progress bar.
        """
        cores = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        workers = max(1, min(cores, self.MAX_WORKERS))
        while len(self._clones) < workers - 1:
            self._clones.append(self.clone())
        numbered = enumerate(clips)
        lock = threading.Lock()
        out: dict[int, np.ndarray] = {}

        def work(frontend: Frontend) -> None:
            while True:
                with lock:
                    item = next(numbered, None)
                if item is None:
                    return
                out[item[0]] = frontend.transform(item[1])
                if done is not None:
                    done()

        if workers == 1:
            work(self)
        else:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(work, fe) for fe in [self, *self._clones[:workers - 1]]]:
                    future.result()
        return [out[i] for i in range(len(out))]

    def spec(self) -> FrontendSpec:
        """What the manifest records so the device rebuilds this exact frontend."""
        return FrontendSpec(name=self.name, hop_samples=self.hop_samples, receptive_samples=self.receptive_samples,
                            feature_shape=tuple(self.feature_shape))

    def params(self) -> dict[str, Any]:
        """:meth:`spec` as the manifest's JSON object."""
        return self.spec().to_json()

    @abstractmethod
    def _consume(self) -> np.ndarray:
        """Turn as much of ``self._pending`` as possible into features, keeping what is still needed."""


class LogMelFrontend(Frontend):
    """Log-mel spectrogram in numpy: 25 ms Hann windows every 10 ms, 40 mel bands, 20 Hz-7.6 kHz."""

    name = "none"

    def __init__(self, *, n_mels: int = 40, win_samples: int = 400, hop_samples: int = 160,
                 n_fft: int = 512, fmin: float = 20.0, fmax: float = 7600.0) -> None:
        super().__init__(n_mels=n_mels, win_samples=win_samples, hop_samples=hop_samples, n_fft=n_fft,
                         fmin=fmin, fmax=fmax)
        self.hop_samples = hop_samples
        self.receptive_samples = win_samples
        self.feature_shape = (n_mels,)
        self.n_fft = n_fft
        self.fmin, self.fmax = fmin, fmax
        self._window = np.hanning(win_samples + 2)[1:-1].astype(np.float32)
        self._filters = mel_filterbank(n_mels=n_mels, n_fft=n_fft, fmin=fmin, fmax=fmax)

    def spec(self) -> FrontendSpec:
        return FrontendSpec(name=self.name, hop_samples=self.hop_samples, receptive_samples=self.receptive_samples,
                            feature_shape=tuple(self.feature_shape), n_fft=self.n_fft, fmin=float(self.fmin),
                            fmax=float(self.fmax))

    def _consume(self) -> np.ndarray:
        win, hop = self.receptive_samples, self.hop_samples
        n = (len(self._pending) - win) // hop + 1 if len(self._pending) >= win else 0
        if n <= 0:
            return np.zeros((0, *self.feature_shape), dtype=np.float32)
        idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
        # float64 on purpose: numpy 2's FFT keeps float32 input in float32, and a float32 product
        # with the filters rounds differently by how many frames go through at once (features
        # streamed in pieces would differ from the same audio in one batch); numpy 1 always did
        # this in float64, so trained bundles see the same features under either version.
        frames = self._pending[idx].astype(np.float64) * self._window
        power = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=1)) ** 2
        self._pending = self._pending[n * hop:]
        return np.log(power @ self._filters.T + 1e-6).astype(np.float32)


def mel_filterbank(*, n_mels: int, n_fft: int, fmin: float, fmax: float,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular HTK-mel filters, shape ``[n_mels, n_fft // 2 + 1]``."""

    def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


class SpeechFrontend(Frontend):
    """openWakeWord's mel model then Google's speech embedding: one 96-d vector per 80 ms.

    Every 1280 new samples (with 480 of overlap) make exactly 8 mel frames, and an embedding is
    taken over the last 76 frames each time the frame count reaches a multiple of 8.

    The embedding network is convolutional along time with valid padding and a total stride of
    8 frames, so given ``76 + 8 * (n - 1)`` consecutive frames instead of 76 it gives the ``n``
    embeddings of the windows inside them, each as if it had been run alone (bit for bit on x86,
    within float rounding on ARM, see :meth:`_runs_windows_together`), for a fraction of the work:
    the windows overlap by 68 of their 76 frames and the layers compute the overlap once.
    Consecutive embeddings are therefore always computed in one such run: 2 cost 1.1 times one,
    3 1.2 times, 8 1.8 times, 32 4.6 times (``tests/bench/bench_embedding.py --runs``).

    Whole clips (:meth:`transform`, the trainer) run the mel model over the clip at once and the
    embedding in blocks of up to ``EMBEDDING_BLOCK`` windows. A stream (:meth:`push`, the daemon)
    runs the mel model 1760 samples at a time and the embedding over at most ``STREAM_BLOCK``
    windows: an interpreter keeps the memory planned for the largest input it was given, and these
    keep the daemon's at what one window at a time took (runs of any length cost it 4 MB more, for 12%
    less CPU on a stream with a sound every few seconds).

    ``embedding`` names which embedding ``embedding_model`` is (:data:`hark.manifest.EMBEDDING_FILES`):
    the pretrained float file, or the int8 copy a bundle carries. Both take ``[batch, 76, 32, 1]``
    float32 mel frames and give 96 float32 values; a file that does not is refused here.
    """

    name = "speech"
    MEL_WINDOW = 640
    MEL_HOP = 160
    FRAMES_PER_EMBEDDING = 76
    FRAMES_PER_HOP = 8
    CHUNK = FRAMES_PER_HOP * MEL_HOP  # 1280 new samples -> 8 mel frames
    OVERLAP = MEL_WINDOW - MEL_HOP  # 480
    EMBEDDING_BLOCK = 32
    STREAM_BLOCK = 8
    RUN_TOLERANCE = 1e-5  # of the largest value: a longer run may round differently, never compute otherwise

    def __init__(self, *, mel_model: Path, embedding_model: Path, embedding: str = DEFAULT_EMBEDDING,
                 num_threads: int = 1) -> None:
        super().__init__(mel_model=mel_model, embedding_model=embedding_model, embedding=embedding,
                         num_threads=num_threads)
        if embedding not in EMBEDDING_FILES:
            raise BundleError(f"unknown speech embedding {embedding!r}: one of {', '.join(EMBEDDING_FILES)}")
        self.embedding = embedding
        self.embedding_model = Path(embedding_model)
        self.hop_samples = self.CHUNK
        self.feature_shape = (96,)
        # The first embedding is taken at 80 frames (the first multiple of 8 >= 76).
        first_frames = -(-self.FRAMES_PER_EMBEDDING // self.FRAMES_PER_HOP) * self.FRAMES_PER_HOP
        self._first_frames = first_frames
        self.receptive_samples = (self.FRAMES_PER_EMBEDDING - 1) * self.MEL_HOP + self.MEL_WINDOW
        self._first_end = (first_frames - 1) * self.MEL_HOP + self.MEL_WINDOW
        self._mel = load_interpreter(mel_model, num_threads=num_threads)
        self._mel_size = 0
        self._mel_in = self._mel.get_input_details()[0]["index"]
        self._mel_out = self._mel.get_output_details()[0]["index"]
        self._embedding = load_interpreter(embedding_model, num_threads=num_threads)
        self._embedding_shape: tuple[str, int] = ("none", 0)  # the input shape the interpreter is planned for
        self._check_embedding(Path(embedding_model))
        if embedding == "int8" and runtime.runtime_name == "tflite_runtime":
            # Its XNNPACK does not take the int8 operators: they fall back to reference kernels, several
            # times slower than the float embedding (docs/cost.md). LiteRT runs them at a third of the cost.
            log.warning("%s: an int8 embedding on tflite-runtime is slower than the float one; "
                        "pip install ai-edge-litert (hark[device] does) to run it at a third of the cost",
                        embedding_model)
        self._embedding_in = self._embedding.get_input_details()[0]["index"]
        self._embedding_out = self._embedding.get_output_details()[0]["index"]
        self._long_runs = self._runs_windows_together()
        self._frames = np.zeros((0, 32), dtype=np.float32)
        self._frame_count = 0
        self._whole_clip = False

    def _check_embedding(self, path: Path) -> None:
        inputs, outputs = self._embedding.get_input_details(), self._embedding.get_output_details()
        shape_in = [tuple(int(d) for d in x["shape"][1:]) for x in inputs]
        size_out = [int(np.prod(x["shape"][1:])) for x in outputs]
        if (shape_in != [(self.FRAMES_PER_EMBEDDING, 32, 1)] or size_out != [96]
                or inputs[0]["dtype"] != np.float32 or outputs[0]["dtype"] != np.float32):
            raise BundleError(f"{path}: not a speech embedding (it takes {[list(s) for s in shape_in]} and gives "
                              f"{size_out} values; an embedding takes float32 [76, 32, 1] mel frames and gives "
                              "96 float32 values)")

    def spec(self) -> FrontendSpec:
        return FrontendSpec(name=self.name, hop_samples=self.hop_samples, receptive_samples=self.receptive_samples,
                            feature_shape=tuple(self.feature_shape), embedding=self.embedding)

    @property
    def first_end(self) -> int:
        return self._first_end

    def embedding_inputs(self, samples: np.ndarray) -> np.ndarray:
        """What the embedding sees of a whole clip: its mel windows ``[n, 76, 32]``, one every 80 ms
        (the windows :meth:`transform` embeds), for calibrating a quantized copy of the embedding."""
        samples = np.asarray(samples, dtype=np.float32)
        if len(samples) < self.MEL_WINDOW:
            return np.zeros((0, self.FRAMES_PER_EMBEDDING, 32), np.float32)
        mel = self._run_mel(samples)
        ends = range(self._first_frames, len(mel) + 1, self.FRAMES_PER_HOP)
        windows = [mel[e - self.FRAMES_PER_EMBEDDING:e] for e in ends]
        return np.stack(windows).astype(np.float32) if windows else np.zeros((0, self.FRAMES_PER_EMBEDDING, 32),
                                                                              np.float32)

    def reset(self) -> None:
        super().reset()
        self._frames = np.zeros((0, 32), dtype=np.float32)
        self._frame_count = 0

    def transform(self, samples: np.ndarray) -> np.ndarray:
        self._whole_clip = True  # fewer, larger runs: the trainer's memory is not the daemon's
        try:
            return super().transform(samples)
        finally:
            self._whole_clip = False

    def _run_mel(self, samples: np.ndarray) -> np.ndarray:
        if len(samples) != self._mel_size:
            self._mel.resize_tensor_input(self._mel_in, [1, len(samples)])
            self._mel.allocate_tensors()
            self._mel_size = len(samples)
        self._mel.set_tensor(self._mel_in, (samples * 32767.0)[None, :])
        self._mel.invoke()
        mel = self._mel.get_tensor(self._mel_out)[0, 0]
        return mel / 10.0 + 2.0  # openWakeWord's rescaling before the embedding

    @property
    def runs_together(self) -> bool:  # type: ignore[override]
        return self._long_runs

    def _runs_windows_together(self) -> bool:
        """Whether this embedding file gives, for a longer run of frames, each window's own embedding.

        The pretrained float file does. A file whose graph fixes its shapes (the int8 copy reshapes
        to constant sizes) either fails to run so or could give something else: it is run a window
        at a time. Checked on two windows of made-up frames against each window run alone, to
        within ``RUN_TOLERANCE`` of the largest value: on x86 the two are equal bit for bit, but
        ARM's kernels round a longer input differently in the last bits (2.3e-5 on values up to 70
        under an emulated Cortex-A72), less than the same window alone differs between ARM and x86
        (6.9e-5), which a model trained on a desktop and run on a Pi already takes in its stride.
        """
        # Made-up frames in the mel range, without numpy.random: the daemon has no other use for it
        # and loading it costs a megabyte.
        count = (self.FRAMES_PER_EMBEDDING + self.FRAMES_PER_HOP) * 32
        frames = (2.0 + 1.5 * np.sin(0.37 * np.arange(count))).reshape(-1, 32).astype(np.float32)
        # Each window alone at the file's own input shape, not as a batch: an interpreter keeps the
        # memory planned for the largest input it ran, and a batch of two would be the largest.
        alone = np.concatenate([self._run_windows(frames[None, start:start + self.FRAMES_PER_EMBEDDING])
                                for start in (0, self.FRAMES_PER_HOP)])
        try:
            together = self._run_embedding_block(frames, 2)
        except (RuntimeError, ValueError):
            together = None
        finally:
            self._embedding_shape = ("none", 0)  # re-plan on the next run, whatever shape the probe left
        if together is None:  # it cannot run a longer input, or gives other than two windows of values
            return False
        return bool(np.abs(together - alone).max() <= self.RUN_TOLERANCE * max(1.0, float(np.abs(alone).max())))

    def _run_embedding(self, frames: np.ndarray, count: int) -> np.ndarray:
        """The embeddings of the last ``count`` windows of ``frames`` (mel frames ``[m, 32]``), one
        every 8 frames, the last ending with ``frames``: ``[count, 96]``."""
        span = self.FRAMES_PER_EMBEDDING + self.FRAMES_PER_HOP * (count - 1)
        frames = frames[len(frames) - span:]
        if not self._long_runs:
            ends = range(self.FRAMES_PER_EMBEDDING, span + 1, self.FRAMES_PER_HOP)
            return self._run_windows(np.stack([frames[e - self.FRAMES_PER_EMBEDDING:e] for e in ends]))
        out = []
        # Blocks: one run over hundreds of windows is slower per window than runs of EMBEDDING_BLOCK
        # (its activations outgrow the caches), and no window's result depends on the block it is in.
        block = self.EMBEDDING_BLOCK if self._whole_clip else self.STREAM_BLOCK
        for first in range(0, count, block):
            size = min(block, count - first)
            start = first * self.FRAMES_PER_HOP
            out.append(self._run_embedding_block(
                frames[start:start + self.FRAMES_PER_EMBEDDING + self.FRAMES_PER_HOP * (size - 1)], size))
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _run_embedding_block(self, frames: np.ndarray, count: int) -> np.ndarray:
        """``count`` consecutive embeddings from one run over their ``76 + 8 * (count - 1)`` frames."""
        if ("run", count) != self._embedding_shape:
            # A resize re-plans the interpreter (0.2 ms); the daemon keeps to a few sizes.
            self._embedding.resize_tensor_input(self._embedding_in, [1, len(frames), 32, 1])
            self._embedding.allocate_tensors()
            self._embedding_shape = ("run", count)
        self._embedding.set_tensor(self._embedding_in,
                                   np.ascontiguousarray(frames, dtype=np.float32)[None, :, :, None])
        self._embedding.invoke()
        return self._embedding.get_tensor(self._embedding_out).reshape(count, 96).copy()

    def _run_windows(self, windows: np.ndarray) -> np.ndarray:
        """Embeddings of separate windows ``[n, 76, 32]``, as a batch (in blocks of ``EMBEDDING_BLOCK``)."""
        if len(windows) > self.EMBEDDING_BLOCK:
            blocks = range(0, len(windows), self.EMBEDDING_BLOCK)
            return np.concatenate([self._run_windows(windows[i:i + self.EMBEDDING_BLOCK]) for i in blocks])
        if ("batch", len(windows)) != self._embedding_shape:
            self._embedding.resize_tensor_input(self._embedding_in, [len(windows), 76, 32, 1])
            self._embedding.allocate_tensors()
            self._embedding_shape = ("batch", len(windows))
        self._embedding.set_tensor(self._embedding_in, np.ascontiguousarray(windows, dtype=np.float32)[..., None])
        self._embedding.invoke()
        return self._embedding.get_tensor(self._embedding_out).reshape(len(windows), 96).copy()

    def _consume(self) -> np.ndarray:
        # Whole groups of 8 frames only: after the first 640 samples every 160 make a frame.
        groups = max(0, (len(self._pending) - self.OVERLAP) // self.CHUNK)
        if groups == 0:
            return np.zeros((0, 96), dtype=np.float32)
        span = groups * self.CHUNK + self.OVERLAP
        if self._whole_clip:
            mel = self._run_mel(self._pending[:span].astype(np.float32))
        else:  # the same frames as one run over the span (the model has no state), at one input size
            piece = self.CHUNK + self.OVERLAP
            mel = np.concatenate([self._run_mel(self._pending[g * self.CHUNK:g * self.CHUNK + piece].astype(np.float32))
                                  for g in range(groups)])
        self._pending = self._pending[groups * self.CHUNK:]
        frames = np.concatenate([self._frames, mel])
        old_count = self._frame_count
        self._frame_count += len(mel)
        ends = [
            end for end in range(old_count + self.FRAMES_PER_HOP, self._frame_count + 1, self.FRAMES_PER_HOP)
            if end >= self._first_frames
        ]
        base = self._frame_count - len(frames)  # frame index of frames[0]
        self._frames = frames[-(self.FRAMES_PER_EMBEDDING - self.FRAMES_PER_HOP):]
        if not ends:
            return np.zeros((0, 96), dtype=np.float32)
        # The windows end 8 frames apart, the last with ``frames``: one run of the network gives them all.
        return self._run_embedding(frames[:ends[-1] - base], len(ends))


class SoundsFrontend(Frontend):
    """YAMNet's 1024-d embedding of each 0.975 s window, one every ``hop_samples`` (0.3 s by default)."""

    name = "sounds"
    WINDOW = 15600
    EMBEDDING_TENSOR = "global_average_pooling2d/Mean"

    def __init__(self, *, yamnet_model: Path, hop_samples: int = 4800, num_threads: int = 1) -> None:
        super().__init__(yamnet_model=yamnet_model, hop_samples=hop_samples, num_threads=num_threads)
        self.hop_samples = hop_samples
        self.receptive_samples = self.WINDOW
        self.feature_shape = (1024,)
        self._net = load_interpreter(yamnet_model, preserve_all_tensors=True, num_threads=num_threads)
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]["index"]
        matches = [
            d["index"] for d in self._net.get_tensor_details()
            if self.EMBEDDING_TENSOR in d["name"] and tuple(d["shape"]) == (1, 1024)
        ]
        if not matches:
            raise BundleError(f"{yamnet_model}: no 1024-d embedding layer found; is this YAMNet?")
        self._embedding_index = matches[0]
        self._seen = 0

    def reset(self) -> None:
        super().reset()
        self._seen = 0

    def _consume(self) -> np.ndarray:
        out = []
        while len(self._pending) >= self.WINDOW:
            self._net.set_tensor(self._input, self._pending[: self.WINDOW].astype(np.float32))
            self._net.invoke()
            out.append(self._net.get_tensor(self._embedding_index).reshape(1024).copy())
            self._pending = self._pending[self.hop_samples:]
        if not out:
            return np.zeros((0, 1024), dtype=np.float32)
        return np.stack(out)


def build_frontend(spec: FrontendSpec | Mapping[str, Any], base_files: Mapping[str, Path], *,
                   num_threads: int = 1) -> Frontend:
    """The frontend a manifest describes (a validated :class:`~hark.manifest.FrontendSpec`), its base
    files already located and verified; or, for the trainer, the one a recipe names
    (``{"name": ..., "hop_samples": ...}``) with that frontend's own defaults for the rest.

    ``num_threads`` > 1 is for the trainer, which has the desktop to itself; the device uses one.
    """
    if isinstance(spec, FrontendSpec):
        name, hop = spec.name, spec.hop_samples
    else:
        name, hop = spec["name"], spec.get("hop_samples")
    try:
        if name == "speech":
            embedding = spec.embedding if isinstance(spec, FrontendSpec) else spec.get("embedding",
                                                                                        DEFAULT_EMBEDDING)
            if embedding not in EMBEDDING_FILES:
                raise BundleError(f"unknown speech embedding {embedding!r}: one of {', '.join(EMBEDDING_FILES)}")
            return SpeechFrontend(
                mel_model=base_files["melspectrogram.tflite"],
                embedding_model=base_files[EMBEDDING_FILES[embedding]],
                embedding=embedding,
                num_threads=num_threads,
            )
        if name == "sounds":
            return SoundsFrontend(yamnet_model=base_files["yamnet.tflite"], hop_samples=hop or 4800,
                                  num_threads=num_threads)
        if name == "none":
            if not isinstance(spec, FrontendSpec):
                return LogMelFrontend(**({"hop_samples": hop} if hop else {}))
            return LogMelFrontend(n_mels=spec.feature_shape[0], win_samples=spec.receptive_samples,
                                  hop_samples=spec.hop_samples, n_fft=spec.n_fft, fmin=spec.fmin, fmax=spec.fmax)
    except KeyError as err:
        raise BundleError(f"frontend {name!r} needs base file {err.args[0]}") from None
    raise BundleError(f"unknown frontend {name!r}")
