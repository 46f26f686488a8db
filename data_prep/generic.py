"""Adapter for a user's own data in a simple generic folder layout.

    <source>/
        images/<case>.<ext>              # one CT per case; <ext>: nii, nii.gz, nrrd, mha
        labels/<case>/<Organ>.<ext>      # EITHER one binary mask per organ (any value > 0 is organ)
        labels/<case>.<ext>              # OR one multi-label map per case, read with label_map.*
        label_map.json                   # {"1": "Brainstem", "2": "Mandible", "3": "Mandible"}
        label_map.csv                    #   or the same as CSV with columns value,organ
        splits.csv                       # optional: case_id,split (train / validation / test)

Rules, so a conversion never guesses:
- The case id is the image file name without its extension.
- Mask file names and label_map organ names may be canonical names or known aliases
  (rprloc_core.organs). A mask file with an unknown name is skipped with a note; an unknown name
  in label_map is an error for the whole conversion (the map is the user's explicit statement).
  Several label values may name one organ; their union is the organ.
- A case may use the folder form or the map form, not both (error). A case with no labels at all
  is converted unlabelled, with a note: unlabelled volumes are what RPR-Loc trains on.
- Labels must lie on the image's voxel grid (size, spacing, origin, direction); an empty mask file
  is an error for its case.
- Split: splits.csv when present (cases it does not list are left out, with a note), else a
  seeded shuffle with DEFAULT_FRACTIONS (see data_prep._convert.assign_splits).

CLI: python -m data_prep.generic --source DIR --out DIR [--splits CSV] [--label-map FILE] [--seed N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from rprloc_core.data.organs import canonical_organ
from rprloc_core.errors import DataError, UnknownOrganError

from ._convert import (DEFAULT_FRACTIONS, LoadedCase, adapter_main, add_common_cli_arguments, checked_mask,
                       finish_cli, masks_from_label_map, read_image, run_conversion, split_items,
                       strip_image_suffix)

SOURCE_NAME = "generic"
LABEL_MAP_NAMES = ("label_map.json", "label_map.csv")


def read_label_map(path) -> dict:
    """{canonical organ: [label values]} from label_map.json ({"value": "organ"}) or .csv (value,organ)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label map file missing")
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise DataError(path, 'label map JSON must be an object like {"1": "Brainstem"}')
            pairs = list(raw.items())
        elif path.suffix.lower() == ".csv":
            table = pd.read_csv(path, dtype=str)
            if not {"value", "organ"} <= set(table.columns):
                raise DataError(path, f"label map CSV needs columns value,organ; has {', '.join(table.columns)}")
            pairs = list(zip(table["value"], table["organ"]))
        else:
            raise DataError(path, "label map must be a .json or .csv file")
    except (json.JSONDecodeError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DataError(path, f"cannot read label map ({error})") from None
    organ_values: dict[str, list[int]] = {}
    for value, name in pairs:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise DataError(path, f"label value {value!r} is not an integer") from None
        if number == 0:
            raise DataError(path, "label value 0 is the background and cannot name an organ")
        organ = canonical_organ(str(name), source=str(path))  # unknown name: UnknownOrganError naming the map
        organ_values.setdefault(organ, []).append(number)
    if not organ_values:
        raise DataError(path, "label map is empty")
    return organ_values


def find_label_map(source: Path):
    found = [source / name for name in LABEL_MAP_NAMES if (source / name).is_file()]
    if len(found) > 1:
        raise DataError(source, f"both {LABEL_MAP_NAMES[0]} and {LABEL_MAP_NAMES[1]} exist; keep one")
    return found[0] if found else None


def list_cases(source) -> dict:
    """{case_id: {"image", "mask_dir", "label_file": path or None, "problem": DataError or None}}
    for every case seen in images/ or labels/ (a label without an image fails later, visibly)."""
    source = Path(source)
    images_dir, labels_dir = source / "images", source / "labels"
    if not images_dir.is_dir():
        raise DataError(images_dir, "no images/ folder; expected images/<case>.nii.gz etc.")
    cases: dict[str, dict] = {}

    def entry(case_id):
        return cases.setdefault(case_id, {"image": None, "mask_dir": None, "label_file": None, "problem": None})

    def add(case_id, key, path):
        item = entry(case_id)
        if item[key] is not None:  # e.g. case1.nii and case1.nii.gz side by side
            item["problem"] = DataError(path, f"two files for case {case_id}: {item[key].name} and {path.name}")
        item[key] = path

    for path in sorted(images_dir.iterdir()):
        case_id = strip_image_suffix(path.name)
        if case_id and path.is_file() and not path.name.startswith("."):
            add(case_id, "image", path)
    if labels_dir.is_dir():
        for path in sorted(labels_dir.iterdir()):
            if path.name.startswith("."):
                continue
            if path.is_dir():
                add(path.name, "mask_dir", path)
            elif strip_image_suffix(path.name):
                add(strip_image_suffix(path.name), "label_file", path)
    return cases


def load_case(case: dict, organ_values: dict | None, label_map_file) -> LoadedCase:
    """Read one generic case (the dict from list_cases) into an image and canonical masks."""
    if case["problem"] is not None:
        raise case["problem"]
    if case["image"] is None:
        where = case["mask_dir"] or case["label_file"]
        raise DataError(where, "labels without an image in images/")
    if case["mask_dir"] is not None and case["label_file"] is not None:
        raise DataError(case["label_file"], f"case has both a mask folder {case['mask_dir'].name}/ and a "
                                            "label map file; keep one form")
    image = read_image(case["image"])
    labels, notes = {}, []
    if case["mask_dir"] is not None:
        seen = {}
        for path in sorted(case["mask_dir"].iterdir()):
            name = strip_image_suffix(path.name)
            if not name or not path.is_file():
                continue
            try:
                organ = canonical_organ(name, source=str(path))
            except UnknownOrganError:
                notes.append(f"skipped {path.name}: not a known organ name")
                continue
            if organ in seen:
                raise DataError(path, f"second mask for {organ} (first: {seen[organ].name})")
            seen[organ] = path
            labels[organ] = checked_mask(image, read_image(path, "mask"), path)
        if not labels:
            notes.append(f"no usable organ mask in {case['mask_dir']}; converted unlabelled")
    elif case["label_file"] is not None:
        if organ_values is None:
            raise DataError(case["label_file"], f"multi-label file but no {' or '.join(LABEL_MAP_NAMES)} "
                                                "in the source folder to name its values")
        label = read_image(case["label_file"], "label map")
        labels, notes = masks_from_label_map(image, label, case["label_file"], organ_values, str(label_map_file))
    else:
        notes.append("no labels; converted unlabelled")
    return LoadedCase(image, labels, notes, {"source_image": str(case["image"])})


def convert(source, out_root, *, splits_csv=None, label_map=None, fractions=DEFAULT_FRACTIONS, seed: int = 0,
            overwrite: bool = False, progress: bool = True):
    """Convert a generic folder into out_root; returns a ConversionSummary.

    splits_csv / label_map default to <source>/splits.csv and <source>/label_map.(json|csv) when
    those exist. A bad label map or splits file stops the run (DataError): it concerns every case.
    """
    source = Path(source)
    if splits_csv is None and (source / "splits.csv").is_file():
        splits_csv = source / "splits.csv"
    label_map_file = Path(label_map) if label_map is not None else find_label_map(source)
    organ_values = read_label_map(label_map_file) if label_map_file is not None else None
    cases = list_cases(source)
    items, notes = split_items(cases, splits_csv, fractions, seed)
    return run_conversion(items, lambda case: load_case(case, organ_values, label_map_file), out_root,
                          source=SOURCE_NAME, progress=progress, overwrite=overwrite, notes=notes)


@adapter_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.generic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_cli_arguments(parser)
    parser.add_argument("--label-map", type=Path, default=None,
                        help="label_map.json/.csv for multi-label files (default: the one in --source)")
    args = parser.parse_args(argv)
    summary = convert(args.source, args.out, splits_csv=args.splits, label_map=args.label_map, seed=args.seed,
                      overwrite=args.overwrite, progress=not args.quiet)
    return finish_cli(summary)


if __name__ == "__main__":
    raise SystemExit(main())
