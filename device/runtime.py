"""Load a TFLite interpreter from whichever runtime is installed.

Order: ``ai_edge_litert`` (LiteRT, what ``hark[device]`` installs: wheels for Python 3.10-3.13
on 64-bit Linux, including Raspberry Pi OS Bookworm and Trixie), then ``tflite_runtime`` (its
predecessor, Python <= 3.11 and numpy 1 only, for an older install that still has it), then
``tensorflow.lite`` as a last resort on a desktop. TensorFlow is never imported when one of the
small runtimes is there, so the Pi never needs it.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path
from typing import Any

from hark.errors import BundleError, HarkError

_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
runtime_name: str | None = None


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first runtime that imports.

    A second copy of the TFLite runtime in a process that has already loaded TensorFlow is not to
    be trusted (tflite_runtime's ``GetSignatureDefs`` fails there with "vector::reserve"), so once
    TensorFlow is in the process (the trainer) TensorFlow's own interpreter is used; the choice is
    made at every load for that reason.
    """
    global runtime_name
    order = ("tensorflow.lite",) if "tensorflow" in sys.modules else _RUNTIMES
    for module_name in order:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        runtime_name = module_name.split(".")[0]
        if not hasattr(module, "Interpreter"):  # the tensorflow.lite package; the API is tf.lite
            return importlib.import_module("tensorflow").lite.Interpreter
        return module.Interpreter
    raise HarkError(
        "no TFLite runtime found: pip install 'hark[device]' (it brings ai-edge-litert, "
        "which has wheels for 64-bit ARM and x86 only; 32-bit Raspberry Pi OS is not supported)"
    )


def load_interpreter(
    model: Path | bytes, *, num_threads: int = 1, preserve_all_tensors: bool = False
) -> Any:
    """An interpreter for a model file or the model's bytes, not yet allocated.

    One thread by default: the daemon shares a small CPU with everything else on the Pi,
    and single-threaded inference is what the cost benchmark measures.
    """
    cls = interpreter_class()
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    with warnings.catch_warnings():
        # ai-edge-litert warns that keeping every tensor is for debugging; YAMNet's embedding is an
        # intermediate tensor hark reads on purpose (a few MB for one 0.975 s window), so the warning
        # would only alarm a user at every start.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        return cls(**source, **kwargs)


_PROBED: set[tuple[str, int, int]] = set()
_PROBE = ("import sys, pathlib\n"
          "from hark.runtime import load_interpreter\n"
          "load_interpreter(pathlib.Path(sys.argv[1])).allocate_tensors()\n")


def probe_model(path: Path, *, timeout_s: float = 120.0) -> None:
    """Load the model file once in a child process before this one does.

    TFLite's runtimes trust the file: a damaged one (a truncated head, or bytes that merely start
    like a model) can crash the process with a segfault that no ``except`` can turn into a line.
    The child takes the crash instead, and the user gets a :class:`~hark.errors.BundleError`. A
    file that merely raises is left to the caller, whose own load reports it. Each file is probed
    once a process (by path, size and modification time).
    """
    import signal
    import subprocess

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _PROBED:
        return
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=timeout_s,
                                check=False)
    except subprocess.TimeoutExpired:
        raise BundleError(f"{path}: the TFLite runtime did not finish loading it in {timeout_s:.0f} s") from None
    if result.returncode < 0:
        try:
            how = signal.Signals(-result.returncode).name
        except ValueError:
            how = f"signal {-result.returncode}"
        raise BundleError(f"{path}: the TFLite runtime crashed reading it ({how}): the file is damaged or not "
                          "a TFLite model")
    _PROBED.add(key)
