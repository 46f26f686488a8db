"""Where things live: project root, data directory, results of a profile."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Converted cases and caches: $RPRLOC_DATA_DIR, else <project>/data (never committed)."""
    return Path(os.environ.get("RPRLOC_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def results_dir(profile: str) -> Path:
    """Generated tables, figures, executed notebooks: $RPRLOC_RESULTS_DIR/<profile>, else results/<profile>."""
    base = Path(os.environ.get("RPRLOC_RESULTS_DIR", PROJECT_ROOT / "results"))
    out = (base / profile).resolve()
    for sub in ("tables", "figures", "executed", "benchmarks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return out
