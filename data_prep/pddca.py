"""Adapter for PDDCA, the MICCAI 2015 head-and-neck auto-segmentation challenge data (48 CTs, NRRD).

    <source>/<case>/img.nrrd
    <source>/<case>/structures/<Name>.nrrd    # one binary mask per structure, on the CT's grid

Structure names in the release: BrainStem, Mandible, Parotid_L, Parotid_R, Chiasm, OpticNerve_L,
OpticNerve_R, Submandibular_L, Submandibular_R. Those with a canonical name (via the aliases in
rprloc_core.organs: Brainstem, Mandible, LeftParotid, RightParotid) are kept; the others are
skipped with one note per case, not an error. A missing structure file just means the structure
was not delineated; a kept structure whose mask is empty or off the CT grid fails the case.

Case ids are "pddca_<case>" (prefix configurable), so PDDCA and StructSeg can share a cases root.

CLI: python -m data_prep.pddca --source DIR --out DIR [--splits CSV] [--seed N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rprloc_core.data.organs import canonical_organ
from rprloc_core.errors import DataError, UnknownOrganError

from ._convert import (DEFAULT_FRACTIONS, LoadedCase, adapter_main, add_common_cli_arguments, checked_mask,
                       finish_cli, read_image, run_conversion, split_items)

SOURCE_NAME = "pddca"


def list_cases(source, prefix: str = "pddca_") -> dict:
    """{case_id: case folder} for every sub-folder holding img.nrrd or structures/."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(source, "PDDCA source folder missing")
    cases = {}
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        if (folder / "img.nrrd").exists() or (folder / "structures").is_dir():
            cases[f"{prefix}{folder.name}"] = folder
    if not cases:
        raise DataError(source, "no <case>/img.nrrd found; is this the PDDCA folder?")
    return cases


def load_case(folder: Path) -> LoadedCase:
    """Read <case>/img.nrrd and the structures with canonical names."""
    image_path = folder / "img.nrrd"
    image = read_image(image_path)
    labels, notes, skipped = {}, [], []
    structures = folder / "structures"
    if not structures.is_dir():
        notes.append(f"no {structures}; converted unlabelled")
    else:
        for path in sorted(structures.glob("*.nrrd")):
            try:
                organ = canonical_organ(path.stem, source=str(path))
            except UnknownOrganError:
                skipped.append(path.stem)
                continue
            if organ in labels:
                raise DataError(path, f"second structure file for {organ}")
            labels[organ] = checked_mask(image, read_image(path, "structure mask"), path)
    if skipped:
        notes.append(f"skipped structures without a canonical organ name: {', '.join(skipped)}")
    return LoadedCase(image, labels, notes, {"source_image": str(image_path)})


def convert(source, out_root, *, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed: int = 0,
            prefix: str = "pddca_", overwrite: bool = False, progress: bool = True):
    """Convert a PDDCA folder into out_root; returns a ConversionSummary."""
    items, notes = split_items(list_cases(source, prefix), splits_csv, fractions, seed)
    return run_conversion(items, load_case, out_root, source=SOURCE_NAME, progress=progress,
                          overwrite=overwrite, notes=notes)


@adapter_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.pddca", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_cli_arguments(parser)
    parser.add_argument("--prefix", default="pddca_", help="case id prefix (default pddca_)")
    args = parser.parse_args(argv)
    summary = convert(args.source, args.out, splits_csv=args.splits, seed=args.seed, prefix=args.prefix,
                      overwrite=args.overwrite, progress=not args.quiet)
    return finish_cli(summary)


if __name__ == "__main__":
    raise SystemExit(main())
