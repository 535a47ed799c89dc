"""``python -m detector.cli``: the ``detector`` command."""

import sys

from detector.cli import main

__all__: list[str] = []

sys.exit(main())
