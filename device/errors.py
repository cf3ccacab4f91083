"""The one exception type the command line turns into a single error line.

Anything that a user can cause (a bad file, a bad config key, a missing model) raises
:class:`HarkError` with a message that names the file, key or value; ``hark`` prints it as
``hark: error: <message>`` and exits 2 instead of showing a traceback.
"""


class HarkError(Exception):
    """A problem the user can fix; ``str(err)`` is one line that says what and where."""


class BundleError(HarkError):
    """A model bundle that is missing, truncated, of another format version or tampered with."""


class AudioError(HarkError):
    """An audio file or device that cannot be read."""


class BaseModelError(HarkError):
    """A pretrained base file that cannot be found, downloaded or verified."""
