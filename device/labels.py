"""What a class label may be, checked everywhere a label comes from outside.

Labels become folder names (``DATASET/<label>/``, ``captures/<label>/``) and MQTT payload
values, so they are held to ``[a-z0-9][a-z0-9_-]*``: no path separators, no ``..``, no
leading dot or underscore (``_background_noise_`` and ``_unknown_`` are reserved folders).
"""

import re

from hark.errors import HarkError

LABEL_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
MAX_LABEL_LENGTH = 64
BACKGROUND = "background"
BACKGROUND_DIR = "_background_noise_"
UNKNOWN_DIR = "_unknown_"


def is_valid_label(label: object) -> bool:
    """True when ``label`` is a string hark accepts as a class name."""
    return (
        isinstance(label, str)
        and len(label) <= MAX_LABEL_LENGTH
        and LABEL_PATTERN.fullmatch(label) is not None
        and label != BACKGROUND
    )


def check_label(label: object, *, where: str = "label") -> str:
    """Return ``label`` when valid, else raise a one-line :class:`HarkError` naming it."""
    if not is_valid_label(label):
        shown = repr(label)[:80]
        raise HarkError(
            f"{where}: {shown} is not a valid label (use lower-case letters, digits, '_' or '-', "
            f"starting with a letter or digit, at most {MAX_LABEL_LENGTH} characters; "
            f"'{BACKGROUND}' is reserved)"
        )
    return label
