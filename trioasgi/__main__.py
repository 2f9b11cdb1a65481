"""``python -m trioasgi``: the same as the ``trio-asgi`` command."""

import sys

from .cli.main import main

sys.exit(main())
