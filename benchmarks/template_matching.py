"""Time the template-matching baselines (paper Table 3): fast (FFT / dense encoder) against naive.

One query volume, one organ = 6 templates (the extreme points of an organ in a support volume).
Each method is timed per organ, everything included (cutting the templates, matching, picking the
best centres). The naive sliding window is far too slow for the whole query on this CPU, so by
default it runs on a centred crop of the query, the fast version is timed on the same crop, and the
ratio naive / fast is the one measured there; the naive time of the full query is also extrapolated
by the number of windows (say so wherever it is quoted). `--naive-full` times it on the full query.

Without data arguments both volumes are synthetic (smoothed noise inside an ellipsoid "body", air
outside) at the demo size; `--query-npz/--support-npz/--organ` use preprocessed cache files instead.
The FM encoder is untrained unless `--encoder` names a checkpoint: its timing does not depend on the
weights.

    .venv/bin/python benchmarks/template_matching.py [--out results/smoke/benchmarks/template_matching.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rprloc_core.baselines import feature_matching as ae  # noqa: E402
from rprloc_core.baselines import template_matching as tm  # noqa: E402
from rprloc_core.baselines import windows  # noqa: E402
from rprloc_core.geometry.landmarks import extreme_points  # noqa: E402
from rprloc_core.geometry.volume import Volume  # noqa: E402
from rprloc_core.reporting import cpu_model, portable_paths  # noqa: E402


def synthetic_volume(shape, spacing, rng: np.random.Generator) -> Volume:
    """Smooth CT-like texture in [0, 1] inside an ellipsoid, exactly 0 (air) outside."""
    noise = torch.from_numpy(rng.standard_normal(shape))
    freqs = torch.meshgrid(*[torch.fft.fftfreq(n, dtype=torch.float64) for n in shape], indexing="ij")
    sigma_vox = 3.0
    kernel = torch.exp(-2 * (np.pi * sigma_vox) ** 2 * sum(f ** 2 for f in freqs))   # Gaussian blur
    smooth = torch.fft.ifftn(torch.fft.fftn(noise) * kernel).real.numpy()
    smooth = (smooth - smooth.mean()) / smooth.std()
    grid = np.indices(shape, dtype=float)
    centre, radii = (np.asarray(shape) - 1) / 2, np.asarray(shape) * 0.47
    body = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0
    array = np.where(body, np.clip(0.5 + 0.15 * smooth, 0.01, 1.0), 0.0)
    return Volume(array.astype(np.float32), spacing)


def synthetic_organ_points(volume: Volume) -> np.ndarray:
    """Extreme points of an ellipsoidal 'organ' near the middle of the volume."""
    grid = np.indices(volume.shape, dtype=float)
    centre = np.asarray(volume.shape) * np.array([0.45, 0.55, 0.5])
    radii_mm = np.array([20.0, 15.0, 18.0])
    mask = sum(((g - c) * s / r) ** 2 for g, c, s, r in zip(grid, centre, volume.spacing, radii_mm)) <= 1.0
    return extreme_points(mask)


def load_case(path, organ: str | None):
    from rprloc_core.data.preprocess import load_preprocessed
    case = load_preprocessed(path)
    points = None
    if organ is not None:
        if organ not in case.labels:
            raise SystemExit(f"{path}: no {organ} mask (has {sorted(case.labels)})")
        points = extreme_points(case.labels[organ], name=organ)
    return case.volume, points


def time_once(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def time_methods(query: Volume, support: Volume, points, size, methods, encoder, device, naive: bool):
    """Seconds per organ and results, for each method; the fast path or the naive loop."""
    matcher = tm.match_naive if naive else tm.match
    seconds, results = {}, {}
    for method in methods:
        def run():
            templates = tm.cut_templates(support, points, size)
            return matcher(query, templates, method, stride=2, encoder=encoder, device=device)
        seconds[method], results[method] = time_once(run)
        print(f"  {'naive' if naive else 'fast ':5s} {method:9s} {seconds[method]:9.2f} s", flush=True)
    return seconds, results


def centre_crop(volume: Volume, shape) -> Volume:
    shape = np.minimum(np.asarray(shape), volume.shape)
    lo = (np.asarray(volume.shape) - shape) // 2
    array = volume.array[lo[0]:lo[0] + shape[0], lo[1]:lo[1] + shape[1], lo[2]:lo[2] + shape[2]]
    return Volume(array, volume.spacing, volume.idx_to_mm(lo))


def n_windows(shape, stride=2) -> int:
    return int(np.prod([len(range(0, n, stride)) for n in shape]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/smoke/benchmarks/template_matching.json")
    parser.add_argument("--shape", type=int, nargs=3, default=[107, 125, 150], help="synthetic query (z y x)")
    parser.add_argument("--spacing", type=float, nargs=3, default=[3.0, 2.0, 2.0])
    parser.add_argument("--patch", type=int, nargs=3, default=[16, 32, 32])
    parser.add_argument("--query-npz", help="preprocessed cache file of the query (rprloc_core.preprocess)")
    parser.add_argument("--support-npz", help="preprocessed cache file of the support")
    parser.add_argument("--organ", default="Brainstem", help="organ whose extreme points are the templates (real data)")
    parser.add_argument("--encoder", help="auto-encoder checkpoint for FM (default: untrained, same cost)")
    parser.add_argument("--methods", nargs="+", default=list(tm.METHODS), choices=tm.METHODS)
    parser.add_argument("--naive-crop", type=int, nargs=3, default=[40, 48, 56],
                        help="centred crop of the query on which naive and fast are both timed")
    parser.add_argument("--naive-full", action="store_true", help="also time the naive loop on the full query (slow)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    size = tuple(args.patch)
    if args.query_npz or args.support_npz:
        if not (args.query_npz and args.support_npz):
            raise SystemExit("--query-npz and --support-npz go together")
        query, _ = load_case(args.query_npz, None)
        support, points = load_case(args.support_npz, args.organ)
        data = {"query": str(args.query_npz), "support": str(args.support_npz), "organ": args.organ}
    else:
        query = synthetic_volume(tuple(args.shape), args.spacing, rng)
        support = synthetic_volume(tuple(args.shape), args.spacing, rng)
        points = synthetic_organ_points(support)
        data = {"synthetic": True, "shape": list(args.shape), "spacing_mm": list(args.spacing)}
    if args.encoder:
        encoder = ae.load_autoencoder(args.encoder)
    else:
        encoder = ae.build_autoencoder(ae.AEConfig(patch_size=size), seed=args.seed)
    device = windows.default_device(args.device)

    print(f"query {query.shape} voxels at {query.spacing.tolist()} mm, {len(points)} templates of {size}, "
          f"stride 2, device {device}, torch threads {torch.get_num_threads()}")
    tm.match(centre_crop(query, [s + 4 for s in size]), tm.cut_templates(support, points[:1], size), "gs_ncc",
             device=device)                                          # warm-up (FFT plans, allocator)

    print(f"full query {query.shape} ({n_windows(query.shape)} windows at stride 2):")
    full_fast, full_results = time_methods(query, support, points, size, args.methods, encoder, device, naive=False)

    crop = centre_crop(query, args.naive_crop)
    print(f"cropped query {crop.shape} ({n_windows(crop.shape)} windows), naive and fast on the same crop:")
    crop_fast, fast_results = time_methods(crop, support, points, size, args.methods, encoder, device, naive=False)
    crop_naive, naive_results = time_methods(crop, support, points, size, args.methods, encoder, device, naive=True)
    agree = {m: bool(np.array_equal(fast_results[m].centre_idx, naive_results[m].centre_idx,
                                    equal_nan=True)) for m in args.methods}
    ratio = {m: crop_naive[m] / crop_fast[m] for m in args.methods}
    scale = n_windows(query.shape) / n_windows(crop.shape)
    naive_full_estimate = {m: crop_naive[m] * scale for m in args.methods}

    full_naive = None
    if args.naive_full:
        print("naive on the full query:")
        full_naive, _ = time_methods(query, support, points, size, args.methods, encoder, device, naive=True)

    print("\nseconds per organ (6 templates), stride 2")
    print(f"{'method':10s} {'fast full':>10s} {'fast crop':>10s} {'naive crop':>11s} {'naive/fast':>11s} "
          f"{'naive full (extrapolated)':>26s} {'agree':>6s}")
    for m in args.methods:
        print(f"{m:10s} {full_fast[m]:10.2f} {crop_fast[m]:10.3f} {crop_naive[m]:11.2f} {ratio[m]:11.1f} "
              f"{naive_full_estimate[m]:26.0f} {str(agree[m]):>6s}")
    print(f"(ratio measured on the {crop.shape} crop in this run; the full-query naive time is an "
          f"extrapolation by window count x{scale:.1f}{'' if full_naive is None else ', measured below'})")
    if full_naive is not None:
        for m in args.methods:
            print(f"  naive full {m}: {full_naive[m]:.1f} s, ratio {full_naive[m] / full_fast[m]:.1f}")

    report = {
        "data": data, "query_shape": list(query.shape), "crop_shape": list(crop.shape), "patch": list(size),
        "templates_per_organ": int(len(points)), "stride": 2, "device": str(device),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "encoder": args.encoder or "untrained (timing only)",
        "seconds_per_organ": {
            "fast_full": full_fast, "fast_crop": crop_fast, "naive_crop": crop_naive,
            "naive_full_extrapolated": naive_full_estimate, "naive_full_measured": full_naive},
        "ratio_naive_over_fast_on_crop": ratio,
        "fast_and_naive_agree_on_crop": agree,
        "full_best_centres_idx": {m: full_results[m].centre_idx.tolist() for m in args.methods},
        "note": ("naive and fast timed in the same run on the same cropped query; the naive full-query "
                 "time is extrapolated by window count unless naive_full_measured is set"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(portable_paths(json.dumps(report, indent=1, default=float)), encoding="utf-8")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
