"""``python -m sandbox serve ...`` (the same as ``referral-sync sandbox serve ...``)."""

import sys

from sandbox.cli import main

sys.exit(main())
