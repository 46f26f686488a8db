"""`rprloc detect`: the four head-and-neck organs boxed by the released supervised detector (no
support needed)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rprloc_core.cli.checks import check_writable
from rprloc_core.cli.inputs import preprocess, read_ct, release_folder
from rprloc_core.cli.report import box_report, write_overlay, write_result

DEFAULT_DETECTOR = "weights/openkbp-han-detector"      # relative to the project root


def detect_command(args) -> int:
    """Box the organs of `args.image` with the detector release `args.weights`; write the JSON (and overlay)."""
    from rprloc_core.detector.boxes import boxes_from_maps, face_centres, forward
    from rprloc_core.detector.training import load_detector
    from rprloc_core.experiments.weights import read_manifest, released_file

    out = check_writable(args.out, "result JSON")
    overlay = check_writable(args.overlay, "overlay PNG") if args.overlay else None
    folder = release_folder(args.weights, DEFAULT_DETECTOR)
    net, config = load_detector(released_file(folder, "detector"))      # sha256 checked first
    spacing = read_manifest(folder)["preprocess_spacing_zyx_mm"]
    image = read_ct(args.image, "CT")
    case = preprocess(image, {}, spacing, "image", str(args.image))
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
        report["organs"][organ] = {**box_report(grid, image, np.stack([box.lo, box.hi])),
                                   "peak_probability": float(probs[i].max())}
        points[organ] = case.idx_to_mm(face_centres(box))
    write_result(out, report)
    weak = [o for o, r in report["organs"].items() if r["peak_probability"] < 0.5]
    print(f"wrote {out}: {', '.join(boxes)} ({report['time_s_per_organ']:.2f} s per organ)"
          + (f"; not found with confidence: {', '.join(weak)}" if weak else ""))
    if overlay is not None:
        write_overlay(overlay, case, points, f"{Path(args.image).name}: supervised detector")
        print(f"wrote {overlay}")
    return 0
