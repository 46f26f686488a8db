"""Adapter for the ISBI 2015 cephalometric landmark challenge (Wang et al., 2016): CC2D's own setting.

The challenge's release, as distributed (the data cannot be downloaded here; bring your copy):

    <source>/RawImage/TrainingData/001.bmp ... 150.bmp      -> split "train"
    <source>/RawImage/Test1Data/151.bmp ... 300.bmp         -> split "test1"
    <source>/RawImage/Test2Data/301.bmp ... 400.bmp         -> split "test2"
    <source>/AnnotationsByMD/400_senior/001.txt ...         (also accepted: <source>/400_senior/)
    <source>/AnnotationsByMD/400_junior/001.txt ...

Images are 1935 x 2400 pixels of 0.1 mm. Each annotation file starts with 19 lines "x,y" (pixels,
x = column, y = row), one per landmark in the challenge's order; the lines after them (the
classification labels) are ignored. The ground truth is the mean of the two doctors' positions, kept
at the original resolution in mm (no rounding). A landmark outside its image, a file with fewer
than 19 readable lines, or a missing file fails the case with the file's name.

Writes the landmark case layout (`rprloc_core.data.landmark_cases`): cases.csv, landmarks.csv
(the mean and each doctor's pixels) and images/<case_id>.nii.gz (grey values, 0.1 mm spacing).

CLI: python -m data_prep.isbi2015 --source DIR --out DIR [--annotators senior junior]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rprloc_core.data.landmark_cases import CASES_FILE, LANDMARKS_FILE
from rprloc_core.errors import DataError

from ._convert import adapter_main

PIXEL_MM = 0.1
N_LANDMARKS = 19
SPLIT_FOLDERS = {"TrainingData": "train", "Test1Data": "test1", "Test2Data": "test2"}
ANNOTATORS = ("senior", "junior")
LANDMARK_NAMES = (
    "sella", "nasion", "orbitale", "porion", "subspinale", "supramentale", "pogonion", "menton", "gnathion",
    "gonion", "lower incisal incision", "upper incisal incision", "upper lip", "lower lip", "subnasale",
    "soft tissue pogonion", "posterior nasal spine", "anterior nasal spine", "articulare",
)


def annotation_folder(source: Path, annotator: str) -> Path:
    for folder in (source / "AnnotationsByMD" / f"400_{annotator}", source / f"400_{annotator}"):
        if folder.is_dir():
            return folder
    raise DataError(source / "AnnotationsByMD" / f"400_{annotator}", f"the {annotator} doctor's annotation folder "
                    "is missing; is this the ISBI 2015 release?")


def list_cases(source) -> dict:
    """{case_id: (split, image path)} for every BMP in the three image folders."""
    source = Path(source)
    raw = source / "RawImage"
    if not raw.is_dir():
        raise DataError(raw, "no RawImage folder; is this the ISBI 2015 release?")
    cases = {}
    for folder, split in SPLIT_FOLDERS.items():
        for image in sorted((raw / folder).glob("*.bmp")) if (raw / folder).is_dir() else []:
            cases[image.stem] = (split, image)
    if not cases:
        raise DataError(raw, "no RawImage/{TrainingData,Test1Data,Test2Data}/*.bmp found")
    return cases


def read_annotation(path: Path) -> np.ndarray:
    """The 19 landmarks (19, 2) of one doctor's file, as (x, y) pixels."""
    if not path.is_file():
        raise DataError(path, "annotation file missing")
    points = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:N_LANDMARKS]:
        try:
            x, y = (float(v) for v in line.strip().split(",")[:2])
        except ValueError as error:
            raise DataError(path, f"line {len(points) + 1} is not 'x,y': {line.strip()!r}") from error
        points.append((x, y))
    if len(points) < N_LANDMARKS:
        raise DataError(path, f"{len(points)} landmark lines, the challenge has {N_LANDMARKS}")
    return np.asarray(points)


def read_image(path: Path) -> np.ndarray:
    """Grey values (height, width) float32; an RGB BMP is averaged over its channels."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(path, f"unreadable image ({error})") from error
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    if array.ndim == 3:
        array = array.mean(axis=-1)
    if array.ndim != 2:
        raise DataError(path, f"expected a 2D image, got shape {array.shape}")
    return array


def convert(source, out, annotators=ANNOTATORS, progress: bool = False) -> pd.DataFrame:
    """Write the landmark case layout under `out`; returns the case table."""
    source, out = Path(source), Path(out)
    if not annotators or not set(annotators) <= set(ANNOTATORS):
        raise ValueError(f"annotators must be some of {ANNOTATORS}, got {annotators}")
    folders = {a: annotation_folder(source, a) for a in annotators}
    cases, rows, points = list_cases(source), [], []
    (out / "images").mkdir(parents=True, exist_ok=True)
    for case_id, (split, image_path) in cases.items():
        array = read_image(image_path)
        height, width = array.shape
        per_doctor = {a: read_annotation(folders[a] / f"{case_id}.txt") for a in annotators}
        for a, xy in per_doctor.items():
            outside = np.flatnonzero((xy[:, 0] < 0) | (xy[:, 0] > width - 1) | (xy[:, 1] < 0) | (xy[:, 1] > height - 1))
            if len(outside):
                first = outside[0]
                raise DataError(folders[a] / f"{case_id}.txt", f"landmark {first + 1} at {xy[first].tolist()} lies "
                                f"outside the {width} x {height} image")
        mean_xy = np.mean([per_doctor[a] for a in annotators], axis=0)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((PIXEL_MM, PIXEL_MM))
        relative = Path("images") / f"{case_id}.nii.gz"
        sitk.WriteImage(image, str(out / relative), useCompression=True)
        rows.append({"case_id": case_id, "split": split, "height_px": height, "width_px": width,
                     "pixel_mm": PIXEL_MM, "image": relative.as_posix()})
        for i in range(N_LANDMARKS):
            points.append({"case_id": case_id, "index": i + 1, "name": LANDMARK_NAMES[i],
                           "y_mm": mean_xy[i, 1] * PIXEL_MM, "x_mm": mean_xy[i, 0] * PIXEL_MM,
                           **{f"{a}_{c}_px": per_doctor[a][i, j] for a in annotators for j, c in enumerate("xy")}})
        if progress:
            print(f"{case_id} ({split})", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / CASES_FILE, index=False)
    pd.DataFrame(points).to_csv(out / LANDMARKS_FILE, index=False)
    return table


@adapter_main
def main(argv=None) -> int:
    """A bad release is one line `error: <file>: <problem>` and exit status 2 (as every adapter)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="the release folder (RawImage/, AnnotationsByMD/)")
    parser.add_argument("--out", required=True, help="where to write the landmark case layout")
    parser.add_argument("--annotators", nargs="+", default=list(ANNOTATORS), choices=ANNOTATORS,
                        help="doctors whose positions are averaged into the ground truth (default both)")
    args = parser.parse_args(argv)
    table = convert(args.source, args.out, tuple(args.annotators), progress=True)
    print(f"{len(table)} cases ({', '.join(f'{s}: {n}' for s, n in table.split.value_counts().items())}) "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
