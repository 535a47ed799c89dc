"""``python -m detector``: the ``detector`` command."""

import sys

from detector.cli import main

__all__: list[str] = []

sys.exit(main())
