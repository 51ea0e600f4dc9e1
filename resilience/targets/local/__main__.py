"""`python -m resilience.targets.local --settings FILE`: the local stack's supervisor (started by `resilience up`)."""

import sys

from .supervisor import main

sys.exit(main())
