"""The supervised detector (`rprloc_core.detector`) in the project's protocol: trained on the
training split's masks, its validation history kept, its predictions cached and scored like every
other method.

    python -m rprloc_core.experiments.detector_predictions --profile demo           # train (resumable)
    python -m rprloc_core.experiments.detector_predictions --profile demo --publish [--overwrite]

It needs no support: its rows carry the support "none" and it is scored once per query, so the
"SD over supports" of other methods has no meaning for it (left empty in the tables). Its
predictions are the six face centres of each box, scored as extreme points (their per-axis min and
max is exactly the box); the point error of such points is not comparable with the other methods'.
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rprloc_core.checkpoints import atomic_torch_save, calls_so_far
from rprloc_core.data import dataset
from rprloc_core.data.preprocess import load_preprocessed, preprocess_case
from rprloc_core.detector.boxes import RULES, boxes_from_maps, face_centres, forward
from rprloc_core.detector.samples import sample_from_case
from rprloc_core.detector.training import load_detector, train_detector
from rprloc_core.errors import DataError
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.scoring import score_points
from rprloc_core.experiments import models, training_cli, weights

NAME = "detector"
NO_SUPPORT = "none"
LABEL = "Supervised detector (3D U-Net, trained here)"
RULE_LABELS = {"mask": "box of the segmented organ", "votes": "median of the face votes"}


def trained_dir(settings) -> Path:
    return models.models_dir(settings) / NAME


def release_dir(settings) -> Path:
    if not settings.detector.release:
        raise DataError(None, f"profile {settings.name!r} names no detector release (detector.release)")
    return weights.release_dir(settings.detector.release)


def model_file(settings) -> Path:
    """The checkpoint the profile's results use: the released one (sha256 checked) or the one
    trained here (`weights.source`)."""
    if models.uses_release(settings):
        return weights.released_file(release_dir(settings), NAME)
    path = trained_dir(settings) / "best.pt"
    if not path.is_file():
        raise DataError(path, "no trained detector: train it first (python -m "
                              "rprloc_core.experiments.detector_predictions)")
    return path


def _sample(settings, case_id: str, organs):
    """A case as training material, read straight from the preprocessed cache (not kept in the
    in-memory case cache: training holds 200 of them, and only their coarse arrays)."""
    path = preprocess_case(dataset.cases_root(settings), case_id, dataset.preprocess_params(settings),
                           dataset.cache_root(settings))
    return sample_from_case(load_preprocessed(path), list(organs), settings.detector.train.downsample)


def samples(settings, split: str, limit: int | None = None, progress: bool = True) -> list:
    ids = dataset.case_ids(settings, split)[:limit]
    organs = settings.detector.train.organs
    return [_sample(settings, i, organs) for i in tqdm(ids, desc=f"{split} cases", disable=not progress, leave=False)]


def train(settings, progress: bool = True) -> dict:
    """Train (or resume) the detector in the data folder; never touches a release."""
    train_samples = samples(settings, "train", progress=progress)
    validation = samples(settings, "validation", settings.detector.n_validation, progress=progress)
    return train_detector(settings.detector.train, train_samples, validation, trained_dir(settings), progress)


def ensure_model(settings, progress: bool = True) -> Path:
    """The detector the profile's results use: the release's (checked), or the one trained here,
    trained (or resumed) first if it is not finished."""
    if not models.uses_release(settings):
        last = trained_dir(settings) / "last.pt"
        done = False
        if last.is_file():
            import torch

            done = torch.load(last, map_location="cpu", weights_only=False)["step"] >= settings.detector.train.steps
        if not done:
            train(settings, progress)
    return model_file(settings)


def history(settings) -> pd.DataFrame:
    """The training history (one row per validation): losses, validation IoU of both rules."""
    if models.uses_release(settings):
        rows = weights.read_manifest(release_dir(settings))["models"][NAME]["history"]
    else:
        import torch

        rows = torch.load(trained_dir(settings) / "last.pt", map_location="cpu", weights_only=False)["history"]
    return pd.DataFrame(rows)


@lru_cache(maxsize=4)
def _load(path: str, sha: str):
    return load_detector(path)


def load(settings):
    """(network, training config) of the profile's detector."""
    path = model_file(settings)
    return _load(str(path), weights.file_sha256(path))


def predict_case(settings, case, rules) -> dict[str, tuple[dict, float]]:
    """rule -> ({organ: (6, 3) face centres in the case's mm frame}, wall seconds for all organs):
    one pass of the network serves every rule; each rule's time is that pass plus its own boxing."""
    net, config = load(settings)
    start = time.perf_counter()
    probs, distances = forward(net, case.volume.downsample(config["downsample"]).array)
    network_s = time.perf_counter() - start
    out = {}
    for rule in rules:
        start = time.perf_counter()
        boxes = boxes_from_maps(probs, distances, case, config["organs"], config["downsample"], rule)
        points = {organ: case.idx_to_mm(face_centres(box)) for organ, box in boxes.items()}
        out[rule] = points, network_s + time.perf_counter() - start
    return out


def detector_method(settings, rule: str):
    """The detector as an evaluation method (`evaluation.scoring.evaluate`): the support is ignored."""
    def predict(query, support, support_points):
        points, wall = predict_case(settings, query, [rule])[rule]
        return {organ: points[organ] for organ in support_points}, wall

    return predict


def cache(settings, rule: str) -> PredictionCache:
    key = {"method": NAME, "rule": rule, "model_sha256": weights.file_sha256(model_file(settings))}
    return PredictionCache.for_method(settings, f"{NAME}-{rule}", key)


def predict_all(settings, queries, rules=RULES, progress: bool = True) -> None:
    """Cache the predictions of every rule for every query (one process: a scan takes 1-2 s)."""
    stores = {rule: cache(settings, rule) for rule in rules}
    jobs = {q: [r for r, store in stores.items() if not store.has(NO_SUPPORT, q)] for q in queries}
    jobs = {q: missing for q, missing in jobs.items() if missing}
    for query_id, missing in tqdm(jobs.items(), desc="supervised detector", disable=not progress or not jobs):
        case = dataset.load_case(settings, query_id)
        for rule, (points, wall) in predict_case(settings, case, missing).items():
            organs = [o for o in points if o in case.labels]
            stacked = np.concatenate([points[o] for o in organs]) if organs else np.zeros((0, 3))
            stores[rule].write(NO_SUPPORT, query_id, [o for o in organs for _ in range(6)],
                               points_mm=stacked, wall_s=np.array(wall))


def score(settings, queries, rules: dict) -> pd.DataFrame:
    """Per (method, query, organ) metrics; `rules`: label -> rule. Support "none"."""
    rows = []
    for label, rule in rules.items():
        store = cache(settings, rule)
        for query_id in queries:
            run = store.read(NO_SUPPORT, query_id)
            if run.organs:
                rows += score_points(settings, query_id, run.organ_of_point, run["points_mm"], method=label,
                                     strategy="extreme", support=NO_SUPPORT,
                                     time_s=float(run["wall_s"]) / len(run.organs))
    return pd.DataFrame(rows)


def rule_validation(settings, validation_queries) -> tuple[pd.DataFrame, str]:
    """Both box rules on the validation patients: IoU per organ, mean IoU, AWD; and the rule with
    the best mean IoU."""
    predict_all(settings, validation_queries)
    per_query = score(settings, validation_queries, {rule: rule for rule in RULES})
    by_rule = per_query.groupby("method", sort=False)
    table = per_query.pivot_table(index="method", columns="organ", values="iou_pct", sort=False).add_suffix(" IoU %")
    table["IoU %"], table["AWD mm"] = by_rule.iou_pct.mean(), by_rule.awd_mm.mean()
    table = table.rename_axis("rule").reset_index()
    table.insert(1, "box from", table["rule"].map(RULE_LABELS))
    return table, str(table.loc[table["IoU %"].idxmax(), "rule"])


def publish(settings, overwrite: bool = False) -> dict:
    """Copy the detector trained here (weights only) into `detector.release` with a manifest."""
    import torch

    best, last = trained_dir(settings) / "best.pt", trained_dir(settings) / "last.pt"
    if not best.is_file():
        raise DataError(best, "no trained detector to publish")
    saved = torch.load(last, map_location="cpu", weights_only=False)
    best_payload = torch.load(best, map_location="cpu", weights_only=False)
    rows = saved["history"]
    provenance = models.provenance_entry(trained_dir(settings))
    summary = {"steps": int(saved["step"]), "best_step": int(best_payload["step"]),
               "best_val_loss": min(r["val_loss"] for r in rows if "val_loss" in r),
               "train_time_s": float(saved["train_time_s"]),
               "parameters": int(sum(v.numel() for v in best_payload["model"].values())),
               "resumed": models.paused_and_resumed(calls_so_far(saved), provenance)}
    stripped = Path(tempfile.mkdtemp()) / "detector.pt"
    atomic_torch_save(best_payload, stripped)
    table = dataset.case_table(settings)
    validation = table[table.split == "validation"].case_id.tolist()[: settings.detector.n_validation]
    about = {"profile": settings.name, "dataset": settings.data.dataset,
             "preprocess_spacing_zyx_mm": list(settings.preprocess.spacing_zyx),
             "data_split": {"labels_used": "the training split's organ masks (a supervised model); the "
                                           "validation patients' masks chose the checkpoint",
                            "train": table[table.split == "train"].case_id.tolist(), "validation": validation}}
    entry = {"source": stripped, "kind": "detector", "architecture": best_payload["net_config"],
             "training": saved["config"], "summary": summary, "history": rows, **provenance}
    return weights.write_release(release_dir(settings), {NAME: entry}, about, overwrite=overwrite)


def main(argv=None) -> int:
    def published(settings, overwrite):
        publish(settings, overwrite=overwrite)
        return [f"published the detector to {release_dir(settings)}"]

    return training_cli.run(argv, "python -m rprloc_core.experiments.detector_predictions", __doc__,
                            lambda settings, parallel: [{"name": NAME, **train(settings)}], published,
                            parallel_option=False)


if __name__ == "__main__":
    sys.exit(main())
