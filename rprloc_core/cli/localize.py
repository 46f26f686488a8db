"""`rprloc localize`: the support's organs in one query or a series of queries, the support read
and embedded once for all of them."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rprloc_core.cli.checks import check_writable
from rprloc_core.cli.inputs import (
    check_fits_models,
    load_model,
    preprocess,
    read_ct,
    read_support_labels,
    release_folder,
)
from rprloc_core.cli.report import box_report, write_overlay, write_result
from rprloc_core.data.images import strip_image_suffix
from rprloc_core.errors import DataError, RprlocError

DEFAULT_MODELS = "weights/openkbp-han-demo"      # relative to the project root


@dataclass(frozen=True)
class PreparedSupport:
    """What every query of one command shares: the support on the working grid (the finest model's),
    its landmarks and their embeddings, the models, and the settings each result file records."""
    case: object
    points: np.ndarray
    organ_of_point: list
    coarse: object
    fine: object                 # None with --coarse-only
    models: list                 # those present, coarse first
    base_spacing: np.ndarray
    embeddings: dict
    settings: dict
    embedding_s: float
    queries: int
    bias_mm: np.ndarray | None    # the support's own bias (self-calibration), None when not asked for
    calibration_s: float


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
    from rprloc_core.data.cases import checked_mask
    from rprloc_core.data.organs import canonical_organ
    from rprloc_core.geometry.landmarks import extreme_points
    from rprloc_core.rprloc.config import RELEASE_SELF_CALIBRATION_RUNS
    from rprloc_core.rprloc.inference import encode_supports, stack_organ_landmarks
    from rprloc_core.rprloc.self_calibration import support_bias_mm

    jobs = query_outputs(args.query, args.out, args.overlay)
    wanted = [canonical_organ(o) for o in args.organs] if args.organs else None
    models_dir = release_folder(args.models, DEFAULT_MODELS)
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
    support = preprocess(support_image, labels, base_spacing, "support", str(args.support))
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
                "ensemble": args.ensemble, "starts": args.starts, "scatter_mm": args.scatter_mm,
                "size_prior": args.size_prior,
                "self_calibration": args.self_calibration, "self_calibration_runs": RELEASE_SELF_CALIBRATION_RUNS,
                "seed": args.seed}
    todo = [job for job in jobs if not (args.resume and _done_with(job[1], {"query": str(job[0]), **settings}))]
    if len(todo) < len(jobs):
        print(f"--resume: {len(jobs) - len(todo)} of {len(jobs)} queries already done with these settings")
    if not todo:
        return 0
    start = time.perf_counter()
    embeddings = encode_supports((support.volume, points), {"coarse": coarse, "fine": fine})
    embedding_s = time.perf_counter() - start
    bias = None
    if args.self_calibration > 0:       # once per series, like the embeddings
        bias = support_bias_mm(support.volume, points, coarse, fine, schedule=tuple(settings["schedule"]),
                               k=args.k, repeats=RELEASE_SELF_CALIBRATION_RUNS, seed=args.seed,
                               organ_of_point=organ_of_point, support_embeddings=embeddings,
                               ensemble=args.ensemble, starts=args.starts, scatter_mm=args.scatter_mm)
    calibration_s = time.perf_counter() - start - embedding_s
    prepared = PreparedSupport(support, points, organ_of_point, coarse, fine, models, base_spacing, embeddings,
                               settings, embedding_s, len(todo), bias, calibration_s)
    failed = []
    for query_path, out, overlay in todo:
        try:
            localize_one(query_path, out, overlay, prepared)
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


def localize_one(query_path: Path, out: Path, overlay: Path | None, prepared: PreparedSupport) -> None:
    """One query of the series, with the settings `prepared` holds; its result (and overlay) written atomically."""
    from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES, size_prior_box_points
    from rprloc_core.geometry.space import index_to_lps
    from rprloc_core.rprloc.answer_checks import organ_checks
    from rprloc_core.rprloc.config import RELEASE_REMAINING_MOVE_WARN_MM
    from rprloc_core.rprloc.inference import localize, remaining_moves_mm
    from rprloc_core.rprloc.self_calibration import calibrate

    query_image = read_ct(query_path, "query")
    query = preprocess(query_image, {}, prepared.base_spacing, "query", str(query_path))
    check_fits_models(query.volume, prepared.models, query_path)
    settings, points, organ_of_point = prepared.settings, prepared.points, prepared.organ_of_point
    result = localize(query.volume, (prepared.case.volume, points), prepared.coarse, prepared.fine,
                      schedule=tuple(settings["schedule"]), k=settings["k"], rng=np.random.default_rng(settings["seed"]),
                      organ_of_point=organ_of_point, ensemble=settings["ensemble"], starts=settings["starts"],
                      scatter_mm=settings["scatter_mm"], support_embeddings=prepared.embeddings)
    # No labels in a query: say when an answer does not hold up (the organ cut by the scan or missing).
    # The checks look at the networks' own points, where their threshold was chosen (notebook 03).
    moves = None if prepared.fine is None else remaining_moves_mm(query.volume, result.points_mm, prepared.fine,
                                                                  prepared.embeddings["fine"])
    checks = organ_checks(query.volume, result.points_mm, organ_of_point, moves)
    if prepared.bias_mm is not None:
        result.points_mm = calibrate(result.points_mm, prepared.bias_mm, settings["self_calibration"])
    predicted = result.points_by_organ()
    support_points = {o: points[np.asarray(organ_of_point) == o] for o in predicted}
    # The box: around the predicted points, or (size prior > 0) the support's landmarks placed on
    # their mean with an extent blended from the support's box and theirs (notebook 04).
    boxed = {o: size_prior_box_points(p, support_points[o], settings["size_prior"]) for o, p in predicted.items()}
    report = {"query": str(query_path), **settings, "time_s_per_organ": result.wall_s_per_organ,
              "support_embedding_s": prepared.embedding_s,
              "support_self_calibration_s": prepared.calibration_s,
              "support_embedding_shared_by": prepared.queries,
              "timing": "time_s_per_organ: this query's localization, the support's embeddings and self-calibration "
                        "excluded (computed once, support_embedding_s and support_self_calibration_s, for every "
                        "query of the command)",
              "coordinates": "LPS mm (x, y, z)",
              "index_convention": "box_index_zyx: continuous (z, y, x) voxel indices of the query image as read "
                                  "(voxel centres are whole numbers)",
              "box": "size_prior 0: the box of the predicted extreme points (the paper's); w > 0: centred on their "
                     "mean, extent w x the support's box + (1 - w) x theirs",
              "organs": {}}
    grid = query.to_sitk(query.hu)
    for organ, pts_mm in predicted.items():
        box = box_report(grid, query_image, query.mm_to_idx(boxed[organ]))
        pts_lps = index_to_lps(grid, query.mm_to_idx(pts_mm))
        report["organs"][organ] = {**box, "extreme_points_lps_mm": dict(zip(EXTREME_POINT_NAMES, pts_lps.tolist())),
                                   "checks": checks[organ]}
        for warning in checks[organ]["warnings"]:
            print(f"warning: {Path(query_path).name}: {organ}: {warning}", file=sys.stderr)
    write_result(out, report)
    print(f"wrote {out}: {', '.join(report['organs'])} ({result.wall_s_per_organ:.2f} s per organ)")
    if overlay is not None:
        write_overlay(overlay, query, boxed, Path(query_path).name)
        print(f"wrote {overlay}")
