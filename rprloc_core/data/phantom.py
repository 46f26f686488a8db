"""A deterministic head-and-neck phantom: small CT-like volumes with organ labels.

Used by the fast tests and by the `smoke` profile, which needs no download. The anatomy is laid
out in LPS millimetres like a real head-and-neck scan (mandible anterior, brainstem superior to
the spinal cord, left parotid at +x), and every case varies in position, size, spacing and noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from rprloc_core.data import cases

FIELD_OF_VIEW_MM = np.array([150.0, 180.0, 180.0])  # (z, y, x)


def _ellipsoid(pos, centre, radii):
    return (((pos - centre) / radii) ** 2).sum(axis=-1) <= 1.0


def _smooth_noise(rng, shape, sigma_vox=2.0):
    noise = sitk.GetImageFromArray(rng.standard_normal(shape).astype(np.float32))
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(noise, sigma_vox))
    return smooth / (smooth.std() + 1e-6)


def make_phantom_case(seed: int, spacing_zyx=None):
    """One phantom case: (CT image in HU, {organ: mask image}) with identity direction (LPS)."""
    rng = np.random.default_rng(seed)
    if spacing_zyx is None:
        spacing_zyx = np.array([rng.uniform(2.0, 3.0), rng.uniform(2.2, 3.2), 0.0])
        spacing_zyx[2] = spacing_zyx[1]
    spacing_zyx = np.asarray(spacing_zyx, float)
    shape = np.round(FIELD_OF_VIEW_MM / spacing_zyx).astype(int)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    pos = idx * spacing_zyx  # (z, y, x) mm; z grows superiorly, y posteriorly, x to the left
    shift = rng.uniform(-8, 8, 3)
    scale = rng.uniform(0.9, 1.1)
    centre = FIELD_OF_VIEW_MM / 2 + shift

    def at(dz, dy, dx):
        return centre + scale * np.array([dz, dy, dx])

    hu = np.full(shape, -1000.0, np.float32)
    head = _ellipsoid(pos, at(25, 0, 0), scale * np.array([60, 70, 62]))
    neck = _ellipsoid(pos, at(-50, 10, 0), scale * np.array([60, 50, 45]))
    body = head | neck
    hu[body] = 30.0
    hu[_ellipsoid(pos, at(-20, -20, 0), scale * np.array([14, 10, 12]))] = -900  # airway
    skull = head & ~_ellipsoid(pos, at(28, 0, 0), scale * np.array([52, 62, 54]))
    hu[skull & (pos[..., 0] > centre[0] + 5 * scale)] = 900
    organs = {
        "Brainstem": _ellipsoid(pos, at(20, 18, 0), scale * np.array([14, 8, 8])),
        "SpinalCord": _ellipsoid(pos, at(-45, 28, 0), scale * np.array([40, 5, 5])),
        "LeftParotid": _ellipsoid(pos, at(0, 8, 40), scale * np.array([14, 12, 8])),
        "RightParotid": _ellipsoid(pos, at(0, 8, -40), scale * np.array([14, 12, 8])),
    }
    # Mandible: a U-shaped bony band, the bottom of the U pointing anteriorly (-y).
    outer = _ellipsoid(pos, at(-8, 5, 0), scale * np.array([9, 55, 42]))
    inner = _ellipsoid(pos, at(-8, 10, 0), scale * np.array([12, 47, 34]))
    organs["Mandible"] = outer & ~inner & (pos[..., 1] < centre[1] + 5 * scale)
    vertebrae = _ellipsoid(pos, at(-45, 28, 0), scale * np.array([45, 11, 11])) & ~organs["SpinalCord"]
    hu[vertebrae] = 700
    hu[organs["Mandible"]] = 1100
    hu[organs["Brainstem"]] = 45
    hu[organs["SpinalCord"]] = 40
    hu[organs["LeftParotid"]] = -40
    hu[organs["RightParotid"]] = -40
    hu += (15.0 * _smooth_noise(rng, shape, 1.5)) * body
    image = sitk.GetImageFromArray(np.round(hu).astype(np.int16))
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(tuple(float(v) for v in rng.uniform(-200, -100, 3)))
    labels = {}
    for organ, mask in organs.items():
        label = sitk.GetImageFromArray(mask.astype(np.uint8))
        label.CopyInformation(image)
        labels[organ] = label
    return image, labels


def write_phantom_dataset(out_root, n_train: int = 6, n_validation: int = 2, n_test: int = 3,
                          seed: int = 0) -> list[str]:
    """Write phantom cases in the standard layout (idempotent); returns the case ids."""
    out_root = Path(out_root)
    cases.clean_partial(out_root)
    ids = []
    counts = (("train", n_train), ("validation", n_validation), ("test", n_test))
    number = 0
    for split, n in counts:
        for _ in range(n):
            number += 1
            case_id = f"ph_{number}"
            ids.append(case_id)
            if not cases.case_exists(out_root, case_id):
                image, labels = make_phantom_case(seed * 1000 + number)
                cases.write_case(out_root, case_id, image, labels, split, source="phantom")
    cases.rebuild_case_table(out_root)
    return ids
