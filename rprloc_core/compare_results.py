"""Compare regenerated result tables with the committed ones, and fail on drift.

    python -m rprloc_core.compare_results results/demo /tmp/scratch/demo [--atol 0.05] [--rtol 0.001]

Every `tables/*.csv` of the committed folder must exist in the regenerated one (and no new table may
appear there), with the same columns and the same number of rows; text cells must be equal and
numbers equal within `atol + rtol * |committed|` (NaN equals NaN). Timing columns (seconds, wall
time, load, threads) are not compared: they measure the machine, not the method; prose columns
that restate other tables' numbers ("paper", "here") are compared with their numbers masked, and
the verdict of a claim about speed is not compared. The committed
folder is the baseline: `make reproduce` rewrites results and baseline together, so after a
deliberate change (a retrain, a new setting) that command, then a commit, is all it takes.

Why a tolerance at all: the same seed, weights and data give the same predictions in the worker
processes (one torch thread each), but a few computations run in the notebook's own process with
torch's default thread count, where float32 sums may be ordered differently (measured: up to 6e-5 mm
between 1 and 2 threads), which can move a metric in its last digits.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING_COLUMN = re.compile(r"time|seconds|wall|s/organ|load_average|torch_threads|per_s\b|throughput", re.IGNORECASE)
# Prose that restates numbers compared in their own tables, timings among them (the summary's
# claims: "0.16 s (one CPU thread)"): compared as text with every number masked, so a timing in
# words cannot fail CI while a changed word (a verdict, a method) still does.
PROSE_COLUMNS = ("paper", "here")
# A verdict on a timing claim ("about 0.15 s per organ, within a factor of two") judges the machine
# that ran it as much as the method: rows whose evidence is a timing ("table3_methods (timing)")
# keep their verdict out of the comparison (CI's machine measured over 0.3 s where this one had 0.27).
TIMING_EVIDENCE = "(timing)"
NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
MAX_ROWS_SHOWN = 15


def compared_columns(columns) -> list[str]:
    return [c for c in columns if not TIMING_COLUMN.search(str(c))]


def compare_table(committed: pd.DataFrame, regenerated: pd.DataFrame, atol: float, rtol: float) -> list[str]:
    """Readable differences between two versions of one table (empty when they agree)."""
    if list(committed.columns) != list(regenerated.columns):
        gone = [c for c in committed.columns if c not in regenerated.columns]
        new = [c for c in regenerated.columns if c not in committed.columns]
        return [f"columns differ: missing {gone or 'none'}, new {new or 'none'}"
                + ("" if gone or new else " (same names, other order)")]
    if len(committed) != len(regenerated):
        return [f"{len(committed)} rows committed, {len(regenerated)} regenerated"]
    moved = np.zeros(len(committed), dtype=bool)
    moved_columns: dict[int, list[str]] = {}
    evidence = committed["evidence"] if "evidence" in committed else pd.Series("", index=committed.index)
    timing_rows = evidence.astype(str).str.contains(TIMING_EVIDENCE, regex=False).to_numpy()
    for column in compared_columns(committed.columns):
        a, b = committed[column], regenerated[column]
        numeric = pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b)
        if numeric:
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            same = (np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= atol + rtol * np.abs(x))
        else:
            text_a, text_b = a.astype(str), b.astype(str)
            if column in PROSE_COLUMNS:
                text_a, text_b = (t.map(lambda v: NUMBER.sub("#", v)) for t in (text_a, text_b))
            same = (a.isna() & b.isna()).to_numpy() | (text_a == text_b).to_numpy()
            if column == "verdict":
                same |= timing_rows
        for i in np.flatnonzero(~same):
            moved_columns.setdefault(int(i), []).append(column)
        moved |= ~same
    lines = []
    for i in list(np.flatnonzero(moved))[:MAX_ROWS_SHOWN]:
        key = _row_key(committed.iloc[i])
        changes = ", ".join(f"{c}: {_cell(committed[c].iloc[i])} -> {_cell(regenerated[c].iloc[i])}"
                            for c in moved_columns[int(i)])
        lines.append(f"row {i} ({key}): {changes}")
    if moved.sum() > MAX_ROWS_SHOWN:
        lines.append(f"... and {int(moved.sum()) - MAX_ROWS_SHOWN} more rows")
    return lines


def _cell(value) -> str:
    return repr(value.item() if isinstance(value, np.generic) else value)


def _row_key(row: pd.Series) -> str:
    """The row's text cells (method, organ, support, ...): enough to find it in the table."""
    texts = [f"{k}={v}" for k, v in row.items() if isinstance(v, str) and not TIMING_COLUMN.search(str(k))]
    return ", ".join(texts[:4]) or "no text columns"


def compare_folders(committed: Path, regenerated: Path, atol: float = 0.05, rtol: float = 1e-3) -> dict[str, list[str]]:
    """{table file name: differences} for every table that does not agree."""
    committed_tables = {p.name: p for p in sorted((Path(committed) / "tables").glob("*.csv"))}
    regenerated_tables = {p.name: p for p in sorted((Path(regenerated) / "tables").glob("*.csv"))}
    if not committed_tables:
        raise SystemExit(f"no tables under {committed}/tables: nothing to compare against")
    problems: dict[str, list[str]] = {}
    for name, path in committed_tables.items():
        if name not in regenerated_tables:
            problems[name] = ["not regenerated"]
            continue
        lines = compare_table(pd.read_csv(path), pd.read_csv(regenerated_tables[name]), atol, rtol)
        if lines:
            problems[name] = lines
    for name in sorted(set(regenerated_tables) - set(committed_tables)):
        problems[name] = ["regenerated but not committed: run `make reproduce` and commit results/"]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("committed", type=Path)
    parser.add_argument("regenerated", type=Path)
    parser.add_argument("--atol", type=float, default=0.05, help="absolute tolerance (default 0.05)")
    parser.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 0.001)")
    args = parser.parse_args(argv)
    problems = compare_folders(args.committed, args.regenerated, args.atol, args.rtol)
    n_tables = len(list((args.committed / "tables").glob("*.csv")))
    if not problems:
        print(f"all {n_tables} committed tables regenerated within atol {args.atol} + rtol {args.rtol} "
              f"(timing columns not compared)")
        return 0
    print(f"{len(problems)} of {n_tables} tables drifted from {args.committed} "
          f"(atol {args.atol} + rtol {args.rtol}; timing columns not compared):")
    for name, lines in problems.items():
        print(f"\n{name}:")
        for line in lines:
            print(f"  {line}")
    print("\nIf the change is deliberate: `make reproduce`, then commit results/ (it is the baseline).")
    return 1


if __name__ == "__main__":
    sys.exit(main())
