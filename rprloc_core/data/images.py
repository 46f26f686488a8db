"""Reading images as users and datasets deliver them: NIfTI, NRRD, MHA files or a folder with one
DICOM series, with errors that name the file (a truncated NIfTI is an error, not a padded volume)."""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rprloc_core.errors import DataError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def short_itk_message(message: str) -> str:
    """ITK errors carry source file names, line numbers and object pointers; keep the sentence."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message
    text = lines[-1]
    if "ITK ERROR:" in message:
        text = message.split("ITK ERROR:", 1)[1].strip().splitlines()[0]
    return re.sub(r"^\w+\(0x[0-9a-fA-F]+\):\s*", "", text)


def read_image(path, what: str = "image") -> sitk.Image:
    """Read a 3-D scalar image; a missing, unreadable or non-3-D file is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} file missing")
    if path.name.lower().endswith(".nii.gz") and path.with_name(path.name[:-3]).exists():
        # ITK's NIfTI library looks for "<name>.nii" first and would silently read that file instead
        raise DataError(path, f"both {path.name} and {path.name[:-3]} exist; ITK would read the .nii one; "
                              "remove one of them")
    if path.name.lower().endswith((".nii", ".nii.gz")):
        check_nifti_complete(path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise DataError(path, f"cannot read {what} ({short_itk_message(str(error))})") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(path, f"{what} is not a 3-D scalar image (dimension {image.GetDimension()}, "
                              f"{image.GetNumberOfComponentsPerPixel()} components)")
    return image


def check_nifti_complete(path, what: str = "image") -> None:
    """DataError if a .nii/.nii.gz file is truncated, its gzip stream is corrupt, or it stores NaN or
    infinite voxels.

    Needed because ITK's NIfTI reader silently returns a volume padded with garbage when the file
    was cut short (an interrupted copy or download), where the NRRD and MetaImage readers fail, and
    silently turns NaN into 0, so a NaN block would read as water. Reads the file through once
    (about a second for a large compressed CT).
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(path, f"{what} file is truncated or not valid gzip ({error})") from None
    expected = _nifti1_expected_length(data[:352])
    if expected is not None and len(data) < expected:
        raise DataError(path, f"{what} file is truncated: {len(data)} bytes of voxel data and header, "
                              f"the header promises {expected}")
    bad, total = _nifti1_nonfinite(data)
    if bad:
        raise DataError(path, f"the {what} has {bad} NaN or infinite voxel(s) of {total}")


_NIFTI_FLOAT_TYPES = {16: "f4", 64: "f8"}     # NIfTI-1 datatype codes of float32 and float64


def _nifti1_nonfinite(data: bytes) -> tuple[int, int]:
    """(NaN or infinite voxels, all voxels) of a float NIfTI-1 file's bytes; (0, 0) otherwise."""
    header = data[:348]
    if len(header) < 348:
        return 0, 0
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return 0, 0
    datatype = struct.unpack(endian + "h", header[70:72])[0]
    if datatype not in _NIFTI_FLOAT_TYPES:
        return 0, 0
    offset = int(struct.unpack(endian + "f", header[108:112])[0])
    values = np.frombuffer(data, dtype=endian + _NIFTI_FLOAT_TYPES[datatype], offset=offset)
    return int(np.count_nonzero(~np.isfinite(values))), values.size


def _nifti1_expected_length(header: bytes) -> int | None:
    """vox_offset + voxel bytes from a NIfTI-1 header; None if it is not one (ITK then decides)."""
    if len(header) < 348:
        return None
    for endian in "<>":
        if struct.unpack(endian + "i", header[:4])[0] == 348:
            break
    else:
        return None  # NIfTI-2 or not NIfTI at all
    dims = struct.unpack(endian + "8h", header[40:56])
    bitpix = struct.unpack(endian + "h", header[72:74])[0]
    vox_offset = struct.unpack(endian + "f", header[108:112])[0]
    if not 1 <= dims[0] <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(d, 1) for d in dims[1:dims[0] + 1]], dtype=np.int64))
    return int(vox_offset) + voxels * bitpix // 8


def strip_image_suffix(name: str) -> str | None:
    """'case7.nii.gz' -> 'case7'; None when the name has none of IMAGE_SUFFIXES."""
    lower = name.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def read_any_image(path) -> sitk.Image:
    """A CT image from a file, or from a folder holding one DICOM series."""
    path = Path(path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        series = reader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise DataError(path, "folder holds no DICOM series")
        if len(series) > 1:
            raise DataError(path, f"folder holds {len(series)} DICOM series; point at one series' folder")
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
        return reader.Execute()
    return read_image(path)
