"""The summary of a profile's results (the last notebook): every method side by side, the paper's
claims with a verdict each, and the README's results section, all read from the tables the earlier
notebooks wrote (nothing is recomputed, so the summary cannot disagree with them).

    methods_table      one row per method: IoU per organ, mean IoU (SD over supports), AWD, seconds
                       per organ from the timing harness, the paper's numbers beside
    claims_table       each claim of the paper: its number, ours, "reproduced" / "not reproduced" /
                       "reproduced in part" / "not tested", and the table it comes from
    readme_section     both as Markdown, written to results/<profile>/summary.md and spliced into
                       README.md between its markers by `update_readme`
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.experiments.paper import (
    CLEAR_MARGIN_PTS,
    RPRLOC_LABEL,
    STAGE_LABELS,
    SUPERVISED_LABEL,
    TEMPLATE_LABELS,
    lead_verdict,
    mean_rows,
    paper_mean,
)
from rprloc_core.reporting import markdown_table

FAMILIES = {
    "rprloc": "RPR-Loc, one-shot",
    "few_shot": "RPR-Loc, few-shot",
    "size_prior": "RPR-Loc, one-shot, box with the support's size as a prior",
    "template": "template matching, one-shot",
    "cc2d": "CC2D (self-supervised landmarks), one-shot",
    "registration": "atlas registration, one-shot",
    "supervised_here": "supervised, trained here (upper bound)",
    "supervised": "supervised (paper only)",
}
# Methods the paper compares with that this project has not implemented yet (open issues).
NOT_YET = ()
# The labels of CC2D's rows in notebook 06's table (experiments.cc2d_predictions.LABELS).
CC2D_PREFIX = "CC2D"
# The label of the detector trained here in the references table (experiments.detector_predictions.LABEL).
DETECTOR_PREFIX = "Supervised detector"
README_BEGIN, README_END = "<!-- summary:begin -->", "<!-- summary:end -->"


def read_table(results: Path, name: str) -> pd.DataFrame | None:
    path = Path(results) / "tables" / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def _rows_from_long(table: pd.DataFrame, methods: dict, source: str, organs) -> list[dict]:
    """Wide rows from a long per-organ table (method, organ, iou_pct, ...); `methods`: the method
    names to take -> their family."""
    rows = []
    for method, family in methods.items():
        part = table[table.method == method].set_index("organ")
        if "Mean" not in part.index:
            continue
        mean = part.loc["Mean"]
        measured = mean.get("n_queries", 1) > 0 and np.isfinite(mean.iou_pct)
        row = {"method": method, "family": family}
        for organ in organs:
            row[f"{organ} IoU %"] = part.iou_pct.get(organ, np.nan) if measured else np.nan
        row.update({"IoU %": mean.iou_pct if measured else np.nan,
                    "IoU SD": mean.get("iou_pct_sd_over_supports", np.nan) if measured else np.nan,
                    "AWD mm": mean.awd_mm if measured else np.nan,
                    "s/organ": mean.get("time_s", np.nan) if measured else np.nan,
                    "paper IoU %": mean.get("paper_iou_pct", np.nan),
                    "paper AWD mm": mean.get("paper_awd_mm", np.nan),
                    "paper s/organ": mean.get("paper_time_s_per_organ", np.nan),
                    "table": source})
        rows.append(row)
    return rows


def _untimed_rows(records: list[dict], names: list[str], family: str, sd_column: str, source: str,
                  organs) -> list[dict]:
    """Summary rows from a wide table of a beyond-the-paper variant (IoU per organ, "IoU %", its SD
    in `sd_column`, "AWD mm"): no time measured, no paper numbers."""
    rows = []
    for record, name in zip(records, names):
        row = {"method": name, "family": family, **{f"{o} IoU %": record.get(f"{o} IoU %", np.nan) for o in organs}}
        row.update({"IoU %": record["IoU %"], "IoU SD": record[sd_column], "AWD mm": record["AWD mm"],
                    "s/organ": np.nan, "paper IoU %": np.nan, "paper AWD mm": np.nan, "paper s/organ": np.nan,
                    "table": source})
        rows.append(row)
    return rows


def methods_table(results: Path, organs=HAN_ORGANS) -> pd.DataFrame:
    """Every method measured in this profile's results, one row each (see the module docstring).
    Seconds per organ only where they were measured (Table 3, notebooks 07 and 08)."""
    rows = []
    table2 = read_table(results, "table2_multistep")
    if table2 is not None:
        paper_stages = [STAGE_LABELS[s] for s in ("coarse1", "coarse2", "coarse3", "fine")]
        rows += _rows_from_long(table2, {m: FAMILIES["rprloc"] for m in paper_stages}, "table2_multistep", organs)
    table3 = read_table(results, "table3_methods")
    if table3 is not None:
        methods = {RPRLOC_LABEL + " default schedule": FAMILIES["rprloc"],
                   **{m: FAMILIES["template"] for m in TEMPLATE_LABELS.values()},
                   SUPERVISED_LABEL: FAMILIES["supervised"]}
        table3 = table3.replace({"method": {RPRLOC_LABEL: RPRLOC_LABEL + " default schedule"}})
        rows += _rows_from_long(table3, methods, "table3_methods", organs)
    references = read_table(results, "references_methods")
    if references is not None:
        registration = [m for m in dict.fromkeys(references.method) if str(m).startswith("Registration")]
        rows += _rows_from_long(references, {m: FAMILIES["registration"] for m in registration},
                                "references_methods", organs)
        detector = [m for m in dict.fromkeys(references.method) if str(m).startswith(DETECTOR_PREFIX)]
        rows += _rows_from_long(references, {m: FAMILIES["supervised_here"] for m in detector},
                                "references_methods", organs)
    cc2d = read_table(results, "cc2d_methods")
    if cc2d is not None:
        labels = [m for m in dict.fromkeys(cc2d.method) if str(m).startswith(CC2D_PREFIX)]
        rows += _rows_from_long(cc2d, {m: FAMILIES["cc2d"] for m in labels}, "cc2d_methods", organs)
    pin = read_table(results, "pin_methods")
    if pin is not None:
        supervised = [m for m in dict.fromkeys(pin.method) if str(m).startswith("PIN")]
        rows += _rows_from_long(pin, {m: FAMILIES["supervised_here"] for m in supervised}, "pin_methods", organs)
    prior = read_table(results, "size_prior_test")
    if prior is not None:
        records = prior[prior["w"] > 0].to_dict("records")        # not the paper's box (NaN)
        rows += _untimed_rows(records, [f"{r['method']} + size prior {r['w']:g}" for r in records],
                              FAMILIES["size_prior"], "IoU SD over supports", "size_prior_test", organs)
    few = read_table(results, "few_shot")
    if few is not None:
        records = few[few.supports > 1].to_dict("records")
        rows += _untimed_rows(records, [f"RPR-Loc default schedule, {r['supports']} supports ({r['fusion']})"
                                        for r in records], FAMILIES["few_shot"], "IoU SD over sets", "few_shot", organs)
    return pd.DataFrame(rows)


def _mean(table: pd.DataFrame | None, metric: str = "iou_pct", **match) -> float:
    if table is None:
        return np.nan
    rows = mean_rows(table, **match)
    return float(rows[metric].iloc[0]) if len(rows) == 1 else np.nan


def _verdict(holds, partly=False) -> str:
    if holds is None:
        return "not tested"
    return "reproduced" if holds else "reproduced in part" if partly else "not reproduced"


def claims_table(results: Path, methods: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's claims, each with the paper's numbers, ours and a verdict computed from them.
    `methods`: `methods_table(results)` when the caller has it already."""
    t1, t2 = read_table(results, "table1_diagonal_vs_extreme"), read_table(results, "table2_multistep")
    methods = (methods_table(results) if methods is None else methods).set_index("method")
    rows = []

    def claim(text, paper, here, verdict, source):
        rows.append({"claim": text, "paper": paper, "here": here, "verdict": verdict, "evidence": source})

    if t1 is not None:
        e1, d1 = _mean(t1, strategy="Extreme", K=1), _mean(t1, strategy="Diagonal", K=1)
        claim("Extreme points beat diagonal points (Mc one step, K = 1)",
              f"{paper_mean('rprloc_table1', strategy='Extreme', K=1):.1f} vs "
              f"{paper_mean('rprloc_table1', strategy='Diagonal', K=1):.1f} % IoU",
              f"{e1:.1f} vs {d1:.1f} % IoU", lead_verdict(e1 - d1), "table1_diagonal_vs_extreme")
        k_values = sorted(set(t1[t1.strategy == "Extreme"].K))
        ek = {k: _mean(t1, strategy="Extreme", K=k) for k in k_values}
        best_k = max(ek, key=ek.get)
        claim("More runs per landmark (K) help", f"K = 1: {paper_mean('rprloc_table1', strategy='Extreme', K=1):.1f}, "
              f"K = 15: {paper_mean('rprloc_table1', strategy='Extreme', K=15):.1f} % IoU",
              ", ".join(f"K = {k}: {v:.1f}" for k, v in ek.items()) + " % IoU",
              lead_verdict(ek[best_k] - ek[k_values[0]]), "table1_diagonal_vs_extreme")
    if t2 is not None:
        fine = _mean(t2, method=STAGE_LABELS["fine"])
        coarse = max(_mean(t2, method=STAGE_LABELS[s]) for s in ("coarse2", "coarse3"))
        claim("The fine model adds accuracy: Mc + Mf beats repeated Mc steps",
              f"{paper_mean('rprloc_table2', method='Mc + Mf'):.1f} vs "
              f"{max(paper_mean('rprloc_table2', method=m) for m in ('Mc (two steps)', 'Mc (three steps)')):.1f} % IoU",
              f"{fine:.1f} vs {coarse:.1f} % IoU", lead_verdict(fine - coarse), "table2_multistep")
        paper_iou, paper_awd = paper_mean("rprloc_table2", method="Mc + Mf"), paper_mean("rprloc_table2", "awd_mm",
                                                                                          method="Mc + Mf")
        awd = _mean(t2, "awd_mm", method=STAGE_LABELS["fine"])
        claim("Mc + Mf localises head-and-neck organs at 55 % IoU, 6 mm AWD", f"{paper_iou:.1f} %, {paper_awd:.2f} mm",
              f"{fine:.1f} %, {awd:.1f} mm (other data, smaller and shorter-trained models)",
              _verdict(fine >= paper_iou - 5 and awd <= paper_awd + 1),
              "table2_multistep")
    default = RPRLOC_LABEL + " default schedule"
    templates = methods[methods.family == FAMILIES["template"]]
    if default in methods.index and len(templates):
        ours = methods.loc[default]
        best_tm = templates["IoU %"].idxmax()
        margin = ours["IoU %"] - templates["IoU %"].max()
        lower_awd = ours["AWD mm"] < templates["AWD mm"].min()
        claim(f"RPR-Loc is more accurate than template matching (by at least {CLEAR_MARGIN_PTS:g} IoU points, and "
              "in AWD)",
              f"{ours['paper IoU %']:.1f} vs at most {templates['paper IoU %'].max():.1f} % IoU; "
              f"{ours['paper AWD mm']:.2f} vs at least {templates['paper AWD mm'].min():.2f} mm",
              f"{ours['IoU %']:.1f} vs {templates.loc[best_tm, 'IoU %']:.1f} % IoU ({best_tm}); "
              f"{ours['AWD mm']:.1f} vs at least {templates['AWD mm'].min():.1f} mm",
              _verdict(margin >= CLEAR_MARGIN_PTS and lower_awd, partly=margin > 0 or lower_awd), "table3_methods")
        claim("RPR-Loc takes about 0.15 s per organ (within a factor of two)", "0.15 s (GPU)",
              f"{ours['s/organ']:.2g} s (one CPU thread)",
              _verdict(ours["s/organ"] <= 0.3), "table3_methods (timing)")
        fastest = templates["s/organ"].min()
        ratio = fastest / ours["s/organ"]
        claim("RPR-Loc is 10^3-10^5 times faster than template matching",
              f"{templates['paper s/organ'].min() / 0.15:,.0f}-{templates['paper s/organ'].max() / 0.15:,.0f}x",
              f"{ratio:.0f}x faster than the fastest (exact FFT / dense-encoder) template matching here",
              _verdict(ratio >= 1000, partly=ratio > 1), "table3_methods (timing)")
    registration = methods[methods.family == FAMILIES["registration"]]
    if default in methods.index and len(registration):
        reg = registration.iloc[0]
        claim("(Not in the paper) RPR-Loc beats the atlas registration a user would try first", "-",
              f"{methods.loc[default, 'IoU %']:.1f} vs {reg['IoU %']:.1f} % IoU ({reg.name}); "
              f"{methods.loc[default, 'AWD mm']:.1f} vs {reg['AWD mm']:.1f} mm",
              lead_verdict(methods.loc[default, "IoU %"] - reg["IoU %"],
                           partly=methods.loc[default, "AWD mm"] < reg["AWD mm"]), "references_methods")
    cc2d = methods[methods.family == FAMILIES["cc2d"]]
    if default in methods.index and len(cc2d):
        best = cc2d["IoU %"].idxmax()
        ours, theirs = methods.loc[default], cc2d.loc[best]
        claim("(Not in the paper) RPR-Loc beats CC2D, the other one-shot method of 2021", "-",
              f"{ours['IoU %']:.1f} vs {theirs['IoU %']:.1f} % IoU ({best}); "
              f"{ours['AWD mm']:.1f} vs {theirs['AWD mm']:.1f} mm",
              lead_verdict(ours["IoU %"] - theirs["IoU %"]),
              "cc2d_methods")
    supervised = methods[methods.family == FAMILIES["supervised_here"]]
    paper_gap = (f"{paper_mean('rprloc_table3', method=RPRLOC_LABEL):.1f} vs "
                 f"{paper_mean('rprloc_table3', method=SUPERVISED_LABEL):.1f} % IoU")
    if default in methods.index and len(supervised):
        det = supervised.iloc[0]
        gap = det["IoU %"] - methods.loc[default, "IoU %"]
        claim("One-shot RPR-Loc trails a supervised detector trained on labelled scans", paper_gap,
              f"{methods.loc[default, 'IoU %']:.1f} vs {det['IoU %']:.1f} % IoU ({det.name}); "
              f"{methods.loc[default, 'AWD mm']:.1f} vs {det['AWD mm']:.1f} mm",
              lead_verdict(gap), "references_methods")
    else:
        claim("One-shot RPR-Loc trails a supervised detector trained on labelled scans", paper_gap,
              "no supervised detector in these results", _verdict(None), "-")
    return pd.DataFrame(rows)


def readme_section(methods: pd.DataFrame, claims: pd.DataFrame, profile: str) -> str:
    """Markdown for README.md's results section (generated; edit this function, not the README)."""
    shown = methods.drop(columns=["table"]).copy()
    lines = [f"Generated by notebook `09_summary` from `results/{profile}/tables/` (do not edit by hand; "
             "`make reproduce` rewrites it). Mean over the test queries for each support, then mean and SD "
             "over supports; IoU in the query's voxel coordinates, AWD in mm, as in the paper. Seconds per "
             "organ from the timing harness (one thread, each method alone); the paper's on its GPU.",
             "", markdown_table(shown, floatfmt=".3g"), "",
             *([f"Not implemented yet: {', '.join(NOT_YET)}.", ""] if NOT_YET else []),
             (f"The paper's claims (a method \"beats\" another at a lead of {CLEAR_MARGIN_PTS:g} IoU points or more; "
              "a smaller lead lies within the spread over supports and counts as \"in part\"):"), "",
             markdown_table(claims), ""]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> bool:
    """Replace the text between the README's summary markers; True if it changed."""
    text = Path(readme).read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_BEGIN) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{readme}: no {README_BEGIN} ... {README_END} block to fill")
    new = pattern.sub(lambda _: f"{README_BEGIN}\n{section.strip()}\n{README_END}", text)
    if new != text:
        Path(readme).write_text(new, encoding="utf-8")
    return new != text
