"""The papers' own numbers (rprloc_core/reference/*.csv) and the names their tables give methods."""

from __future__ import annotations

import pandas as pd

from rprloc_core.paths import PROJECT_ROOT

REFERENCE_DIRS = (PROJECT_ROOT / "rprloc_core" / "reference", PROJECT_ROOT.parent / "shared" / "reference")

# Table 2's rows (RPR-Loc stages, K runs averaged) and Table 3's methods, as the paper names them.
# Table 2 adds a row for the profile's default schedule, named by `default_label`.
STAGE_LABELS = {"coarse1": "Mc (one step)", "coarse2": "Mc (two steps)", "coarse3": "Mc (three steps)",
                "fine": "Mc + Mf"}
TEMPLATE_LABELS = {"gs_mse": "GS MSE", "gs_cosine": "GS Cosine", "gs_ncc": "GS NCC",
                   "fm_mse": "FM MSE", "fm_cosine": "FM Cosine"}
RPRLOC_LABEL = "RPR-Loc (Mc + Mf)"           # Table 3: the profile's default schedule (a Mc + Mf variant)
SUPERVISED_LABEL = "Retina U-Net (supervised)"
# A claim "A beats B" holds when A leads by at least this many IoU points: a smaller lead lies within
# the spread over supports (their SD is 2-5 points in Tables 1-3), so it counts as "in part".
CLEAR_MARGIN_PTS = 2.0


def default_label(schedule_label: str) -> str:
    """Table 2's name for the default schedule's row, e.g. "default: Mc > avg > Mf (shared starts)"."""
    return f"default: {schedule_label}"


def paper_table(name: str) -> pd.DataFrame:
    """A table of the papers' numbers, e.g. "rprloc_table2" (the project's copy first, then
    ../shared/reference)."""
    for base in REFERENCE_DIRS:
        if (base / f"{name}.csv").is_file():
            return pd.read_csv(base / f"{name}.csv")
    raise FileNotFoundError(f"paper table {name}.csv not found in {', '.join(map(str, REFERENCE_DIRS))}")


def with_paper_columns(table: pd.DataFrame, paper: pd.DataFrame, on: dict) -> pd.DataFrame:
    """Join the paper's numbers (iou_pct, awd_mm) as paper_iou_pct, paper_awd_mm. `on` maps this
    table's key columns to the paper table's columns, e.g. {"method": "method", "organ": "organ"}."""
    right = paper.rename(columns={"iou_pct": "paper_iou_pct", "awd_mm": "paper_awd_mm"})
    right = right.rename(columns={v: k for k, v in on.items()})
    cols = [*on.keys(), "paper_iou_pct", "paper_awd_mm"]
    return table.merge(right[cols], on=list(on.keys()), how="left")


def mean_rows(table: pd.DataFrame, **match) -> pd.DataFrame:
    """The 'Mean' organ rows of a per-organ table whose columns equal `match`."""
    return table[(table.organ == "Mean") & pd.concat([table[k] == v for k, v in match.items()], axis=1).all(axis=1)]


def paper_mean(name: str, metric: str = "iou_pct", **match) -> float:
    """One of the paper's Mean-row numbers, e.g. paper_mean("rprloc_table2", method="Mc + Mf")."""
    rows = mean_rows(paper_table(name), **match)
    if len(rows) != 1:
        raise KeyError(f"{name}: {len(rows)} Mean rows match {match}")
    return float(rows[metric].iloc[0])


def lead_verdict(lead_pts: float, partly: bool = False) -> str:
    """The verdict on a claim "A beats B" from A's IoU lead over B (points): "reproduced" at
    CLEAR_MARGIN_PTS or more, "reproduced in part" for a smaller positive lead (or when `partly`,
    another sign of the claim, holds), "not reproduced" otherwise."""
    if lead_pts >= CLEAR_MARGIN_PTS:
        return "reproduced"
    return "reproduced in part" if lead_pts > 0 or partly else "not reproduced"
