"""The installed package: one import namespace, and a device side that never reaches for the trainer.

pyproject.toml maps ``device/`` to ``hark`` and ``trainer/`` to ``hark.trainer``; a package named
``device`` or ``trainer`` at the top of site-packages would clash with other software (Coqui's
``trainer``), and a device module that imported the trainer would pull TensorFlow onto the Pi.
"""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import hark

DEVICE = Path(hark.__file__).resolve().parent
# What a device module may import only inside a function, where a trainer command needs it.
TRAINER_ONLY = ("hark.trainer", "tensorflow", "keras", "matplotlib")


def test_only_hark_is_installed_at_the_top_level() -> None:
    # The metadata beside the hark that was imported (a source tree's hark.egg-info could come first on sys.path).
    found = [d for d in importlib.metadata.distributions(path=[str(DEVICE.parent)]) if d.metadata["Name"] == "hark"]
    dist = found[0] if found else importlib.metadata.distribution("hark")
    assert (dist.read_text("top_level.txt") or "").split() == ["hark"]
    if dist.read_text("RECORD") is None:
        return  # an editable install: its file list is the source tree, not what is installed
    # A wheel install records every file: nothing outside hark/ and its metadata (scripts go to ../bin).
    tops = {f.parts[0] for f in dist.files or [] if f.parts[0] != ".."}
    assert tops == {"hark", f"hark-{dist.version}.dist-info"}, tops


def _module_level_imports(path: Path) -> set[str]:
    """Modules imported at a module's top level (not inside functions, where a command needs them)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(inner, ast.Import):
                names.update(a.name for a in inner.names)
            elif isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                names.add(inner.module)
                names.update(f"{inner.module}.{a.name}" for a in inner.names)
    return names


def test_no_device_module_imports_the_trainer_at_load_time() -> None:
    modules = [p for p in DEVICE.rglob("*.py") if "trainer" not in p.relative_to(DEVICE).parts]
    assert len(modules) > 20, "the device package was not found where hark is installed"
    offending = {
        str(p.relative_to(DEVICE)): sorted(n for n in _module_level_imports(p) if n.startswith(TRAINER_ONLY))
        for p in modules
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_check_sees_a_trainer_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom hark.trainer import train\ntry:\n    import tensorflow\nexcept ImportError:\n"
                      "    pass\n\ndef later():\n    import matplotlib\n")
    found = _module_level_imports(module)
    assert {"hark.trainer.train", "tensorflow"} <= found
    assert "matplotlib" not in found
