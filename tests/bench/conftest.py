"""``bench`` is not an installed package (only ``connector`` and ``sandbox`` are): it is run
from the project root, so the root goes first on the path for these tests."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
