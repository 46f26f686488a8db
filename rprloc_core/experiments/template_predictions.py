"""The template-matching baselines of Table 3 (GS MSE, GS Cosine, GS NCC, FM MSE, FM Cosine) on
every (support, query) pair of a profile: the patch auto-encoder they need, their predictions cached
on disk like `rprloc_runs`, their scores, and their times.

Predictions and times are computed separately, on purpose:
- predictions: all five methods of a pair at once (`template_matching.match_all`: one FFT
  cross-correlation per template for the three GS scores, one dense encoding of the query for the
  two FM scores), cached per pair in data/<dataset>/runs/<profile>/template_matching/, resumable,
  two single-thread worker processes. The results equal running each method on its own.
- times: shared work is not how anyone would run one method, so each method is timed alone, end
  to end (cutting templates, matching, for FM encoding the query), with
  `evaluation.template_method` on a few queries (`time_methods`). RPR-Loc is timed the same way
  beside them (`time_rprloc`).
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from rprloc_core.data import dataset
from rprloc_core.evaluation import scoring as evaluation
from rprloc_core.evaluation.scoring import organ_landmarks_mm, run_jobs, score_prediction
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.baselines.template_matching import METHODS

# The paper's names for the methods (rows of its Table 3).
METHOD_LABELS = {"gs_mse": "GS MSE", "gs_cosine": "GS Cosine", "gs_ncc": "GS NCC",
                 "fm_mse": "FM MSE", "fm_cosine": "FM Cosine"}
RPRLOC_LABEL = "RPR-Loc (Mc + Mf)"
SUPERVISED_LABEL = "Retina U-Net (supervised)"


# ---------------------------------------------------------------------------------- settings

def settings(cfg: dict) -> dict:
    """The profile's [template_matching] section, patch size as a tuple."""
    section = dict(cfg["template_matching"])
    section["patch_size"] = tuple(int(s) for s in section["patch_size"])
    section["stride"] = int(section.get("stride", 2))
    return section


def ae_config(cfg: dict):
    """The auto-encoder's architecture: its patch is the template (FM compares latents of windows
    of exactly the template's size)."""
    from rprloc_core.baselines.feature_matching import AEConfig

    section = settings(cfg)
    ae = section["autoencoder"]
    return AEConfig(patch_size=section["patch_size"], latent_dim=int(ae["latent_dim"]), channels=tuple(ae["channels"]))


# ------------------------------------------------------------------------------- auto-encoder

def encoder_path(cfg: dict) -> Path:
    """data/<dataset>/models/<profile>/autoencoder/checkpoint.pt (model, optimizer, history)."""
    from rprloc_core.experiments.models import models_dir

    return models_dir(cfg) / "autoencoder" / "checkpoint.pt"


def train_encoder(cfg: dict, progress: bool = True):
    """Train (or resume, or just load if finished) the profile's patch auto-encoder on the training
    split's intensity volumes: no label file is opened (dataset.unlabelled_volumes)."""
    from rprloc_core.baselines.feature_matching import train_autoencoder

    ae = settings(cfg)["autoencoder"]
    volumes = dataset.unlabelled_volumes(cfg, "train", progress=progress)
    return train_autoencoder(volumes, ae_config(cfg), int(ae["steps"]), np.random.default_rng(cfg["seed"]),
                             batch_size=int(ae["batch_size"]), lr=float(ae.get("lr", 1e-3)),
                             checkpoint_path=encoder_path(cfg), checkpoint_every=int(ae.get("checkpoint_every", 50)),
                             progress=progress, time_limit_s=ae.get("time_limit_s"))


def load_encoder(cfg: dict):
    from rprloc_core.baselines.feature_matching import load_autoencoder

    return load_autoencoder(encoder_path(cfg))


def encoder_step(cfg: dict) -> int:
    """Training steps of the saved auto-encoder (part of the run cache's key)."""
    import torch

    return int(torch.load(encoder_path(cfg), map_location="cpu", weights_only=False)["step"])


@lru_cache(maxsize=2)
def _encoder(profile: str, checkpoint_mtime_ns: int):
    """The encoder and its step, loaded once per process (and again if the checkpoint changes)."""
    from rprloc_core.settings import load_profile

    cfg = load_profile(profile)
    return load_encoder(cfg), encoder_step(cfg)


# ---------------------------------------------------------------------------- cached pair runs

def runs_dir(cfg: dict) -> Path:
    """data/<dataset>/runs/<profile>/template_matching/: one .npz per (support, query) pair."""
    return dataset.dataset_root(cfg) / "runs" / cfg["name"] / "template_matching"


def cache_key(cfg: dict, step: int) -> str:
    """What a cached prediction depends on: template size, stride, the encoder and its training
    step. A file with another key (e.g. the encoder trained further since) is computed again."""
    section = settings(cfg)
    return json.dumps({"patch_size": list(section["patch_size"]), "stride": section["stride"],
                       "autoencoder": {k: section["autoencoder"][k] for k in ("latent_dim", "channels")},
                       "encoder_step": int(step), "methods": list(METHODS)}, sort_keys=True)


def _pair_path(cfg: dict, support_id: str, query_id: str) -> Path:
    return runs_dir(cfg) / f"{support_id}__{query_id}.npz"


def _is_current(path: Path, key: str) -> bool:
    if not path.is_file():
        return False
    with np.load(path) as run:
        return str(run["key"]) == key


def compute_pair(profile: str, support_id: str, query_id: str, organs=HAN_ORGANS) -> Path:
    """Run (or read back) all five methods on one pair; returns its cache file. Templates are cut
    around the support's extreme points of every organ the query has, as `template_method` does."""
    from rprloc_core.settings import load_profile
    from rprloc_core.rprloc.inference import stack_organ_landmarks
    from rprloc_core.baselines.template_matching import FEATURE_METHODS, GRAY_METHODS, cut_templates, match_all

    cfg = load_profile(profile)
    encoder, step = _encoder(profile, encoder_path(cfg).stat().st_mtime_ns)
    key = cache_key(cfg, step)
    out = _pair_path(cfg, support_id, query_id)
    if _is_current(out, key):
        return out
    section = settings(cfg)
    support, query = dataset.load_case(cfg, support_id), dataset.load_case(cfg, query_id)
    wanted = [o for o in organs if o in query.labels]
    points_mm, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, wanted, "extreme"))
    templates = cut_templates(support.volume, points_mm / support.spacing, section["patch_size"])
    walls, results = {}, {}
    for part, methods in (("gray", GRAY_METHODS), ("features", FEATURE_METHODS)):
        start = time.perf_counter()
        results.update(match_all(query.volume, templates, methods, stride=section["stride"], encoder=encoder))
        walls[part] = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.npz")
    np.savez(tmp, key=np.array(key), methods=np.array(METHODS), organ_of_point=np.array(organ_of_point),
             points_mm=np.stack([results[m].centre_idx * query.spacing for m in METHODS]),
             scores=np.stack([results[m].score for m in METHODS]),
             wall_s_shared_gray=walls["gray"], wall_s_shared_features=walls["features"])
    os.replace(tmp, out)
    return out


def run_all(cfg: dict, supports, queries, parallel: bool = True, progress: bool = True) -> None:
    """Compute every missing or out-of-date pair (two single-thread processes when `parallel`).
    Needs the trained encoder (`train_encoder`)."""
    if not encoder_path(cfg).is_file():
        raise FileNotFoundError(f"{encoder_path(cfg)}: train the auto-encoder first (train_encoder)")
    key = cache_key(cfg, encoder_step(cfg))
    jobs = [(cfg["name"], s, q) for s in supports for q in queries if not _is_current(_pair_path(cfg, s, q), key)]
    run_jobs(compute_pair, jobs, "template matching runs", parallel, progress)


def pair_points(cfg: dict, support_id: str, query_id: str) -> tuple[dict, list]:
    """method -> (P, 3) predicted points in the query's mm frame, and the organ of every point."""
    with np.load(_pair_path(cfg, support_id, query_id)) as run:
        methods = run["methods"].tolist()
        points = run["points_mm"].astype(float)
        organs = run["organ_of_point"].tolist()
    return {m: points[i] for i, m in enumerate(methods)}, organs


def score_runs(cfg: dict, supports, queries, methods=METHODS) -> pd.DataFrame:
    """Per (method, support, query, organ) metrics from the cached runs, methods under the paper's
    names. time_s is NaN: times come from `time_methods`."""
    rows = []
    for support_id in supports:
        for query_id in queries:
            points, organs = pair_points(cfg, support_id, query_id)
            query = dataset.load_case(cfg, query_id)
            for method in methods:
                for organ in dict.fromkeys(organs):
                    sel = np.array([o == organ for o in organs])
                    rows.append({"method": METHOD_LABELS[method], "strategy": "extreme", "support": support_id,
                                 "query": query_id, "organ": organ,
                                 **score_prediction(query, organ, points[method][sel], "extreme")})
    frame = pd.DataFrame(rows)
    frame["time_s"] = np.nan
    return frame


# -------------------------------------------------------------------------------------- timing

@contextmanager
def torch_threads(n: int | None):
    """Run a block with n torch threads (None: leave as is), then restore."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _warm_up(encoder, patch_size, stride: int) -> None:
    """One tiny call of every code path (FFT, box sums, dense encoder), so that no first-call cost
    lands in the first timed query."""
    from rprloc_core.baselines.template_matching import match
    from rprloc_core.geometry.volume import Volume

    rng = np.random.default_rng(0)
    volume = Volume(rng.random(tuple(s + 4 for s in patch_size)).astype(np.float32), [1.0, 1.0, 1.0])
    templates = rng.random((2, *patch_size)).astype(np.float32)
    for method in METHODS:
        match(volume, templates, method, stride=stride, encoder=encoder)


def time_methods(cfg: dict, support_id: str, query_ids, encoder, methods=METHODS, threads=None,
                 progress: bool = False) -> pd.DataFrame:
    """Each method alone, end to end, on one support and the given queries: the per-query frame of
    `evaluation.evaluate` (time_s = seconds per organ for that query), methods under the paper's
    names, plus the torch threads and the machine's load while timing."""
    import torch

    section = settings(cfg)
    threads = section.get("timing_threads") if threads is None else threads
    frames = []
    with torch_threads(threads):
        _warm_up(encoder, section["patch_size"], section["stride"])
        load = os.getloadavg()[0]
        for method in methods:
            predict = evaluation.template_method(method, section["patch_size"], stride=section["stride"], encoder=encoder)
            frames.append(evaluation.evaluate(cfg, predict, METHOD_LABELS[method], [support_id], query_ids,
                                              progress=progress))
        used = torch.get_num_threads()
    return pd.concat(frames, ignore_index=True).assign(torch_threads=used, load_average_1min=load)


def time_rprloc(cfg: dict, support_id: str, query_ids, threads=None, progress: bool = False) -> pd.DataFrame:
    """RPR-Loc (Mc + Mf, K from the profile, all organs in one batched call) timed like the
    baselines: `evaluation.rprloc_method` on the same support and queries."""
    import torch

    from rprloc_core.experiments.models import load_models

    models = load_models(cfg, ["coarse", "fine"])
    k = int(cfg["rprloc"]["inference"]["k"])
    predict = evaluation.rprloc_method(models["coarse"], models["fine"], ("coarse", "fine"), k=k, seed=cfg["seed"])
    threads = settings(cfg).get("timing_threads") if threads is None else threads
    with torch_threads(threads):
        evaluation.evaluate(cfg, predict, RPRLOC_LABEL, [support_id], query_ids[:1], progress=False)   # warm-up
        load = os.getloadavg()[0]
        frame = evaluation.evaluate(cfg, predict, RPRLOC_LABEL, [support_id], query_ids, progress=progress)
        used = torch.get_num_threads()
    return frame.assign(torch_threads=used, load_average_1min=load)


def seconds_per_organ(timed: pd.DataFrame) -> pd.Series:
    """method -> mean seconds per organ per query (each query's time counted once)."""
    per_query = timed.groupby(["method", "query"], sort=False)["time_s"].first()
    return per_query.groupby(level="method", sort=False).mean()


def rprloc_benchmark_time(results: Path) -> dict | None:
    """RPR-Loc's batched Mc + Mf seconds per organ from benchmarks/rprloc_inference.py's JSON
    (results/<profile>/benchmarks/rprloc_inference.json), with what it was measured on; None if
    that benchmark has not been run."""
    path = Path(results) / "benchmarks" / "rprloc_inference.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    return {"seconds_per_organ": float(report["inference"]["coarse+fine"]["batched"]["per_organ_s"]),
            "source": "benchmarks/rprloc_inference.json", "models": report.get("models", {}).get("kind"),
            "query_shape": report.get("query", {}).get("shape"), "query_kind": report.get("query", {}).get("kind"),
            "k": report.get("k"),
            "torch_threads": report.get("torch_threads")}


# ------------------------------------------------------------------------------------- table 3

def table3(per_query: pd.DataFrame, times: dict, paper: pd.DataFrame, time_sources: dict | None = None,
           organs=HAN_ORGANS, paper_only=(SUPERVISED_LABEL,)) -> pd.DataFrame:
    """One row per method x organ (organs, then Mean): this reproduction's metrics (mean and SD over
    supports), seconds per organ per query from `times` (method -> seconds), and the paper's
    iou_pct / awd_mm / time_s_per_organ as paper_* columns. Methods in `paper_only` are rows with
    the paper's numbers and empty reproduction columns."""
    table = evaluation.summarize(per_query.assign(time_s=np.nan), keys=("method",), organs=organs)
    table["time_s"] = table["method"].map(times)
    table["time_source"] = table["method"].map(time_sources or {})
    paper = paper[paper.organ.isin([*organs, "Mean"])]
    extra = paper[paper.method.isin(paper_only)][["method", "organ"]]
    table = pd.concat([table, extra], ignore_index=True)
    table["n_queries"] = table["n_queries"].fillna(0).astype(int)
    table["n_supports"] = table["n_supports"].fillna(0).astype(int)
    right = paper.rename(columns={"iou_pct": "paper_iou_pct", "awd_mm": "paper_awd_mm",
                                  "time_s_per_organ": "paper_time_s_per_organ"})
    return table.merge(right, on=["method", "organ"], how="left")


def largest_difference_from_cache(timed: pd.DataFrame, per_query: pd.DataFrame) -> float:
    """Largest |IoU difference| (percentage points) between the methods timed alone and the cached
    shared runs on the same (method, support, query, organ): 0 when both predict the same boxes."""
    keys = ["method", "support", "query", "organ"]
    both = timed[keys + ["iou_pct"]].merge(per_query[keys + ["iou_pct"]], on=keys, suffixes=("_alone", "_cached"))
    if len(both) != len(timed):
        raise ValueError(f"{len(timed) - len(both)} timed rows have no cached counterpart")
    return float(np.nanmax(np.abs(both.iou_pct_alone - both.iou_pct_cached))) if len(both) else float("nan")
