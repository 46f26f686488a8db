"""Adapter for NIH Pancreas-CT (TCIA; 82 contrast CTs as DICOM, pancreas labels as NIfTI).

    <source>/PANCREAS_<NNNN>/**/<series folder>/*.dcm    # nested study/series folders
    <labels_root>/label<NNNN>.nii.gz                      # pancreas mask (any value > 0)

The case id is the patient folder's name (PANCREAS_0001). The CT is read with SimpleITK's GDCM
series reader (slices sorted by position, so the direction follows the DICOM orientation). A
patient folder with several series uses the one with most slices, with a note. A patient without
a label file, or a label without a patient folder, fails with a message naming the missing file.

Label geometry. The released NIfTI labels are known to need a flip or transposition relative to
the DICOM in tools that compare raw arrays. Here the label is put on the CT's grid by one of
these rules, tried in order; every rule but the first leaves a note on the case:
1. same grid (size, spacing, origin, direction within 1e-3): used as is.
2. nearly the same grid: same size and direction, spacing within 1 %, origin within a tenth of a
   voxel (float rounding in the NIfTI header): the CT's geometry is copied onto the label.
3. the label's voxel centres are the CT's voxel centres in another axis order or direction
   (physical space, per the NIfTI header; e.g. the z axis stored top-down): resampled with nearest
   neighbour, which here is an exact permutation of voxels, nothing interpolated.
4. the headers describe different places but the voxel arrays have the same shape (x, y, z): the
   header is taken as wrong, voxel [i, j, k] of the label is taken to be voxel [i, j, k] of the CT,
   and the CT's geometry is copied onto the label. Check a few such cases visually: a label array
   that was itself flipped would stay flipped, and nothing here can detect that.
5. otherwise: DataError naming both the label file and the DICOM folder.

CLI: python -m data_prep.nih_pancreas --source DIR --labels DIR --out DIR [--splits CSV] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rprloc_core.data.cases import check_same_grid
from rprloc_core.errors import DataError

from ._convert import (DEFAULT_FRACTIONS, LoadedCase, adapter_main, add_common_cli_arguments, checked_mask,
                       finish_cli, read_image, run_conversion, short_itk_message, split_items)

SOURCE_NAME = "nih_pancreas"
PATIENT_PATTERN = re.compile(r"^PANCREAS_(\d+)$", re.IGNORECASE)
LABEL_PATTERN = re.compile(r"^label(\d+)\.nii(\.gz)?$", re.IGNORECASE)


def list_cases(source, labels_root) -> dict:
    """{case_id: (patient folder or None, label file or None)}, matched on the number NNNN."""
    source, labels_root = Path(source), Path(labels_root)
    for folder, what in ((source, "DICOM source folder"), (labels_root, "label folder")):
        if not folder.is_dir():
            raise DataError(folder, f"{what} missing")
    patients = {int(m.group(1)): p for p in source.iterdir() if p.is_dir() and (m := PATIENT_PATTERN.match(p.name))}
    labels = {int(m.group(1)): p for p in labels_root.iterdir() if p.is_file() and (m := LABEL_PATTERN.match(p.name))}
    if not patients and not labels:
        raise DataError(source, "no PANCREAS_<NNNN> folders and no label<NNNN>.nii.gz files found")
    cases = {}
    for number in sorted(set(patients) | set(labels)):
        case_id = patients[number].name if number in patients else f"PANCREAS_{number:04d}"
        cases[case_id] = (patients.get(number), labels.get(number), number)
    return cases


def find_dicom_series(patient_dir: Path) -> tuple[list[str], list[str]]:
    """File names (sorted by slice position) of the patient's largest DICOM series, and notes."""
    series = []  # (number of files, folder, series id)
    for folder, _, files in os.walk(patient_dir):
        if not files:
            continue
        for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series_id)
            series.append((len(names), folder, series_id, names))
    if not series:
        raise DataError(patient_dir, "no DICOM series found in this folder or below it")
    series.sort(key=lambda s: (-s[0], s[1]))
    notes = []
    if len(series) > 1:
        notes.append(f"{len(series)} DICOM series under {patient_dir}; used the largest, "
                     f"{series[0][1]} ({series[0][0]} slices)")
    return list(series[0][3]), notes


def read_dicom_series(patient_dir: Path) -> tuple[sitk.Image, Path, list[str]]:
    file_names, notes = find_dicom_series(patient_dir)
    series_dir = Path(file_names[0]).parent
    if len(file_names) < 2:
        raise DataError(series_dir, "DICOM series has a single slice; need a 3-D volume")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(file_names)
    try:
        image = reader.Execute()
    except RuntimeError as error:
        raise DataError(series_dir, f"cannot read DICOM series ({short_itk_message(str(error))})") from None
    return image, series_dir, notes


def _grid_matrix(image: sitk.Image) -> np.ndarray:
    """Index (x, y, z) -> physical offset from the origin: direction @ diag(spacing)."""
    return np.asarray(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())


def _nearly_same_grid(image: sitk.Image, label: sitk.Image) -> bool:
    if label.GetSize() != image.GetSize():
        return False
    spacing, label_spacing = np.asarray(image.GetSpacing()), np.asarray(label.GetSpacing())
    origin_shift = np.abs(np.asarray(label.GetOrigin()) - np.asarray(image.GetOrigin()))
    return (np.allclose(label.GetDirection(), image.GetDirection(), atol=1e-3)
            and np.all(np.abs(label_spacing - spacing) <= 0.01 * spacing)
            and np.all(origin_shift <= 0.1 * spacing.min()))


def _voxel_centres_coincide(image: sitk.Image, label: sitk.Image) -> bool:
    """True if every CT voxel centre is a label voxel centre (axes possibly permuted or flipped)."""
    # CT index i lands at label index  inv(L) @ (I @ i + o_image - o_label)
    to_label = np.linalg.solve(_grid_matrix(label), _grid_matrix(image))
    shift = np.linalg.solve(_grid_matrix(label), np.subtract(image.GetOrigin(), label.GetOrigin()))
    signed_permutation = (np.allclose(to_label, np.rint(to_label), atol=1e-3)
                          and np.all(np.abs(np.rint(to_label)).sum(axis=0) == 1)
                          and np.all(np.abs(np.rint(to_label)).sum(axis=1) == 1))
    if not signed_permutation or not np.allclose(shift, np.rint(shift), atol=1e-2):
        return False
    corners = np.array([[sx, sy, sz] for sx in (0, image.GetSize()[0] - 1) for sy in (0, image.GetSize()[1] - 1)
                        for sz in (0, image.GetSize()[2] - 1)], float)
    landed = corners @ np.rint(to_label).T + np.rint(shift)
    return bool(np.all(landed >= 0) and np.all(landed <= np.asarray(label.GetSize()) - 1))


def label_on_image_grid(image: sitk.Image, label: sitk.Image, series_dir, label_path) -> tuple[sitk.Image, list]:
    """The label on the CT's grid, following rules 1-5 of the module docstring, and notes."""
    try:
        check_same_grid(image, label, str(label_path))
        return label, []
    except DataError:
        pass
    described = (f"label size {label.GetSize()}, spacing {np.round(label.GetSpacing(), 3).tolist()}, "
                 f"origin {np.round(label.GetOrigin(), 2).tolist()}; CT size {image.GetSize()}, spacing "
                 f"{np.round(image.GetSpacing(), 3).tolist()}, origin {np.round(image.GetOrigin(), 2).tolist()}")
    if _nearly_same_grid(image, label):
        copied = sitk.Image(label)
        copied.CopyInformation(image)
        return copied, [f"{label_path.name}: header differs from the CT by rounding only; CT geometry copied"]
    if _voxel_centres_coincide(image, label):
        resampled = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  label.GetPixelID())
        return resampled, [f"{label_path.name}: stored in another axis order/direction than the CT; "
                           f"resampled onto the CT grid (exact voxel permutation). {described}"]
    if label.GetSize() == image.GetSize():
        copied = sitk.Image(label)
        copied.CopyInformation(image)
        return copied, [f"{label_path.name}: header does not place it on the CT but its array has the CT's "
                        f"shape; CT geometry copied onto it, voxel for voxel. CHECK VISUALLY. {described}"]
    raise DataError(label_path, f"label grid cannot be matched to the CT series {series_dir}: {described}")


def load_case(entry) -> LoadedCase:
    patient_dir, label_path, number = entry
    if patient_dir is None:
        raise DataError(label_path, f"label without a PANCREAS_{number:04d} DICOM folder")
    if label_path is None:
        raise DataError(patient_dir, f"no label file label{number:04d}.nii.gz in the labels folder")
    image, series_dir, notes = read_dicom_series(patient_dir)
    label, label_notes = label_on_image_grid(image, read_image(label_path, "label"), series_dir, label_path)
    mask = checked_mask(image, label, label_path)
    return LoadedCase(image, {"Pancreas": mask}, notes + label_notes, {"source_image": str(series_dir)})


def convert(source, out_root, labels_root, *, splits_csv=None, fractions=DEFAULT_FRACTIONS, seed: int = 0,
            overwrite: bool = False, progress: bool = True):
    """Convert NIH Pancreas-CT (DICOM folders + label folder) into out_root; returns a ConversionSummary."""
    items, notes = split_items(list_cases(source, labels_root), splits_csv, fractions, seed)
    return run_conversion(items, load_case, out_root, source=SOURCE_NAME, progress=progress,
                          overwrite=overwrite, notes=notes)


@adapter_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.nih_pancreas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_cli_arguments(parser)
    parser.add_argument("--labels", required=True, type=Path, help="folder with label<NNNN>.nii.gz")
    args = parser.parse_args(argv)
    summary = convert(args.source, args.out, args.labels, splits_csv=args.splits, seed=args.seed,
                      overwrite=args.overwrite, progress=not args.quiet)
    return finish_cli(summary)


if __name__ == "__main__":
    raise SystemExit(main())
