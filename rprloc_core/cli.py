"""Command line for your own scans: train Pnets on a folder of CT images (no labels needed),
localize organs in a query image from one labelled support image, or box the four head-and-neck
organs with the released supervised detector (no support).

    rprloc train    --images scans/ --out my_models/ [--validation val_scans/] [--profile demo]
    rprloc localize --models my_models/ --support s.nii.gz --support-labels s_labels/ \\
                    --query q.nii.gz --out result.json [--overlay result.png] [--k 15]
    rprloc localize --support s.nii.gz --support-labels s_labels/ --query scans/*.nii.gz \\
                    --out results/ [--overlay overlays/] [--resume]
    rprloc detect   --image q.nii.gz --out result.json [--overlay result.png]

Images: NIfTI, NRRD, MHA files, or a folder holding one DICOM series. Support labels: a folder of
binary masks named by organ (`Brainstem.nii.gz`, `Parotid_L.nrrd`, ...) or one mask file with
`--organ NAME`. Output positions are physical LPS coordinates in mm (x, y, z), the frame of the
query image, plus continuous voxel indices of the query image as read.

Every argument, input file and output location is checked before any computation; a problem is
one line `error: <file>: <problem>` and exit status 2, and nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rprloc_core.data.images import read_any_image, strip_image_suffix
from rprloc_core.errors import DataError, RprlocError, UnknownOrganError
from rprloc_core.rprloc.config import (
    ENSEMBLES,
    RELEASE_ENSEMBLE,
    RELEASE_SIZE_PRIOR,
    RELEASE_STARTS,
    RELEASE_STEPS,
    STARTS,
    STEPS,
)

DEFAULT_MODELS = "weights/openkbp-han-demo"      # relative to the project root
DEFAULT_DETECTOR = "weights/openkbp-han-detector"
MAX_K = 500          # runs per landmark; the paper uses 15, and the mean settles long before 500
MODEL_ROLES = ("coarse", "fine")


# ------------------------------------------------------------------------------ argument checks

def positive_int(limit: int | None = None):
    """argparse type: an integer >= 1 (and <= limit)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
        if limit is not None and value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {value}")
        return value
    return parse


def unit_interval(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie between 0 and 1, got {value:g}")
    return value


def step_list(text: str) -> tuple:
    """argparse type: comma-separated schedule steps (coarse, fine, average), starting with a move."""
    steps = tuple(step.strip() for step in text.split(",") if step.strip())
    unknown = [step for step in steps if step not in STEPS]
    if not steps or unknown:
        raise argparse.ArgumentTypeError(f"steps are a comma-separated list of {', '.join(STEPS)}, got {text!r}")
    if steps[0] == "average":
        raise argparse.ArgumentTypeError("the first step must move the runs (coarse or fine), not average them")
    return steps


def check_writable(path, what: str) -> Path:
    """Fail now, not after the computation, if `path` cannot be written: its folder must exist and
    take a file, and the path must not be a folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, f"{what} is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DataError(path, f"cannot write the {what}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rprloc-write-test-"):
            pass
    except OSError as error:
        raise DataError(path, f"cannot write the {what} in {folder} ({error.strerror or error})") from None
    return path


def write_atomically(path: Path, write) -> None:
    """`write(temporary path)`, then rename onto `path`: a failure never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ inputs

def read_ct(path, what: str) -> sitk.Image:
    """A CT image whose every voxel is a number (NaN or infinite voxels are an error)."""
    image = read_any_image(path)               # NaN in a NIfTI file is refused there (ITK reads it as 0)
    values = sitk.GetArrayViewFromImage(image)
    bad = int(np.count_nonzero(~np.isfinite(values))) if np.issubdtype(values.dtype, np.floating) else 0
    if bad:
        raise DataError(path, f"the {what} image has {bad} NaN or infinite voxel(s) of {values.size}")
    if values.size and values.min() == values.max():
        raise DataError(path, f"the {what} image has the same value ({values.flat[0]}) everywhere: not a CT")
    return image


def read_support_labels(path, organ: str | None, wanted=None) -> tuple[dict, dict]:
    """({organ: mask image}, {organ: the file it came from}) from a folder of masks named by organ,
    or one mask file with `organ`. Files with names that are no known organ are skipped with a
    note on stderr (as the dataset adapters do) unless nothing else is left."""
    from rprloc_core.data.organs import canonical_organ

    path = Path(path)
    if not path.exists():
        raise DataError(path, "support labels not found")
    if not path.is_dir():
        if not organ:
            raise DataError(path, "a single mask file needs --organ NAME")
        return {canonical_organ(organ): read_any_image(path)}, {canonical_organ(organ): path}
    files = {}
    for file in sorted(path.iterdir()):
        stem = strip_image_suffix(file.name)
        if not stem:
            continue
        try:
            files[canonical_organ(stem, source=str(file))] = file
        except UnknownOrganError as error:
            print(f"note: skipping {error}", file=sys.stderr)
    if not files:
        raise DataError(path, "no mask file named by a known organ (.nii, .nii.gz, .nrrd, .mha) in the labels folder")
    missing = [o for o in (wanted or ()) if o not in files]
    if missing:
        raise DataError(path, f"no mask for {', '.join(missing)} (has: {', '.join(sorted(files))})")
    chosen = {o: f for o, f in files.items() if not wanted or o in wanted}
    return {o: read_any_image(f) for o, f in chosen.items()}, chosen


def load_model(models_dir, role: str, required: bool = True):
    """The `role` ("coarse" or "fine") Pnet of a models folder (a release with its manifest, whose
    files are checked against their sha256, or `rprloc train`'s output: <role>/best.pt), checked to
    be a model of that role (its checkpoint records the mode it was trained in). None if absent and
    not `required`."""
    from rprloc_core.experiments import weights
    from rprloc_core.rprloc.pnet import load_pnet, read_checkpoint

    if weights.is_release(models_dir):
        if role not in weights.read_manifest(models_dir)["models"] and not required:
            return None
        path = weights.released_file(models_dir, role)
    else:
        path = Path(models_dir) / role / "best.pt"
    if not path.is_file():
        if not required:
            return None
        raise DataError(path, f"the {role} model is missing")
    mode = (read_checkpoint(path).get("extra") or {}).get("train_config", {}).get("mode")
    if mode is not None and mode != role:
        raise DataError(path, f"this checkpoint is a {mode} model but sits where the {role} model belongs "
                              "(coarse and fine swapped?)")
    return load_pnet(path)


def _preprocess(image, labels, spacing_zyx, case_id, where):
    from rprloc_core.data.preprocess import PreprocessParams, preprocess_image, preprocessed_from_arrays

    arrays, info = preprocess_image(image, labels, PreprocessParams(spacing_zyx=tuple(spacing_zyx)), where=where)
    return preprocessed_from_arrays(case_id, arrays, info)


def check_fits_models(volume, models, path) -> None:
    """The query must hold a whole patch of every model on that model's grid."""
    from rprloc_core.geometry.patches import require_volume_fits_patch
    from rprloc_core.rprloc.inference import grid_for_model

    for model in models:
        grid = grid_for_model(volume, model.spacing_mm)
        try:
            require_volume_fits_patch(grid.shape, model.patch_size, f"the image on a {model.spacing_mm} mm grid")
        except ValueError as error:
            raise DataError(path, str(error)) from None


# ------------------------------------------------------------------------------ commands

def query_outputs(queries, out, overlay) -> list[tuple[Path, Path, Path | None]]:
    """(query, result JSON, overlay PNG or None) per query. One query: `out` and `overlay` are file
    names. Several: they are folders (made if missing), each query's files named after it
    (`q7.nii.gz` -> `q7.json`, `q7.png`; a DICOM folder by its name). Checked before any work."""
    queries = [Path(q) for q in queries]
    missing = [q for q in queries if not q.exists()]
    if missing:
        raise DataError(missing[0], "query image not found" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                               else ""))
    if len(queries) == 1:
        return [(queries[0], check_writable(out, "result JSON"),
                 check_writable(overlay, "overlay PNG") if overlay else None)]
    names = [q.name if q.is_dir() else (strip_image_suffix(q.name) or q.stem) for q in queries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(queries[names.index(repeated[0])],
                        f"several queries would write the same result {repeated[0]}.json: rename one")
    folders = {}
    for role, folder in (("result JSON", out), ("overlay PNG", overlay)):
        if folder is None:
            continue
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise DataError(folder, f"with several queries, the {role} path must be a folder")
        folder.mkdir(parents=True, exist_ok=True)
        folders[role] = folder
    return [(q, check_writable(folders["result JSON"] / f"{n}.json", "result JSON"),
             check_writable(folders["overlay PNG"] / f"{n}.png", "overlay PNG") if overlay else None)
            for q, n in zip(queries, names)]


def localize_command(args) -> int:
    """Localize the support's organs in each query. The models and the support are read once, and
    the support's embeddings computed once for every query of the series; each query gets the same
    result as a call with that query alone (the same seed). A query that fails (unreadable, too small)
    is reported and the others go on; the exit status is then 2. With --resume, a query whose result
    file holds the same settings is not computed again."""
    import time

    from rprloc_core.data.cases import checked_mask
    from rprloc_core.data.organs import canonical_organ
    from rprloc_core.geometry.landmarks import extreme_points
    from rprloc_core.rprloc.inference import encode_supports, stack_organ_landmarks

    jobs = query_outputs(args.query, args.out, args.overlay)
    wanted = [canonical_organ(o) for o in args.organs] if args.organs else None
    models_dir = Path(args.models)
    if args.models == DEFAULT_MODELS:
        from rprloc_core.paths import PROJECT_ROOT

        models_dir = PROJECT_ROOT / DEFAULT_MODELS
    coarse = load_model(models_dir, "coarse")
    fine = None if args.coarse_only else load_model(models_dir, "fine", required=False)
    if fine is None and not args.coarse_only:
        raise DataError(models_dir / "fine",
                        "the fine model is missing; add --coarse-only to localize with two coarse steps instead")
    # work on the finest model's grid; the engine pools it for a coarser model
    base_spacing = (fine if fine is not None else coarse).spacing_mm
    support_image = read_ct(args.support, "support")
    labels, label_files = read_support_labels(args.support_labels, args.organ, wanted)
    labels = {o: checked_mask(support_image, m, label_files[o]) for o, m in labels.items()}
    support = _preprocess(support_image, labels, base_spacing, "support", str(args.support))
    for organ in support.meta["organs_lost_in_resampling"]:
        raise DataError(label_files[organ], f"the {organ} mask is smaller than one voxel of the working grid "
                                            f"({list(base_spacing)} mm) and vanishes when resampled")
    models = [m for m in (coarse, fine) if m is not None]
    check_fits_models(support.volume, models, args.support)
    organs = sorted(labels)
    points, organ_of_point, _ = stack_organ_landmarks(
        {o: support.idx_to_mm(extreme_points(support.labels[o], name=o)) for o in organs})
    settings = {"support": str(args.support), "support_labels": str(args.support_labels), "support_organs": organs,
                "models": str(args.models),
                "schedule": ["coarse", "coarse"] if args.coarse_only else list(args.steps), "k": args.k,
                "ensemble": args.ensemble, "starts": args.starts, "size_prior": args.size_prior, "seed": args.seed}
    todo = [job for job in jobs if not (args.resume and _done_with(job[1], {"query": str(job[0]), **settings}))]
    if len(todo) < len(jobs):
        print(f"--resume: {len(jobs) - len(todo)} of {len(jobs)} queries already done with these settings")
    if not todo:
        return 0
    start = time.perf_counter()
    embeddings = encode_supports((support.volume, points), {"coarse": coarse, "fine": fine})
    embedding_s = time.perf_counter() - start
    shared = {"support": support, "points": points, "organ_of_point": organ_of_point, "coarse": coarse,
              "fine": fine, "models": models, "embeddings": embeddings, "settings": settings,
              "base_spacing": base_spacing, "embedding_s": embedding_s, "queries": len(todo)}
    failed = []
    for query_path, out, overlay in todo:
        try:
            _localize_one(args, query_path, out, overlay, shared)
        except RprlocError as error:
            if len(jobs) == 1:
                raise
            failed.append(query_path)
            print(f"error: {error}", file=sys.stderr)
    if len(jobs) > 1:
        print(f"{len(todo) - len(failed)} of {len(todo)} queries localized"
              + (f"; failed: {', '.join(str(q) for q in failed)}" if failed else ""))
    return 2 if failed else 0


def _done_with(out: Path, settings: dict) -> bool:
    """Whether a result file exists and was made with these settings (--resume)."""
    try:
        report = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(report.get(key) == value for key, value in settings.items())


def _localize_one(args, query_path: Path, out: Path, overlay: Path | None, shared: dict) -> None:
    from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES, size_prior_box_points
    from rprloc_core.geometry.space import index_to_lps
    from rprloc_core.rprloc.inference import localize

    query_image = read_ct(query_path, "query")
    query = _preprocess(query_image, {}, shared["base_spacing"], "query", str(query_path))
    check_fits_models(query.volume, shared["models"], query_path)
    settings, points, organ_of_point = shared["settings"], shared["points"], shared["organ_of_point"]
    result = localize(query.volume, (shared["support"].volume, points), shared["coarse"], shared["fine"],
                      schedule=tuple(settings["schedule"]), k=args.k, rng=np.random.default_rng(args.seed),
                      organ_of_point=organ_of_point, ensemble=args.ensemble, starts=args.starts,
                      support_embeddings=shared["embeddings"])
    predicted = result.points_by_organ()
    support_points = {o: points[np.asarray(organ_of_point) == o] for o in predicted}
    # The box: around the predicted points, or (size prior > 0) the support's landmarks placed on
    # their mean with an extent blended from the support's box and theirs (notebook 04).
    boxed = {o: size_prior_box_points(p, support_points[o], args.size_prior) for o, p in predicted.items()}
    report = {"query": str(query_path), **settings, "time_s_per_organ": result.wall_s_per_organ,
              "support_embedding_s": shared["embedding_s"],
              "support_embedding_shared_by": shared["queries"],
              "timing": "time_s_per_organ: this query's localization, the support's embeddings excluded "
                        "(computed once, support_embedding_s, for every query of the command)",
              "coordinates": "LPS mm (x, y, z)",
              "index_convention": "box_index_zyx: continuous (z, y, x) voxel indices of the query image as read "
                                  "(voxel centres are whole numbers)",
              "box": "size_prior 0: the box of the predicted extreme points (the paper's); w > 0: centred on their "
                     "mean, extent w x the support's box + (1 - w) x theirs",
              "organs": {}}
    grid = query.to_sitk(query.hu)
    for organ, pts_mm in predicted.items():
        box = _box_report(grid, query_image, query.mm_to_idx(boxed[organ]))
        pts_lps = index_to_lps(grid, query.mm_to_idx(pts_mm))
        report["organs"][organ] = {**box, "extreme_points_lps_mm": dict(zip(EXTREME_POINT_NAMES, pts_lps.tolist()))}
    write_atomically(out, lambda tmp: tmp.write_text(json.dumps(report, indent=1), encoding="utf-8"))
    print(f"wrote {out}: {', '.join(report['organs'])} ({result.wall_s_per_organ:.2f} s per organ)")
    if overlay is not None:
        figure = _overlay(query, boxed, Path(query_path).name)
        write_atomically(overlay, lambda tmp: figure.savefig(tmp, dpi=110))
        print(f"wrote {overlay}")


def detect_command(args) -> int:
    import time

    from rprloc_core.detector.boxes import boxes_from_maps, face_centres, forward
    from rprloc_core.detector.training import load_detector
    from rprloc_core.experiments.weights import read_manifest, released_file
    from rprloc_core.paths import PROJECT_ROOT

    out = check_writable(args.out, "result JSON")
    overlay = check_writable(args.overlay, "overlay PNG") if args.overlay else None
    folder = PROJECT_ROOT / DEFAULT_DETECTOR if args.weights == DEFAULT_DETECTOR else Path(args.weights)
    net, config = load_detector(released_file(folder, "detector"))      # sha256 checked first
    spacing = read_manifest(folder)["preprocess_spacing_zyx_mm"]
    image = read_ct(args.image, "CT")
    case = _preprocess(image, {}, spacing, "image", str(args.image))
    start = time.perf_counter()
    probs, distances = forward(net, case.volume.downsample(config["downsample"]).array)
    boxes = boxes_from_maps(probs, distances, case, config["organs"], config["downsample"], args.rule)
    wall = time.perf_counter() - start
    report = {"image": str(args.image), "detector": str(args.weights), "rule": args.rule,
              "time_s_per_organ": wall / len(boxes), "coordinates": "LPS mm (x, y, z)",
              "index_convention": "box_index_zyx: continuous (z, y, x) voxel indices of the image as read "
                                  "(voxel centres are whole numbers; the box spans the outermost voxel centres)",
              "confidence": "peak_probability: the organ map's highest value; under 0.5 the organ was not "
                            "found with confidence (its box comes from the voxels above half that peak)",
              "organs": {}}
    points = {}
    grid = case.to_sitk(case.hu)
    for i, (organ, box) in enumerate(boxes.items()):
        report["organs"][organ] = {**_box_report(grid, image, np.stack([box.lo, box.hi])),
                                   "peak_probability": float(probs[i].max())}
        points[organ] = case.idx_to_mm(face_centres(box))
    write_atomically(out, lambda tmp: tmp.write_text(json.dumps(report, indent=1), encoding="utf-8"))
    weak = [o for o, r in report["organs"].items() if r["peak_probability"] < 0.5]
    print(f"wrote {out}: {', '.join(boxes)} ({report['time_s_per_organ']:.2f} s per organ)"
          + (f"; not found with confidence: {', '.join(weak)}" if weak else ""))
    if overlay is not None:
        figure = _overlay(case, points, f"{Path(args.image).name}: supervised detector")
        write_atomically(overlay, lambda tmp: figure.savefig(tmp, dpi=110))
        print(f"wrote {overlay}")
    return 0


def _box_report(grid: sitk.Image, image: sitk.Image, points_idx) -> dict:
    """The box around points (voxel indices of `grid`, the preprocessed case as an image) in
    physical LPS mm and in continuous voxel indices of the image as read."""
    from rprloc_core.geometry.space import index_to_lps, lps_to_index

    points_lps = index_to_lps(grid, points_idx)
    points_original = lps_to_index(image, points_lps)
    return {"box_lps_mm": {"min": points_lps.min(axis=0).tolist(), "max": points_lps.max(axis=0).tolist()},
            "box_index_zyx": {"min": points_original.min(axis=0).tolist(),
                              "max": points_original.max(axis=0).tolist()}}


def _overlay(query, points_by_organ: dict, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rprloc_core.geometry.boxes import box_from_points
    from rprloc_core.plotting import ORGAN_COLOURS, boxes_in_views

    boxes = {o: (box_from_points(query.mm_to_idx(p)), ORGAN_COLOURS.get(o, "yellow"), "--")
             for o, p in points_by_organ.items()}
    centre = np.mean([np.mean(b[0], axis=0) for b in boxes.values()], axis=0)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4))
    boxes_in_views(axes, query, boxes, centre, title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _images_in(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "images folder not found")
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
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(out, "--out must be a folder for the models, not a file")
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out / "best.pt", "models")

    def volumes(paths, what):
        return [_preprocess(read_ct(p, what), {}, spacing, p.name, str(p)).volume
                for p in tqdm(paths, desc=f"preprocessing {what} images")]

    train, val = volumes(images, "training"), volumes(val_images, "validation")
    for name in MODEL_ROLES:
        config = getattr(settings.rprloc, name)
        if args.steps:
            config = dataclasses.replace(config, steps=args.steps)
        summary = train_pnet(config, train, val, out / name)
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
    t.add_argument("--steps", type=positive_int(), default=None, help="override the profile's step count (>= 1)")
    q = sub.add_parser("localize", help="localize organs in a query image from one labelled support")
    q.add_argument("--models", default=DEFAULT_MODELS,
                   help="a release folder (default: the released head-and-neck models, "
                        f"{DEFAULT_MODELS}) or `rprloc train`'s output (coarse/best.pt, fine/best.pt)")
    q.add_argument("--support", required=True)
    q.add_argument("--support-labels", required=True)
    q.add_argument("--organ", default=None, help="organ name when --support-labels is one mask file")
    q.add_argument("--organs", nargs="*", default=None, help="only these organs")
    q.add_argument("--query", required=True, nargs="+",
                   help="one or more query images (several: the support is embedded once for all)")
    q.add_argument("--out", required=True, help="result JSON (several queries: a folder, one <query>.json each)")
    q.add_argument("--overlay", default=None,
                   help="PNG with the predicted boxes (several queries: a folder, one <query>.png each)")
    q.add_argument("--resume", action="store_true",
                   help="skip a query whose result file exists with the same settings (an interrupted series)")
    q.add_argument("--k", type=positive_int(MAX_K), default=15,
                   help=f"runs per landmark, 1 to {MAX_K} (default 15)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--coarse-only", action="store_true", help="two coarse steps, no fine model (ignores --steps)")
    q.add_argument("--steps", type=step_list, default=RELEASE_STEPS,
                   help=f"the schedule, comma-separated (default {','.join(RELEASE_STEPS)}: chosen on validation "
                        "patients, notebook 03; coarse,fine is the paper's Mc + Mf). average replaces each "
                        "landmark's K runs by their mean, so later steps cost one patch per landmark")
    q.add_argument("--ensemble", choices=ENSEMBLES, default=RELEASE_ENSEMBLE,
                   help=f"how the K runs are combined (default {RELEASE_ENSEMBLE}, the paper's; mean_embedding "
                        "averages the K query embeddings at every step, as the authors' code)")
    q.add_argument("--size-prior", type=unit_interval, default=RELEASE_SIZE_PRIOR,
                   help=f"weight of the support's box size in the box, 0 to 1 (default {RELEASE_SIZE_PRIOR:g}, "
                        "chosen on validation patients, notebook 04; 0: the box of the predicted points, the paper's)")
    q.add_argument("--starts", choices=STARTS, default=RELEASE_STARTS,
                   help=f"the runs' starts (default {RELEASE_STARTS}: the same K for every landmark, chosen on "
                        "validation patients), independent (K per landmark, the paper) or pooled (K distinct "
                        "per landmark from one pool of 4K)")
    d = sub.add_parser("detect", help="box the head-and-neck organs with the released supervised detector")
    d.add_argument("--image", required=True, help="CT image (NIfTI, NRRD, MHA, or a DICOM series folder)")
    d.add_argument("--out", required=True, help="result JSON")
    d.add_argument("--overlay", default=None, help="PNG with the predicted boxes")
    d.add_argument("--weights", default=DEFAULT_DETECTOR, help=f"detector release folder (default {DEFAULT_DETECTOR})")
    d.add_argument("--rule", choices=("mask", "votes"), default="mask",
                   help="box of the segmented organ (default: chosen on validation patients, notebook 08) or "
                        "the median of its voxels' face votes")
    args = parser.parse_args(argv)
    commands = {"train": train_command, "localize": localize_command, "detect": detect_command}
    try:
        return commands[args.command](args)
    except RprlocError as error:    # a bad file, a bad profile, a resume with other settings, ...
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
