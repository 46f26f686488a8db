"""PIN (`rprloc_core.pin`) in the project's protocol: a supervised reference, trained on the
training split's landmarks (the six extreme points of each organ), released with a manifest, its
predictions cached and scored like every other method.

    python -m rprloc_core.experiments.pin_predictions --profile demo            # train (resumable)
    python -m rprloc_core.experiments.pin_predictions --profile demo --publish [--overwrite]

Networks (`networks`):
    single-<organ>-<point>           PIN-Single, one per landmark (24), loss C+R
    single-<landmark>-loss-C / -R    the variants' landmark with losses C and R (PIN1, PIN2)
    multiple                         PIN-Multiple: the shape model's parameters, loss C+R

PIN works in a frame centred on the body: millimetres from the centre of the case's volume (the
body's bounding box, from preprocessing). Over the training patients the landmarks spread about
19, 10 and 13 mm (SD along z, y, x) in that frame, against 38, 10 and 74 mm from the volume's
corner (the box's width varies between patients, its centre stays near the midline). So a training
patient's landmark is a plausible start in any other patient: the starts of a query are the
landmarks (or, for PIN-Multiple, the shape parameters) of `pin.n_initialisations` training
patients drawn with a generator seeded by the query's name; the prediction is the mean of the final
states, moved back to the case's frame. Like the detector it needs no support: rows carry the support "none".
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

from rprloc_core.data import dataset
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import load_preprocessed, preprocess_case
from rprloc_core.errors import DataError
from rprloc_core.evaluation.jobs import run_jobs
from rprloc_core.evaluation.predictions import PredictionCache
from rprloc_core.evaluation.protocol import case_rng, landmark_names, organ_landmarks_mm, true_landmarks
from rprloc_core.evaluation.scoring import score_points
from rprloc_core.experiments import models, training_cli, weights
from rprloc_core.geometry.landmarks import extreme_point_axis
from rprloc_core.geometry.volume import Volume
from rprloc_core.pin.config import PINTrainConfig
from rprloc_core.pin.shape_model import ShapeModel, fit_shape_model

NAME = "pin"
NO_SUPPORT = "none"
SINGLE_LABEL = "PIN-Single (supervised, trained here)"
MULTIPLE_LABEL = "PIN-Multiple (supervised, trained here)"
# The paper's variants (Li et al. 2018, Table 1): training loss x update rule.
VARIANTS = {"PIN1": ("C", "A"), "PIN2": ("R", "B"), "PIN3": ("C+R", "A"), "PIN4": ("C+R", "B"),
            "PIN5": ("C+R", "C")}
SHAPE_CLIP_SD = 3.0            # PIN-Multiple's states stay within this many SDs of each mode


def network_file_name(landmark: str, loss: str = "C+R") -> str:
    base = "single-" + landmark.replace(" ", "-")
    return base if loss == "C+R" else f"{base}-loss-{loss}"


@lru_cache(maxsize=4)
def networks(settings) -> dict[str, dict]:
    """name -> {"kind": "single" | "multiple", "landmark": its name or None, "loss": ...} (built once
    per profile and asked for on every network call: read it, do not change it)."""
    out = {network_file_name(m): {"kind": "single", "landmark": m, "loss": "C+R"} for m in landmark_names()}
    landmark = settings.pin.variants_landmark
    if landmark not in landmark_names():
        raise DataError(None, f"pin.variants_landmark {landmark!r} is not one of {', '.join(landmark_names())}")
    for loss in sorted({loss for loss, _ in VARIANTS.values()} - {"C+R"}):
        out[network_file_name(landmark, loss)] = {"kind": "single", "landmark": landmark, "loss": loss}
    out["multiple"] = {"kind": "multiple", "landmark": None, "loss": "C+R"}
    return out


def train_config(settings, name: str) -> PINTrainConfig:
    spec, base = networks(settings)[name], settings.pin.train
    steps = settings.pin.multiple_steps if spec["kind"] == "multiple" and settings.pin.multiple_steps else base.steps
    return PINTrainConfig(**{**base.__dict__, "loss": spec["loss"], "steps": steps})


# ------------------------------------------------------------------------------------ material

def centred(volume: Volume) -> Volume:
    """The same voxels in PIN's frame: mm from the volume's centre (no copy of the array)."""
    return Volume(volume.array, volume.spacing, volume.origin_mm - volume.centre_mm())


def _case_material(settings, case_id: str):
    """(centred volume on the working grid, landmarks (24, 3) in its frame) of a case, read from the
    preprocessed cache; None when the case misses an organ."""
    path = preprocess_case(dataset.cases_root(settings), case_id, dataset.preprocess_params(settings),
                           dataset.cache_root(settings))
    case = load_preprocessed(path)
    if not all(organ in case.labels for organ in HAN_ORGANS):
        return None
    points = organ_landmarks_mm(case, HAN_ORGANS, "extreme")
    return centred(case.volume), np.concatenate([points[o] for o in HAN_ORGANS]) - case.volume.centre_mm()


@lru_cache(maxsize=2)
def material(settings, split: str) -> tuple[tuple, ...]:
    """(case id, centred volume, landmarks (24, 3) mm) of the split's patients with every organ (the first
    `pin.n_train` / `pin.n_validation`), loaded once per process."""
    limit = settings.pin.n_train if split == "train" else settings.pin.n_validation
    out = []
    for case_id in tqdm(dataset.case_ids(settings, split), desc=f"PIN: {split} patients", leave=False):
        if limit is not None and len(out) >= limit:
            break
        loaded = _case_material(settings, case_id)
        if loaded is not None:
            out.append((case_id, *loaded))
    if len(out) < 2:
        raise DataError(None, f"PIN needs at least two {split} patients with every organ; found {len(out)}")
    return tuple(out)


@lru_cache(maxsize=2)
def shape_model(settings) -> ShapeModel:
    """The PCA shape model of the 24 landmarks, fitted on the training patients only."""
    configurations = np.stack([points for _, _, points in material(settings, "train")])
    return fit_shape_model(configurations, settings.pin.keep_variance)


def space_of(settings, name: str, model: ShapeModel | None = None):
    from rprloc_core.pin.training import LandmarkSpace, ShapeSpace

    spec = networks(settings)[name]
    if spec["kind"] == "multiple":
        return ShapeSpace(model if model is not None else shape_model(settings), settings.pin.n_sd)
    return LandmarkSpace(tuple(settings.pin.range_mm))


def true_states(settings, name: str, split: str, model: ShapeModel | None = None) -> list[tuple]:
    """(volume, true state) per patient of the split: a landmark's position, or the shape parameters."""
    spec = networks(settings)[name]
    if spec["kind"] == "multiple":
        model = model if model is not None else shape_model(settings)
        return [(volume, model.encode(points)) for _, volume, points in material(settings, split)]
    index = landmark_names().index(spec["landmark"])
    return [(volume, points[index]) for _, volume, points in material(settings, split)]


# ------------------------------------------------------------------------------------ training

def trained_dir(settings) -> Path:
    return models.models_dir(settings) / NAME


def release_dir(settings) -> Path:
    if not settings.pin.release:
        raise DataError(None, f"profile {settings.name!r} names no PIN release (pin.release)")
    return weights.release_dir(settings.pin.release)


def train_one(settings, name: str, progress: bool = False) -> dict:
    """Train (or resume) one network in data/.../models/<profile>/pin/<name>/."""
    from rprloc_core.pin.training import train_pin

    summary = train_pin(space_of(settings, name), train_config(settings, name), true_states(settings, name, "train"),
                        trained_dir(settings) / name, progress=progress,
                        validation_cases=true_states(settings, name, "validation"), desc=f"PIN {name}")
    return {"name": name, **summary}


def _finished(settings, name: str) -> bool:
    import torch

    last = trained_dir(settings) / name / "last.pt"
    return last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["step"] >= \
        train_config(settings, name).steps


def train(settings, parallel: bool = True, progress: bool = True) -> list[dict]:
    """Train (or resume) every network not finished yet, two worker processes; never touches a release."""
    # PIN-Multiple first: it takes several times longer than a landmark network, so the two
    # workers finish together
    todo = sorted((name for name in networks(settings) if not _finished(settings, name)),
                  key=lambda name: networks(settings)[name]["kind"] != "multiple")
    material(settings, "train")          # loaded before the workers fork, shared with them
    material(settings, "validation")
    return run_jobs(train_one, [(settings, name) for name in todo], "PIN networks", parallel=parallel,
                    progress=progress)


def model_file(settings, name: str) -> Path:
    if models.uses_release(settings):
        return weights.released_file(release_dir(settings), name)
    path = trained_dir(settings) / name / "last.pt"
    if not path.is_file():
        raise DataError(path, "no trained PIN network: train it first "
                              "(python -m rprloc_core.experiments.pin_predictions)")
    return path


def ensure_models(settings, parallel: bool = True, progress: bool = True) -> dict[str, Path]:
    """name -> checkpoint of every network the profile's results use: released (checked), or
    trained here (trained or resumed first where unfinished)."""
    if not models.uses_release(settings):
        train(settings, parallel=parallel, progress=progress)
    return {name: model_file(settings, name) for name in networks(settings)}


def _release_payload(settings) -> dict:
    path = model_file(settings, "multiple")
    return _payload(str(path), weights.file_sha256(path))


@lru_cache(maxsize=4)
def _payload(path: str, sha: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def released_shape_model(settings) -> ShapeModel:
    """The shape model the profile's PIN-Multiple was trained with (kept in its released file)."""
    saved = _release_payload(settings) if models.uses_release(settings) else {}
    return ShapeModel.from_dict(saved["shape_model"]) if "shape_model" in saved else shape_model(settings)


def training_landmarks(settings) -> np.ndarray:
    """The training patients' landmarks (N, 24, 3), mm in PIN's centred frame, where every query's
    starts come from: kept in the release (so inference needs no training scan), else read from the
    training patients."""
    saved = _release_payload(settings) if models.uses_release(settings) else {}
    if "train_landmarks_mm" in saved:
        return np.asarray(saved["train_landmarks_mm"], dtype=float)
    return np.stack([points for _, _, points in material(settings, "train")])


def history(settings) -> pd.DataFrame:
    """Every network's checkpoints: step, training loss, validation loss and error (mm), and for a
    run of the shared training loop the seconds trained (compare_results skips timing columns)."""
    import torch

    rows = []
    for name in networks(settings):
        if models.uses_release(settings):
            entries = weights.read_manifest(release_dir(settings))["models"][name]["history"]
        else:
            last = trained_dir(settings) / name / "last.pt"
            entries = torch.load(last, map_location="cpu", weights_only=False)["history"] if last.is_file() else []
        rows += [{"network": name, **entry} for entry in entries]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- inference

@lru_cache(maxsize=64)
def _load(path: str, sha: str):
    from rprloc_core.pin.training import load_network

    return load_network(path)


def load_network(settings, name: str):
    path = model_file(settings, name)
    return _load(str(path), weights.file_sha256(path))


def initial_states(settings, query_id: str, name: str, model: ShapeModel, train_landmarks: np.ndarray) -> np.ndarray:
    """The starts (N, D) of one network in one query: the true states of N training patients,
    drawn with a generator seeded by the query (the same patients for every network)."""
    rng = case_rng(settings.seed, query_id, "pin-starts")
    n = min(settings.pin.n_initialisations, len(train_landmarks))
    chosen = train_landmarks[rng.choice(len(train_landmarks), size=n, replace=False)]
    spec = networks(settings)[name]
    if spec["kind"] == "multiple":
        return model.encode(chosen)
    return chosen[:, landmark_names().index(spec["landmark"])]


def run_network(settings, volume, name: str, rule: str, model: ShapeModel, train_landmarks: np.ndarray,
                query_id: str, return_path=False, net=None):
    """(final state mean decoded to landmarks (L, 3) in the volume's mm frame, the path (T + 1, N, D)
    of the states if asked, in PIN's centred frame): one network's update rule from its starts.
    `net`: the network to run instead of the profile's (a test compares an untrained one)."""
    from rprloc_core.pin.training import predictor
    from rprloc_core.pin.update_rules import iterate, memoised

    centre = volume.centre_mm()
    volume = centred(volume)
    space, config = space_of(settings, name, model), train_config(settings, name)
    predict = predictor(net if net is not None else load_network(settings, name), space, volume, config)
    if rule == "A":          # a lattice walk: most iterations revisit a state
        predict = memoised(predict)
    initial = initial_states(settings, query_id, name, model, train_landmarks)
    if networks(settings)[name]["kind"] == "multiple":
        lower, upper, step = -SHAPE_CLIP_SD * model.sd, SHAPE_CLIP_SD * model.sd, model.sd / 10.0
    else:
        lower, upper = volume.extent_mm()
        step = volume.spacing
    iterations = settings.pin.rule_a_iterations if rule == "A" else settings.pin.iterations
    final, path = iterate(predict, initial, rule, iterations, step=step, lower=lower, upper=upper, return_path=True)
    landmarks = space.landmarks(final.mean(axis=0)[None])[0] + centre
    return (landmarks, path) if return_path else landmarks


def cache(settings, method: str) -> PredictionCache:
    """method: "single", "multiple" (rule C, all landmarks) or "variants" (PIN1-PIN5, one landmark)."""
    names = [n for n, spec in networks(settings).items()
             if method == "variants" and spec["landmark"] == settings.pin.variants_landmark
             or method == "single" and spec["kind"] == "single" and spec["loss"] == "C+R"
             or method == "multiple" and spec["kind"] == "multiple"]
    key = {"method": f"{NAME}-{method}", "models": {n: weights.file_sha256(model_file(settings, n)) for n in names},
           "starts": settings.pin.n_initialisations, "iterations": settings.pin.iterations,
           "rule_a_iterations": settings.pin.rule_a_iterations, "seed": settings.seed,
           **({"landmark": settings.pin.variants_landmark} if method == "variants" else {})}
    return PredictionCache.for_method(settings, f"{NAME}-{method}", key)


def predict_query(settings, query_id: str, methods=("single", "multiple", "variants")) -> None:
    """Cache one query's predictions: 24 landmarks by PIN-Single and PIN-Multiple (rule C, loss C+R)
    and the variants' landmark by PIN1-PIN5; wall seconds with this process's threads."""
    volume = dataset.load_case(settings, query_id).volume
    model, train_landmarks = released_shape_model(settings), training_landmarks(settings)
    names = landmark_names()
    stores = {m: cache(settings, m) for m in methods}
    if "single" in stores and not stores["single"].has(NO_SUPPORT, query_id):
        start = time.perf_counter()
        points = np.stack([run_network(settings, volume, network_file_name(m), "C", model, train_landmarks,
                                       query_id)[0] for m in names])
        stores["single"].write(NO_SUPPORT, query_id, [m.split()[0] for m in names], points_mm=points,
                               wall_s=np.array(time.perf_counter() - start))
    if "multiple" in stores and not stores["multiple"].has(NO_SUPPORT, query_id):
        start = time.perf_counter()
        points = run_network(settings, volume, "multiple", "C", model, train_landmarks, query_id)
        stores["multiple"].write(NO_SUPPORT, query_id, [m.split()[0] for m in names], points_mm=points,
                                 wall_s=np.array(time.perf_counter() - start))
    if "variants" in stores and not stores["variants"].has(NO_SUPPORT, query_id):
        landmark, points, walls = settings.pin.variants_landmark, [], []
        for loss, rule in VARIANTS.values():
            start = time.perf_counter()
            points.append(run_network(settings, volume, network_file_name(landmark, loss), rule, model,
                                      train_landmarks, query_id)[0])
            walls.append(time.perf_counter() - start)
        stores["variants"].write(NO_SUPPORT, query_id, [landmark.split()[0]] * len(VARIANTS),
                                 points_mm=np.stack(points), wall_s=np.array(walls))


def predict_all(settings, queries, parallel: bool = True, progress: bool = True) -> None:
    """Cache every query's predictions (two single-thread workers)."""
    stores = [cache(settings, m) for m in ("single", "multiple", "variants")]
    todo = [q for q in queries if not all(store.has(NO_SUPPORT, q) for store in stores)]
    if todo:
        run_jobs(predict_query, [(settings, q) for q in todo], "PIN queries", parallel=parallel, progress=progress)


# ------------------------------------------------------------------------------------- scoring

def _error(point, truth, landmark) -> dict:
    """Euclidean error, and the error along the axis the point bounds the box on ("Mandible z_min")."""
    axis = extreme_point_axis(landmark.split()[1])
    return {"error_mm": float(np.linalg.norm(point - truth)), "axis_error_mm": float(abs(point[axis] - truth[axis]))}


def landmark_errors(settings, queries) -> pd.DataFrame:
    """One row per (model, query, landmark): the Euclidean error in mm, the error along the axis the
    point bounds the box on (all that matters to the box), seconds per landmark. Models: PIN-Single,
    PIN-Multiple (all landmarks) and PIN1-PIN5 (the variants' landmark)."""
    rows, names = [], landmark_names()
    for query_id in queries:
        truth = true_landmarks(settings, query_id)
        for method, model in (("single", "PIN-Single"), ("multiple", "PIN-Multiple")):
            run = cache(settings, method).read(NO_SUPPORT, query_id)
            for landmark, point in zip(names, run["points_mm"]):
                if landmark in truth:
                    rows.append({"model": model, "query": query_id, "landmark": landmark,
                                 **_error(point, truth[landmark], landmark),
                                 "time_s": float(run["wall_s"]) / len(names)})
        run = cache(settings, "variants").read(NO_SUPPORT, query_id)
        landmark = settings.pin.variants_landmark
        if landmark in truth:
            for variant, point, wall in zip(VARIANTS, run["points_mm"], run["wall_s"]):
                rows.append({"model": variant, "query": query_id, "landmark": landmark,
                             **_error(point, truth[landmark], landmark), "time_s": float(wall)})
    return pd.DataFrame(rows)


def variants_table(errors: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 analogue: PIN1-PIN5 on one landmark, mean and SD of the error over the
    queries (mm), seconds per landmark, the paper's numbers beside."""
    part = errors[errors.model.isin(list(VARIANTS))]
    table = part.groupby("model", sort=False).agg(error_mean_mm=("error_mm", "mean"),
                                                  error_sd_mm=("error_mm", lambda e: e.std(ddof=0)),
                                                  time_s=("time_s", "mean"), n_queries=("query", "nunique"))
    table = table.rename_axis("variant").reset_index()
    table.insert(1, "training_loss", table.variant.map(lambda v: VARIANTS[v][0]))
    table.insert(2, "inference_rule", table.variant.map(lambda v: VARIANTS[v][1]))
    table.insert(3, "landmark", part.landmark.iloc[0] if len(part) else "")
    paper = paper.rename(columns={"error_mean_mm": "paper_error_mean_mm", "error_sd_mm": "paper_error_sd_mm",
                                  "time_s": "paper_time_s"})
    return table.merge(paper[["variant", "paper_error_mean_mm", "paper_error_sd_mm", "paper_time_s"]],
                       on="variant", how="left")


def single_vs_multiple_table(errors: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 analogue: PIN-Single and PIN-Multiple per landmark and overall (mean and
    SD of the error over queries, mm, and the mean error along the point's box axis); the paper's
    overall numbers beside (its landmarks are fetal-ultrasound ones, so only the overall row has a
    paper value)."""
    part = errors[errors.model.isin(["PIN-Single", "PIN-Multiple"])]
    rows = pd.concat([part, part.assign(landmark="Overall")], ignore_index=True)
    table = rows.groupby(["landmark", "model"], sort=False).agg(
        error_mean_mm=("error_mm", "mean"), error_sd_mm=("error_mm", lambda e: e.std(ddof=0)),
        axis_error_mean_mm=("axis_error_mm", "mean")).unstack("model")
    table.columns = [f"{model} {stat}" for stat, model in table.columns]
    table = table[[f"{m} {s}" for m in ("PIN-Single", "PIN-Multiple")
                   for s in ("error_mean_mm", "error_sd_mm", "axis_error_mean_mm")]]
    table = table.reindex([*dict.fromkeys(part.landmark), "Overall"]).rename_axis("landmark").reset_index()
    overall_paper = paper[paper.landmark.astype(str) == "Overall"].set_index("model")
    for model in ("PIN-Single", "PIN-Multiple"):
        table[f"paper {model} error_mean_mm"] = np.where(table.landmark == "Overall",
                                                         overall_paper.error_mean_mm.get(model, np.nan), np.nan)
    return table


def score_boxes(settings, queries) -> pd.DataFrame:
    """Per (method, query, organ) box metrics of PIN-Single and PIN-Multiple (their predicted
    extreme points); support "none", seconds per organ = the query's wall time / 4 organs."""
    rows = []
    for method, label in (("single", SINGLE_LABEL), ("multiple", MULTIPLE_LABEL)):
        store = cache(settings, method)
        for query_id in queries:
            run = store.read(NO_SUPPORT, query_id)
            case = dataset.load_case(settings, query_id)
            keep = np.array([organ in case.labels for organ in run.organ_of_point])
            if keep.any():
                rows += score_points(settings, query_id, list(np.asarray(run.organ_of_point)[keep]),
                                     run["points_mm"][keep], method=label, strategy="extreme", support=NO_SUPPORT,
                                     time_s=float(run["wall_s"]) / len(HAN_ORGANS))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------ release

def publish(settings, overwrite: bool = False) -> dict:
    """Copy the networks trained here (weights, the shape model in PIN-Multiple's) into `pin.release`."""
    import torch

    from rprloc_core.checkpoints import atomic_torch_save, calls_so_far

    entries, staging = {}, Path(tempfile.mkdtemp())
    model = shape_model(settings)
    for name, spec in networks(settings).items():
        last = trained_dir(settings) / name / "last.pt"
        if not last.is_file():
            raise DataError(last, "no trained PIN network to publish")
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if saved["step"] < train_config(settings, name).steps:
            raise DataError(last, f"training is not finished ({saved['step']} steps): resume it before publishing")
        payload = {"model": saved["model"], "net_config": saved["net_config"], "config": saved["config"],
                   "step": saved["step"]}
        if spec["kind"] == "multiple":     # what inference needs besides the networks
            payload.update(shape_model=model.to_dict(), train_landmarks_mm=training_landmarks(settings).tolist())
        atomic_torch_save(payload, staging / f"{name}.pt")
        provenance = models.provenance_entry(last.parent)
        entries[name] = {"source": staging / f"{name}.pt", "kind": f"pin-{spec['kind']}", "landmark": spec["landmark"],
                         "architecture": saved["net_config"], "training": saved["config"],
                         "summary": {"steps": int(saved["step"]), "train_time_s": float(saved.get("train_time_s", 0)),
                                     "parameters": int(sum(v.numel() for v in saved["model"].values())),
                                     "shape_modes": model.n_modes if spec["kind"] == "multiple" else None,
                                     "resumed": models.paused_and_resumed(calls_so_far(saved), provenance)},
                         "history": saved["history"], **provenance}
    about = {"profile": settings.name, "dataset": settings.data.dataset,
             "preprocess_spacing_zyx_mm": list(settings.preprocess.spacing_zyx),
             "data_split": {"labels_used": "the training split's organ masks (six extreme points per organ: a "
                                           "supervised model); validation patients are only scored while training",
                            "train": [c for c, _, _ in material(settings, "train")],
                            "validation": [c for c, _, _ in material(settings, "validation")]},
             "pin": {k: v for k, v in settings.to_dict()["pin"].items() if k != "release"}}
    return weights.write_release(release_dir(settings), entries, about, overwrite=overwrite)


def main(argv=None) -> int:
    def published(settings, overwrite):
        publish(settings, overwrite=overwrite)
        return [f"published PIN to {release_dir(settings)}"]

    return training_cli.run(argv, "python -m rprloc_core.experiments.pin_predictions", __doc__, train, published)


if __name__ == "__main__":
    sys.exit(main())
