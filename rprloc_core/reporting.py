"""Writing results: tidy CSV tables with a Markdown rendering, PNG figures, JSON; all atomic."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.paths import PROJECT_ROOT


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), so a benchmark says which machine ran it: the
    lent machines differ between sessions, and their timings with them."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def portable_paths(text: str) -> str:
    """This machine's absolute paths made relative to the project: its root becomes '.', the folder
    above it '..' (committed results must not carry a path of the machine that made them)."""
    return text.replace(str(PROJECT_ROOT), ".").replace(str(PROJECT_ROOT.parent), "..")


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_text(text: str, path: Path) -> Path:
    """A text result (e.g. results/<profile>/summary.md), written atomically."""
    _atomic_write_text(Path(path), text)
    return Path(path)


def markdown_table(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(v, floatfmt)
        return str(v)
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def write_table(df: pd.DataFrame, name: str, results: Path, floatfmt: str = ".2f") -> Path:
    """results/<profile>/tables/<name>.csv and .md"""
    path = Path(results) / "tables" / f"{name}.csv"
    _atomic_write_text(path, df.to_csv(index=False))
    _atomic_write_text(path.with_suffix(".md"), markdown_table(df, floatfmt))
    return path


def save_figure(fig, name: str, results: Path, dpi: int = 110) -> Path:
    """results/<profile>/figures/<name>.png"""
    path = Path(results) / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def write_json(obj, path: Path) -> Path:
    _atomic_write_text(Path(path), portable_paths(json.dumps(obj, indent=1, default=_json_default)))
    return Path(path)


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serialisable: {type(v)}")
