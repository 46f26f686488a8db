"""Preprocessing (METHOD 2.3): orient to LPS, crop the air, resample, map intensities.

The result of a case is cached on disk under a directory named by a hash of the parameters, so a
second run with the same parameters only reads files. The cache holds the resampled CT in HU
(int16) and the resampled masks; the intensity map is applied on load (it is cheap), which keeps
HU at hand for figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm.auto import tqdm

from rprloc_core.data import cases
from rprloc_core.errors import DataError, EmptyMaskError
from rprloc_core.geometry.boxes import bounding_box
from rprloc_core.geometry.space import shape_zyx, spacing_zyx, zyx_to_xyz
from rprloc_core.geometry.volume import Volume

PREPROCESS_VERSION = 2
INTENSITY_KNOTS_HU = (-500.0, -100.0, 100.0, 1500.0)
INTENSITY_VALUES = (0.0, 0.2, 0.8, 1.0)


@dataclass(frozen=True)
class PreprocessParams:
    spacing_zyx: tuple = (3.0, 2.0, 2.0)
    air_threshold_hu: float = -600.0
    ct_interpolator: str = "linear"     # or "bspline"
    version: int = PREPROCESS_VERSION

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return "pp-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def intensity_map(hu) -> np.ndarray:
    """Piecewise-linear map of HU, knots (-500, -100, 100, 1500) -> (0, 0.2, 0.8, 1), clamped.
    Everything at or below -500 HU is exactly 0: that is what "non-air" means later."""
    return np.interp(np.asarray(hu, dtype=np.float32), INTENSITY_KNOTS_HU, INTENSITY_VALUES).astype(np.float32)


def orient_lps(image: sitk.Image) -> sitk.Image:
    """Permute/flip axes so that the direction is (close to) identity in LPS."""
    return sitk.DICOMOrient(image, "LPS")


def air_crop_box(hu: np.ndarray, threshold_hu: float = -600.0, where: str | None = None):
    """Inclusive voxel box (lo, hi) of the voxels above the air threshold."""
    try:
        box = bounding_box(hu > threshold_hu)
    except EmptyMaskError:
        raise DataError(where, f"no voxel above {threshold_hu} HU: is this a CT in HU?") from None
    return box.lo.astype(int), box.hi.astype(int)


def crop(image: sitk.Image, lo_zyx, hi_zyx) -> sitk.Image:
    """Crop to an inclusive voxel box (the last voxel is kept); SimpleITK updates the origin."""
    lo, hi = np.asarray(lo_zyx, int), np.asarray(hi_zyx, int)
    size = (hi - lo + 1)[::-1].tolist()
    return sitk.RegionOfInterest(image, size=[int(s) for s in size], index=[int(i) for i in lo[::-1]])


def resample(image: sitk.Image, spacing_zyx_mm, interpolator=sitk.sitkLinear, default_value=0.0) -> sitk.Image:
    """Resample onto a grid with the same first voxel centre and direction and the new spacing;
    every new voxel centre lies inside the old grid."""
    old_spacing = spacing_zyx(image)
    new_spacing = np.asarray(spacing_zyx_mm, dtype=float)
    old_shape = np.asarray(shape_zyx(image))
    new_shape = np.floor((old_shape - 1) * old_spacing / new_spacing + 1e-6).astype(int) + 1
    return sitk.Resample(image, [int(s) for s in new_shape[::-1]], sitk.Transform(), interpolator,
                         image.GetOrigin(), tuple(zyx_to_xyz(new_spacing)), image.GetDirection(),
                         float(default_value), image.GetPixelID())


_INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


@dataclass
class PreprocessedCase:
    """One case on the working grid: intensity Volume, HU array, masks, and the LPS geometry."""
    case_id: str
    volume: Volume                              # intensity-mapped; its frame: pos_mm = idx * spacing
    hu: np.ndarray                              # int16 HU on the same grid (for display)
    labels: dict = field(default_factory=dict)  # organ -> uint8 mask (z, y, x)
    origin_lps: np.ndarray = field(default_factory=lambda: np.zeros(3))   # (x, y, z) mm
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict = field(default_factory=dict)
    # Derived facts about the masks (true boxes, landmarks), memoised by the scoring code: a case
    # is scored once per method, stage and K, and its masks never change once loaded.
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def spacing(self) -> np.ndarray:
        return self.volume.spacing

    def idx_to_mm(self, idx) -> np.ndarray:
        """Voxel indices (..., 3) of this grid -> positions in the case's mm frame."""
        return self.volume.idx_to_mm(idx)

    def mm_to_idx(self, pos_mm) -> np.ndarray:
        """Positions (..., 3) in the case's mm frame -> (float) voxel indices of this grid."""
        return self.volume.mm_to_idx(pos_mm)

    def to_sitk(self, array: np.ndarray) -> sitk.Image:
        """An array on this grid as a SimpleITK image with the case's physical geometry."""
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(zyx_to_xyz(self.spacing)))
        image.SetOrigin(tuple(float(v) for v in self.origin_lps))
        image.SetDirection(tuple(self.direction.ravel()))
        return image


def cache_path(cache_root, params: PreprocessParams, case_id: str) -> Path:
    return Path(cache_root) / params.key() / f"{case_id}.npz"


def preprocess_image(image: sitk.Image, labels: dict, params: PreprocessParams, where: str = "image"):
    """Preprocess an image in HU and its masks {organ: sitk mask on the image grid} in memory.
    Returns (arrays {"hu": int16, "label_<organ>": uint8}, info dict with the new grid's geometry)."""
    image = orient_lps(image)
    hu = sitk.GetArrayViewFromImage(image)
    originals = {}
    for organ, label in labels.items():
        label = orient_lps(label)
        cases.check_same_grid(image, label, f"{where} ({organ})")
        # any non-zero value is the organ: a mask stored as 0/0.5 or 0/255 must not vanish when
        # the resampled values are cast to uint8
        originals[organ] = sitk.Cast(label > 0, sitk.sitkUInt8)
    lo, hi = air_crop_box(hu, params.air_threshold_hu, where=where)
    # Some scans hold CT values in only part of the field of view; grow the crop so that no
    # organ loses voxels to it (a cut mask would change the true box the metrics compare with).
    coverage = {}
    for organ, label in originals.items():
        mask = sitk.GetArrayViewFromImage(label) > 0
        try:
            box = bounding_box(mask)
        except EmptyMaskError:
            raise DataError(f"{where} ({organ})", "organ mask is empty") from None
        lo, hi = np.minimum(lo, box.lo.astype(int)), np.maximum(hi, box.hi.astype(int))
        coverage[organ] = float(np.mean(hu[mask] > params.air_threshold_hu))
    cropped = crop(image, lo, hi)
    resampled = resample(sitk.Cast(cropped, sitk.sitkFloat32), params.spacing_zyx,
                         _INTERPOLATORS[params.ct_interpolator], default_value=-1024.0)
    arrays = {"hu": np.clip(np.rint(sitk.GetArrayFromImage(resampled)), -32768, 32767).astype(np.int16)}
    lost = []
    for organ, label in originals.items():
        label_new = resample(crop(label, lo, hi), params.spacing_zyx, sitk.sitkNearestNeighbor, 0)
        mask = sitk.GetArrayFromImage(label_new).astype(np.uint8)
        if mask.any():
            arrays[f"label_{organ}"] = mask
        else:
            lost.append(organ)  # smaller than a voxel of the new grid
    info = {
        "origin_lps": list(resampled.GetOrigin()), "direction": list(resampled.GetDirection()),
        "spacing_zyx": list(spacing_zyx(resampled)), "shape_zyx": list(shape_zyx(resampled)),
        "original_spacing_zyx": list(spacing_zyx(image)), "original_shape_zyx": list(shape_zyx(image)),
        "crop_lo_zyx": lo.tolist(), "crop_hi_zyx": hi.tolist(), "organs_lost_in_resampling": lost,
        # fraction of each organ's voxels where the CT holds tissue (> air threshold): low values
        # flag scans whose CT is missing around the organ
        "organ_ct_coverage": coverage,
    }
    return arrays, info


def preprocessed_from_arrays(case_id: str, arrays: dict, info: dict) -> PreprocessedCase:
    hu = arrays["hu"]
    labels = {k[len("label_"):]: v for k, v in arrays.items() if k.startswith("label_")}
    return PreprocessedCase(
        case_id=case_id, volume=Volume(intensity_map(hu), np.asarray(info["spacing_zyx"], float)), hu=hu,
        labels=labels, origin_lps=np.asarray(info["origin_lps"], float),
        direction=np.asarray(info["direction"], float).reshape(3, 3), meta=info)


def preprocess_case(cases_root, case_id: str, params: PreprocessParams, cache_root) -> Path:
    """Preprocess one case of the standard layout into the cache (a no-op if it is there)."""
    out = cache_path(cache_root, params, case_id)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / "params.json").write_text(json.dumps(asdict(params), indent=1), encoding="utf-8")
    meta = json.loads((cases.case_dir(cases_root, case_id) / "case.json").read_text(encoding="utf-8"))
    image = cases.load_image(cases_root, case_id)
    labels = {organ: cases.load_label(cases_root, case_id, organ) for organ in meta["organs"]}
    arrays, info = preprocess_image(image, labels, params, where=str(cases.case_dir(cases_root, case_id)))
    info = {"case_id": case_id, "split": meta["split"], "source": meta.get("source", ""), **info}
    tmp = out.with_suffix(f".tmp-{os.getpid()}.npz")
    np.savez(tmp, meta=np.array(json.dumps(info)), **arrays)
    os.replace(tmp, out)
    return out


def load_preprocessed(cache_file) -> PreprocessedCase:
    with np.load(cache_file) as data:
        info = json.loads(str(data["meta"]))
        arrays = {k: data[k] for k in data.files if k != "meta"}
    return preprocessed_from_arrays(info["case_id"], arrays, info)


def _preprocess_one(args):
    cases_root, case_id, params, cache_root = args
    start = time.perf_counter()
    try:
        preprocess_case(cases_root, case_id, params, cache_root)
        return case_id, None, time.perf_counter() - start
    except (DataError, RuntimeError, OSError) as error:  # SimpleITK raises RuntimeError on bad files
        return case_id, f"{type(error).__name__}: {error}", time.perf_counter() - start


def clean_partial_cache(cache_root, params: PreprocessParams) -> list[Path]:
    """Remove the temporary files an interrupted preprocessing run left (`<case>.tmp-<pid>.npz`);
    returns what was removed. Call it only when no other run writes to the same cache."""
    folder = Path(cache_root) / params.key()
    leftovers = sorted(folder.glob("*.tmp-*.npz")) if folder.is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def preprocess_all(cases_root, case_ids, params: PreprocessParams, cache_root, workers: int = 2,
                   progress: bool = True) -> dict:
    """Preprocess many cases (in worker processes); returns {'done': [...], 'failed': [(id, msg)]}.
    Leftovers of an interrupted earlier run are removed first."""
    clean_partial_cache(cache_root, params)
    jobs = [(str(cases_root), c, params, str(cache_root)) for c in case_ids]
    done, failed = [], []
    bar = tqdm(total=len(jobs), desc=f"preprocess {params.key()}", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_preprocess_one, jobs, chunksize=4)
            for case_id, error, _ in results:
                (failed.append((case_id, error)) if error else done.append(case_id))
                bar.update()
    else:
        for job in jobs:
            case_id, error, _ = _preprocess_one(job)
            (failed.append((case_id, error)) if error else done.append(case_id))
            bar.update()
    bar.close()
    return {"done": done, "failed": failed}
