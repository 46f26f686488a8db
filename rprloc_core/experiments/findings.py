"""The findings the notebooks state, computed from the tables (never typed): each function takes
a table (and what it needs to explain it) and returns Markdown. The paper's numbers come from
rprloc_core/reference through `paper_mean`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.experiments import models
from rprloc_core.experiments.answer_checks import VARIANTS
from rprloc_core.experiments.error_analysis import DEFAULT_BOX, ON_DEFAULT_CENTRE, overall_rms_mm, rms_over_axes
from rprloc_core.experiments.paper import (
    CLEAR_MARGIN_PTS,
    RPRLOC_LABEL,
    STAGE_LABELS,
    SUPERVISED_LABEL,
    TEMPLATE_LABELS,
    lead_verdict,
    paper_mean,
    paper_table,
)
from rprloc_core.experiments.size_prior import per_support_means

# The authors' released coarse HaN model reached about this validation MSE (mm^2).
AUTHORS_COARSE_VAL_MSE_MM2 = 380.0


def table1_findings(table1: pd.DataFrame) -> str:
    """Extreme vs diagonal points at K = 1, and whether a larger K helps."""
    mean = table1[table1.organ == "Mean"].set_index(["strategy", "K"])
    d1, e1 = mean.loc[("Diagonal", 1), "iou_pct"], mean.loc[("Extreme", 1), "iou_pct"]
    k_values = sorted(mean.loc["Extreme"].index)
    k_big = 15 if 15 in k_values else k_values[-1]
    ek = mean.loc[("Extreme", k_big), "iou_pct"]
    paper = {(s, k): paper_mean("rprloc_table1", strategy=s, K=k) for s, k in
             (("Diagonal", 1), ("Extreme", 1), ("Extreme", 15))}
    return (f"**Extreme beats diagonal (K = 1): {lead_verdict(e1 - d1)}** ({e1:.1f} % vs {d1:.1f} % mean IoU; "
            f"paper {paper[('Extreme', 1)]:.1f} % vs {paper[('Diagonal', 1)]:.1f} %).  \n"
            f"**Larger K helps: {lead_verdict(ek - e1)}** (extreme, K = 1: {e1:.1f} %, K = {k_big}: {ek:.1f} %; "
            f"paper {paper[('Extreme', 1)]:.1f} % and {paper[('Extreme', 15)]:.1f} % at K = 15).")


def _prior_pair(table: pd.DataFrame, method: str, weight: float):
    rows = table[table.method == method]
    return rows[rows["w"].isna()].iloc[0], rows[np.isclose(rows["w"], weight)].iloc[0]


def size_prior_findings(validation: pd.DataFrame, test: pd.DataFrame, weight: float, method: str) -> str:
    """What the size prior at the profile's weight changes for `method` on validation (where w was
    chosen) and on the test queries (reported). Both frames: `size_prior.rule_table`."""
    def text(table):
        paper, prior = _prior_pair(table, method, weight)
        organs = [c[: -len(" IoU %")] for c in table.columns if c.endswith(" IoU %")]
        per_organ = ", ".join(f"{o} {paper[f'{o} IoU %']:.1f} -> {prior[f'{o} IoU %']:.1f}" for o in organs)
        return (f"{paper['IoU %']:.1f} -> {prior['IoU %']:.1f} % IoU, AWD {paper['AWD mm']:.2f} -> "
                f"{prior['AWD mm']:.2f} mm ({per_organ})", prior["IoU %"] > paper["IoU %"])

    (val_text, val_better), (test_text, test_better) = text(validation), text(test)
    verdict = "yes, on both" if val_better and test_better else "on validation only" if val_better else "no"
    return (f"**The support's box size helps {method} (w = {weight:g}): {verdict}.** "
            f"Validation: {val_text}.  \nTest queries (not used to choose w): {test_text}.")


def centre_rule_findings(per_query: pd.DataFrame, reference: str, min_gain_pts: float = 1.0) -> str:
    """Whether another centre for the size-prior box beats the profile's (`reference`, a box label of
    `size_prior.centre_rules_per_query`): it must gain >= min_gain_pts IoU points (mean over
    supports of the per-support mean), have no higher AWD, and gain on every support."""
    per_support = per_support_means(per_query, ["box"])       # as `size_prior.rule_table` averages
    awd = per_support.awd_mm.groupby(level=0, sort=False).mean()
    per_support = per_support.iou_pct.unstack()
    gains = per_support.sub(per_support.loc[reference], axis=1).drop(index=reference)
    passing = [box for box, row in gains.iterrows()
               if row.mean() >= min_gain_pts and awd[box] <= awd[reference] and (row > 0).all()]
    best = gains.mean(axis=1).idxmax()
    row = gains.loc[best]
    best_text = (f"{best.split('centre: ')[-1]}: {row.mean():+.1f} ± {row.std(ddof=1):.1f} points, up on "
                 f"{int((row > 0).sum())} of {len(row)} supports, AWD {awd[best]:.2f} vs {awd[reference]:.2f} mm")
    rule = (f"the rule asks >= +{min_gain_pts:g} points, no more AWD and a gain on every support, written down "
            "before scoring")
    if passing:
        return f"**A centre passes the rule: {', '.join(p.split('centre: ')[-1] for p in passing)}** (best: " \
               f"{best_text}; {rule})."
    return f"**No centre passes the rule; the profile keeps its own** (best alternative: {best_text}; {rule})."


def size_prior_gains(table: pd.DataFrame, weight: float) -> str:
    """Each method's IoU change from the size prior, from a `size_prior.rule_table`."""
    gains = {}
    for method in dict.fromkeys(table.method):
        paper, prior = _prior_pair(table, method, weight)
        gains[method] = (paper["IoU %"], prior["IoU %"])
    return (f"**The support's box size (w = {weight:g}, chosen for RPR-Loc on validation patients) on these "
            "methods' extreme points:** " + ", ".join(f"{m} {a:.1f} -> {b:.1f} % ({b - a:+.1f})"
                                                     for m, (a, b) in gains.items()) + " mean IoU.")


def table2_findings(table2: pd.DataFrame) -> str:
    """Whether Mc + Mf beats repeated Mc, and how far Mc + Mf is from the paper's accuracy."""
    mean = table2[table2.organ == "Mean"].set_index("method")
    labels = [STAGE_LABELS[s] for s in ("coarse1", "coarse2", "coarse3", "fine")]
    one, two, three, fine = (mean.loc[label, "iou_pct"] for label in labels)
    paper = [paper_mean("rprloc_table2", method=label) for label in labels]
    paper_awd = paper_mean("rprloc_table2", "awd_mm", method=labels[-1])
    return (f"**Finding: Mc + Mf beats repeated Mc: {lead_verdict(fine - max(two, three))} on this data** (by "
            f"{fine - max(two, three):+.1f} IoU points; a lead under {CLEAR_MARGIN_PTS:g} lies within the spread over "
            f"supports). Mean IoU: "
            f"Mc one step {one:.1f} %, two steps {two:.1f} %, three steps {three:.1f} %, Mc + Mf {fine:.1f} % "
            f"(paper: {', '.join(f'{p:.1f}' for p in paper)} %). Paper's Mc + Mf: IoU {paper[-1]:.1f} %, AWD "
            f"{paper_awd:.2f} mm; reached here: IoU {fine:.1f} % ({fine - paper[-1]:+.1f} points), "
            f"AWD {mean.loc[labels[-1], 'awd_mm']:.2f} mm.")


def training_evidence(settings, table2_per_query: pd.DataFrame, training_table: pd.DataFrame) -> str:
    """Why Table 2 falls short of the paper: the Pnets' validation errors next to the
    localization error (`training_table`: notebook 02's pnet_training table)."""
    trained = training_table.set_index("name")
    history = models.history(settings, "coarse")
    window = min(500, int(history.step.max()))
    before = history[history.step <= history.step.max() - window].val_loss_mm2.iloc[-1]
    after = history.val_loss_mm2.iloc[-1]
    errors = table2_per_query.groupby("method", sort=False).point_error_mm.mean()
    coarse_mse, fine_mse = trained.loc["coarse", "best_val_loss_mm2"], trained.loc["fine", "best_val_loss_mm2"]
    fine_gain = errors.get(STAGE_LABELS["coarse2"], np.nan) - errors.get(STAGE_LABELS["fine"], np.nan)
    verdict = ("a real gain" if fine_gain >= 1.0
               else "little gain: its error is about the size of the residual it is meant to remove")
    fine = models.train_configs(settings)["fine"]
    fine_range_mm = np.round(np.asarray(fine.fine_range_vox) * np.asarray(settings.preprocess.spacing_zyx)
                             * fine.downsample).tolist()
    return (
        f"- Coarse model: validation MSE {coarse_mse:.0f} mm^2 (RMS {np.sqrt(coarse_mse):.0f} mm per axis for one "
        f"move from one random start) against about {AUTHORS_COARSE_VAL_MSE_MM2:.0f} mm^2 "
        f"({np.sqrt(AUTHORS_COARSE_VAL_MSE_MM2):.0f} mm) for the authors' model; it was still falling at the end "
        f"({before:.0f} -> {after:.0f} mm^2 over the last {window} steps): the training budget is a clear limit.\n"
        f"- Mean distance of a predicted extreme point to the true one: "
        + ", ".join(f"{m} {e:.1f} mm" for m, e in errors.items()) + ".\n"
        f"- Fine model: validation MSE {fine_mse:.0f} mm^2 (RMS {np.sqrt(fine_mse):.1f} mm per axis) on offsets of "
        f"up to {fine_range_mm} mm; Mc + Mf's points are {fine_gain:.1f} mm closer than two Mc steps' "
        f"({verdict}).\n"
        f"- What would close the gap: the same code trained longer (raise `steps` in the profile; training resumes "
        f"from its checkpoint) or on a GPU with the `paper` profile (b = 16, 16 x 64 x 64 patches, 3 x 1 x 1 mm).")


def table3_findings(table3, profile: str) -> str:
    """Speed and accuracy of RPR-Loc against the template-matching baselines (`table3`: the
    PaperTable of `tables.table3`), side by side, next to the paper's claims."""
    table, side_by_side = table3.table, table3.extra["side_by_side"]
    mean = table[table.organ == "Mean"].set_index("method")
    baselines = list(TEMPLATE_LABELS.values())
    fastest = side_by_side[baselines].idxmin()
    paper = paper_table("rprloc_table3")
    paper = paper[paper.organ == "Mean"].set_index("method")
    paper_rprloc = paper.loc[RPRLOC_LABEL, "time_s_per_organ"]
    paper_times = paper.loc[baselines, "time_s_per_organ"]
    ratios = paper_times / paper_rprloc
    lines = [f"**Speed.** Paper: RPR-Loc {paper_rprloc:g} s per organ against {paper_times.min():,.0f}"
             f"-{paper_times.max():,.0f} s for the baselines, i.e. {ratios.min():.1e} to {ratios.max():.1e} times "
             f"faster (its '10^3-10^5' claim)."]
    if table3.extra["have_rprloc"]:
        t_rprloc, t_fast = side_by_side[RPRLOC_LABEL], side_by_side[fastest]
        ratio = t_fast / t_rprloc
        relation = f"RPR-Loc is {ratio:.1f} times faster" if ratio >= 1 else f"RPR-Loc is {1 / ratio:.1f} times slower"
        threads = int(table3.extra["timing"].torch_threads.iloc[0])
        lines.append(
            f"Here, measured side by side (same support, same {len(table3.extra['timing_queries'])} queries, "
            f"{threads} torch thread(s)): RPR-Loc {t_rprloc:.3g} s per organ, the fastest exact baseline "
            f"({fastest}) {t_fast:.3g} s: {relation}. Computed exactly with FFTs and a dense encoder, the baselines "
            f"are nowhere near 10^3-10^5 times slower than RPR-Loc: the paper's speed-up comes from how its "
            f"baselines were implemented ({paper_times.min():,.0f}-{paper_times.max():,.0f} s per organ for the "
            f"same scores), not from what they compute.")
        iou, awd = mean.loc[RPRLOC_LABEL, "iou_pct"], mean.loc[RPRLOC_LABEL, "awd_mm"]
        best_iou, best_awd = mean.loc[baselines, "iou_pct"].idxmax(), mean.loc[baselines, "awd_mm"].idxmin()
        per_organ = table[table.organ.isin(table3.per_query.organ.unique())].pivot(
            index="organ", columns="method", values="iou_pct")
        wins = int((per_organ[RPRLOC_LABEL] > per_organ[baselines].max(axis=1)).sum())
        paper_best = paper.loc[baselines, "iou_pct"].idxmax()
        lines.append(
            f"**Accuracy.** RPR-Loc {'beats' if iou > mean.loc[best_iou, 'iou_pct'] else 'does not beat'} every "
            f"baseline in mean IoU on this data: {iou:.1f} % (SD {mean.loc[RPRLOC_LABEL, 'iou_pct_sd_over_supports']:.1f}"
            f" over supports) against the best baseline, {best_iou}, {mean.loc[best_iou, 'iou_pct']:.1f} % (SD "
            f"{mean.loc[best_iou, 'iou_pct_sd_over_supports']:.1f}); it is the best method on {wins} of "
            f"{len(per_organ)} organs. Mean AWD: RPR-Loc {awd:.2f} mm, best baseline {best_awd} "
            f"{mean.loc[best_awd, 'awd_mm']:.2f} mm ({'better' if awd < mean.loc[best_awd, 'awd_mm'] else 'not better'}"
            f"). Paper: RPR-Loc {paper.loc[RPRLOC_LABEL, 'iou_pct']:.1f} % / {paper.loc[RPRLOC_LABEL, 'awd_mm']:.2f} mm, "
            f"best baseline {paper_best} {paper.loc[paper_best, 'iou_pct']:.1f} % / "
            f"{paper.loc[paper_best, 'awd_mm']:.2f} mm.")
    else:
        lines.append("RPR-Loc's cached predictions are missing (notebook 03), so there is no side-by-side comparison.")
    if profile == "smoke":
        lines.append("*Smoke profile: synthetic phantoms and tiny models; these numbers say nothing about the methods.*")
    return "\n\n".join(lines)


def data_pipeline_benchmark(results: Path, profile: str) -> str:
    """The data pipeline benchmark's figures, or how to produce them."""
    import json

    bench = Path(results) / "benchmarks" / "data_pipeline.json"
    if not bench.is_file():
        return f"No benchmark figures yet: run `python benchmarks/data_pipeline.py --profile {profile}`."
    b = json.loads(bench.read_text(encoding="utf-8"))
    return (f"Benchmark (empty data directory): {b['n_cases']} cases, convert {b['convert_s']} s + preprocess "
            f"{b['preprocess_s']} s = {b['total_s']} s on {b['cpus']} CPUs (target {b['target_total_s']} s).")


def error_analysis_findings(axis_errors: pd.DataFrame, oracle: pd.DataFrame, table2: pd.DataFrame) -> str:
    """What the oracle ceiling and the self-localisation test say about Mc + Mf."""
    fine = table2[(table2.organ == "Mean") & (table2.method == STAGE_LABELS["fine"])].iloc[0]
    ceiling = oracle[oracle.organ == "Mean"].iloc[0]
    rows = axis_errors.set_index(["stage", "axis"])
    worst = max("zyx", key=lambda a: rows.loc[("Mc + Mf", a), "mean_absolute_error_mm"])
    parts = ", ".join(f"{a} {rows.loc[('Mc + Mf', a), 'mean_signed_error_mm']:+.1f} / "
                      f"{rows.loc[('Mc + Mf', a), 'mean_absolute_error_mm']:.1f} mm" for a in "zyx")
    coarse_worst = rows.loc[("Mc (one step)", worst)]
    return (f"- **Ceiling:** the support's box on the true centre scores {ceiling.iou_pct:.1f} % IoU and "
            f"{ceiling.awd_mm:.1f} mm AWD; Mc + Mf reaches {fine.iou_pct:.1f} % and {fine.awd_mm:.1f} mm, so "
            f"{ceiling.iou_pct - fine.iou_pct:.1f} IoU points are lost to localisation error, not to the one-shot "
            f"box shape.\n"
            f"- **Self-localisation, Mc + Mf** (mean signed / mean absolute error per axis): {parts}. The largest "
            f"error is along {worst}; after the coarse step alone it was {coarse_worst.mean_signed_error_mm:+.1f} / "
            f"{coarse_worst.mean_absolute_error_mm:.1f} mm there.")


def centre_error_findings(table: pd.DataFrame, paper_iou_pct: float, sd_at_paper_mm: float,
                          same_scan: pd.DataFrame | None = None, same_scan_stage: str = "Mc + Mf") -> str:
    """What the paper's IoU asks of the centres, from `error_analysis.centre_error_table`; with
    `same_scan` (`error_analysis.axis_error_table` of the self-localisation's box centres), how the
    networks' own centre error within one scan compares."""
    rows = table.set_index("method")
    own, on_centre = rows.loc[DEFAULT_BOX], rows.loc[ON_DEFAULT_CENTRE]
    rms = {a: own[f"centre_rms_{a}_mm"] for a in "zyx"}
    exact = rows[rows.sd_mm == 0].iloc[0]["IoU %"]
    lines = [f"- With the centre exact the support's box scores {exact:.1f} %. Moved by random centre errors it "
             + (f"falls to the paper's {paper_iou_pct:.1f} % at an SD of about {sd_at_paper_mm:.1f} mm per axis."
                if np.isfinite(sd_at_paper_mm) else f"never crosses the paper's {paper_iou_pct:.1f} % in this range."),
             f"- The default schedule's box centres miss by {', '.join(f'{a} {v:.1f}' for a, v in rms.items())} mm "
             f"(root mean square per axis). The support's box on those centres scores {on_centre['IoU %']:.1f} %, "
             f"the schedule's own box {own['IoU %']:.1f} %: against the exact centre the centres cost "
             f"{exact - on_centre['IoU %']:.1f} points, and the predicted box size instead of the support's "
             f"changes that by {own['IoU %'] - on_centre['IoU %']:+.1f}."]
    if np.isfinite(sd_at_paper_mm) and sd_at_paper_mm > 0:
        overall = rms_over_axes(list(rms.values()))
        lines.append(f"- So the paper's level asks for centres about {overall / sd_at_paper_mm:.1f} times closer "
                     f"than today's ({overall:.1f} mm per axis, root mean square over the three axes).")
    if same_scan is not None:
        own_scan = same_scan[same_scan.stage == same_scan_stage].set_index("axis").rms_error_mm
        within = overall_rms_mm(same_scan, same_scan_stage)
        lines.append(f"- Within one scan (self-localisation, {same_scan_stage}) the box centres miss by "
                     f"{', '.join(f'{a} {own_scan[a]:.1f}' for a in 'zyx')} mm ({within:.1f} mm root mean square over "
                     f"the axes): the networks' own error, with no anatomy between two patients to blame, is "
                     + ("already larger than" if np.isfinite(sd_at_paper_mm) and within > sd_at_paper_mm
                        else "within") + " what the paper's level allows across patients.")
    return "\n".join(lines)


def spread_findings(table: pd.DataFrame, bad_iou_pct: float) -> str:
    """Whether the spread of the K runs flags bad boxes, from `error_analysis.spread_table`."""
    every = table.set_index("organ").loc["All organs"]
    share, auc = every[f"boxes under {bad_iou_pct:g} % IoU"], every["AUC: spread flags them"]
    organs = table[table.organ != "All organs"]
    verdict = ("a useful flag" if auc >= 0.8 else "a weak flag, better than chance" if auc > 0.6
               else "no better than chance")
    return (f"Over all boxes the spread ranks with the point error at rho = {every['rho(spread, point error)']:.2f} "
            f"and with the IoU at rho = {every['rho(spread, IoU)']:.2f}. {share:.0f} % of the boxes have an IoU "
            f"under {bad_iou_pct:g} %; the spread picks them out with a ROC AUC of {auc:.2f} "
            f"({organs['AUC: spread flags them'].min():.2f}-{organs['AUC: spread flags them'].max():.2f} per organ): "
            f"{verdict}. A wide spread means the K runs disagree, which happens where the networks are unsure, "
            "but a tight spread is no guarantee: runs can agree on the wrong place.")


def answer_check_findings(table: pd.DataFrame, threshold_mm: float, cli_threshold_mm: float) -> str:
    """How often the answer checks fire on whole scans and on cut ones, from `answer_checks.checks_table`
    (test queries), and whether the CLI's threshold is the one chosen on validation patients."""
    rows = table.set_index("scan")
    move = f"remaining move > {threshold_mm:g} mm %"
    whole, missing = rows.loc[VARIANTS[0]], rows.loc[VARIANTS[1]] if VARIANTS[1] in rows.index else None
    lines = [f"On validation patients 90 % of the organs found in whole scans ask for a remaining move of at most "
             f"{threshold_mm:g} mm; " + ("the CLI warns above the same." if threshold_mm == cli_threshold_mm else
                                        f"the CLI still warns above {cli_threshold_mm:g} mm: update "
                                        "rprloc.config.RELEASE_REMAINING_MOVE_WARN_MM.")]
    lines.append(f"On the test queries the move warns of {whole[move]:.1f} % of the organs in whole scans, and the "
                 f"edge check of {whole['on the edge %']:.1f} %; the boxes warned of by either score "
                 f"{whole['IoU % warned of']:.1f} % IoU against {whole['IoU % not warned of']:.1f} % for the others.")
    if missing is not None:
        lines.append(f"Of the organs missing from a scan cut below them, the move warns of {missing[move]:.1f} % "
                     f"and the two checks together of {missing['either %']:.1f} % (median move "
                     f"{missing['median remaining move mm']:.0f} mm against {whole['median remaining move mm']:.0f} "
                     "mm in whole scans).")
    if VARIANTS[2] in rows.index:
        cut = rows.loc[VARIANTS[2]]
        lines.append(f"Where the scan ends inside the brainstem ({cut['organ slices in scan %']:.0f} % of the organs' "
                     f"slices kept), {cut['either %']:.0f} % of the organs are warned of, most by the edge check "
                     f"({cut['on the edge %']:.0f} %): their boxes are cut by the scan.")
    return " ".join(lines)


def few_shot_findings(table: pd.DataFrame) -> str:
    """What more supports buy, per fusion, from `few_shot.few_shot_table`."""
    one = table[table.supports == 1].iloc[0]
    lines = [f"One support: {one['IoU %']:.1f} ± {one['IoU SD over sets']:.1f} % IoU, {one['AWD mm']:.1f} mm AWD."]
    for row in table[table.supports > 1].to_dict("records"):
        lines.append(f"{row['supports']} supports, {row['fusion']}: {row['IoU %']:.1f} % "
                     f"({row['IoU %'] - one['IoU %']:+.1f} points), {row['AWD mm']:.1f} mm, "
                     f"{row['s/organ']:.2g} s per organ.")
    best = table.loc[table["IoU %"].idxmax()]
    lines.append("More supports do not help here." if best["supports"] == 1 else
                 f"The best is {best['supports']} supports with the {best['fusion']}.")
    return " ".join(lines)


def schedule_findings(schedule_table: pd.DataFrame, default_label: str) -> str:
    """What the validation comparison of schedules says, and whether the profile's default is the
    best trade-off it measured."""
    table = schedule_table.set_index("schedule")
    paper_row, best = table.iloc[0], table["IoU %"].idxmax()
    lines = [f"On validation patients the paper's {table.index[0]} reaches {paper_row['IoU %']:.1f} % IoU, "
             f"{paper_row['AWD mm']:.1f} mm AWD at {paper_row['s/organ']:.3g} s per organ (one thread). "
             f"The best mean IoU is {best}'s: {table.loc[best, 'IoU %']:.1f} % "
             f"({table.loc[best, 'IoU vs Mc > Mf (pts)']} points against {table.index[0]})."]
    if default_label in table.index:
        row = table.loc[default_label]
        lines.append(f"The profile's default, {default_label}: {row['IoU %']:.1f} % IoU "
                     f"({row['IoU vs Mc > Mf (pts)']} points), {row['AWD mm']:.1f} mm AWD, {row['s/organ']:.3g} s per "
                     f"organ, {paper_row['s/organ'] / row['s/organ']:.0f} times faster than {table.index[0]}.")
        better = table[(table["IoU %"] >= row["IoU %"]) & (table["s/organ"] <= row["s/organ"])
                       & (table.index != default_label)]
        if len(better):
            lines.append("At least as accurate and at least as fast as the default here: " + "; ".join(
                f"{label} ({r['IoU %']:.1f} % IoU, {r['s/organ']:.3g} s)" for label, r in better.iterrows())
                + ". On these supports the default is not the best trade-off measured; a candidate that leads "
                  "here replaces it only after passing a rule written before scoring on more training supports "
                  "(the prose of this notebook lists those that did not).")
    else:
        lines.append(f"The profile's default ({default_label}) is not among the candidates measured here.")
    spread = table["IoU %"].max() - table["IoU %"].min()
    lines.append(f"All candidates lie within {spread:.1f} IoU points of each other: the schedule moves speed far "
                 "more than accuracy; the accuracy gap to the paper is the networks' (see the evidence below).")
    return " ".join(lines)


def references_findings(table: pd.DataFrame, chosen: str, profile: str, detector: str | None = None) -> str:
    """Registration (and the supervised detector, labelled `detector`) against RPR-Loc, from the
    references table's Mean rows."""
    mean = table[table.organ == "Mean"].set_index("method")
    if RPRLOC_LABEL not in mean.index or not np.isfinite(mean.loc[RPRLOC_LABEL, "iou_pct"]):
        return f"{chosen}: {mean.loc[chosen, 'iou_pct']:.1f} % IoU; RPR-Loc's cached predictions are missing."
    reg, rpr = mean.loc[chosen], mean.loc[RPRLOC_LABEL]
    better = reg.iou_pct > rpr.iou_pct
    lines = [f"**{chosen}**: {reg.iou_pct:.1f} % IoU, {reg.awd_mm:.1f} mm AWD, {reg.time_s:.2g} s per organ; "
             f"**RPR-Loc** (default schedule): {rpr.iou_pct:.1f} % IoU, {rpr.awd_mm:.1f} mm AWD, "
             f"{rpr.time_s:.2g} s per organ.",
             (f"On this data the registration a user would try first is **more accurate than RPR-Loc** by "
              f"{reg.iou_pct - rpr.iou_pct:.1f} IoU points" if better else
              f"RPR-Loc is more accurate than registration by {rpr.iou_pct - reg.iou_pct:.1f} IoU points")
             + (f", and RPR-Loc is {reg.time_s / rpr.time_s:.0f} times faster per organ." if reg.time_s >= rpr.time_s
                else f", and registration is {rpr.time_s / reg.time_s:.1f} times faster per organ.")]
    if detector is not None and detector in mean.index:
        det = mean.loc[detector]
        trained_on = "the training split" if profile != "smoke" else "phantoms"
        text = (f"The **supervised detector** (trained on {trained_on}'s masks) reaches {det.iou_pct:.1f} % IoU "
                f"and {det.awd_mm:.1f} mm AWD at {det.time_s:.2g} s per organ: "
                f"{det.iou_pct - rpr.iou_pct:+.1f} IoU points over one-shot RPR-Loc")
        if SUPERVISED_LABEL in mean.index:
            text += (f" (the paper: Retina U-Net {mean.loc[SUPERVISED_LABEL, 'paper_iou_pct']:.1f} vs RPR-Loc "
                     f"{rpr.paper_iou_pct:.1f} % IoU)")
        lines.append(text + ".")
    if profile == "smoke":
        lines.append("*Smoke profile: synthetic phantoms and tiny models; these numbers say nothing about the methods.*")
    return " ".join(lines[:2]) + "".join("\n\n" + line for line in lines[2:])


def pin_findings(variants: pd.DataFrame, single_vs_multiple: pd.DataFrame, methods: pd.DataFrame,
                 single_label: str, multiple_label: str, profile: str) -> str:
    """What notebook 07's tables say, in words computed from them: the best variant against the
    paper's ranking, PIN-Single against PIN-Multiple, and PIN's boxes against one-shot RPR-Loc."""
    v = variants.set_index("variant")
    best = v.error_mean_mm.idxmin()
    spread = v.error_mean_mm.max() - v.error_mean_mm.min()
    standard_error = float((v.error_sd_mm / np.sqrt(v.n_queries.clip(lower=1))).max())
    verdict = (f"the five variants lie within {spread:.1f} mm of each other, less than twice the standard error "
               f"over queries ({standard_error:.1f} mm): loss and rule make no measurable difference here"
               if spread < 2 * standard_error else f"the variants differ by up to {spread:.1f} mm")
    lines = [f"On the landmark {v.landmark.iloc[0]}, the most accurate variant here is **{best}** "
             f"({v.loc[best, 'error_mean_mm']:.1f} ± {v.loc[best, 'error_sd_mm']:.1f} mm; the paper's best is PIN5, "
             f"{v.loc['PIN5', 'paper_error_mean_mm']:.2f} mm on fetal ultrasound), but {verdict}. Rule A "
             f"(classification only, {v.loc['PIN3', 'time_s']:.2g} s per landmark) against rule C "
             f"({v.loc['PIN5', 'time_s']:.2g} s): {v.loc['PIN3', 'error_mean_mm']:.1f} vs "
             f"{v.loc['PIN5', 'error_mean_mm']:.1f} mm with the same network."]
    overall = single_vs_multiple.set_index("landmark").loc["Overall"]
    s, m = overall["PIN-Single error_mean_mm"], overall["PIN-Multiple error_mean_mm"]
    lines.append(f"Over all 24 landmarks PIN-Single's error is {s:.1f} mm and PIN-Multiple's {m:.1f} mm "
                 f"(the paper: {overall['paper PIN-Single error_mean_mm']:.2f} and "
                 f"{overall['paper PIN-Multiple error_mean_mm']:.2f} mm): the shape model "
                 + ("helps here too." if m < s else "does not help here."))
    mean = methods[methods.organ == "Mean"].set_index("method")
    for label in (single_label, multiple_label):
        if label in mean.index:
            row = mean.loc[label]
            text = (f"**{label}** boxes: {row.iou_pct:.1f} % IoU, {row.awd_mm:.1f} mm AWD, "
                    f"{row.time_s:.2g} s per organ")
            if RPRLOC_LABEL in mean.index and np.isfinite(mean.loc[RPRLOC_LABEL, "iou_pct"]):
                text += f" ({row.iou_pct - mean.loc[RPRLOC_LABEL, 'iou_pct']:+.1f} IoU points over one-shot RPR-Loc)"
            lines.append(text + ".")
    if profile == "smoke":
        lines.append("*Smoke profile: synthetic phantoms and tiny models; these numbers say nothing about "
                     "the methods.*")
    return "\n\n".join(lines)


def cc2d_findings(methods: pd.DataFrame, same_template: pd.DataFrame, ablation: pd.DataFrame, ssl_label: str,
                  tpl_label: str, profile: str, training_ablation: pd.DataFrame | None = None) -> str:
    """What notebook 06's tables say, in words computed from them: CC2D-SSL and CC2D against
    one-shot RPR-Loc (boxes, per organ), stage 2 against stage 1 with the same template
    (`cc2d_predictions.template_comparison`), the scale that matters most, and whether the training
    ablation (experiments.cc2d_ablation; its first row has the release's settings) beats the release's
    settings."""
    mean = methods[methods.organ == "Mean"].set_index("method")
    lines = []
    rprloc = mean.loc[RPRLOC_LABEL] if RPRLOC_LABEL in mean.index and np.isfinite(mean.loc[RPRLOC_LABEL, "iou_pct"]) \
        else None
    for label in (ssl_label, tpl_label):
        if label not in mean.index:
            continue
        row = mean.loc[label]
        text = f"**{label}**: {row.iou_pct:.1f} % IoU, {row.awd_mm:.1f} mm AWD, {row.time_s:.2g} s per organ"
        if rprloc is not None:
            text += (f"; one-shot RPR-Loc on the same pairs {rprloc.iou_pct:.1f} % IoU, {rprloc.awd_mm:.1f} mm "
                     f"({row.iou_pct - rprloc.iou_pct:+.1f} IoU points for CC2D)")
            organs = methods[(methods.method == label) & (methods.organ != "Mean")].set_index("organ").iou_pct
            theirs = methods[(methods.method == RPRLOC_LABEL) & (methods.organ != "Mean")].set_index("organ").iou_pct
            text += "; per organ " + ", ".join(f"{o} {organs[o] - theirs[o]:+.1f}" for o in organs.index
                                               if o in theirs.index)
        lines.append(text + ".")
    pair = same_template.set_index("method")
    if ssl_label in pair.index and tpl_label in pair.index:
        ssl, tpl = pair.loc[ssl_label], pair.loc[tpl_label]
        better = [tpl.iou_pct > ssl.iou_pct, tpl.mre_mm < ssl.mre_mm]
        verdict = ("improves on them, as in the paper" if all(better) else
                   "does not improve on them" if not any(better) else "improves on them in part")
        lines.append(f"Stage 2 against stage 1 with the same template ({pair.template.iloc[0]}): "
                     f"{tpl.iou_pct:.1f} vs {ssl.iou_pct:.1f} % IoU, landmark MRE {tpl.mre_mm:.1f} vs "
                     f"{ssl.mre_mm:.1f} mm: the detector trained on stage 1's answers {verdict} (the paper: MRE "
                     "2.72 vs 4.67 mm on cephalograms).")
    drops = ablation.set_index("scales").iou_pct
    if "all scales" in drops.index and len(drops) > 1:
        others = drops.drop("all scales")
        worst, least = others.idxmin(), others.idxmax()
        lines.append(f"Leaving out one scale: {worst} changes the mean IoU the most "
                     f"({others[worst] - drops['all scales']:+.1f} points), {least} the least "
                     f"({others[least] - drops['all scales']:+.1f}).")
    if training_ablation is not None and len(training_ablation):
        variants = training_ablation.set_index("variant")
        base, best = variants.index[0], variants.iou_pct.idxmax()
        steps = int(variants.steps.iloc[0])
        if best == base:
            lines.append(f"The training ablation ({steps} steps per variant, validation patients) keeps the "
                         f"release's settings: no variant beats their {variants.iou_pct[base]:.1f} % IoU.")
        else:
            lines.append(f"The training ablation ({steps} steps per variant, validation patients) favours "
                         f"**{best}** over the release's settings: {variants.iou_pct[best]:.1f} vs "
                         f"{variants.iou_pct[base]:.1f} % IoU, landmark MRE {variants.mre_mm[best]:.1f} vs "
                         f"{variants.mre_mm[base]:.1f} mm. It ran after the release was trained; a retrain with it "
                         "is the next step.")
    if profile == "smoke":
        lines.append("*Smoke profile: synthetic phantoms and tiny models; these numbers say nothing about "
                     "the methods.*")
    return "\n\n".join(lines)
