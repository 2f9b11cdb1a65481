"""Entry point so that `python -m benchmarks` runs the suite."""

import sys

from .run import main

sys.exit(main())
