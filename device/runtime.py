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
from pathlib import Path
from typing import Any

from hark.errors import HarkError

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
    if isinstance(model, bytes):
        return cls(model_content=model, **kwargs)
    return cls(model_path=str(model), **kwargs)
