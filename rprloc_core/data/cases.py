"""The project's standard case layout, which every dataset adapter writes and the pipeline reads.

    <cases_root>/
        cases.csv                      # the case table, rebuilt from the case.json files
        <case_id>/
            case.json                  # split, organs, spacing, shape, source
            image.nii.gz               # CT in HU, int16, with spacing, origin and direction
            labels/<Organ>.nii.gz      # one binary uint8 mask per organ, on the image's grid

A case directory appears only when it is complete: it is written under a temporary name and
renamed into place, so an interrupted conversion never leaves a half-written case.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk

from rprloc_core.data.organs import canonical_organ
from rprloc_core.errors import DataError, EmptyMaskError, MissingOrganError
from rprloc_core.geometry.space import shape_zyx, spacing_zyx

if TYPE_CHECKING:
    import pandas as pd

CASE_TABLE = "cases.csv"
SPLITS = ("train", "validation", "test")


def case_dir(root, case_id: str) -> Path:
    return Path(root) / case_id


def case_exists(root, case_id: str) -> bool:
    return (case_dir(root, case_id) / "case.json").is_file()


def check_same_grid(image: sitk.Image, label: sitk.Image, where: str) -> None:
    """Raise DataError unless the label lies on exactly the image's voxel grid."""
    if label.GetSize() != image.GetSize():
        raise DataError(where, f"label grid {label.GetSize()} does not match image grid {image.GetSize()} (x, y, z)")
    for what, a, b in (("spacing", label.GetSpacing(), image.GetSpacing()),
                       ("origin", label.GetOrigin(), image.GetOrigin()),
                       ("direction", label.GetDirection(), image.GetDirection())):
        if not np.allclose(a, b, atol=1e-3):
            raise DataError(where, f"label {what} {tuple(round(v, 4) for v in a)} does not match image {what} "
                                   f"{tuple(round(v, 4) for v in b)}")


def checked_mask(image: sitk.Image, mask: sitk.Image, path) -> sitk.Image:
    """A uint8 0/1 mask, checked to be non-empty and on the image's grid (errors name `path`)."""
    check_same_grid(image, mask, str(path))
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)  # `> 0` also works for float masks
    if not np.any(sitk.GetArrayViewFromImage(binary)):
        raise EmptyMaskError(path, "organ mask is empty")
    return binary


def write_case(root, case_id: str, image: sitk.Image, labels: dict, split: str, source: str,
               extra: dict | None = None) -> Path:
    """Write one case atomically. `labels` maps organ names (aliases allowed) to sitk images.

    Empty masks are an error (DataError naming the organ), as are labels off the image grid.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    canonical = {}
    for name, label in labels.items():
        organ = canonical_organ(name, source=f"{source} ({case_id})")
        check_same_grid(image, label, f"{source} ({case_id}, {organ})")
        if not np.any(sitk.GetArrayViewFromImage(label)):
            raise DataError(f"{source} ({case_id}, {organ})", "organ mask is empty")
        canonical[organ] = label
    tmp = root / f".tmp-{case_id}-{uuid.uuid4().hex[:8]}"
    (tmp / "labels").mkdir(parents=True)
    try:
        ct = sitk.Cast(sitk.Clamp(image, lowerBound=-32768, upperBound=32767), sitk.sitkInt16) \
            if image.GetPixelID() != sitk.sitkInt16 else image
        sitk.WriteImage(ct, str(tmp / "image.nii.gz"), useCompression=True)
        for organ, label in canonical.items():
            mask = sitk.Cast(label > 0, sitk.sitkUInt8)
            sitk.WriteImage(mask, str(tmp / "labels" / f"{organ}.nii.gz"), useCompression=True)
        meta = {
            "case_id": case_id, "split": split, "source": source,
            "organs": sorted(canonical),
            # NIfTI stores spacing as float32: round away the float32 noise (0.98 -> 0.9800000191)
            **{f"spacing_{a}_mm": round(float(s), 5) for a, s in zip("zyx", spacing_zyx(image))},
            "shape_z": shape_zyx(image)[0], "shape_y": shape_zyx(image)[1], "shape_x": shape_zyx(image)[2],
        }
        meta.update(extra or {})
        (tmp / "case.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        final = case_dir(root, case_id)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def clean_partial(root) -> None:
    """Remove temporary directories left by an interrupted conversion."""
    for tmp in Path(root).glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


def rebuild_case_table(root) -> "pd.DataFrame":
    """Scan the case directories and write cases.csv atomically; returns the table."""
    import pandas as pd  # here, not at the top: `rprloc localize` reads masks with this module, not tables

    root = Path(root)
    rows = []
    for meta_file in sorted(root.glob("*/case.json")):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        meta["organs"] = ";".join(meta["organs"])
        rows.append(meta)
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["split", "case_id"], key=_natural_key).reset_index(drop=True)
    tmp = root / f".{CASE_TABLE}.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, root / CASE_TABLE)
    return table


def _natural_key(col: "pd.Series") -> "pd.Series":
    if col.name == "split":
        return col.map({s: i for i, s in enumerate(SPLITS)}).fillna(len(SPLITS))
    # pt_2 before pt_10
    return col.map(lambda s: (s.rstrip("0123456789"), int(s[len(s.rstrip("0123456789")):] or -1)))


def read_case_table(root) -> "pd.DataFrame":
    import pandas as pd

    path = Path(root) / CASE_TABLE
    if not path.is_file():
        raise DataError(path, "no case table; run the dataset conversion first")
    table = pd.read_csv(path)
    table["organs"] = table["organs"].fillna("").map(lambda s: [o for o in s.split(";") if o])
    return table


def case_organs(root, case_id: str) -> list[str]:
    """The organs contoured in a case (from its case.json)."""
    path = case_dir(root, case_id) / "case.json"
    if not path.is_file():
        raise DataError(path, "case.json missing: not a converted case")
    return list(json.loads(path.read_text(encoding="utf-8"))["organs"])


def load_image(root, case_id: str) -> sitk.Image:
    path = case_dir(root, case_id) / "image.nii.gz"
    if not path.is_file():
        raise DataError(path, "image file missing")
    return sitk.ReadImage(str(path))


def load_label(root, case_id: str, organ: str) -> sitk.Image:
    path = case_dir(root, case_id) / "labels" / f"{organ}.nii.gz"
    if not path.is_file():
        raise MissingOrganError(path, f"case {case_id} has no {organ} label")
    return sitk.ReadImage(str(path))
