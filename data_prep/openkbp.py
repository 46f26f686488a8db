"""OpenKBP head-and-neck CT (Babier et al., Med. Phys. 2021) -> the project's standard case layout.

Upstream layout: `provided-data/{train-pats,validation-pats,test-pats}/pt_<N>/` with `ct.csv`,
`voxel_dimensions.csv` and one `<Organ>.csv` per contoured organ; files may be `.csv`, `.csv.gz`
or `.csv.xz`. Every file describes a 128^3 grid in C order, sparsely: header `,data`, then rows
`flat_index,value` for the non-zero voxels (masks leave the value empty). CT values are HU + 1024.

Orientation (checked on real patients, see tests/test_openkbp_real.py): array axis 0 runs
anterior -> posterior, axis 1 patient right -> left, axis 2 superior -> inferior. In LPS terms
x = axis1, y = axis0, z = -axis2, so the standard image is the array transposed to (axis2, axis0,
axis1) and flipped along the new first axis, with identity direction.

    python -m data_prep.openkbp --source ../shared/datasets/openkbp --out data/openkbp/cases
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from rprloc_core.errors import DataError

from ._convert import adapter_main

GRID = (128, 128, 128)
UPSTREAM_SPLITS = {"train-pats": "train", "validation-pats": "validation", "test-pats": "test"}
OPENKBP_ORGANS = ("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible")
SOURCE_ENV = "RPRLOC_OPENKBP_SOURCE"
_SUFFIXES = (".csv", ".csv.gz", ".csv.xz")


def find_csv(patient_dir: Path, stem: str) -> Path | None:
    """The file `<stem>.csv[.gz|.xz]` in a patient folder, or None."""
    for suffix in _SUFFIXES:
        path = Path(patient_dir) / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def read_sparse_csv(path: Path, is_mask: bool) -> np.ndarray:
    """Read one sparse upstream CSV into a dense 128^3 array (float32 values, or bool for masks)."""
    try:
        table = pd.read_csv(path, index_col=0)  # compression is inferred from the suffix
    except Exception as error:  # pandas/lzma/gzip raise many types on corrupt input
        raise DataError(path, f"unreadable CSV ({type(error).__name__}: {error})") from None
    if list(table.columns) != ["data"]:
        raise DataError(path, f"expected the header ',data', found columns {list(table.columns)}")
    index = table.index.to_numpy()
    if len(index) == 0:
        index = index.astype(np.int64)  # an empty file parses with an object index
    if not np.issubdtype(index.dtype, np.integer):
        raise DataError(path, "flat indices are not integers (truncated or corrupt file?)")
    n = int(np.prod(GRID))
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise DataError(path, f"flat index outside the 128^3 grid (min {index.min()}, max {index.max()})")
    if is_mask:
        dense = np.zeros(n, dtype=bool)
        dense[index] = True
    else:
        values = pd.to_numeric(table["data"], errors="coerce").to_numpy(dtype=np.float32)
        if np.isnan(values).any():
            raise DataError(path, "CT values missing or not numeric (truncated or corrupt file?)")
        dense = np.zeros(n, dtype=np.float32)
        dense[index] = values
    return dense.reshape(GRID)


def read_voxel_dimensions(patient_dir: Path) -> np.ndarray:
    """Voxel size in mm along array axes (0, 1, 2)."""
    path = find_csv(patient_dir, "voxel_dimensions")
    if path is None:
        raise DataError(patient_dir, "voxel_dimensions.csv is missing")
    try:
        values = pd.read_csv(path, header=None).to_numpy(dtype=float).ravel()
    except Exception as error:
        raise DataError(path, f"unreadable ({type(error).__name__}: {error})") from None
    if values.size != 3 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise DataError(path, f"expected three positive voxel sizes, found {values.tolist()}")
    return values


def to_standard_image(array_a012: np.ndarray, voxel_dims_a012) -> sitk.Image:
    """Upstream array (axis0 A->P, axis1 R->L, axis2 S->I) -> LPS SimpleITK image, identity direction.

    Upstream voxel (i0, i1, i2) lands at physical (x, y, z) = (i1*s1, i0*s0, -i2*s2)."""
    s0, s1, s2 = (float(v) for v in voxel_dims_a012)
    zyx = np.ascontiguousarray(np.transpose(array_a012, (2, 0, 1))[::-1])
    image = sitk.GetImageFromArray(zyx)
    image.SetSpacing((s1, s0, s2))
    image.SetOrigin((0.0, 0.0, -(array_a012.shape[2] - 1) * s2))
    return image


def read_patient(patient_dir: Path) -> tuple[sitk.Image, dict]:
    """One upstream patient -> (CT image in HU, {organ: mask image}); organs not contoured are absent."""
    patient_dir = Path(patient_dir)
    spacing = read_voxel_dimensions(patient_dir)
    ct_path = find_csv(patient_dir, "ct")
    if ct_path is None:
        raise DataError(patient_dir, "ct.csv is missing")
    # Upstream values are HU + 1024; some scans are 16-bit, so clip before shifting.
    hu = np.clip(read_sparse_csv(ct_path, is_mask=False), 0, 4095) - 1024.0
    image = to_standard_image(hu.astype(np.int16), spacing)
    labels = {}
    for organ in OPENKBP_ORGANS:
        path = find_csv(patient_dir, organ)
        if path is None:
            continue
        mask = read_sparse_csv(path, is_mask=True)
        if not mask.any():
            raise DataError(path, "organ mask is empty")
        check_ct_covers(hu, mask, ct_path, organ)
        labels[organ] = to_standard_image(mask.astype(np.uint8), spacing)
    return image, labels


# An organ with at least this fraction of its voxels where ct.csv lists no value lies outside the
# CT. On the 242 shared patients the largest fraction is 0.72 (pt_89's oesophagus, a scan whose CT
# covers part of the field of view); a ct.csv cut short (rows are sorted by flat index, so the
# posterior part goes first) leaves organs there with no CT at all.
UNCOVERED_ORGAN_LIMIT = 0.95


def check_ct_covers(hu: np.ndarray, mask: np.ndarray, ct_path: Path, organ: str) -> None:
    """DataError if the CT holds no value (HU = -1024, not listed in ct.csv) over almost all of an
    organ: the sign of a ct.csv truncated at a line boundary, which still parses."""
    uncovered = float(np.mean(hu[mask] <= -1024.0))
    if uncovered >= UNCOVERED_ORGAN_LIMIT:
        raise DataError(ct_path, f"the CT has no value over {100 * uncovered:.0f} % of the {organ} mask: "
                                 "ct.csv is probably truncated (an interrupted copy or download)")


def _patient_number(case_id: str) -> tuple:
    """pt_2 before pt_10; a folder whose name has no number (pt_new) sorts last by name."""
    tail = case_id.split("_", 1)[-1]
    return (0, int(tail), case_id) if tail.isdigit() else (1, 0, case_id)


def list_patients(source: Path) -> list[tuple[str, str, Path]]:
    """(case_id, split, folder) for every upstream patient folder, in natural order. A folder that
    is not a patient (no ct.csv) is still listed: converting it fails with a message naming it."""
    base = Path(source)
    if (base / "provided-data").is_dir():
        base = base / "provided-data"
    if not any((base / s).is_dir() for s in UPSTREAM_SPLITS):
        raise DataError(source, "not an OpenKBP source: no train-pats/validation-pats/test-pats folders")
    found = []
    for upstream, split in UPSTREAM_SPLITS.items():
        for folder in (base / upstream).glob("pt_*"):
            if folder.is_dir():
                found.append((folder.name, split, folder))
    return sorted(found, key=lambda t: _patient_number(t[0]))


def resolve_source(source=None, configured=None) -> Path | None:
    """The local upstream copy to read: the argument, else $RPRLOC_OPENKBP_SOURCE, else the
    profile's configured path (relative to the project root) if it exists; None = download."""
    from rprloc_core.paths import PROJECT_ROOT

    for candidate in (source, os.environ.get(SOURCE_ENV)):
        if candidate:
            path = Path(candidate).expanduser().resolve()
            if not path.is_dir():
                raise DataError(path, "OpenKBP source folder does not exist")
            return path
    if configured:
        path = (PROJECT_ROOT / configured).resolve()
        if path.is_dir():
            return path
    return None


def convert_openkbp(source, out_root, progress: bool = True, limit: int | None = None):
    """Convert every patient of an upstream copy into the standard case layout (resumable).

    `limit` keeps only the first N patients of each split (for quick looks and tests)."""
    from ._convert import run_conversion

    patients = list_patients(source)
    if limit is not None:
        patients = [p for split in UPSTREAM_SPLITS.values()
                    for p in [q for q in patients if q[1] == split][:limit]]
    items = [(case_id, split, folder) for case_id, split, folder in patients]
    return run_conversion(items, read_patient, out_root, source="openkbp", progress=progress)


@adapter_main
def main(argv=None) -> int:
    from ._convert import finish_cli

    parser = argparse.ArgumentParser(description="Convert OpenKBP (upstream layout) to the standard case layout.")
    parser.add_argument("--source", type=Path, default=None,
                        help=f"upstream copy (default: ${SOURCE_ENV}; without either, download it)")
    parser.add_argument("--out", type=Path, required=True, help="cases root to write")
    parser.add_argument("--download-to", type=Path, default=None,
                        help="where to mirror the upstream files when downloading (default: OUT/../upstream)")
    parser.add_argument("--limit", type=int, default=None, help="first N patients of each split only")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    source = resolve_source(args.source)
    if source is None:
        from .download import download_openkbp

        source = args.download_to or args.out.parent / "upstream"
        download_openkbp(source, progress=not args.quiet)
    return finish_cli(convert_openkbp(source, args.out, progress=not args.quiet, limit=args.limit))


if __name__ == "__main__":
    raise SystemExit(main())
