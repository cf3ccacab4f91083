"""``python -m device`` runs the ``hark`` command."""

import sys

from device.cli import main

sys.exit(main())
