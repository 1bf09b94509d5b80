"""Where the benchmarks read the JGLUE dev sets (JSQuAD, JSTS): the folder ``JGLUE_DIR`` names."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def jglue_dir() -> Path:
    """``JGLUE_DIR``, or the ``shared/data`` folder beside this checkout when it is unset."""
    return Path(os.environ.get("JGLUE_DIR") or REPO.parent / "shared" / "data")
