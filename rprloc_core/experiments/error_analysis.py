"""Where RPR-Loc's error comes from (issue: released weights that reach the paper).

- `self_localisation`: each validation patient is its own support and query, so every landmark's
  true position is known exactly and nothing but the networks can be wrong: the signed and absolute
  error per axis after the coarse step and after the fine step, and each run's error against how
  far from the landmark it started.
- `run_spread`: the spread of the K runs, which needs no labels, against the true error: does a
  wide spread flag a bad box?
- `oracle_box_transfer`: the ceiling of one-shot box transfer on the real queries: the support's
  box, of the support's size, moved so that its centre sits on the query's true box centre. A
  method that found every organ's centre exactly would score this.
- `centre_error_table`: the same box moved off the true centre by random errors of a known size,
  beside the default schedule's own centre errors: how close to the true centre a method must come
  to score a given IoU (the paper's, say) with the support's box size.

Only validation patients and the protocol's supports and queries are used; nothing here is tuned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_points, summarize
from rprloc_core.experiments import models, rprloc_predictions
from rprloc_core.geometry.boxes import VoxelBox, bounding_box, box_from_landmarks
from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES
from rprloc_core.metrics import box_metrics
from rprloc_core.rprloc.inference import localize, stack_organ_landmarks

AXES = ("z", "y", "x")
BAD_BOX_IOU_PCT = 10.0     # a box this far off is of no use to a user (it barely touches the organ)


def self_localisation(settings, case_ids, organs, k: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per landmark and stage: signed error per axis of the mean of K runs, mm;
        per run: its start's distance from the landmark and its error after each stage, mm)."""
    k = k or settings.rprloc.inference.k
    released = models.load_models(settings, ["coarse", "fine"])
    points_rows, run_rows = [], []
    for case_id in case_ids:
        case = dataset.load_case(settings, case_id)
        truth, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(case, [o for o in organs if o in case.labels]))
        rng = case_rng(settings.seed, case_id, case_id)
        coarse = localize(case.volume, (case.volume, truth), released["coarse"], rng=rng, schedule=("coarse",),
                          k=k, organ_of_point=organ_of_point)
        fine = localize(case.volume, (case.volume, truth), released["coarse"], released["fine"], rng=rng,
                        schedule=("fine",), k=k, start_mm=coarse.trajectories_mm[1], organ_of_point=organ_of_point)
        stages = {"start": coarse.trajectories_mm[0], "Mc (one step)": coarse.trajectories_mm[1],
                  "Mc + Mf": fine.trajectories_mm[1]}
        names = [EXTREME_POINT_NAMES[i % len(EXTREME_POINT_NAMES)] for i in range(len(truth))]
        for stage, runs in stages.items():
            if stage == "start":
                continue
            signed = runs.mean(axis=0) - truth                                  # (P, 3)
            for p, organ in enumerate(organ_of_point):
                points_rows.append({"case": case_id, "organ": organ, "landmark": names[p], "stage": stage,
                                    **{f"signed_{a}_mm": signed[p, i] for i, a in enumerate(AXES)}})
        start_distance = np.linalg.norm(stages["start"] - truth[None], axis=-1)     # (K, P)
        for p, organ in enumerate(organ_of_point):
            for r in range(k):
                run_rows.append({"case": case_id, "organ": organ, "landmark": names[p], "run": r,
                                 "start_distance_mm": start_distance[r, p],
                                 **{f"error_{s}_mm": float(np.linalg.norm(stages[s][r, p] - truth[p]))
                                    for s in ("Mc (one step)", "Mc + Mf")}})
    return pd.DataFrame(points_rows), pd.DataFrame(run_rows)


def axis_error_table(errors: pd.DataFrame, count: str = "n_landmarks") -> pd.DataFrame:
    """Mean signed, mean absolute and root mean square error (mm) per stage and axis over the rows
    of `errors` (its signed_<axis>_mm columns): the landmarks of `self_localisation`, or the box
    centres of `box_centre_errors` (count="n_boxes")."""
    rows = []
    for stage, part in errors.groupby("stage", sort=False):
        for a in AXES:
            values = part[f"signed_{a}_mm"]
            rows.append({"stage": stage, "axis": a, "mean_signed_error_mm": values.mean(),
                         "mean_absolute_error_mm": values.abs().mean(),
                         "rms_error_mm": float(np.sqrt(np.mean(np.square(values)))), count: len(values)})
    return pd.DataFrame(rows)


def box_centre_errors(per_point: pd.DataFrame) -> pd.DataFrame:
    """Per (case, organ, stage) of `self_localisation`'s points: the signed error per axis (mm) of
    the centre of the box the extreme points span (along each axis, the mean of that axis's min and
    max point's errors)."""
    rows = []
    for (case, organ, stage), part in per_point.groupby(["case", "organ", "stage"], sort=False):
        signed = part.set_index("landmark")
        centre = {f"signed_{a}_mm": signed.loc[[f"{a}_min", f"{a}_max"], f"signed_{a}_mm"].mean() for a in AXES}
        rows.append({"case": case, "organ": organ, "stage": stage, **centre})
    return pd.DataFrame(rows)


def rms_over_axes(per_axis_rms_mm) -> float:
    """Per-axis root mean square errors (mm) in one number: their root mean square over the axes."""
    return float(np.sqrt(np.mean(np.square(np.asarray(per_axis_rms_mm, dtype=float)))))


def overall_rms_mm(axis_errors: pd.DataFrame, stage: str) -> float:
    """One stage's error of `axis_error_table` in one number (`rms_over_axes`, mm)."""
    return rms_over_axes(axis_errors[axis_errors.stage == stage].rms_error_mm)


def transferred_box(support_box: VoxelBox, support_spacing, query_box: VoxelBox, query_spacing) -> VoxelBox:
    """The support's box, of its physical size, centred on the query box's centre (query voxels)."""
    half_mm = (np.asarray(support_box.hi) - np.asarray(support_box.lo)) * np.asarray(support_spacing) / 2.0
    half_idx = half_mm / np.asarray(query_spacing)
    return VoxelBox(query_box.centre - half_idx, query_box.centre + half_idx)


def transferred_boxes(settings, protocol):
    """For every (support, query) pair of the protocol and organ both have: (support id, query id,
    organ, the query case, the query's true box, the support's box moved onto its centre)."""
    for support_id, query_id in protocol.pairs:
        support, query = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
        for organ in [o for o in protocol.organs if o in query.labels and o in support.labels]:
            true_box = bounding_box(query.labels[organ])
            box = transferred_box(bounding_box(support.labels[organ]), support.spacing, true_box, query.spacing)
            yield support_id, query_id, organ, query, true_box, box


def oracle_box_transfer(settings, protocol) -> pd.DataFrame:
    """Per (support, query, organ): the metrics of the support's box moved onto the query's true
    box centre (the position oracle), in the frame `summarize` takes."""
    boxes = transferred_boxes(settings, protocol)
    return pd.DataFrame([{"method": "Oracle: support box on the true centre", "support": support_id,
                          "query": query_id, "organ": organ, **box_metrics(box, true_box, query.spacing),
                          "point_error_mm": np.nan, "time_s": np.nan}
                         for support_id, query_id, organ, query, true_box, box in boxes])


def oracle_table(settings, protocol) -> pd.DataFrame:
    """The oracle's IoU and AWD per organ and Mean (mean and SD over supports)."""
    return summarize(oracle_box_transfer(settings, protocol), organs=protocol.organs).drop(columns=["time_s"])


# ----------------------------------------------------------------- what the ceiling asks of the centres

CENTRE_ERROR_SD_MM = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
CENTRE_ERROR_DRAWS = 64
CENTRE_ERROR_LABEL = "support box, centre off by N(0, {sd:g} mm) per axis"
ON_DEFAULT_CENTRE = "support box on the default schedule's box centre"
DEFAULT_BOX = "default schedule's own box"


def shifted_box_metrics(box: VoxelBox, true_box: VoxelBox, spacing, shifts_mm: np.ndarray) -> dict:
    """The box metrics of `box` moved by each shift (N, 3) mm, averaged over the shifts, and the
    root mean square shift per axis (mm)."""
    shifts_mm = np.asarray(shifts_mm, dtype=float).reshape(-1, 3)
    shifts_idx = shifts_mm / np.asarray(spacing, dtype=float)
    metrics = pd.DataFrame([box_metrics(VoxelBox(box.lo + d, box.hi + d), true_box, spacing) for d in shifts_idx])
    rms = np.sqrt(np.mean(shifts_mm ** 2, axis=0))
    return {**metrics.mean().to_dict(), **{f"centre_rms_{a}_mm": rms[i] for i, a in enumerate(AXES)}}


def centre_error_transfer(settings, protocol, sd_mm=CENTRE_ERROR_SD_MM, draws: int = CENTRE_ERROR_DRAWS,
                          predictions: bool = True) -> pd.DataFrame:
    """Per (setting, support, query, organ): the oracle's box (the support's box on the query's true
    centre) moved by normal centre errors of SD `sd` mm on every axis, metrics averaged over `draws`
    seeded draws (one set per pair and organ, scaled for every SD, so the SDs differ only in size).
    With `predictions` (the cached default schedule, self-calibrated), two more settings from the
    same boxes: the support's box on the default schedule's box centre, and that schedule's own box;
    their centre_rms columns are the schedule's signed centre error per axis (mm)."""
    rows, run, run_pair = [], None, None
    for support_id, query_id, organ, query, true_box, box in transferred_boxes(settings, protocol):
        key = {"support": support_id, "query": query_id, "organ": organ}
        unit = case_rng(settings.seed, support_id, query_id, organ).standard_normal((draws, 3))
        for sd in sd_mm:
            rows.append({"method": CENTRE_ERROR_LABEL.format(sd=sd), "sd_mm": float(sd), **key,
                         **shifted_box_metrics(box, true_box, query.spacing, unit * float(sd))})
        if predictions:
            if run_pair != (support_id, query_id):            # the organs of a pair come in a row: one read each
                run, run_pair = rprloc_predictions.read(settings, support_id, query_id), (support_id, query_id)
            points = run["default_points_mm"][np.asarray(run.organ_of_point) == organ]
            predicted = box_from_landmarks(query.mm_to_idx(points), "extreme")
            error_mm = (predicted.centre - true_box.centre) * np.asarray(query.spacing)
            signed = {f"centre_rms_{a}_mm": error_mm[i] for i, a in enumerate(AXES)}
            rows.append({"method": ON_DEFAULT_CENTRE, "sd_mm": np.nan, **key,
                         **shifted_box_metrics(box, true_box, query.spacing, error_mm)})
            rows.append({"method": DEFAULT_BOX, "sd_mm": np.nan, **key,
                         **box_metrics(predicted, true_box, query.spacing), **signed})
    frame = pd.DataFrame(rows)
    frame["point_error_mm"], frame["time_s"] = np.nan, np.nan
    return frame


def centre_error_table(per_query: pd.DataFrame, organs) -> pd.DataFrame:
    """One row per setting: the centre's root mean square error per axis over every (support,
    query, organ) (mm), IoU per organ and their mean (mean over supports, as `summarize`), the mean's
    SD over supports, and AWD."""
    summary = summarize(per_query, organs=organs).drop(columns=["time_s", "point_error_mm"])
    iou = summary.pivot(index="method", columns="organ", values="iou_pct")[[*organs, "Mean"]]
    mean = summary[summary.organ == "Mean"].set_index("method")
    rms_columns = [f"centre_rms_{a}_mm" for a in AXES]
    rms = per_query.groupby("method", sort=False)[rms_columns].apply(lambda f: np.sqrt((f ** 2).mean()))
    out = rms.join(per_query.groupby("method", sort=False).sd_mm.first())
    spread = mean[["iou_pct_sd_over_supports", "awd_mm"]].rename(
        columns={"iou_pct_sd_over_supports": "Mean IoU SD over supports", "awd_mm": "AWD mm"})
    out = out.join(iou.rename(columns=lambda o: f"{o} IoU %")).join(spread).rename(columns={"Mean IoU %": "IoU %"})
    return out.reset_index()[["method", "sd_mm", *rms_columns, *[f"{o} IoU %" for o in organs], "IoU %",
                              "Mean IoU SD over supports", "AWD mm"]]


def sd_for_iou(table: pd.DataFrame, iou_pct: float) -> float:
    """The smallest centre error SD (mm per axis) at which the noisy oracle's mean IoU falls to
    `iou_pct` (linear between the measured SDs); NaN if it never does within them."""
    curve = table.dropna(subset=["sd_mm"]).sort_values("sd_mm")
    ious, sds = curve["IoU %"].to_numpy(dtype=float), curve["sd_mm"].to_numpy(dtype=float)
    for i in range(len(ious) - 1):
        if ious[i] >= iou_pct >= ious[i + 1] and ious[i] > ious[i + 1]:
            return float(sds[i] + (ious[i] - iou_pct) / (ious[i] - ious[i + 1]) * (sds[i + 1] - sds[i]))
    return float("nan")


# ----------------------------------------------------------------- the spread of the K runs

def run_spread(settings, protocol, stage: str = "fine", k: int | None = None) -> pd.DataFrame:
    """Per (support, query, organ): how far the K runs of the organ's landmarks land from their
    mean (the root mean square distance, averaged over the landmarks, mm) after `stage` of the
    cached evaluation (default: the paper's Mc + Mf), beside that prediction's true errors. Tells
    whether a wide spread, which a user can see without labels, flags a bad box."""
    k = k or settings.rprloc.inference.k
    rows = []
    for support_id, query_id in protocol.pairs:
        run = rprloc_predictions.read(settings, support_id, query_id)
        runs = rprloc_predictions.stage_runs(run, stage, k)                      # (K, P, 3)
        spread = np.sqrt(((runs - runs.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))   # (P,)
        organ_of_point = np.asarray(run.organ_of_point)
        scores = score_points(settings, query_id, run.organ_of_point, runs.mean(axis=0), strategy="extreme",
                              support=support_id)
        for row in scores:
            rows.append({**row, "spread_mm": float(spread[organ_of_point == row["organ"]].mean())})
    return pd.DataFrame(rows)


def _ranks(values: pd.Series) -> pd.Series:
    return values.rank(method="average")


def flags_bad_boxes(spread: pd.Series, bad: pd.Series) -> float:
    """Area under the ROC curve of the spread as a detector of bad boxes (the probability that a bad
    box has a wider spread than a good one; 0.5: no better than chance). NaN without both kinds."""
    bad = bad.astype(bool)
    n_bad, n_good = int(bad.sum()), int((~bad).sum())
    if n_bad == 0 or n_good == 0:
        return float("nan")
    rank_sum = _ranks(spread)[bad].sum()
    return float((rank_sum - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))


def spread_table(frame: pd.DataFrame, bad_iou_pct: float = BAD_BOX_IOU_PCT) -> pd.DataFrame:
    """Per organ and over all organs: the median spread, the rank correlation (Spearman) of the
    spread with the point error and with the IoU, and how well the spread flags a box under
    `bad_iou_pct` IoU (ROC AUC), with the share of such boxes."""
    rows = []
    for organ, part in [*frame.groupby("organ", sort=False), ("All organs", frame)]:
        spread_rank = _ranks(part.spread_mm)
        rows.append({"organ": organ, "boxes": len(part), "median spread mm": part.spread_mm.median(),
                     "rho(spread, point error)": spread_rank.corr(_ranks(part.point_error_mm)),
                     "rho(spread, IoU)": spread_rank.corr(_ranks(part.iou_pct)),
                     f"boxes under {bad_iou_pct:g} % IoU": (part.iou_pct < bad_iou_pct).mean() * 100,
                     "AUC: spread flags them": flags_bad_boxes(part.spread_mm, part.iou_pct < bad_iou_pct)})
    return pd.DataFrame(rows).round(3)
