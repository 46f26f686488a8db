"""Beyond the paper: the support's box size as a prior for the box RPR-Loc predicts (notebook 04).

Each predicted extreme point carries its own error, and the box spans the worst of them. The
support's box size is a good guess for the query's (moving the support's box onto the true centre
gives the oracle of notebook 03), so the box is redrawn around the mean of the predicted points with
an extent blended from the support's and the predicted one (`landmarks.with_support_box_size`). The
weight is chosen on validation patients (`validation_per_query`, from notebook 03's validation
predictions of the default schedule); the test queries only report it (`test_per_query`; notebook
05 tries it on template matching: `template_matching_per_query`)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.evaluation.protocol import Protocol, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_points, summarize
from rprloc_core.experiments import rprloc_predictions, schedules, template_predictions
from rprloc_core.experiments.paper import TEMPLATE_LABELS
from rprloc_core.geometry.landmarks import with_support_box_size
from rprloc_core.rprloc.inference import stack_organ_landmarks

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
RPRLOC_DEFAULT = "RPR-Loc default schedule"
PAPER_BOX = "extreme points (paper)"


def apply_prior(points, support_points, organ_of_point, weight: float) -> np.ndarray:
    """Stacked predictions (P, 3) of several organs, each organ's redrawn with the size prior."""
    points = np.asarray(points, dtype=float)
    organs = np.asarray(organ_of_point)
    out = points.copy()
    for organ in dict.fromkeys(organs.tolist()):
        rows = organs == organ
        out[rows] = with_support_box_size(points[rows], support_points[rows], weight)
    return out


# Where the redrawn box's centre comes from (notebook 04 compares them on validation patients; the
# profile keeps the first). Each predicted point minus its support landmark is a vote for the shift
# between support and query: "organ" votes are the organ's own six, "query-wide" votes all the
# query's points (every organ); alpha blends the two.
CENTRE_RULES = {
    "organ mean (profile)": {"alpha": 1.0, "robust": False},
    "organ median": {"alpha": 1.0, "robust": True},
    "organ mean, 25 % query-wide": {"alpha": 0.75, "robust": False},
    "organ mean, 50 % query-wide": {"alpha": 0.5, "robust": False},
    "query-wide mean": {"alpha": 0.0, "robust": False},
    "organ mean, bounding points x2": {"alpha": 1.0, "robust": False, "bounding_weight": 2.0},
    "organ mean, bounding points x0.5": {"alpha": 1.0, "robust": False, "bounding_weight": 0.5},
}


def recentred(points, support_points, organ_of_point, weight: float, alpha: float = 1.0, robust: bool = False,
              bounding_weight: float = 1.0) -> np.ndarray:
    """`apply_prior`'s boxes with another centre: the support's landmark mean moved by alpha x the
    organ's shift + (1 - alpha) x the query-wide shift, where a shift is the mean (`robust`: median)
    of predicted minus support points. `bounding_weight` weighs, per axis, the two extreme points
    that bound the box on that axis against the other four (extreme points only). alpha 1, mean,
    weight 1: exactly `apply_prior`."""
    points, support_points = np.asarray(points, dtype=float), np.asarray(support_points, dtype=float)
    organs = np.asarray(organ_of_point)
    aggregate = np.median if robust else np.mean
    shift = points - support_points
    query_wide = aggregate(shift, axis=0)
    out = apply_prior(points, support_points, organs, weight)
    for organ in dict.fromkeys(organs.tolist()):
        rows = np.flatnonzero(organs == organ)
        if bounding_weight == 1.0:
            own = aggregate(shift[rows], axis=0)
        else:
            if robust or len(rows) != 6:
                raise ValueError("bounding_weight needs the six extreme points and the mean")
            own = np.empty(3)
            for axis in range(3):
                votes = np.ones(6)
                votes[2 * axis: 2 * axis + 2] = bounding_weight
                own[axis] = np.average(shift[rows, axis], weights=votes)
        centre = support_points[rows].mean(axis=0) + alpha * own + (1.0 - alpha) * query_wide
        out[rows] += centre - out[rows].mean(axis=0)
    return out


def centre_rules_per_query(settings, validation: Protocol, k: int, weight: float) -> pd.DataFrame:
    """Per (centre rule, support, query, organ) metrics of the default schedule's size-prior box
    (weight w) on validation patients, one row block per `CENTRE_RULES` entry."""
    label = schedules.default_schedule(settings).label
    rows = []
    for support_id, query_id in validation.pairs:
        organ_of_point, points = schedules.cached_points(settings, k, support_id, query_id, label)
        support_points = _support_points(settings, support_id, organ_of_point)
        for rule, options in CENTRE_RULES.items():
            rows += score_points(settings, query_id, organ_of_point,
                                 recentred(points, support_points, organ_of_point, weight, **options),
                                 method=RPRLOC_DEFAULT, box=f"{_label(weight)}, centre: {rule}", weight=weight,
                                 strategy="extreme", support=support_id)
    return pd.DataFrame(rows)


def _support_points(settings, support_id: str, organ_of_point) -> np.ndarray:
    points, support_organs = _support_landmarks(settings, support_id, tuple(dict.fromkeys(organ_of_point)))
    if list(support_organs) != list(organ_of_point):
        raise ValueError(f"support {support_id} does not give the landmarks of the cached prediction")
    return points


@lru_cache(maxsize=32)
def _support_landmarks(settings, support_id: str, organs: tuple) -> tuple:
    """A support's extreme points for these organs: found once, for all the queries it serves."""
    support = dataset.load_case(settings, support_id)
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, list(organs), "extreme"))
    points.setflags(write=False)
    return points, tuple(organ_of_point)


def _label(weight: float) -> str:
    return "predicted box" if weight == 0 else f"size prior {weight:g}"


def _rows(settings, support_id, query_id, organ_of_point, predicted, weights, method: str) -> list[dict]:
    support_points = _support_points(settings, support_id, organ_of_point)
    rows = [score_points(settings, query_id, organ_of_point, predicted, method=method, box=PAPER_BOX,
                         weight=np.nan, strategy="extreme", support=support_id)]
    rows += [score_points(settings, query_id, organ_of_point,
                          apply_prior(predicted, support_points, organ_of_point, w),
                          method=method, box=_label(w), weight=w, strategy="extreme", support=support_id)
             for w in weights]
    return [row for block in rows for row in block]


def validation_per_query(settings, validation: Protocol, k: int, weights=WEIGHTS) -> pd.DataFrame:
    """Per (box rule, support, query, organ) metrics of the default schedule on validation
    patients, from notebook 03's validation cache (`schedules.predict_all` must have run)."""
    label = schedules.default_schedule(settings).label
    rows = []
    for support_id, query_id in validation.pairs:
        organ_of_point, points = schedules.cached_points(settings, k, support_id, query_id, label)
        rows += _rows(settings, support_id, query_id, organ_of_point, points, weights, RPRLOC_DEFAULT)
    return pd.DataFrame(rows)


def per_support_means(per_query: pd.DataFrame, keys) -> pd.DataFrame:
    """IoU and AWD per (keys..., support): each organ's mean over queries, then the mean over
    organs, as `summarize` averages (its mean and SD over supports come from these)."""
    per_organ = per_query.groupby([*keys, "support", "organ"], sort=False)[["iou_pct", "awd_mm"]].mean()
    return per_organ.groupby(level=list(range(len(keys) + 1)), sort=False).mean()


def rule_table(per_query: pd.DataFrame, organs, reference: str = PAPER_BOX,
               column: str = "IoU vs paper box (pts)") -> pd.DataFrame:
    """One row per (method, box rule): the rule's weight w (empty for the paper's box), IoU per
    organ, mean IoU (and its SD over supports) and AWD, and the paired IoU difference to the same
    method's `reference` box rule (mean over supports of the per-support difference, with its SD
    over them) in `column`."""
    keys = ["method", "box"]
    frame = per_query[per_query.organ.isin(organs)].assign(time_s=np.nan)   # summarize averages a time too
    table = summarize(frame, keys=keys, organs=organs)
    means = table[table.organ == "Mean"].set_index(keys)
    out = table[table.organ != "Mean"].pivot_table(index=keys, columns="organ", values="iou_pct", sort=False)
    out = out[[o for o in organs if o in out.columns]].add_suffix(" IoU %")
    out.insert(0, "w", frame.groupby(keys, sort=False).weight.first())
    out["IoU %"] = means["iou_pct"]
    out["IoU SD over supports"] = means["iou_pct_sd_over_supports"]
    out["AWD mm"] = means["awd_mm"]
    per_support = per_support_means(frame, keys).iou_pct.sort_index()     # sorted, for the lookups below
    differences = []
    for method, box in out.index:
        diff = per_support.loc[(method, box)] - per_support.loc[(method, reference)]
        differences.append(f"{diff.mean():+.1f} ± {diff.std(ddof=1):.1f}" if len(diff) > 1 else f"{diff.mean():+.1f}")
    out[column] = differences
    order = list(dict.fromkeys(zip(frame.method, frame.box)))
    return out.loc[order].round(2).rename_axis(["method", "box rule"]).reset_index()


def chosen_weight(settings) -> float:
    """The weight the profile uses (`rprloc.inference.size_prior_weight`), chosen on validation."""
    return float(settings.rprloc.inference.size_prior_weight)


def test_per_query(settings, protocol: Protocol, weight: float) -> pd.DataFrame:
    """Per (box rule, support, query, organ) metrics of RPR-Loc's default schedule on the test
    queries (K and supports as in Table 2), from notebook 03's cached predictions: the paper's box
    and the size prior at `weight`."""
    k = settings.rprloc.inference.k
    rows = []
    for support_id, query_id in protocol.pairs:
        run = rprloc_predictions.read(settings, support_id, query_id)
        predicted = rprloc_predictions.stage_points(run, rprloc_predictions.DEFAULT_STAGE, k)
        rows += _rows(settings, support_id, query_id, run.organ_of_point, predicted, [weight], RPRLOC_DEFAULT)
    return pd.DataFrame(rows)


def template_matching_per_query(settings, protocol: Protocol, weight: float) -> pd.DataFrame:
    """The same for the template-matching baselines (notebook 05's cached predictions), which also
    predict each extreme point on its own, so the prior may help them too; w was not chosen for
    them."""
    rows = []
    for support_id, query_id in protocol.pairs:
        run = template_predictions.read(settings, support_id, query_id)
        for method, label in TEMPLATE_LABELS.items():
            rows += _rows(settings, support_id, query_id, run.organ_of_point,
                          template_predictions.method_points(run, method), [weight], label)
    return pd.DataFrame(rows)
