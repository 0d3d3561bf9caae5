"""Shared test setup: the tests' own helper modules (_reference, _torch_ref) are importable."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
