"""Shared test set-up: the model cache points at ../shared/models, fixtures come from tests/fixtures/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"

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
