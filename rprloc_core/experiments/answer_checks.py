"""Beyond the paper: do the answer checks (`rprloc.answer_checks`) tell a missing organ from a found
one? (notebook 03)

Every pair runs the default schedule three times: on the whole query, on the query cut below its
organs (only what lies 10 mm or more below the lowest one is kept: every organ is missing) and on
the query cut through the middle of its brainstem (the scan ends inside it; the parotids and the
mandible mostly remain). For each organ: its points on the scan's edge and the fine model's
remaining move from the answer. The warning threshold on the remaining move is chosen on the
validation protocol (organs in whole scans: the 90th percentile, so about one in ten found organs
is warned of); the test queries report how often each check fires.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import Protocol, case_rng
from rprloc_core.evaluation.scoring import score_points
from rprloc_core.experiments import schedules
from rprloc_core.experiments.models import models_hash
from rprloc_core.experiments.rprloc_predictions import main_models, support_landmarks
from rprloc_core.geometry.volume import Volume
from rprloc_core.rprloc.answer_checks import organ_checks
from rprloc_core.rprloc.inference import localize, remaining_moves_mm

VARIANTS = ("whole scan", "scan below the organs", "scan ends mid-brainstem")
MARGIN_MM = 10.0            # the cut below the organs leaves this much between the scan and the lowest organ
MIN_SLICES = 32             # a cut scan keeps at least this many slices (else that variant is skipped)
FALSE_ALARM = 0.10          # share of organs found in whole validation scans that the threshold warns of


def cut_ranges(case) -> dict:
    """{variant: (first, last + 1) slice of the query kept}, for the variants this query allows. Slice
    0 is the scan's inferior end (the preprocessed grid's z axis runs from the feet to the head)."""
    zs = {o: np.flatnonzero(m.any(axis=(1, 2))) for o, m in case.labels.items() if o in HAN_ORGANS and m.any()}
    out = {VARIANTS[0]: (0, case.volume.shape[0])}
    below = min(z.min() for z in zs.values()) - int(np.ceil(MARGIN_MM / case.volume.spacing[0]))
    if below >= MIN_SLICES:
        out[VARIANTS[1]] = (0, below)
    if "Brainstem" in zs and int(zs["Brainstem"].mean()) >= MIN_SLICES:
        out[VARIANTS[2]] = (0, int(zs["Brainstem"].mean()))
    return out


def cut_volume(volume: Volume, first: int, stop: int) -> Volume:
    """The slices first .. stop - 1 of a volume, in the same mm frame."""
    return Volume(volume.array[first:stop], volume.spacing, volume.idx_to_mm([first, 0, 0]))


# The networks' own points: the remaining move asks whether they agree with their answer, so it is
# measured where they left it, before self-calibration shifts it (as in the CLI).
def _cache(settings, k: int) -> PredictionCache:
    schedule = schedules.default_schedule(settings).uncalibrated
    key = {"method": "rprloc-answer-checks", "models": models_hash(settings), "k": k, "seed": settings.seed,
           "schedule": schedule.label, "variants": list(VARIANTS), "margin_mm": MARGIN_MM, "min_slices": MIN_SLICES}
    return PredictionCache.for_method(settings, "rprloc-answer-checks", key)


def compute_pair(settings, support_id: str, query_id: str, k: int) -> None:
    store = _cache(settings, k)
    if store.has(support_id, query_id):
        return
    query = dataset.load_case(settings, query_id)
    wanted = tuple(o for o in HAN_ORGANS if o in query.labels)
    volume = dataset.load_case(settings, support_id).volume
    points, organ_of_point, embeddings = support_landmarks(settings, support_id, wanted, "extreme")
    models, schedule = main_models(settings), schedules.default_schedule(settings).uncalibrated
    arrays = {}
    for variant, (first, stop) in cut_ranges(query).items():
        scan = cut_volume(query.volume, first, stop)
        result = localize(scan, (volume, points), models["coarse"], models["fine"],
                          rng=case_rng(settings.seed, query_id, support_id), schedule=schedule.steps, k=k,
                          organ_of_point=organ_of_point, support_embeddings=embeddings, **schedule.options())
        index = VARIANTS.index(variant)
        arrays[f"points_{index}"] = result.points_mm
        arrays[f"moves_{index}"] = remaining_moves_mm(scan, result.points_mm, models["fine"], embeddings["fine"])
        arrays[f"slices_{index}"] = np.array([first, stop])
    store.write(support_id, query_id, organ_of_point, **arrays)


def predict_all(settings, protocol: Protocol, k: int, parallel: bool = True, progress: bool = True) -> None:
    jobs = [(settings, s, q, k) for s, q in _cache(settings, k).missing(protocol.pairs)]
    run_jobs(compute_pair, jobs, "answer checks on whole and cut scans", parallel, progress)


def per_query(settings, protocol: Protocol, k: int, score: bool = True) -> pd.DataFrame:
    """One row per (support, query, variant, organ): the share of the organ's slices the scan keeps,
    its points on the scan's edge, its mean remaining move (mm) and, on whole scans, the IoU of its
    box (`score`)."""
    store, rows = _cache(settings, k), []
    for support_id, query_id in protocol.pairs:
        run = store.read(support_id, query_id)
        query = dataset.load_case(settings, query_id)
        organ_of_point = np.asarray(run.organ_of_point)
        for index, variant in enumerate(VARIANTS):
            if f"points_{index}" not in run.arrays:
                continue
            first, stop = run[f"slices_{index}"]
            scan = cut_volume(query.volume, int(first), int(stop))
            checks = organ_checks(scan, run[f"points_{index}"], organ_of_point, run[f"moves_{index}"])
            iou = {}
            if score and index == 0:
                iou = {r["organ"]: r["iou_pct"] for r in score_points(settings, query_id, organ_of_point,
                                                                        run[f"points_{index}"], strategy="extreme")}
            for organ, check in checks.items():
                slices = np.flatnonzero(query.labels[organ].any(axis=(1, 2)))
                rows.append({"support": support_id, "query": query_id, "variant": variant, "organ": organ,
                             "organ_in_scan": float(np.isin(slices, np.arange(first, stop)).mean()),
                             "points_on_edge": len(check["points_on_scan_edge"]),
                             "remaining_move_mm": check["remaining_move_mm"], "iou_pct": iou.get(organ, np.nan)})
    return pd.DataFrame(rows)


def warn_threshold(validation_per_query: pd.DataFrame, false_alarm: float = FALSE_ALARM) -> float:
    """The remaining move (mm, rounded up to a whole mm) that organs found in whole validation scans
    exceed `false_alarm` of the time."""
    whole = validation_per_query[validation_per_query.variant == VARIANTS[0]]
    return float(np.ceil(whole.remaining_move_mm.quantile(1 - false_alarm)))


def checks_table(per_query_frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per variant: organs, the share warned of by each check and by either, the median remaining
    move, and (whole scans) the mean IoU of the boxes warned of and of the others."""
    rows = []
    for variant in VARIANTS:
        frame = per_query_frame[per_query_frame.variant == variant]
        if frame.empty:
            continue
        edge, move = frame.points_on_edge > 0, frame.remaining_move_mm > threshold
        row = {"scan": variant, "organs": len(frame), "organ slices in scan %": 100 * frame.organ_in_scan.mean(),
               "on the edge %": 100 * edge.mean(), f"remaining move > {threshold:g} mm %": 100 * move.mean(),
               "either %": 100 * (edge | move).mean(), "median remaining move mm": frame.remaining_move_mm.median()}
        if frame.iou_pct.notna().any():
            row["IoU % warned of"] = frame.iou_pct[edge | move].mean()
            row["IoU % not warned of"] = frame.iou_pct[~(edge | move)].mean()
        rows.append(row)
    return pd.DataFrame(rows).round(2)
