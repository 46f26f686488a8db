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
import sys

from rprloc_core.cli.checks import positive_float, positive_int, step_list, unit_interval
from rprloc_core.cli.detect import DEFAULT_DETECTOR, detect_command
from rprloc_core.cli.localize import DEFAULT_MODELS, localize_command
from rprloc_core.cli.train import train_command
from rprloc_core.errors import RprlocError
from rprloc_core.rprloc.config import (
    ENSEMBLES,
    RELEASE_ENSEMBLE,
    RELEASE_SCATTER_MM,
    RELEASE_SELF_CALIBRATION,
    RELEASE_SIZE_PRIOR,
    RELEASE_STARTS,
    RELEASE_STEPS,
    STARTS,
)

MAX_K = 500          # runs per landmark; the paper uses 15, and the mean settles long before 500


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
                        "landmark's K runs by their mean, so later steps cost one patch per landmark; scatter "
                        "replaces them by K positions within --scatter-mm of their mean")
    q.add_argument("--scatter-mm", type=positive_float, default=RELEASE_SCATTER_MM,
                   help=f"half-width per axis of a scatter step's cube, mm (default {RELEASE_SCATTER_MM:g}, the best "
                        "of 4, 8 and 12 on validation patients, notebook 03)")
    q.add_argument("--ensemble", choices=ENSEMBLES, default=RELEASE_ENSEMBLE,
                   help=f"how the K runs are combined (default {RELEASE_ENSEMBLE}, the paper's; mean_embedding "
                        "averages the K query embeddings at every step, as the authors' code)")
    q.add_argument("--size-prior", type=unit_interval, default=RELEASE_SIZE_PRIOR,
                   help=f"weight of the support's box size in the box, 0 to 1 (default {RELEASE_SIZE_PRIOR:g}, "
                        "chosen on validation patients, notebook 04; 0: the box of the predicted points, the paper's)")
    q.add_argument("--self-calibration", type=unit_interval, default=RELEASE_SELF_CALIBRATION,
                   help="share of the support's own bias taken off the answer, 0 to 1 (default "
                        f"{RELEASE_SELF_CALIBRATION:g}, chosen on validation patients, notebook 03: the support is "
                        "first localised in itself; 0: the networks' points as they are, the paper's)")
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
