"""Atlas registration: what a user with one labelled CT would try first (METHOD: references).

The support (atlas) is registered to the query with SimpleITK: a rigid or affine transform,
initialised by the images' moments (centres of mass and principal axes of the intensity), a
multi-resolution pyramid, mean squares on the intensity-mapped volumes (both CT: same modality,
so the simplest metric fits) or Mattes mutual information (measured on one validation pair: no
better than mean squares and about 4x slower, so not among notebook 08's candidates). Each support mask is then resampled into
the query (nearest neighbour) and its extreme points are the prediction, as for the other methods.

Everything works in a case's working frame (`Volume`: (z, y, x) mm from its first voxel centre);
SimpleITK sees the same geometry in (x, y, z) order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from rprloc_core.geometry.space import zyx_to_xyz
from rprloc_core.geometry.volume import Volume

TRANSFORMS = ("translation", "rigid", "affine")
METRICS = ("mean_squares", "mattes")


@dataclass(frozen=True)
class RegistrationConfig:
    transform: str = "affine"
    metric: str = "mean_squares"
    shrink_factors: tuple = (4, 2, 1)
    smoothing_vox: tuple = (2.0, 1.0, 0.0)     # Gaussian sigma per level, in voxels of that level
    iterations: int = 100                       # per level
    sampling_fraction: float = 0.01             # random voxels the metric is evaluated on
    seed: int = 0

    def __post_init__(self):
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, not {self.transform!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, not {self.metric!r}")
        if len(self.shrink_factors) != len(self.smoothing_vox) or not self.shrink_factors:
            raise ValueError("shrink_factors and smoothing_vox need one entry per level")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def to_sitk(volume: Volume, array: np.ndarray | None = None) -> sitk.Image:
    """The volume (or another array on its grid) as a SimpleITK image in the volume's mm frame."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array if array is None else array))
    image.SetSpacing(tuple(float(v) for v in zyx_to_xyz(volume.spacing)))
    image.SetOrigin(tuple(float(v) for v in zyx_to_xyz(volume.origin_mm)))
    return image


def _initial_transform(fixed: sitk.Image, moving: sitk.Image, kind: str) -> sitk.Transform:
    if kind == "translation":
        # moments initialisation of a rigid transform, keeping only its translation
        rigid = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
        return sitk.TranslationTransform(3, sitk.Euler3DTransform(rigid).GetTranslation())
    base = sitk.Euler3DTransform() if kind == "rigid" else sitk.AffineTransform(3)
    return sitk.CenteredTransformInitializer(fixed, moving, base, sitk.CenteredTransformInitializerFilter.MOMENTS)


def register(query: Volume, support: Volume, config: RegistrationConfig = RegistrationConfig()) -> sitk.Transform:
    """The transform that maps query (fixed) positions to support (moving) positions, in the
    volumes' (x, y, z) mm frames. Deterministic for a given seed (single-threaded metric)."""
    fixed, moving = to_sitk(query), to_sitk(support)
    method = sitk.ImageRegistrationMethod()
    if config.metric == "mean_squares":
        method.SetMetricAsMeanSquares()
    else:
        method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    # SimpleITK reads seed 0 as "seed from the clock": shift by one so that every seed is fixed
    method.SetMetricSamplingPercentage(config.sampling_fraction, config.seed + 1)
    method.SetInterpolator(sitk.sitkLinear)
    # gradients at the sampled points only, not a gradient image of the whole volume per level
    method.SetMetricUseFixedImageGradientFilter(False)
    method.SetMetricUseMovingImageGradientFilter(False)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3,
                                                    numberOfIterations=config.iterations,
                                                    gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(config.shrink_factors))
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_vox))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(_initial_transform(fixed, moving, config.transform), inPlace=False)
    # One thread: the metric's sums are then reproducible (the evaluation runs one pair per process).
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        method.SetNumberOfThreads(1)
        return method.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)


def warp_mask(mask: np.ndarray, support: Volume, query: Volume, transform: sitk.Transform) -> np.ndarray:
    """A support mask (on the support's grid) resampled onto the query's grid (nearest neighbour)."""
    warped = sitk.Resample(to_sitk(support, mask.astype(np.uint8)), to_sitk(query), transform,
                           sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(warped).astype(bool)
