"""Command line for your own scans: train Pnets on a folder of CT images (no labels needed) and
localize organs in a query image from one labelled support image.

    rprloc train    --images scans/ --out my_models/ [--validation val_scans/] [--profile demo]
    rprloc localize --models my_models/ --support s.nii.gz --support-labels s_labels/ \\
                    --query q.nii.gz --out result.json [--overlay result.png] [--k 15]

Images: NIfTI, NRRD, MHA files, or a folder holding one DICOM series. Support labels: a folder of
binary masks named by organ (`Brainstem.nii.gz`, `Parotid_L.nrrd`, ...) or one mask file with
`--organ NAME`. Output positions are physical LPS coordinates in mm (x, y, z), the frame of the
query image, plus voxel indices of the query image as read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rprloc_core.data.images import read_any_image, strip_image_suffix
from rprloc_core.errors import DataError


def read_support_labels(path, organ: str | None) -> dict:
    from rprloc_core.data.organs import canonical_organ

    path = Path(path)
    if path.is_dir():
        labels = {}
        for file in sorted(path.iterdir()):
            stem = strip_image_suffix(file.name)
            if stem:
                labels[canonical_organ(stem, source=str(file))] = read_any_image(file)
        if not labels:
            raise DataError(path, "no mask files (.nii, .nii.gz, .nrrd, .mha) in the labels folder")
        return labels
    if not organ:
        raise DataError(path, "a single mask file needs --organ NAME")
    return {canonical_organ(organ): read_any_image(path)}


def _preprocess(image, labels, spacing_zyx, case_id, where):
    from rprloc_core.data.preprocess import PreprocessParams, preprocess_image, preprocessed_from_arrays

    arrays, info = preprocess_image(image, labels, PreprocessParams(spacing_zyx=tuple(spacing_zyx)), where=where)
    return preprocessed_from_arrays(case_id, arrays, info)


def localize_command(args) -> int:
    from rprloc_core.evaluation.protocol import organ_landmarks_mm
    from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES
    from rprloc_core.geometry.space import lps_to_index
    from rprloc_core.rprloc.inference import localize, stack_organ_landmarks
    from rprloc_core.rprloc.pnet import load_pnet

    coarse = load_pnet(Path(args.models) / "coarse" / "best.pt")
    fine_path = Path(args.models) / "fine" / "best.pt"
    fine = load_pnet(fine_path) if fine_path.is_file() and not args.coarse_only else None
    # work on the finest model's grid; the engine pools it for a coarser model
    base_spacing = (fine if fine is not None else coarse).spacing_mm
    support_image = read_any_image(args.support)
    labels = read_support_labels(args.support_labels, args.organ)
    wanted = args.organs or sorted(labels)
    missing = [o for o in wanted if o not in labels]
    if missing:
        raise DataError(args.support_labels, f"no mask for {', '.join(missing)} (has: {', '.join(sorted(labels))})")
    support = _preprocess(support_image, {o: labels[o] for o in wanted}, base_spacing, "support", str(args.support))
    query_image = read_any_image(args.query)
    query = _preprocess(query_image, {}, base_spacing, "query", str(args.query))
    points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, wanted, "extreme"))
    schedule = ("coarse", "fine") if fine is not None else ("coarse", "coarse")
    result = localize(query.volume, (support.volume, points), coarse, fine, schedule=schedule, k=args.k,
                      rng=np.random.default_rng(args.seed), organ_of_point=organ_of_point)
    to_lps = query.to_sitk(query.hu)
    out = {"query": str(args.query), "support": str(args.support), "schedule": list(schedule), "k": args.k,
           "seed": args.seed, "time_s_per_organ": result.wall_s_per_organ, "coordinates": "LPS mm (x, y, z)",
           "organs": {}}
    from rprloc_core.geometry.space import index_to_lps

    for organ, pts_mm in result.points_by_organ().items():
        pts_lps = index_to_lps(to_lps, query.mm_to_idx(pts_mm))
        idx_original = lps_to_index(query_image, pts_lps)
        out["organs"][organ] = {
            "box_lps_mm": {"min": pts_lps.min(axis=0).tolist(), "max": pts_lps.max(axis=0).tolist()},
            "box_index_zyx": {"min": idx_original.min(axis=0).tolist(), "max": idx_original.max(axis=0).tolist()},
            "extreme_points_lps_mm": dict(zip(EXTREME_POINT_NAMES, pts_lps.tolist())),
        }
    Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    print(f"wrote {args.out}: {', '.join(out['organs'])} ({result.wall_s_per_organ:.2f} s per organ)")
    if args.overlay:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from rprloc_core.geometry.boxes import box_from_points
        from rprloc_core.plotting import ORGAN_COLOURS, boxes_in_views

        boxes = {o: (box_from_points(query.mm_to_idx(p)), ORGAN_COLOURS.get(o, "yellow"), "--")
                 for o, p in result.points_by_organ().items()}
        centre = np.mean([np.mean(b[0], axis=0) for b in boxes.values()], axis=0)
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
        boxes_in_views(axes, query, boxes, centre, title=Path(args.query).name)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.overlay, dpi=110)
        print(f"wrote {args.overlay}")
    return 0


def _images_in(folder) -> list[Path]:
    folder = Path(folder)
    items = [p for p in sorted(folder.iterdir()) if strip_image_suffix(p.name) or p.is_dir()]
    if not items:
        raise DataError(folder, "no images (.nii, .nii.gz, .nrrd, .mha or DICOM series folders)")
    return items


def train_command(args) -> int:
    import dataclasses

    from tqdm.auto import tqdm

    from rprloc_core.rprloc.training import train_pnet
    from rprloc_core.settings import load_settings

    settings = load_settings(args.profile)
    spacing = settings.preprocess.spacing_zyx
    images = _images_in(args.images)
    val_images = _images_in(args.validation) if args.validation else []
    if not val_images:  # hold out a few images for the fixed validation pairs
        n_val = max(1, len(images) // 7)
        images, val_images = images[:-n_val], images[-n_val:]
    if not images:
        raise DataError(args.images, "need at least two images (one for training, one for validation)")

    def volumes(paths, what):
        out = []
        for p in tqdm(paths, desc=f"preprocessing {what} images"):
            out.append(_preprocess(read_any_image(p), {}, spacing, p.name, str(p)).volume)
        return out

    train, val = volumes(images, "training"), volumes(val_images, "validation")
    for name in ("coarse", "fine"):
        config = getattr(settings.rprloc, name)
        if args.steps:
            config = dataclasses.replace(config, steps=args.steps)
        summary = train_pnet(config, train, val, Path(args.out) / name)
        print(f"{name}: {summary['steps']} steps, best validation MSE {summary['best_val_loss_mm2']:.0f} mm^2")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="rprloc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train Mc and Mf on a folder of CT images (no labels)")
    t.add_argument("--images", required=True)
    t.add_argument("--validation", default=None)
    t.add_argument("--out", required=True)
    t.add_argument("--profile", default="demo", help="training settings and working spacing (default demo)")
    t.add_argument("--steps", type=int, default=None, help="override the profile's step count")
    q = sub.add_parser("localize", help="localize organs in a query image from one labelled support")
    q.add_argument("--models", required=True, help="folder with coarse/best.pt (and fine/best.pt)")
    q.add_argument("--support", required=True)
    q.add_argument("--support-labels", required=True)
    q.add_argument("--organ", default=None, help="organ name when --support-labels is one mask file")
    q.add_argument("--organs", nargs="*", default=None, help="only these organs")
    q.add_argument("--query", required=True)
    q.add_argument("--out", required=True, help="result JSON")
    q.add_argument("--overlay", default=None, help="PNG with the predicted boxes")
    q.add_argument("--k", type=int, default=15)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--coarse-only", action="store_true")
    args = parser.parse_args(argv)
    try:
        return train_command(args) if args.command == "train" else localize_command(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
