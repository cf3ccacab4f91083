"""Load a TFLite interpreter from whichever runtime is installed.

Order: ``tflite_runtime`` (Python <= 3.11, needs numpy<2), ``ai_edge_litert`` (its successor,
Python >= 3.12, Raspberry Pi OS Trixie), then ``tensorflow.lite`` as a last resort on a
desktop. TensorFlow is never imported when one of the small runtimes is there, so the Pi
never needs it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from device.errors import HarkError

_RUNTIMES = ("tflite_runtime.interpreter", "ai_edge_litert.interpreter", "tensorflow.lite")
_interpreter_class: Any = None
runtime_name: str | None = None


def interpreter_class() -> Any:
    """The ``Interpreter`` class of the first runtime that imports."""
    global _interpreter_class, runtime_name
    if _interpreter_class is None:
        for module_name in _RUNTIMES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            _interpreter_class = module.Interpreter
            runtime_name = module_name.split(".")[0]
            break
        else:
            raise HarkError(
                "no TFLite runtime found: pip install 'hark[device]' "
                "(tflite-runtime on Python <= 3.11, ai-edge-litert on Python >= 3.12)"
            )
    return _interpreter_class


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
