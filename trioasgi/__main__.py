"""``python -m trioasgi``: the same as the ``trio-asgi`` command."""

import sys

from ._cli import main

sys.exit(main())
