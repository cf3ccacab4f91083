"""Load a TFLite interpreter from whichever runtime is installed.

Order: ``ai_edge_litert`` (LiteRT, what ``hark[device]`` installs: wheels for Python 3.10-3.13
on 64-bit Linux, including Raspberry Pi OS Bookworm and Trixie), then ``tflite_runtime`` (its
predecessor, Python <= 3.11 and numpy 1 only, for an older install that still has it), then
``tensorflow.lite`` as a last resort on a desktop. TensorFlow is never imported when one of the
small runtimes is there, so the Pi never needs it.
"""

from __future__ import annotations

import importlib
import struct
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
    model: Path | bytes, *, num_threads: int = 1, preserve_all_tensors: bool = False, xnnpack: bool = True
) -> Any:
    """An interpreter for a model file or the model's bytes, not yet allocated.

    One thread by default: the daemon shares a small CPU with everything else on the Pi,
    and single-threaded inference is what the cost benchmark measures. ``xnnpack=False`` runs the
    built-in kernels on the file's own weights: slower, but without XNNPACK's packed copy of them,
    for a network run a few times an hour.
    """
    cls = interpreter_class()
    kwargs: dict[str, Any] = {"num_threads": num_threads}
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    if not xnnpack:
        resolver = getattr(sys.modules[cls.__module__], "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    with warnings.catch_warnings():
        # ai-edge-litert warns that keeping every tensor is for debugging; YAMNet's embedding is an
        # intermediate tensor hark reads on purpose (a few MB for one 0.975 s window), so the warning
        # would only alarm a user at every start.
        warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors", category=UserWarning)
        # TensorFlow's own interpreter (the trainer's, once TensorFlow is loaded) says it is deprecated in
        # favour of LiteRT at every model loaded; nothing a user of hark can act on.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
        return cls(**source, **kwargs)


class _Damaged(Exception):
    """A reference in a TFLite file that points outside it."""


class _FlatBuffer:
    """Just enough of the FlatBuffers layout to follow a TFLite file's references with bounds checks.

    The TFLite runtimes map a model and follow its offsets without checking them, so a file cut short
    (an SD card losing its tail) makes them read past the end of the mapping: a segfault or not,
    depending on what the address space holds there. Walking the same offsets here first turns
    that into a deterministic error.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _unpack(self, fmt: str, offset: int) -> int:
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.data):
            raise _Damaged(f"offset {offset} is outside the file")
        return int(struct.unpack_from(fmt, self.data, offset)[0])

    def table(self, pos: int) -> tuple[int, int, int]:
        vtable = pos - self._unpack("<i", pos)
        vtable_len = self._unpack("<H", vtable)
        if vtable_len < 4 or vtable + vtable_len > len(self.data):
            raise _Damaged(f"the table at {pos} has a broken vtable")
        return pos, vtable, vtable_len

    def field(self, table: tuple[int, int, int], index: int) -> int | None:
        pos, vtable, vtable_len = table
        entry = 4 + 2 * index
        if entry + 2 > vtable_len:
            return None
        offset = self._unpack("<H", vtable + entry)
        return pos + offset if offset else None

    def scalar(self, table: tuple[int, int, int], index: int, fmt: str, default: int = 0) -> int:
        at = self.field(table, index)
        return default if at is None else self._unpack(fmt, at)

    def vector(self, table: tuple[int, int, int], index: int, element_size: int) -> tuple[int, int]:
        at = self.field(table, index)
        if at is None:
            return 0, 0
        start = at + self._unpack("<I", at)
        count = self._unpack("<I", start)
        if start + 4 + count * element_size > len(self.data):
            raise _Damaged(f"a vector of {count} elements at {start} runs past the end of the file")
        return start + 4, count

    def tables(self, table: tuple[int, int, int], index: int) -> list[tuple[int, int, int]]:
        start, count = self.vector(table, index, 4)
        return [self.table(start + 4 * i + self._unpack("<I", start + 4 * i)) for i in range(count)]

    def ints(self, table: tuple[int, int, int], index: int) -> list[int]:
        start, count = self.vector(table, index, 4)
        return [self._unpack("<i", start + 4 * i) for i in range(count)]


def check_tflite_file(path: Path, *, max_bytes: int = 256 * 1024 * 1024) -> None:
    """Refuse a file that is not a whole TFLite model before a runtime maps it.

    Follows the model's buffers, subgraphs, tensors and operators (TFLite's schema: Model fields
    1 operator_codes, 2 subgraphs, 4 buffers; SubGraph 0 tensors, 3 operators; Tensor 0 shape,
    2 buffer; Operator 0 opcode_index, 1 inputs, 2 outputs) and checks that every reference stays
    inside the file and every index inside its list. Raises :class:`~hark.errors.BundleError`.
    """
    size = path.stat().st_size
    if size > max_bytes:
        raise BundleError(f"{path}: {size} bytes, more than a model of hark's may have ({max_bytes})")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BundleError(f"{path}: not a TFLite model (no TFL3 identifier)")
    fb = _FlatBuffer(data)
    try:
        model = fb.table(fb._unpack("<I", 0))
        operator_codes = fb.tables(model, 1)
        buffers = fb.tables(model, 4)
        for buffer in buffers:
            fb.vector(buffer, 0, 1)
            offset, length = fb.scalar(buffer, 1, "<Q"), fb.scalar(buffer, 2, "<Q")
            if offset > 1 and offset + length > len(data):
                raise _Damaged(f"a buffer of {length} bytes at {offset} runs past the end of the file")
        for subgraph in fb.tables(model, 2):
            tensors = fb.tables(subgraph, 0)
            for tensor in tensors:
                fb.ints(tensor, 0)
                if fb.scalar(tensor, 2, "<I") >= max(len(buffers), 1):
                    raise _Damaged("a tensor names a buffer the model does not have")
            for index in fb.ints(subgraph, 1) + fb.ints(subgraph, 2):
                if not -1 <= index < len(tensors):
                    raise _Damaged(f"subgraph input or output {index} is not a tensor")
            for operator in fb.tables(subgraph, 3):
                if not 0 <= fb.scalar(operator, 0, "<I") < len(operator_codes):
                    raise _Damaged("an operator names an operator code the model does not have")
                for index in fb.ints(operator, 1) + fb.ints(operator, 2):
                    if not -1 <= index < len(tensors):
                        raise _Damaged(f"operator input or output {index} is not a tensor")
    except _Damaged as err:
        raise BundleError(f"{path}: a damaged TFLite model ({err})") from None


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
    check_tflite_file(path)
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
