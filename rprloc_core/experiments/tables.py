"""One function per table of the paper (and of this reproduction): each returns tidy frames,
computed from the cached predictions or the data, never from a notebook's variables.

    dataset_table(settings)                  -> notebook 01 (geometry per case, summary per split)
    pnet_settings_table / pnet_layer_table   -> notebook 02
    pnet_training_table(settings, summaries) -> notebook 02
    table1(settings, protocol)               -> paper Table 1 (notebook 04)
    table2(settings, protocol)               -> paper Table 2 (notebook 03)
    r_sweep_table(settings, protocol)        -> notebook 03
    table3(settings, protocol)               -> paper Table 3 with its timing (notebook 05)
    cc2d_methods_table(settings, protocol)   -> notebook 06 (CC2D-SSL and CC2D beside RPR-Loc)
    registration_validation / references_table -> notebook 08 (atlas registration vs RPR-Loc)

The paper tables come back as a `PaperTable`: the summary (mean and SD over supports, with the
paper's numbers as paper_* columns) and the per-query rows behind it; `write_paper_table` saves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS, ORGANS
from rprloc_core.evaluation.jobs import torch_threads
from rprloc_core.evaluation.protocol import Protocol
from rprloc_core.evaluation.scoring import evaluate, summarize
from rprloc_core.experiments import (
    cc2d_predictions,
    detector_predictions,
    models,
    pin_predictions,
    registration_predictions,
    rprloc_predictions,
    schedules,
    template_predictions,
)
from rprloc_core.experiments.paper import (
    RPRLOC_LABEL,
    STAGE_LABELS,
    SUPERVISED_LABEL,
    TEMPLATE_LABELS,
    default_label,
    paper_table,
    with_paper_columns,
)
from rprloc_core.reporting import write_table
from rprloc_core.rprloc.pnet import PNet, layer_table

TABLE_COLUMNS = ["iou_pct", "iou_pct_sd_over_supports", "paper_iou_pct", "awd_mm", "awd_mm_sd_over_supports",
                 "paper_awd_mm", "n_queries", "n_supports"]


@dataclass
class PaperTable:
    table: pd.DataFrame                    # summary rows: per organ and Mean, with paper_* columns
    per_query: pd.DataFrame                # every (setting, support, query, organ) row behind it
    extra: dict = field(default_factory=dict)

    def shown(self, keys) -> pd.DataFrame:
        """The columns a reader compares: keys, organ, this reproduction next to the paper."""
        return self.table[[*keys, "organ", *[c for c in TABLE_COLUMNS if c in self.table]]]


def write_paper_table(result: PaperTable, name: str, results: Path) -> Path:
    write_table(result.per_query, f"{name}_per_query", results)
    return write_table(result.table, name, results)


# ---------------------------------------------------------------------------------- notebook 01

def dataset_table(settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per case: split, organs, spacing and shape before and after preprocessing;
    one row per split: counts and spacing statistics)."""
    geometry = dataset.case_geometry(settings)
    organs = [o for o in ORGANS if geometry["organs"].str.contains(o).any()]
    return geometry, dataset.dataset_summary(geometry, organs)


def preparation_problems(report: dict) -> pd.DataFrame:
    """The cases that could not be converted or preprocessed, with the file and the reason."""
    conversion = report.get("conversion")
    return pd.DataFrame(
        [(c, "conversion", m) for c, m in (conversion.failed if conversion is not None else [])]
        + [(c, "preprocessing", m) for c, m in report["preprocess_failed"]],
        columns=["case_id", "step", "problem"])


# ---------------------------------------------------------------------------------- notebook 02

def pnet_settings_table(settings) -> pd.DataFrame:
    """One row per Pnet of the profile: r, patch, grid, widths, pairs per step, steps, where it starts
    and whether it learns from a teacher."""
    return pd.DataFrame([{"model": n, "r_mm": c.r_mm, "patch_size": c.patch_size, "grid": f"base x {c.downsample}",
                          "base_width": c.base_width, "first_width": c.first_width or 2 * c.base_width,
                          "patches": f"{c.volumes_per_step} x {c.patches_per_volume}",
                          "steps": c.steps, "time_limit_s": c.time_limit_s, "warm_start": bool(c.init_from),
                          "teacher": models.reference_name(c.teacher)}
                         for n, c in models.train_configs(settings).items()])


def pnet_layer_table(settings, name: str) -> tuple[pd.DataFrame, dict]:
    """The layer table of one main Pnet, and a description (patch in voxels and mm, parameters)."""
    c = models.train_configs(settings)[name]
    net = PNet(c.variant, c.base_width, c.patch_size, c.r_mm, first_width=c.first_width)
    grid = [s * c.downsample for s in settings.preprocess.spacing_zyx]
    return layer_table(net, c.patch_size), {
        "patch_voxels": tuple(c.patch_size), "grid_mm": grid,
        "patch_mm": [p * g for p, g in zip(c.patch_size, grid)],
        "parameters": sum(p.numel() for p in net.parameters())}


def pnet_training_table(settings, summaries) -> pd.DataFrame:
    configs = models.train_configs(settings)
    summary = pd.DataFrame(summaries)
    summary["r_mm"] = [configs[n].r_mm for n in summary["name"]]
    return summary[["name", "r_mm", "steps", "target_steps", "best_val_loss_mm2", "best_step", "train_time_s",
                    "pairs_per_s", "stopped", "resumed"]]


# ----------------------------------------------------------------------- paper Tables 1 and 2

def table1(settings, protocol) -> PaperTable:
    """Paper Table 1: diagonal vs extreme points with Mc one step, K = 1, and extreme points for
    the profile's K grid (`rprloc.inference.k_grid`), from the cached predictions."""
    k_values = settings.rprloc.inference.k_values
    diagonal = rprloc_predictions.score(settings, protocol, "diagonal", [("coarse1", 1)], STAGE_LABELS)
    extreme = rprloc_predictions.score(settings, protocol, "extreme", [("coarse1", k) for k in k_values],
                                       STAGE_LABELS)
    per_query = pd.concat([diagonal, extreme], ignore_index=True)
    per_query["strategy"] = per_query["strategy"].str.capitalize()
    table = summarize(per_query, keys=("strategy", "K"), organs=protocol.organs).drop(columns=["time_s"])
    table = with_paper_columns(table, paper_table("rprloc_table1"), {"strategy": "strategy", "K": "K", "organ": "organ"})
    return PaperTable(table, per_query)


TABLE2_STAGES = ("coarse1", "coarse2", "coarse3", "fine", rprloc_predictions.DEFAULT_STAGE)


def table2(settings, protocol) -> PaperTable:
    """Paper Table 2: Mc one / two / three steps, Mc + Mf, and the profile's default schedule
    (`rprloc.inference`, chosen on validation patients), extreme points, K = `rprloc.inference.k`,
    from the cached predictions."""
    k = settings.rprloc.inference.k
    default = default_label(schedules.default_schedule(settings).label)
    labels = {**STAGE_LABELS, rprloc_predictions.DEFAULT_STAGE: default}
    per_query = rprloc_predictions.score(settings, protocol, "extreme", [(s, k) for s in TABLE2_STAGES], labels)
    table = summarize(per_query, keys=("method",), organs=protocol.organs)
    table = with_paper_columns(table, paper_table("rprloc_table2"), {"method": "method", "organ": "organ"})
    return PaperTable(table.drop(columns=["time_s"]), per_query)


def r_sweep_table(settings, protocol) -> pd.DataFrame:
    """Mc + Mf with each swept r (the other model at its main r), first support, the first
    `r_sweep_queries` queries, K, ensemble and starts from the profile (the default schedule, as
    in the widget): run now with the sweep models."""
    inference = settings.rprloc.inference
    queries = protocol.queries[: inference.r_sweep_queries or len(protocol.queries)]
    r_coarse, r_fine = models.sweep_r_values(settings, "coarse"), models.sweep_r_values(settings, "fine")
    available = models.load_models(settings)
    rows = []
    for r_c, r_f in [(r, r_fine[0]) for r in r_coarse] + [(r_coarse[0], r) for r in r_fine[1:]]:
        method = rprloc_predictions.rprloc_method(available[models.model_name(settings, "coarse", r_c)],
                                                  available[models.model_name(settings, "fine", r_f)],
                                                  k=inference.k, seed=settings.seed, **inference.default_options)
        frame = evaluate(settings, method, "Mc + Mf", protocol.supports[:1], queries, progress=False)
        mean = summarize(frame).query("organ == 'Mean'").iloc[0]
        rows.append({"r_coarse_mm": r_c, "r_fine_mm": r_f, "iou_pct": mean.iou_pct, "awd_mm": mean.awd_mm,
                     "support": protocol.supports[0], "n_queries": int(mean.n_queries)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ paper Table 3

TEMPLATE_ORDER = tuple(TEMPLATE_LABELS.values())


def table3(settings, protocol) -> PaperTable:
    """Paper Table 3: the five template-matching baselines and RPR-Loc (Mc + Mf, the profile's K;
    the default schedule, embedding mean from `rprloc.inference.starts`, when
    `rprloc.inference.ensemble` says so) on the same
    supports and queries, accuracy from the cached predictions, seconds per organ from each method
    timed alone (`table3.extra["timing"]`), the paper's supervised Retina U-Net as a paper-only row.
    Without RPR-Loc's cached predictions its row is left out (`extra["have_rprloc"]`)."""
    inference = settings.rprloc.inference
    per_query = template_predictions.score(settings, protocol)
    have_rprloc = rprloc_predictions.have_predictions(settings, protocol)
    if have_rprloc:
        stage = rprloc_predictions.DEFAULT_STAGE
        rprloc = rprloc_predictions.score(settings, protocol, "extreme", [(stage, inference.k)], {stage: RPRLOC_LABEL})
        per_query = pd.concat([per_query, rprloc], ignore_index=True)

    timing_queries = list(protocol.queries[: settings.template_matching.n_timing_queries])
    support = protocol.supports[0]
    timed = template_predictions.time_methods(settings, support, timing_queries)
    difference = template_predictions.largest_difference_from_cache(timed, per_query)
    if have_rprloc:
        timed = pd.concat([timed, template_predictions.time_rprloc(settings, support, timing_queries)],
                          ignore_index=True)
    side_by_side = template_predictions.seconds_per_organ(timed)
    times = side_by_side.to_dict()
    sources = {m: f"measured here: alone, {len(timing_queries)} queries, support {support}" for m in times}
    timing = pd.DataFrame({"method": side_by_side.index, "seconds_per_organ_side_by_side": side_by_side.values,
                           "seconds_per_organ_in_table": [times[m] for m in side_by_side.index],
                           "source_in_table": [sources[m] for m in side_by_side.index],
                           "torch_threads": int(timed.torch_threads.iloc[0]),
                           "load_average_1min": timed.groupby("method", sort=False).load_average_1min.first().values})

    table = methods_table(per_query, times, sources, paper_table("rprloc_table3"), protocol.organs)
    order = [*TEMPLATE_ORDER, *([RPRLOC_LABEL] if have_rprloc else []), SUPERVISED_LABEL]
    return PaperTable(table, per_query, {"timing": timing, "side_by_side": side_by_side, "order": order,
                                         "have_rprloc": have_rprloc, "timing_queries": timing_queries,
                                         "largest_iou_difference_alone_vs_cached": difference})


def methods_table(per_query: pd.DataFrame, times: dict, sources: dict, paper: pd.DataFrame, organs=HAN_ORGANS,
                  paper_only=(SUPERVISED_LABEL,)) -> pd.DataFrame:
    """One row per method x organ (organs, then Mean): this reproduction's metrics (mean and SD over
    supports), seconds per organ from `times` (method -> seconds, with `sources` saying where each
    comes from), and the paper's iou_pct / awd_mm / time_s_per_organ as paper_* columns. Methods in
    `paper_only` are rows with the paper's numbers and empty reproduction columns."""
    table = summarize(per_query.assign(time_s=np.nan), keys=("method",), organs=organs)
    table["time_s"] = table["method"].map(times)
    table["time_source"] = table["method"].map(sources)
    paper = paper[paper.organ.isin([*organs, "Mean"])]
    table = pd.concat([table, paper[paper.method.isin(paper_only)][["method", "organ"]]], ignore_index=True)
    table["n_queries"] = table["n_queries"].fillna(0).astype(int)
    table["n_supports"] = table["n_supports"].fillna(0).astype(int)
    right = paper.rename(columns={"iou_pct": "paper_iou_pct", "awd_mm": "paper_awd_mm",
                                  "time_s_per_organ": "paper_time_s_per_organ"})
    return table.merge(right, on=["method", "organ"], how="left")


# ------------------------------------------------------------------------------ notebook 08

def registration_validation(settings, validation, parallel: bool = True) -> tuple[pd.DataFrame, str]:
    """The registration candidates on validation patients (the first validation support, every
    validation query): one row per candidate (IoU per organ, mean IoU, AWD, seconds per organ in the
    single-thread workers), and the label of the one with the best mean IoU."""
    first = Protocol(validation.supports[:1], validation.queries, validation.organs)
    candidates = registration_predictions.CANDIDATES
    registration_predictions.predict_all(settings, first, candidates.values(), parallel=parallel)
    per_query = registration_predictions.score(settings, first, candidates)
    by_method = per_query.groupby("method", sort=False)
    table = per_query.pivot_table(index="method", columns="organ", values="iou_pct", sort=False)[
        [o for o in validation.organs if o in set(per_query.organ)]].add_suffix(" IoU %")
    table["IoU %"], table["AWD mm"] = by_method.iou_pct.mean(), by_method.awd_mm.mean()
    table["s/organ"] = by_method.time_s.mean()
    table = table.rename_axis("method").reset_index()
    return table, str(table.loc[table["IoU %"].idxmax(), "method"])


def references_table(settings, protocol, chosen: str, parallel: bool = True,
                     detector_rule: str | None = None) -> PaperTable:
    """The chosen registration, the supervised detector (with `detector_rule`) and RPR-Loc's default
    schedule on Table 3's supports and queries, accuracy from the caches, seconds per organ from
    each timed alone (one thread) on the same timing queries, and the paper's supervised Retina
    U-Net as a paper-only row. The detector needs no support: it is scored once per query, as
    support "none" (so it has no SD over supports)."""
    config = registration_predictions.CANDIDATES[chosen]
    registration_predictions.predict_all(settings, protocol, [config], parallel=parallel)
    per_query = [registration_predictions.score(settings, protocol, {chosen: config})]
    if detector_rule is not None:
        detector_predictions.predict_all(settings, protocol.queries, [detector_rule])
        per_query.append(detector_predictions.score(settings, protocol.queries,
                                                    {detector_predictions.LABEL: detector_rule}))
    inference = settings.rprloc.inference
    stage = rprloc_predictions.DEFAULT_STAGE
    have_rprloc = rprloc_predictions.have_predictions(settings, protocol)
    if have_rprloc:
        per_query.append(rprloc_predictions.score(settings, protocol, "extreme", [(stage, inference.k)],
                                                  {stage: RPRLOC_LABEL}))
    per_query = pd.concat(per_query, ignore_index=True)
    timing_queries = list(protocol.queries[: settings.template_matching.n_timing_queries])
    support = protocol.supports[0]
    timed = [evaluate(settings, registration_predictions.registration_method(config), chosen, [support],
                      timing_queries, progress=False)]
    if detector_rule is not None:
        with torch_threads(settings.template_matching.timing_threads):
            timed.append(evaluate(settings, detector_predictions.detector_method(settings, detector_rule),
                                  detector_predictions.LABEL, [support], timing_queries, progress=False))
    if have_rprloc:
        timed.append(template_predictions.time_rprloc(settings, support, timing_queries))
    times = template_predictions.seconds_per_organ(pd.concat(timed, ignore_index=True)).to_dict()
    sources = {m: f"measured here: alone, {len(timing_queries)} queries, support {support}, one thread" for m in times}
    table = methods_table(per_query, times, sources, paper_table("rprloc_table3"), protocol.organs)
    order = [chosen, *([detector_predictions.LABEL] if detector_rule is not None else []),
             *([RPRLOC_LABEL] if have_rprloc else []), SUPERVISED_LABEL]
    return PaperTable(table, per_query, {"order": order})


# ------------------------------------------------------------------------------ notebooks 06, 07

def beside_rprloc(settings, protocol, rows: pd.DataFrame, source: str) -> PaperTable:
    """A method's per-query rows as methods-table rows, seconds per organ the mean of their own
    `time_s` (measured while predicting: `source` says how), with RPR-Loc's default schedule on the
    same supports and queries beside (accuracy only, from the cache; its time is Table 3's)."""
    times = rows.groupby("method").time_s.mean().to_dict()
    per_query = [rows]
    if rprloc_predictions.have_predictions(settings, protocol):
        stage = rprloc_predictions.DEFAULT_STAGE
        per_query.append(rprloc_predictions.score(settings, protocol, "extreme",
                                                  [(stage, settings.rprloc.inference.k)], {stage: RPRLOC_LABEL}))
    per_query = pd.concat(per_query, ignore_index=True)
    sources = {m: f"measured here: {source}" for m in times}
    table = methods_table(per_query, times, sources, paper_table("rprloc_table3"), protocol.organs, paper_only=())
    return PaperTable(table, per_query)


def cc2d_methods_table(settings, protocol) -> PaperTable:
    """CC2D-SSL (every support) and CC2D (its one template) as rows of the methods table (the
    support's embeddings made once per support, as RPR-Loc's are), `beside_rprloc`."""
    return beside_rprloc(settings, protocol, cc2d_predictions.score(settings, protocol),
                         "every pair, while predicting, one thread per worker")


def pin_methods_table(settings, protocol) -> PaperTable:
    """PIN-Single and PIN-Multiple as rows of the methods table (boxes from their predicted extreme
    points, support "none"), `beside_rprloc`."""
    return beside_rprloc(settings, protocol, pin_predictions.score_boxes(settings, protocol.queries),
                         "every test query, while predicting, one thread per worker")
