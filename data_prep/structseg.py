"""Adapter for StructSeg 2019, task 1 (HaN_OAR: 22 head-and-neck organs at risk, 50 CTs, NIfTI).

    <source>/<N>/data.nii.gz     # CT
    <source>/<N>/label.nii.gz    # multi-label map of the 22 OARs, on the CT's grid

Case ids are "structseg_<N>" (prefix configurable) so StructSeg and PDDCA cases can share one
cases root, as in the paper's combined head-and-neck set. A splits.csv uses these case ids.
Organs kept: Brainstem, LeftParotid, RightParotid, SpinalCord and Mandible, the union of the
left and right mandible labels. An organ whose label value does not occur is left out with a note.

CLI: python -m data_prep.structseg --source DIR --out DIR [--splits CSV] [--seed N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rprloc_core.errors import DataError

from ._convert import (DEFAULT_FRACTIONS, LoadedCase, adapter_main, add_common_cli_arguments, finish_cli,
                       masks_from_label_map, read_image, run_conversion, split_items)

SOURCE_NAME = "structseg2019"

# Label values of label.nii.gz, following the challenge's label list for task 1 (HaN_OAR).
# Written from the challenge description, not from a copy of the data: check it against your own
# copy (e.g. look at a label map next to its CT) before trusting the converted organs.
STRUCTSEG_LABELS = {
    1: "Brain_Stem", 2: "Eye_L", 3: "Eye_R", 4: "Lens_L", 5: "Lens_R", 6: "Opt_Nerve_L",
    7: "Opt_Nerve_R", 8: "Opt_Chiasma", 9: "Temporal_Lobes_L", 10: "Temporal_Lobes_R", 11: "Pituitary",
    12: "Parotid_Gland_L", 13: "Parotid_Gland_R", 14: "Inner_Ear_L", 15: "Inner_Ear_R", 16: "Mid_Ear_L",
    17: "Mid_Ear_R", 18: "T_M_Joint_L", 19: "T_M_Joint_R", 20: "Spinal_Cord", 21: "Mandible_L",
    22: "Mandible_R",
}

# Canonical organ -> the label values it is made of. _L / _R are the patient's left / right.
ORGAN_VALUES = {
    "Brainstem": (1,),
    "LeftParotid": (12,),
    "RightParotid": (13,),
    "SpinalCord": (20,),
    "Mandible": (21, 22),  # the challenge splits the mandible into halves; the organ is their union
}


def list_cases(source, prefix: str = "structseg_") -> dict:
    """{case_id: case folder} for every sub-folder holding data.nii.gz or label.nii.gz."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(source, "StructSeg source folder missing")
    cases = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        if (folder / "data.nii.gz").exists() or (folder / "label.nii.gz").exists():
            cases[f"{prefix}{folder.name}"] = folder
    if not cases:
        raise DataError(source, "no <N>/data.nii.gz or <N>/label.nii.gz found; is this the HaN_OAR folder?")
    return cases


def load_case(folder: Path) -> LoadedCase:
    """Read <N>/data.nii.gz and split <N>/label.nii.gz into the kept organs."""
    image_path, label_path = folder / "data.nii.gz", folder / "label.nii.gz"
    image = read_image(image_path)
    label = read_image(label_path, "label map")
    masks, notes = masks_from_label_map(image, label, label_path, ORGAN_VALUES,
                                        "the StructSeg label table (data_prep.structseg.STRUCTSEG_LABELS)",
                                        known_values=STRUCTSEG_LABELS)
    return LoadedCase(image, masks, notes, {"source_image": str(image_path)})


def convert(source, out_root, *, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed: int = 0,
            prefix: str = "structseg_", overwrite: bool = False, progress: bool = True):
    """Convert a StructSeg 2019 HaN_OAR folder into out_root; returns a ConversionSummary."""
    items, notes = split_items(list_cases(source, prefix), splits_csv, fractions, seed)
    return run_conversion(items, load_case, out_root, source=SOURCE_NAME, progress=progress,
                          overwrite=overwrite, notes=notes)


@adapter_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.structseg", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_cli_arguments(parser)
    parser.add_argument("--prefix", default="structseg_", help="case id prefix (default structseg_)")
    args = parser.parse_args(argv)
    summary = convert(args.source, args.out, splits_csv=args.splits, seed=args.seed, prefix=args.prefix,
                      overwrite=args.overwrite, progress=not args.quiet)
    return finish_cli(summary)


if __name__ == "__main__":
    raise SystemExit(main())
