"""Shared test set-up: the model cache points at ../shared/models, fixtures come from tests/fixtures/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DEVICE_TESTS = ROOT / "tests" / "device"

# Tests never download: the pinned base files are in ../shared/models (see ../shared/README.md).
os.environ.setdefault("HARK_CACHE_DIR", str(SHARED / "models"))

pytest_plugins = [
    "tests.fixtures.models",
    "tests.fixtures.broker",
    "tests.fixtures.pulse",
    "tests.fixtures.web",
    "tests.fixtures.tmpfs",
]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not there (it sits beside the repository in CI)")
    return SHARED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what ``scripts/test`` selects by: ``device`` (tests/device) and ``browser`` (uses Chromium).

    The device tests run in the device-only venv first; the full venv then runs what that venv
    cannot, ``-m "not device or browser"``, rather than every device test a second time.
    """
    for item in items:
        if item.path.is_relative_to(DEVICE_TESTS):
            item.add_marker(pytest.mark.device)
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)
