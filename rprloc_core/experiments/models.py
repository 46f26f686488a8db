"""The Pnets of a profile: their training settings, where their checkpoints live, training them
(two at a time, one per core), and loading them for inference.

Names: "coarse" (Mc) and "fine" (Mf) are the main models; the r sweep adds "coarse_r<r>" and
"fine_r<r>" models that start from the main model's weights with another offset range r and
train briefly (enough for the r widget of notebook 03, not for the tables).
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from rprloc_core.rprloc.training import TrainConfig


def models_dir(cfg: dict) -> Path:
    """Checkpoints are data, never committed: data/<dataset>/models/<profile>/<name>/."""
    from rprloc_core.data.dataset import dataset_root

    return dataset_root(cfg) / "models" / cfg["name"]


def train_configs(cfg: dict) -> dict[str, TrainConfig]:
    """name -> TrainConfig for every model of the profile, main models first."""
    section = cfg["rprloc"]
    configs = {}
    for name in ("coarse", "fine"):
        values = dict(section[name])
        values.setdefault("seed", cfg["seed"])
        configs[name] = TrainConfig(**values)
    sweep = section.get("sweep", {})
    for name in ("coarse", "fine"):
        for r in sweep.get(f"{name}_r_mm", []):
            main = configs[name]
            if float(r) == float(main.r_mm):
                continue
            configs[f"{name}_r{int(r)}"] = replace(
                main, r_mm=float(r), steps=int(sweep.get("steps", main.steps)),
                time_limit_s=sweep.get("time_limit_s", main.time_limit_s),
                init_from=str(models_dir(cfg) / name / "best.pt"))
    return configs


def sweep_r_values(cfg: dict, kind: str) -> list[float]:
    """The r values available for `kind` ("coarse" or "fine"), main model's first."""
    configs = train_configs(cfg)
    return [float(configs[kind].r_mm)] + [float(c.r_mm) for n, c in configs.items() if n.startswith(f"{kind}_r")]


def model_name(kind: str, r_mm: float, cfg: dict) -> str:
    return kind if float(r_mm) == float(train_configs(cfg)[kind].r_mm) else f"{kind}_r{int(r_mm)}"


def train_one(profile: str, name: str, threads: int = 1, progress: bool = False) -> dict:
    """Train (or resume, or skip if finished) one model of a profile. Reads intensity volumes
    only: no label file is opened (see dataset.unlabelled_volumes)."""
    import torch

    from rprloc_core.data import dataset
    from rprloc_core.settings import load_profile
    from rprloc_core.rprloc.training import train_pnet

    if threads:
        torch.set_num_threads(threads)
    cfg = load_profile(profile)
    config = train_configs(cfg)[name]
    train = dataset.unlabelled_volumes(cfg, "train", progress=progress)
    val = dataset.unlabelled_volumes(cfg, "validation", progress=progress)
    summary = train_pnet(config, train, val, models_dir(cfg) / name, progress=progress)
    return {"name": name, **summary}


def train_all(cfg: dict, names=None, parallel: bool = True, progress: bool = True) -> list[dict]:
    """Train the profile's models. With `parallel`, two processes with one thread each (on this
    2-core CPU two single-thread runs beat one two-thread run, and a busy machine hurts a
    two-thread run far more). Sweep models wait for the main model they start from."""
    names = list(names or train_configs(cfg))
    main = [n for n in names if n in ("coarse", "fine")]
    sweep = [n for n in names if n not in main]
    summaries = []
    for stage in (main, sweep):
        if not stage:
            continue
        if parallel and len(stage) > 1:
            workers = min(2, os.cpu_count() or 1, len(stage))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                summaries += list(pool.map(train_one, [cfg["name"]] * len(stage), stage))
        else:
            summaries += [train_one(cfg["name"], n, threads=0, progress=progress) for n in stage]
    return summaries


def load_models(cfg: dict, names=None, device=None) -> dict:
    """name -> PNet (the best checkpoint by validation loss), in eval mode."""
    from rprloc_core.rprloc.pnet import load_pnet

    names = list(names or train_configs(cfg))
    models = {}
    for name in names:
        model = load_pnet(models_dir(cfg) / name / "best.pt", device=device)
        model.eval()
        models[name] = model
    return models
