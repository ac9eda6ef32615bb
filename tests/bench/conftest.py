from __future__ import annotations

import sys
from pathlib import Path

# bench/ is a directory of scripts beside the package, not installed with it.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
