"""Load a TFLite interpreter from whichever runtime is installed.

Order: ``tflite_runtime`` (Python <= 3.11, needs numpy<2), ``ai_edge_litert`` (its successor,
Python >= 3.12, Raspberry Pi OS Trixie), then ``tensorflow.lite`` as a last resort on a
desktop. TensorFlow is never imported when one of the small runtimes is there, so the Pi
never needs it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from hark.errors import HarkError

_RUNTIMES = ("tflite_runtime.interpreter", "ai_edge_litert.interpreter", "tensorflow.lite")
runtime_name: str | None = None


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first runtime that imports.

    tflite_runtime cannot load models in a process that has already loaded TensorFlow (its
    ``GetSignatureDefs`` fails with "vector::reserve"), so once TensorFlow is in the process (the
    trainer) TensorFlow's own interpreter is used; the choice is made at every load for that reason.
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
        "no TFLite runtime found: pip install 'hark[device]' "
        "(tflite-runtime on Python <= 3.11, ai-edge-litert on Python >= 3.12)"
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
