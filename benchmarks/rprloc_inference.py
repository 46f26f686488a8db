"""Time RPR-Loc inference (batched engine vs. the naive per-patch loop) and Pnet training throughput.

One query, K runs per landmark, six extreme points per organ, several organs, Mc + Mf (and Mc only),
everything included: model grids, patch cutting, networks, averaging. Without --coarse/--fine it
uses random-weight models of the demo architecture on synthetic phantoms of the demo size
(107 x 125 x 150 voxels at 3 x 2 x 2 mm); the JSON says which. Timings of random-weight models are
representative: the cost does not depend on the weights.

    .venv/bin/python benchmarks/rprloc_inference.py --profile smoke
    .venv/bin/python benchmarks/rprloc_inference.py --coarse runs/coarse/best.pt --fine runs/fine/best.pt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rprloc_core.geometry.volume import Volume  # noqa: E402
from rprloc_core.paths import results_dir  # noqa: E402
from rprloc_core.reporting import portable_paths  # noqa: E402
from rprloc_core.rprloc.inference import localize, localize_naive  # noqa: E402
from rprloc_core.rprloc.pnet import PNet, load_pnet  # noqa: E402
from rprloc_core.rprloc.training import TrainConfig, train_pnet  # noqa: E402

DEMO_SHAPE, DEMO_SPACING = (107, 125, 150), (3.0, 2.0, 2.0)
ORGANS = ("Brainstem", "Mandible", "LeftParotid", "RightParotid")


def phantom(seed: int, shape=DEMO_SHAPE, spacing=DEMO_SPACING) -> Volume:
    """A head-sized ellipsoid of soft tissue in air with a few bright/dark blobs, intensities in [0, 1]
    and exact zeros outside (the project's 'air')."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, s, dtype=np.float32) for s in shape]
    z, y, x = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    body = (z / 0.95) ** 2 + (y / 0.85) ** 2 + (x / 0.8) ** 2 < 1
    img = np.full(shape, 0.4, np.float32) + 0.05 * rng.random(shape, dtype=np.float32)
    for _ in range(12):
        c = rng.uniform(-0.6, 0.6, 3).astype(np.float32)
        d2 = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2
        img = np.where(d2 < rng.uniform(0.01, 0.05), np.float32(rng.uniform(0.1, 1.0)), img)
    return Volume(np.where(body, img, 0).astype(np.float32), spacing)


def demo_models(seed: int):
    """Random-weight models of the demo architecture: Mc on the 2x grid (6 x 4 x 4 mm), Mf on the base grid."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        coarse = PNet("han", 16, (16, 16, 16), r_mm=300.0, spacing_mm=[6.0, 4.0, 4.0])
        fine = PNet("han", 16, (16, 32, 32), r_mm=30.0, spacing_mm=list(DEMO_SPACING))
    return coarse, fine


def support_landmarks(support: Volume, n_organs: int, per_organ: int, rng) -> tuple[np.ndarray, list[str]]:
    """Six 'extreme points' per fake organ: a random interior centre +- a few cm along each axis."""
    points, organs = [], []
    centre_lo, centre_hi = np.asarray(support.shape) * 0.35, np.asarray(support.shape) * 0.65
    for o in range(n_organs):
        centre = rng.uniform(centre_lo, centre_hi)
        half = rng.uniform(3, 10, 3)
        offsets = np.concatenate([np.diag(half) * s for s in (-1, 1)])[[0, 3, 1, 4, 2, 5]]
        pts = (centre + offsets)[:per_organ]
        points.append(support.idx_to_mm(pts))
        organs += [ORGANS[o % len(ORGANS)] + ("" if o < len(ORGANS) else str(o))] * len(pts)
    return np.concatenate(points), organs


def time_inference(engine, query, support, points, organs, coarse, fine, schedule, k, seed, device):
    kwargs = dict(schedule=schedule, k=k, organ_of_point=organs, rng=np.random.default_rng(seed))
    if device is not None:
        kwargs["device"] = device
    t0 = time.perf_counter()
    result = engine(query, (support, points), coarse, fine, **kwargs)
    wall = time.perf_counter() - t0
    return {"total_s": wall, "per_organ_s": wall / len(set(organs))}, result


def training_throughput(mode: str, steps: int, volumes, val, device, settings=None) -> dict:
    if settings is not None:  # the profile's own training settings
        from dataclasses import replace

        config = replace(getattr(settings.rprloc, mode), steps=steps, val_every=steps, val_pairs=56, time_limit_s=None)
    elif mode == "coarse":
        config = TrainConfig(mode="coarse", variant="han", base_width=16, patch_size=(16, 16, 16), r_mm=300.0,
                             downsample=2, volumes_per_step=4, patches_per_volume=8, steps=steps,
                             val_every=steps, val_pairs=56, seed=0)
    else:
        config = TrainConfig(mode="fine", variant="han", base_width=16, patch_size=(16, 32, 32), r_mm=30.0,
                             downsample=1, fine_range_vox=(5, 15, 15), volumes_per_step=4, patches_per_volume=8,
                             steps=steps, val_every=steps, val_pairs=56, seed=0)
    with tempfile.TemporaryDirectory() as out:
        summary = train_pnet(config, volumes, val, out, device=device, progress=False)
    return {"steps": summary["steps"], "pairs_per_step": config.volumes_per_step * config.patches_per_volume
            * (config.patches_per_volume - 1), "patches_per_step": config.volumes_per_step * config.patches_per_volume,
            "s_per_step": summary["train_time_s"] / summary["steps"], "pairs_per_s": summary["pairs_per_s"],
            "config": config.to_dict()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/<profile>/benchmarks/rprloc_inference.json)")
    parser.add_argument("--coarse", type=Path, default=None, help="coarse Pnet checkpoint (default: random demo model)")
    parser.add_argument("--fine", type=Path, default=None, help="fine Pnet checkpoint (default: random demo model)")
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--organs", type=int, default=4)
    parser.add_argument("--points-per-organ", type=int, default=6)
    parser.add_argument("--train-steps", type=int, default=3, help="training steps per model for throughput; 0 skips")
    parser.add_argument("--skip-naive-fine", action="store_true", help="time the naive loop for Mc only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 0 = torch's choice. Default 1: on a CPU shared with other jobs, "
                             "2 OpenMP threads measured 10-20x slower than 1 (threads wait for descheduled peers)")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")

    t_setup = time.perf_counter()
    from rprloc_core.errors import DataError
    from rprloc_core.experiments.models import model_file
    from rprloc_core.settings import load_settings

    settings = load_settings(args.profile)
    try:   # the profile's models: released (sha256 checked) or trained in the data folder
        trained = {role: model_file(settings, role) for role in ("coarse", "fine")}
    except DataError:
        trained = {}
    real = None
    query, support = phantom(args.seed + 1), phantom(args.seed + 2)
    if not (args.coarse or args.fine) and all(f.is_file() for f in trained.values()) and trained:
        # the profile's trained models on its real data: first support and first query of notebook 03
        from rprloc_core.data import dataset
        from rprloc_core.data.organs import HAN_ORGANS
        from rprloc_core.evaluation import protocol
        from rprloc_core.rprloc.inference import stack_organ_landmarks

        args.coarse, args.fine = trained["coarse"], trained["fine"]
        support_id = protocol.choose_supports(settings, HAN_ORGANS, n=1, seed=settings.seed)[0]
        table = dataset.case_table(settings).set_index("case_id")
        query_id = next(q for q in protocol.query_cases(settings, HAN_ORGANS)
                        if all(o in table.loc[q, "organs"] for o in HAN_ORGANS))
        support_case, query_case = dataset.load_case(settings, support_id), dataset.load_case(settings, query_id)
        query, support = query_case.volume, support_case.volume
        real = (support_id, query_id,
                stack_organ_landmarks(protocol.organ_landmarks_mm(support_case, HAN_ORGANS, "extreme")))
    if args.coarse or args.fine:
        if not (args.coarse and args.fine):
            parser.error("give both --coarse and --fine, or neither")
        coarse, fine = load_pnet(args.coarse, device), load_pnet(args.fine, device)
        models = {"kind": "checkpoints", "coarse": str(args.coarse), "fine": str(args.fine)}
    else:
        coarse, fine = demo_models(args.seed)
        models = {"kind": "random-weight demo architecture"}
    coarse.to(device)
    fine.to(device)
    models.update(coarse_config=coarse.config, fine_config=fine.config)
    if real is not None:
        points, organs, _ = real[2]
        models["support"], models["query"] = real[0], real[1]
    else:
        points, organs = support_landmarks(support, args.organs, args.points_per_organ, np.random.default_rng(args.seed))
    setup_s = time.perf_counter() - t_setup

    # Warm-up (first-call allocations, thread pools), not part of any timing.
    localize(query, (support, points[:1]), coarse, fine, schedule=("coarse", "fine"), k=1,
             rng=np.random.default_rng(0), device=device)

    inference = {}
    settings = (("coarse", ("coarse",), "mean_position"), ("coarse+fine", ("coarse", "fine"), "mean_position"),
                ("coarse+fine, embedding average", ("coarse", "fine"), "mean_embedding"))
    for label, schedule, ensemble in settings:
        engine = (lambda *a, **kw: localize(*a, ensemble=ensemble, **kw))
        batched, res_b = time_inference(engine, query, support, points, organs, coarse, fine, schedule,
                                        args.k, args.seed, device)
        entry = {"schedule": list(schedule), "ensemble": ensemble, "batched": batched}
        if ensemble == "mean_position" and not (args.skip_naive_fine and "fine" in schedule):
            naive, res_n = time_inference(localize_naive, query, support, points, organs, coarse, fine, schedule,
                                          args.k, args.seed, device)
            entry["naive"] = naive
            entry["naive_over_batched"] = naive["total_s"] / batched["total_s"]
            entry["max_point_difference_mm"] = float(np.abs(res_b.points_mm - res_n.points_mm).max())
        inference[label] = entry
        print(f"{label:12s} batched {batched['per_organ_s']:.3f} s/organ"
              + (f", naive {entry['naive']['per_organ_s']:.3f} s/organ, naive/batched {entry['naive_over_batched']:.1f}x"
                 if "naive" in entry else ""), flush=True)

    training = {}
    if args.train_steps > 0:
        train_vols = [phantom(100 + i) for i in range(4)] if real is None else [query, support] * 2
        val_vols = [phantom(200)] if real is None else [support]
        for mode in ("coarse", "fine"):
            training[mode] = training_throughput(mode, args.train_steps, train_vols, val_vols, device,
                                                 settings if real is not None else None)
            print(f"training {mode:6s} {training[mode]['s_per_step']:.2f} s/step, "
                  f"{training[mode]['pairs_per_s']:.0f} pairs/s", flush=True)

    report = {
        "benchmark": "rprloc_inference", "profile": args.profile, "models": models,
        "query": {"shape": list(query.shape), "spacing_mm": list(query.spacing),
                  "kind": "synthetic phantom" if real is None else f"real case {real[1]} (support {real[0]})"},
        "k": args.k, "organs": len(set(organs)), "points": len(points), "setup_s": setup_s,
        "inference": inference, "training": training,
        "device": str(device), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu_count": os.cpu_count(), "load_average_1_5_15min": list(os.getloadavg()),
        "note": "CPU shared with other jobs: compare naive and batched from the same run only",
        "python": platform.python_version(), "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = args.out or results_dir(args.profile) / "benchmarks" / "rprloc_inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(portable_paths(json.dumps(report, indent=2)), encoding="utf-8")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
