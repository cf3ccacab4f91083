"""``python -m hark`` runs the ``hark`` command."""

import sys

from hark.cli import main

sys.exit(main())
