import numpy as np
import pytest
import SimpleITK as sitk

from rprloc_core.data import cases
from rprloc_core.data.phantom import make_phantom_case
from rprloc_core.data.preprocess import (
    PreprocessParams,
    air_crop_box,
    cache_path,
    crop,
    intensity_map,
    load_preprocessed,
    preprocess_case,
    resample,
)
from rprloc_core.errors import DataError
from rprloc_core.geometry.space import index_to_lps


def test_intensity_map_knots_and_clamping():
    hu = np.array([-1024, -600, -500, -300, -100, 0, 100, 800, 1500, 3000])
    out = intensity_map(hu)
    assert out[:3].tolist() == [0, 0, 0]          # at or below -500 HU: exactly 0 ("air")
    assert out[3] == pytest.approx(0.1)
    assert out[4] == pytest.approx(0.2) and out[5] == pytest.approx(0.5) and out[6] == pytest.approx(0.8)
    assert out[7] == pytest.approx(0.9) and out[8] == 1 and out[9] == 1


def test_air_crop_keeps_the_last_voxel_and_updates_origin():
    hu = np.full((6, 7, 8), -1000, np.int16)
    hu[2:5, 1:3, 4:8] = 40
    lo, hi = air_crop_box(hu)
    assert lo.tolist() == [2, 1, 4] and hi.tolist() == [4, 2, 7]
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 2.0, 3.0))
    image.SetOrigin((10.0, 20.0, 30.0))
    cropped = crop(image, lo, hi)
    assert cropped.GetSize() == (4, 2, 3)
    assert np.allclose(cropped.GetOrigin(), (10 + 4 * 0.5, 20 + 1 * 2.0, 30 + 2 * 3.0))
    assert (sitk.GetArrayFromImage(cropped) == 40).all()
    with pytest.raises(DataError, match="no voxel above"):
        air_crop_box(np.full((3, 3, 3), -1000))


def test_resample_keeps_physical_positions():
    image, labels = make_phantom_case(3)
    out = resample(sitk.Cast(image, sitk.sitkFloat32), (3.0, 2.0, 2.0))
    assert np.allclose(out.GetSpacing(), (2.0, 2.0, 3.0))
    assert out.GetOrigin() == image.GetOrigin()
    # the last new voxel centre lies inside the old grid
    last_new = index_to_lps(out, np.array(out.GetSize()[::-1]) - 1)
    last_old = index_to_lps(image, np.array(image.GetSize()[::-1]) - 1)
    assert np.all(last_new <= last_old + 1e-6)
    # the brainstem centroid moves by less than a voxel
    label = resample(labels["Brainstem"], (3.0, 2.0, 2.0), sitk.sitkNearestNeighbor)
    before = index_to_lps(labels["Brainstem"], np.argwhere(sitk.GetArrayFromImage(labels["Brainstem"])).mean(0))
    after = index_to_lps(label, np.argwhere(sitk.GetArrayFromImage(label)).mean(0))
    assert np.linalg.norm(before - after) < 2.0


def test_preprocess_case_is_cached_and_keyed_by_parameters(tmp_path):
    image, labels = make_phantom_case(5)
    cases.write_case(tmp_path / "cases", "ph_5", image, labels, "train", "phantom")
    params = PreprocessParams(spacing_zyx=(4.0, 4.0, 4.0))
    path = preprocess_case(tmp_path / "cases", "ph_5", params, tmp_path / "cache")
    mtime = path.stat().st_mtime_ns
    assert preprocess_case(tmp_path / "cases", "ph_5", params, tmp_path / "cache").stat().st_mtime_ns == mtime
    other = preprocess_case(tmp_path / "cases", "ph_5", PreprocessParams(spacing_zyx=(3.0, 3.0, 3.0)), tmp_path / "cache")
    assert other != path and other.parent.name != path.parent.name
    case = load_preprocessed(path)
    assert case.volume.spacing.tolist() == [4.0, 4.0, 4.0]
    assert set(case.labels) == set(labels)
    assert case.volume.array.min() == 0 and case.volume.array.max() <= 1
    # air crop: the outer faces hold some non-air voxel
    assert (case.hu[0] > -600).any() and (case.hu[-1] > -600).any()
    assert cache_path(tmp_path / "cache", params, "ph_5") == path
