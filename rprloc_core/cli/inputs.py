"""Reading what a user hands the commands: CT images, support masks, models; each problem is one
DataError naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rprloc_core.data.images import read_any_image, strip_image_suffix
from rprloc_core.errors import DataError, UnknownOrganError

# Air in HU, its bounds wide of -1000: values below -1500 are the padding some scanners write
# outside the field of view (-2000, -3024), not air.
AIR_RANGE_HU = (-1500, -500)


def read_ct(path, what: str) -> sitk.Image:
    """A CT image whose every voxel is a number (NaN or infinite voxels are an error)."""
    image = read_any_image(path)               # NaN in a NIfTI file is refused there (ITK reads it as 0)
    values = sitk.GetArrayViewFromImage(image)
    bad = int(np.count_nonzero(~np.isfinite(values))) if np.issubdtype(values.dtype, np.floating) else 0
    if bad:
        raise DataError(path, f"the {what} image has {bad} NaN or infinite voxel(s) of {values.size}")
    if not values.size:
        return image
    low, high = values.min(), values.max()
    if low == high:
        raise DataError(path, f"the {what} image has the same value ({low}) everywhere: not a CT")
    # A head-and-neck CT in Hounsfield units holds air (about -1000 HU) around the body and in the
    # airways. Without any, the intensity map (METHOD 2.3) would read air as tissue and every box
    # would be wrong without a word: stored values not rescaled to HU (air near 0), an MR image.
    # Where the darkest voxel is air (most scans) no second pass over the image is needed.
    air = AIR_RANGE_HU[0] <= low <= AIR_RANGE_HU[1] or (
        low < AIR_RANGE_HU[0] and np.any((values >= AIR_RANGE_HU[0]) & (values <= AIR_RANGE_HU[1])))
    if not air:
        raise DataError(path, f"the {what} image has no voxel of air ({AIR_RANGE_HU[0]} to {AIR_RANGE_HU[1]} HU; "
                              f"its values run from {low:g} to {high:g}): is it a CT in Hounsfield units? "
                              "Rescale stored values to HU first (air near 0 means they were not)")
    return image


def read_support_labels(path, organ: str | None, wanted=None) -> tuple[dict, dict]:
    """({organ: mask image}, {organ: the file it came from}) from a folder of masks named by organ,
    or one mask file with `organ`. Files with names that are no known organ are skipped with a
    note on stderr (as the dataset adapters do) unless nothing else is left."""
    from rprloc_core.data.organs import canonical_organ

    path = Path(path)
    if not path.exists():
        raise DataError(path, "support labels not found")
    if not path.is_dir():
        if not organ:
            raise DataError(path, "a single mask file needs --organ NAME")
        return {canonical_organ(organ): read_any_image(path)}, {canonical_organ(organ): path}
    files = {}
    for file in sorted(path.iterdir()):
        stem = strip_image_suffix(file.name)
        if not stem:
            continue
        try:
            files[canonical_organ(stem, source=str(file))] = file
        except UnknownOrganError as error:
            print(f"note: skipping {error}", file=sys.stderr)
    if not files:
        raise DataError(path, "no mask file named by a known organ (.nii, .nii.gz, .nrrd, .mha) in the labels folder")
    missing = [o for o in (wanted or ()) if o not in files]
    if missing:
        raise DataError(path, f"no mask for {', '.join(missing)} (has: {', '.join(sorted(files))})")
    chosen = {o: f for o, f in files.items() if not wanted or o in wanted}
    return {o: read_any_image(f) for o, f in chosen.items()}, chosen


def load_model(models_dir, role: str, required: bool = True):
    """The `role` ("coarse" or "fine") Pnet of a models folder (a release with its manifest, whose
    files are checked against their sha256, or `rprloc train`'s output: <role>/best.pt), checked to
    be a model of that role (its checkpoint records the mode it was trained in). None if absent and
    not `required`."""
    from rprloc_core.experiments import weights
    from rprloc_core.rprloc.pnet import pnet_from_payload, read_checkpoint

    if weights.is_release(models_dir):
        if role not in weights.read_manifest(models_dir)["models"] and not required:
            return None
        path = weights.released_file(models_dir, role)
    else:
        path = Path(models_dir) / role / "best.pt"
    if not path.is_file():
        if not required:
            return None
        raise DataError(path, f"the {role} model is missing")
    payload = read_checkpoint(path)
    mode = (payload.get("extra") or {}).get("train_config", {}).get("mode")
    if mode is not None and mode != role:
        raise DataError(path, f"this checkpoint is a {mode} model but sits where the {role} model belongs "
                              "(coarse and fine swapped?)")
    return pnet_from_payload(payload, path)


def preprocess(image, labels, spacing_zyx, case_id, where):
    """The image (and its masks) resampled to the working grid: a PreprocessedCase."""
    from rprloc_core.data.preprocess import PreprocessParams, preprocess_image, preprocessed_from_arrays

    arrays, info = preprocess_image(image, labels, PreprocessParams(spacing_zyx=tuple(spacing_zyx)), where=where)
    return preprocessed_from_arrays(case_id, arrays, info)


def check_fits_models(volume, models, path) -> None:
    """The query must hold a whole patch of every model on that model's grid."""
    from rprloc_core.geometry.patches import require_volume_fits_patch
    from rprloc_core.rprloc.inference import grid_for_model

    for model in models:
        grid = grid_for_model(volume, model.spacing_mm)
        try:
            require_volume_fits_patch(grid.shape, model.patch_size, f"the image on a {model.spacing_mm} mm grid")
        except ValueError as error:
            raise DataError(path, str(error)) from None


def release_folder(argument: str, default: str) -> Path:
    """The models folder an option names. Its default (a folder of the project, such as
    weights/openkbp-han-demo) is found from the project root, wherever the command runs."""
    if argument == default:
        from rprloc_core.paths import PROJECT_ROOT

        return PROJECT_ROOT / default
    return Path(argument)
