"""Time RPR-Loc inference: every schedule, this engine against the previous one and the naive loop,
on 1 and 2 threads, with template matching and the `rprloc localize` command timed in the same run.

Every figure is measured here, side by side, so each ratio compares numbers from one run on one
machine. Each measurement runs in a fresh child process (so its peak memory is its own): the child
loads the models, warms up, then times `--repeats` calls and reports the median, end to end (model
grids, support embeddings, patch cutting, networks, averaging).

- engine "this": `rprloc_core.rprloc.inference.localize` as it is.
- engine "previous": the same call with the previous release's settings: torch's own Conv3d and
  MaxPool3d kernels (instead of `pnet.Conv3d`'s always-oneDNN convolution and `pnet.MaxPool`'s
  pairwise maximum) and 16-patch batches for both models (instead of `default_batch_size`).
- engine "naive": `localize_naive`, one network call per patch, one thread.

With the profile's models and data (release weights, prepared OpenKBP) it uses the first support and
first query of notebook 03 (4 organs, 24 extreme points); otherwise random-weight models of the
profile's architecture on synthetic phantoms (the JSON says which; the cost does not depend on the
weights). Accuracy comes from the validation-patient schedule table of notebook 03
(results/<profile>/tables/schedule_validation.csv) when it exists.

    .venv/bin/python benchmarks/rprloc_inference.py --profile demo
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rprloc_core.experiments.schedules import Schedule, default_schedule  # noqa: E402
from rprloc_core.rprloc.inference import default_batch_size  # noqa: E402
from rprloc_core.rprloc.pnet import load_pnet  # noqa: E402

DEMO_SHAPE, DEMO_SPACING = (107, 125, 150), (3.0, 2.0, 2.0)
ORGANS = ("Brainstem", "Mandible", "LeftParotid", "RightParotid")

# The schedules timed (labels as in notebook 03's validation table); the profile's default is added.
# The pooled-starts one was the default until the validation table found Mc > avg > Mf better.
SCHEDULES = (
    Schedule(("coarse",)),
    Schedule(("coarse", "coarse")),
    Schedule(("coarse", "fine")),
    Schedule(("coarse", "fine"), "independent", "mean_embedding"),
    Schedule(("coarse", "fine"), "shared", "mean_embedding"),
    Schedule(("coarse", "fine"), "pooled", "mean_embedding", 4),
)


# ------------------------------------------------------------------------------ inputs

def phantom(seed: int, shape=DEMO_SHAPE, spacing=DEMO_SPACING):
    """A head-sized ellipsoid of soft tissue in air with a few bright/dark blobs, intensities in [0, 1]
    and exact zeros outside (the project's 'air')."""
    from rprloc_core.geometry.volume import Volume

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


def phantom_landmarks(support, n_organs: int = 4):
    """Six 'extreme points' per fake organ: a random interior centre +- a few cm along each axis."""
    rng = np.random.default_rng(0)
    points, organs = [], []
    for o in range(n_organs):
        centre = rng.uniform(np.asarray(support.shape) * 0.35, np.asarray(support.shape) * 0.65)
        half = rng.uniform(3, 10, 3)
        offsets = np.concatenate([np.diag(half) * s for s in (-1, 1)])[[0, 3, 1, 4, 2, 5]]
        points.append(support.idx_to_mm(centre + offsets))
        organs += [ORGANS[o]] * 6
    return np.concatenate(points), organs


def load_inputs(profile: str) -> dict:
    """Models, support, query, landmarks: the profile's own when it has them, else phantoms."""
    import torch

    from rprloc_core.errors import DataError
    from rprloc_core.experiments.models import model_file
    from rprloc_core.rprloc.pnet import PNet
    from rprloc_core.settings import load_settings

    settings = load_settings(profile)
    try:
        files = {role: model_file(settings, role) for role in ("coarse", "fine")}
        models = {role: load_pnet(path) for role, path in files.items()}
        described = {role: os.path.relpath(path, ROOT) for role, path in files.items()}
    except DataError:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            models = {role: PNet(**_architecture(getattr(settings.rprloc, role), settings)) for role in ("coarse", "fine")}
        described = {"kind": "random-weight models of the profile's architecture"}
    try:
        from rprloc_core.data import dataset
        from rprloc_core.data.organs import HAN_ORGANS
        from rprloc_core.evaluation import protocol
        from rprloc_core.rprloc.inference import stack_organ_landmarks

        chosen = protocol.one_shot_protocol(settings)
        table = dataset.case_table(settings).set_index("case_id")
        query_id = next(q for q in chosen.queries if all(o in table.loc[q, "organs"] for o in HAN_ORGANS))
        support_case, query_case = dataset.load_case(settings, chosen.supports[0]), dataset.load_case(settings, query_id)
        points, organs, _ = stack_organ_landmarks(protocol.organ_landmarks_mm(support_case, HAN_ORGANS, "extreme"))
        return {"models": models, "described": described, "support": support_case.volume, "query": query_case.volume,
                "points": points, "organs": organs, "support_case": support_case, "query_case": query_case,
                "kind": f"real case {query_id} (support {chosen.supports[0]})", "settings": settings}
    except (DataError, FileNotFoundError, StopIteration):
        support, query = phantom(2), phantom(1)
        points, organs = phantom_landmarks(support)
        return {"models": models, "described": described, "support": support, "query": query, "points": points,
                "organs": organs, "kind": "synthetic phantom", "settings": settings}


def _architecture(config, settings) -> dict:
    spacing = np.asarray(settings.preprocess.spacing_zyx) * config.downsample
    return {"variant": config.variant, "base_width": config.base_width, "patch_size": list(config.patch_size),
            "r_mm": config.r_mm, "spacing_mm": spacing.tolist()}


# ------------------------------------------------------------------------------ one measurement (child)

def flops_per_patch(model) -> float:
    """Multiply-adds x 2 of the convolutions and linear layers for one patch."""
    import torch

    total = [0.0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv3d):
            total[0] += 2.0 * output[0].numel() * module.in_channels * np.prod(module.kernel_size) / module.groups
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2.0 * module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Linear))]
    with torch.inference_mode():
        model(torch.zeros((1, 1, *model.patch_size)))
    for h in handles:
        h.remove()
    return total[0]


def with_previous_kernels(model):
    """A copy of the model with torch's Conv3d and MaxPool3d (the previous engine's) in place of the
    project's fast eval-mode forms: the same weights and numbers, the previous speed."""
    import copy

    import torch

    from rprloc_core.rprloc.pnet import Conv3d, MaxPool

    old = copy.deepcopy(model)
    for parent in old.modules():
        for name, child in parent.named_children():
            if isinstance(child, Conv3d):
                replacement = torch.nn.Conv3d(child.in_channels, child.out_channels, child.kernel_size,
                                              padding=child.padding)
                replacement.load_state_dict(child.state_dict())
                setattr(parent, name, replacement)
            elif isinstance(child, MaxPool):
                setattr(parent, name, torch.nn.MaxPool3d(child.kernel_size, child.stride))
    return old.eval()


BATCH_SIZES = (1, 2, 4, 8, 16, 32)


def batch_sweep(task: dict, models: dict) -> dict:
    """ms per patch of each model at each batch size (this engine's kernels), the best of
    `rounds` interleaved rounds, so that a slow moment of the machine hits every batch size alike."""
    import torch

    out = {}
    with torch.inference_mode():
        for role, model in models.items():
            n = max(BATCH_SIZES)
            x = torch.randn((n, 1, *model.patch_size), generator=torch.Generator().manual_seed(0))
            best = dict.fromkeys(BATCH_SIZES, float("inf"))
            for _ in range(task["rounds"]):
                for bs in BATCH_SIZES:
                    t0 = time.perf_counter()
                    for s in range(0, n, bs):
                        model(x[s:s + bs])
                    best[bs] = min(best[bs], time.perf_counter() - t0)
            out[role] = {str(bs): 1000 * t / n for bs, t in best.items()}
    return out


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _measure_self_calibration(task, support, points, organs, coarse, fine, n_organs) -> dict:
    """The support localised in itself (`rprloc.self_calibration`), its embeddings already computed:
    what self-calibration adds once per support (to every query when the support is embedded with it)."""
    from rprloc_core.rprloc.inference import encode_supports
    from rprloc_core.rprloc.self_calibration import support_bias_mm

    embeddings = encode_supports((support, points), {"coarse": coarse, "fine": fine})

    def call():
        return support_bias_mm(support, points, coarse, fine, schedule=tuple(task["steps"]), k=task["k"],
                               repeats=task["runs"], organ_of_point=organs, support_embeddings=embeddings,
                               starts=task["starts"], ensemble=task["ensemble"], pool_factor=task["pool_factor"],
                               scatter_mm=task["scatter_mm"])

    call()                                      # warm-up
    walls = []
    for _ in range(task["repeats"]):
        t0 = time.perf_counter()
        call()
        walls.append(time.perf_counter() - t0)
    return {"per_organ_s": statistics.median(walls) / n_organs, "repeats_s": [w / n_organs for w in walls]}


def measure(task: dict) -> dict:
    """One configuration, in this (child) process."""
    import torch

    torch.set_num_threads(task["threads"])
    inputs = load_inputs(task["profile"])
    # --compare-coarse / --compare-fine: other models in the same schedule
    coarse = load_pnet(task["coarse_file"]) if task.get("coarse_file") else inputs["models"]["coarse"]
    fine = load_pnet(task["fine_file"]) if task.get("fine_file") else inputs["models"]["fine"]
    query, support, points, organs = inputs["query"], inputs["support"], inputs["points"], inputs["organs"]
    n_organs = len(set(organs))
    if task["kind"] == "template":
        return _measure_template(task, inputs, n_organs)
    if task["kind"] == "batch_sweep":
        return batch_sweep(task, inputs["models"])
    if task["kind"] == "self_calibration":
        return _measure_self_calibration(task, support, points, organs, coarse, fine, n_organs)

    from rprloc_core.rprloc.inference import encode_supports, localize, localize_naive

    schedule = Schedule(tuple(task["steps"]), task["starts"], task["ensemble"], task["pool_factor"],
                        scatter_mm=task["scatter_mm"])
    batch_size = None                                   # each model's default_batch_size
    if task["engine"] == "previous":
        coarse, fine, batch_size = with_previous_kernels(coarse), with_previous_kernels(fine), 16
    flops = {"coarse": flops_per_patch(coarse), "fine": flops_per_patch(fine)}   # before the counting hooks
    patches = {"coarse": 0, "fine": 0}
    for role, model in (("coarse", coarse), ("fine", fine)):
        model.register_forward_hook(lambda m, i, o, role=role: patches.__setitem__(role, patches[role] + len(i[0])))
    reused = encode_supports((support, points), {"coarse": coarse, "fine": fine}) if task.get("reuse_support") else None

    def call(seed):
        kwargs = dict(schedule=schedule.steps, k=task["k"], ensemble=schedule.ensemble, organ_of_point=organs,
                      rng=np.random.default_rng(seed), scatter_mm=schedule.scatter_mm)
        if task["engine"] == "naive":
            return localize_naive(query, (support, points), coarse, fine, starts=schedule.starts, **kwargs)
        return localize(query, (support, points), coarse, fine, starts=schedule.starts,
                        pool_factor=schedule.pool_factor, batch_size=batch_size, support_embeddings=reused, **kwargs)

    call(100)                                   # warm-up: thread pools, first-call allocations
    rss_before = _rss_mb()
    walls, results = [], []
    for repeat in range(task["repeats"]):
        patches.update(coarse=0, fine=0)
        t0 = time.perf_counter()
        results.append(call(repeat))
        walls.append(time.perf_counter() - t0)
    flops = patches["coarse"] * flops["coarse"] + patches["fine"] * flops["fine"]
    seconds = statistics.median(walls) / n_organs
    return {"per_organ_s": seconds, "repeats_s": [w / n_organs for w in walls],
            "patches_per_organ": {k: v / n_organs for k, v in patches.items()},
            "gflop_per_organ": flops / n_organs / 1e9, "achieved_gflop_per_s": flops / n_organs / 1e9 / seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss_before,
            "points_mm": results[0].points_mm.tolist()}


def _measure_template(task, inputs, n_organs) -> dict:
    from rprloc_core.baselines.template_matching import cut_templates, match
    from rprloc_core.experiments.template_predictions import load_encoder

    settings = inputs["settings"]
    section = settings.template_matching
    encoder = load_encoder(settings) if task["method"].startswith("fm_") else None
    templates = cut_templates(inputs["support"], inputs["support"].mm_to_idx(inputs["points"]), section.patch_size)
    match(inputs["query"], templates[:2], task["method"], stride=section.stride, encoder=encoder)      # warm-up
    walls = []
    for _ in range(task["repeats"]):
        t0 = time.perf_counter()
        match(inputs["query"], templates, task["method"], stride=section.stride, encoder=encoder)
        walls.append(time.perf_counter() - t0)
    return {"per_organ_s": statistics.median(walls) / n_organs, "repeats_s": [w / n_organs for w in walls],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(task: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(task)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": str(task["threads"])})
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed for {task}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the CLI, end to end

def time_cli(inputs: dict, repeats: int) -> dict | None:
    """`rprloc localize` on the benchmark's support (CT + 4 masks) and query, written as NIfTI:
    wall time of the whole command (interpreter start, model loading, reading, resampling,
    localizing, writing), median of `repeats` runs. None on phantoms (no files to read)."""
    if "support_case" not in inputs:
        return None
    import SimpleITK as sitk

    support, query = inputs["support_case"], inputs["query_case"]
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "labels").mkdir()
        sitk.WriteImage(support.to_sitk(support.hu), str(tmp / "support.nii.gz"))
        for organ in ORGANS:
            sitk.WriteImage(support.to_sitk(support.labels[organ].astype(np.uint8)), str(tmp / "labels" / f"{organ}.nii.gz"))
        sitk.WriteImage(query.to_sitk(query.hu), str(tmp / "query.nii.gz"))
        command = [sys.executable, "-m", "rprloc_core.cli", "localize", "--support", str(tmp / "support.nii.gz"),
                   "--support-labels", str(tmp / "labels"), "--query", str(tmp / "query.nii.gz"),
                   "--out", str(tmp / "boxes.json")]
        # The floor no CLI can go below: the interpreter starting and importing torch, timed
        # alternately with the command so that both see the same machine load.
        floor, floor_command = [], [sys.executable, "-c", "import torch"]
        for _ in range(repeats + 1):                      # the first run warms the file cache
            t0 = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            walls.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run(floor_command, check=True, capture_output=True, cwd=ROOT)
            floor.append(time.perf_counter() - t0)
        report = json.loads((tmp / "boxes.json").read_text())
    return {"command": "python -m rprloc_core.cli localize (release weights, default schedule, torch's threads)",
            "organs": len(report["organs"]), "wall_s": statistics.median(walls[1:]), "repeats_s": walls[1:],
            "import_torch_s": statistics.median(floor[1:]), "time_s_per_organ_inside": report["time_s_per_organ"]}


# ------------------------------------------------------------------------------ report

def accuracy_table(profile: str) -> dict:
    path = ROOT / "results" / profile / "tables" / "schedule_validation.csv"
    if not path.is_file():
        return {}
    import pandas as pd

    table = pd.read_csv(path, index_col=0)
    return {label: {"iou_pct": float(row["IoU %"]), "awd_mm": float(row["AWD mm"])} for label, row in table.iterrows()}


def markdown(report: dict) -> str:
    machine = (f"Machine: {report.get('cpu_model', 'not recorded')}, {report['cpu_count']} cores, torch "
               f"{report['torch']}, {report['time']} (timings from different machines do not compare; ratios within "
               "one run do).")
    rows = [machine, "",
            "| schedule | 1 thread s/organ | 2 threads s/organ | x previous (1 / 2 thr) | x naive (1 thr) | "
            "GFLOP/organ | GFLOP/s (1 thr) | peak RSS MB | val. IoU % | val. AWD mm |", "|" + "---|" * 10]
    for label, entry in report["schedules"].items():
        one, two = entry["this"]["1"], entry["this"]["2"]
        acc = entry.get("validation_accuracy", {})
        rows.append(f"| {label}{' (default)' if label == report['default_schedule'] else ''} | {one['per_organ_s']:.3f} | "
                    f"{two['per_organ_s']:.3f} | {entry['speedup_over_previous_1_thread']:.1f} / "
                    f"{entry['previous']['2']['per_organ_s'] / two['per_organ_s']:.1f} | "
                    f"{entry.get('speedup_over_naive_1_thread', float('nan')):.1f} | {one['gflop_per_organ']:.2f} | "
                    f"{one['achieved_gflop_per_s']:.0f} | {one['peak_rss_mb']:.0f} | "
                    f"{acc.get('iou_pct', float('nan')):.1f} | {acc.get('awd_mm', float('nan')):.1f} |")
    tm = report["template_matching"]
    rows.append("")
    rows.append("Template matching, same query and support, same run (s/organ, 1 / 2 threads): " + ", ".join(
        f"{m} {v['1']['per_organ_s']:.2f} / {v['2']['per_organ_s']:.2f}" for m, v in tm.items()))
    uncalibrated = " (its engine, without self-calibration)" if report.get("self_calibration") else ""
    rows.append(f"Default schedule{uncalibrated} vs fastest template matching ({report['fastest_template_matching']}): "
                f"{report['default_vs_fastest_template_matching_2_threads']:.1f}x faster on 2 threads.")
    default = report["schedules"][report["default_schedule"]]
    reused = default.get("this, support embeddings reused")
    if reused:
        rows.append(f"Default schedule with the support's embeddings (and its self-calibration) computed once and "
                    f"reused (a series of queries, the widget): {reused['1']['per_organ_s']:.3f} / {reused['2']['per_organ_s']:.3f} s/organ "
                    "on 1 / 2 threads.")
    calibration = report.get("self_calibration")
    if calibration:
        once, total = calibration["once_per_support"], calibration["default_embedded_with_it_s_per_organ"]
        fastest_tm = report["template_matching"][report["fastest_template_matching"]]["2"]["per_organ_s"]
        acc = calibration.get("validation_accuracy", {})
        rows.append(f"Self-calibration ({calibration['label']}: the support localised in itself "
                    f"{calibration['runs']} times, once per support): {once['1']['per_organ_s']:.3f} / "
                    f"{once['2']['per_organ_s']:.3f} s/organ on 1 / 2 threads. The default schedule with it, support "
                    f"embedded and calibrated in every call (one query): {total['1']:.3f} / {total['2']:.3f} s/organ, "
                    f"{fastest_tm / total['2']:.1f}x faster than the fastest template matching on 2 threads; with "
                    "the support reused, it adds nothing per query."
                    + (f" Validation: {acc['iou_pct']:.1f} % IoU, {acc['awd_mm']:.1f} mm AWD." if acc else ""))
    compared = report.get("default_with_compared_models")
    if compared:
        mine = default["this"]
        fastest_tm = report["template_matching"][report["fastest_template_matching"]]["2"]["per_organ_s"]
        described = ", ".join(f"{role} width {m['base_width']}"
                              + (f" first block {m['first_width']}" if m.get("first_width") else "")
                              + f" sha256 {m['sha256'][:12]}" for role, m in compared["models"].items())
        rows.append(f"Default schedule with other models, same run ({described}): "
                    f"{compared['embedded']['1']['per_organ_s']:.3f} / "
                    f"{compared['embedded']['2']['per_organ_s']:.3f} s/organ on 1 / 2 threads, "
                    f"{compared['reused']['1']['per_organ_s']:.3f} / {compared['reused']['2']['per_organ_s']:.3f} with "
                    "the support reused: "
                    f"{mine['1']['per_organ_s'] / compared['embedded']['1']['per_organ_s']:.1f} / "
                    f"{mine['2']['per_organ_s'] / compared['embedded']['2']['per_organ_s']:.1f}x the speed of the "
                    "profile's models (embedded) and "
                    f"{reused['1']['per_organ_s'] / compared['reused']['1']['per_organ_s']:.1f} / "
                    f"{reused['2']['per_organ_s'] / compared['reused']['2']['per_organ_s']:.1f}x (reused); the fastest "
                    "template matching's time over theirs on 2 threads: "
                    f"{fastest_tm / compared['embedded']['2']['per_organ_s']:.1f}x (embedded), "
                    f"{fastest_tm / compared['reused']['2']['per_organ_s']:.1f}x (reused).")
    rows.append("")
    rows.append("Batch size (patches per network call), ms per patch, best of 5 interleaved rounds "
                f"(the engine's default: {report['default_batch_size']}):")
    rows.append("")
    sizes = list(next(iter(report["batch_sweep_ms_per_patch"]["1"].values())))
    rows.append("| model | threads | " + " | ".join(sizes) + " |")
    rows.append("|---|---|" + "---|" * len(sizes))
    for t, models in report["batch_sweep_ms_per_patch"].items():
        for role, ms in models.items():
            rows.append(f"| {role} | {t} | " + " | ".join(f"{ms[b]:.1f}" for b in sizes) + " |")
    rows.append("")
    if report.get("cli"):
        cli = report["cli"]
        floor = (f" (`python -c \"import torch\"` alone, same run: {cli['import_torch_s']:.2f} s)"
                 if "import_torch_s" in cli else "")
        rows.append(f"`rprloc localize` end to end, {cli['organs']} organs: {cli['wall_s']:.2f} s{floor}.")
    return "\n".join(rows) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default results/<profile>/benchmarks/rprloc_inference.json; a .md beside it)")
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--template-methods", nargs="*", default=["gs_mse", "gs_cosine", "gs_ncc", "fm_mse", "fm_cosine"])
    parser.add_argument("--compare-fine", type=Path, default=None, metavar="CHECKPOINT",
                        help="also time the default schedule with this fine model in place of the profile's (e.g. a "
                             "previous release's Mf, from git: git show <commit>:weights/<release>/fine.pt > f.pt)")
    parser.add_argument("--compare-coarse", type=Path, default=None, metavar="CHECKPOINT",
                        help="likewise with this coarse model (with --compare-fine: both in the same timing)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return {}

    from rprloc_core.paths import results_dir
    from rprloc_core.reporting import cpu_model, portable_paths

    inputs = load_inputs(args.profile)
    calibrated = default_schedule(inputs["settings"])
    default = calibrated.uncalibrated           # the engine's figures: self-calibration is timed on its own
    timed = list(SCHEDULES) + ([default] if default not in SCHEDULES else [])
    base = {"profile": args.profile, "k": args.k, "repeats": args.repeats}

    def task(schedule, engine, threads, **extra):
        return {**base, "kind": "rprloc", "steps": list(schedule.steps), "starts": schedule.starts,
                "ensemble": schedule.ensemble, "pool_factor": schedule.pool_factor,
                "scatter_mm": schedule.scatter_mm, "engine": engine,
                "threads": threads, **extra}

    schedules = {}
    for schedule in timed:
        label = schedule.label
        entry = {"steps": list(schedule.steps), **schedule.options()}
        for engine in ("this", "previous"):
            entry[engine] = {str(t): run_child(task(schedule, engine, t)) for t in (1, 2)}
            print(f"{label:45s} {engine:8s} " + "  ".join(f"{t} thr {entry[engine][str(t)]['per_organ_s']:.3f} s/organ"
                                                      for t in (1, 2)), flush=True)
        entry["naive"] = {"1": run_child(task(schedule, "naive", 1, repeats=1))}
        this, previous, naive = entry["this"]["1"], entry["previous"]["1"], entry["naive"]["1"]
        entry["speedup_over_previous_1_thread"] = previous["per_organ_s"] / this["per_organ_s"]
        entry["speedup_over_naive_1_thread"] = naive["per_organ_s"] / this["per_organ_s"]
        entry["max_point_difference_mm"] = {
            other: float(np.abs(np.asarray(this["points_mm"]) - np.asarray(entry[other]["1"]["points_mm"])).max())
            for other in ("previous", "naive")}
        schedules[label] = entry
    default_reused = {str(t): run_child(task(default, "this", t, reuse_support=True)) for t in (1, 2)}
    schedules[default.label]["this, support embeddings reused"] = default_reused
    calibration = None
    if calibrated.self_calibration > 0:
        runs = inputs["settings"].rprloc.inference.self_calibration_runs
        calibration = {"label": calibrated.label, "weight": calibrated.self_calibration, "runs": runs,
                       "once_per_support": {str(t): run_child(task(default, "this", t, kind="self_calibration",
                                                                   runs=runs)) for t in (1, 2)}}
        calibration["default_embedded_with_it_s_per_organ"] = {
            t: schedules[default.label]["this"][t]["per_organ_s"] + calibration["once_per_support"][t]["per_organ_s"]
            for t in ("1", "2")}
        print("self-calibration once per support: " + "  ".join(
            f"{t} thr {calibration['once_per_support'][t]['per_organ_s']:.3f} s/organ" for t in ("1", "2")), flush=True)
    compared = None
    files = {role: path for role, path in (("coarse", args.compare_coarse), ("fine", args.compare_fine)) if path}
    if files:                                           # the same run, so the ratio is a side-by-side one
        from rprloc_core.experiments.weights import sha256

        others = {role: load_pnet(path) for role, path in files.items()}
        chosen = {f"{role}_file": str(path) for role, path in files.items()}
        compared = {"models": {role: {"sha256": sha256(files[role]), "base_width": m.base_width,
                                      "first_width": m.first_width} for role, m in others.items()},
                    "embedded": {str(t): run_child(task(default, "this", t, **chosen)) for t in (1, 2)},
                    "reused": {str(t): run_child(task(default, "this", t, reuse_support=True, **chosen))
                               for t in (1, 2)}}
        print(f"default schedule, compared {' and '.join(files)}: " + "  ".join(
            f"{how} {t} thr {compared[how][t]['per_organ_s']:.3f}" for how in ("embedded", "reused")
            for t in ("1", "2")), flush=True)
    for label, acc in accuracy_table(args.profile).items():
        if label in schedules:
            schedules[label]["validation_accuracy"] = acc
        if calibration and label == calibration["label"]:
            calibration["validation_accuracy"] = acc
    sweep = {str(t): run_child({**base, "kind": "batch_sweep", "threads": t, "rounds": 5}) for t in (1, 2)}
    for t, models in sweep.items():
        for role, ms in models.items():
            print(f"batch sweep {t} thr {role:6s} ms/patch " + "  ".join(f"{bs}: {v:.1f}" for bs, v in ms.items()),
                  flush=True)
    template = {m: {str(t): run_child({**base, "kind": "template", "method": m, "threads": t}) for t in (1, 2)}
                for m in args.template_methods}
    for m, v in template.items():
        print(f"template matching {m:10s} " + "  ".join(f"{t} thr {v[t]['per_organ_s']:.3f} s/organ" for t in v), flush=True)
    fastest = min(template, key=lambda m: template[m]["2"]["per_organ_s"])
    cli = time_cli(inputs, args.repeats)
    if cli:
        print(f"rprloc localize end to end: {cli['wall_s']:.2f} s for {cli['organs']} organs "
              f"(import torch alone: {cli['import_torch_s']:.2f} s)", flush=True)
    # The points served the equality checks above; the report keeps only figures.
    groups = [entry[engine] for entry in schedules.values() for engine in ("this", "previous", "naive")]
    groups += [default_reused] + ([compared["embedded"], compared["reused"]] if compared else [])
    for group in groups:
        for measured in group.values():
            measured.pop("points_mm", None)
    report = {
        "benchmark": "rprloc_inference", "profile": args.profile, "models": inputs["described"],
        "query": {"shape": list(inputs["query"].shape), "spacing_mm": list(inputs["query"].spacing), "kind": inputs["kind"]},
        "k": args.k, "organs": len(set(inputs["organs"])), "points": len(inputs["points"]),
        "default_schedule": default.label, "schedules": schedules, "template_matching": template,
        "fastest_template_matching": fastest, "batch_sweep_ms_per_patch": sweep,
        "default_batch_size": {role: default_batch_size(model.patch_size, "cpu", model.base_width)
                               for role, model in inputs["models"].items()},
        "default_vs_fastest_template_matching_2_threads":
            template[fastest]["2"]["per_organ_s"] / schedules[default.label]["this"]["2"]["per_organ_s"],
        "default_with_compared_models": compared,
        "self_calibration": calibration,
        "cli": cli, "torch": __import__("torch").__version__, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
        "load_average_1_5_15min": list(os.getloadavg()), "python": platform.python_version(),
        "platform": platform.platform(), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "note": "each figure: median of the repeats in a fresh child process; ratios from this run only",
    }
    out = args.out or results_dir(args.profile) / "benchmarks" / "rprloc_inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(portable_paths(json.dumps(report, indent=2)), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return report


if __name__ == "__main__":
    main()
