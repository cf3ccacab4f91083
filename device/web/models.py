"""Bundles deployed from the page: where uploads are kept, which one runs, which one came before.

An upload is unpacked (:mod:`hark.web.archive`) into ``STATE/models/.staging-*``, verified
exactly as ``hark run`` verifies the config's model at start (:meth:`hark.model.Model.load`:
hashes, format, the manifest, the head; then the config's labels against the model's
classes), and only then renamed to ``STATE/models/<stamp>-<name>/``. ``STATE/models/active.json``
records the running bundle and the previous one, so a restart keeps the deployed model and
*rollback* has something to go back to. At most :data:`KEEP` uploaded bundles are kept (never
the running or the previous one, never the config's own ``model:``, which is not in this folder).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hark.clipfile import timestamp, write_json
from hark.config import Config
from hark.errors import HarkError
from hark.labels import is_valid_label
from hark.web.archive import unpack

log = logging.getLogger(__name__)

ACTIVE = "active.json"
KEEP = 4


@dataclass(frozen=True)
class Deployed:
    """What ``active.json`` says: the running bundle and the one before it (None: the config's)."""

    current: Path | None
    previous: Path | None


def models_dir(config: Config) -> Path:
    return config.resolve_state_dir() / "models"


def read_active(config: Config) -> Deployed:
    """The deployed bundles recorded under the state directory (nothing recorded: both None)."""
    path = models_dir(config) / ACTIVE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return Deployed(None, None)
    if not isinstance(document, dict):
        return Deployed(None, None)

    def bundle(key: str) -> Path | None:
        value = document.get(key)
        return Path(value) if isinstance(value, str) and value else None

    return Deployed(bundle("current"), bundle("previous"))


def write_active(config: Config, current: Path, previous: Path | None) -> None:
    folder = models_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / ACTIVE, {"current": str(current), "previous": str(previous) if previous else None})


def startup_model(config: Config) -> Path:
    """The bundle ``hark run`` starts with: the last one deployed from the page if there is one, else ``model:``."""
    if config.web is None:
        return config.model
    deployed = read_active(config).current
    if deployed is not None and deployed.is_dir():
        log.info("using %s, deployed from the page (the config's model is %s; rollback or delete %s to go back)",
                 deployed, config.model, models_dir(config) / ACTIVE)
        return deployed
    return config.model


def install(config: Config, upload: Path, *, max_bytes: int, filename: str = "upload") -> tuple[Any, Path]:
    """Unpack and verify ``upload``; returns ``(model, folder)`` of the new bundle, kept under the state directory.

    Anything wrong raises :class:`HarkError` and leaves the state directory as it was.
    """
    from hark.model import Model

    folder = models_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    shutil.rmtree(staging)  # unpack makes it afresh, so it starts empty and private to this upload
    where = f"upload {filename[:80]!r}"
    try:
        unpack(upload, staging, where=where, max_bytes=max_bytes)
        try:
            model = Model.load(staging)
        except HarkError as err:
            raise HarkError(f"{where}: {str(err).replace(str(staging), 'bundle')}") from None
        config.check_labels(model.labels)
        name = model.bundle.name if is_valid_label(model.bundle.name.lower()) else "model"
        final = folder / f"{timestamp()}-{name.lower()}"
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    model = Model.load(final)  # paths inside the model must be the kept folder's, not the staging one's
    return model, final


def prune(config: Config, keep: set[Path]) -> None:
    """Remove uploaded bundles beyond the newest :data:`KEEP`, never one in ``keep``."""
    folder = models_dir(config)
    bundles = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    resolved = {p.resolve() for p in keep}
    for old in bundles[KEEP:]:
        if old.resolve() not in resolved:
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed the old deployed bundle %s", old)
