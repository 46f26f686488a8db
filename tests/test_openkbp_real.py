"""Real OpenKBP patients: spacing and orientation checked by anatomy (METHOD 2.1)."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from data_prep import openkbp
from rprloc_core.data import cases
from rprloc_core.data.preprocess import PreprocessParams, load_preprocessed, preprocess_case
from rprloc_core.geometry.space import index_to_lps

pytestmark = pytest.mark.realdata


def _centroid_lps(label: sitk.Image) -> np.ndarray:
    return index_to_lps(label, np.argwhere(sitk.GetArrayFromImage(label)).mean(axis=0))


@pytest.fixture(scope="module")
def converted(openkbp_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("openkbp_real") / "cases"
    summary = openkbp.convert_openkbp(openkbp_source, out, progress=False, limit=3)
    assert summary.ok, str(summary)
    return out


def test_spacing_matches_voxel_dimensions(openkbp_source, converted):
    table = cases.read_case_table(converted)
    assert set(table.split) == {"train", "validation", "test"}
    patients = {c: f for c, _, f in openkbp.list_patients(openkbp_source)}
    for case_id in table.case_id:
        dims = pd.read_csv(openkbp.find_csv(patients[case_id], "voxel_dimensions"), header=None).to_numpy().ravel()
        image = cases.load_image(converted, case_id)
        assert image.GetSpacing() == pytest.approx((dims[1], dims[0], dims[2]))
        assert image.GetSize() == (128, 128, 128)
        hu = sitk.GetArrayViewFromImage(image)
        assert hu.min() >= -1024 and hu.max() <= 4095 - 1024


def test_orientation_by_anatomy(converted):
    checked = {"mandible": 0, "parotids": 0, "cord": 0}
    for case_id in cases.read_case_table(converted).case_id:
        organs = set(cases.read_case_table(converted).set_index("case_id").loc[case_id, "organs"])
        c = {o: _centroid_lps(cases.load_label(converted, case_id, o)) for o in organs}
        if {"Mandible", "Brainstem"} <= organs:
            assert c["Mandible"][1] < c["Brainstem"][1] - 20, case_id   # mandible anterior (LPS y)
            checked["mandible"] += 1
        if {"LeftParotid", "RightParotid"} <= organs:
            assert c["LeftParotid"][0] > c["RightParotid"][0] + 50, case_id  # left parotid at +x
            checked["parotids"] += 1
        if {"Brainstem", "SpinalCord"} <= organs:
            assert c["Brainstem"][2] > c["SpinalCord"][2], case_id     # brainstem superior (LPS z)
            checked["cord"] += 1
    assert all(n >= 2 for n in checked.values()), checked


def test_preprocessing_keeps_anatomy(converted, tmp_path):
    case_id = cases.read_case_table(converted).case_id.iloc[0]
    path = preprocess_case(converted, case_id, PreprocessParams(spacing_zyx=(3.0, 2.0, 2.0)), tmp_path)
    pre = load_preprocessed(path)
    assert pre.volume.spacing.tolist() == [3.0, 2.0, 2.0]
    image = pre.to_sitk(pre.hu)
    for organ, mask in pre.labels.items():
        before = _centroid_lps(cases.load_label(converted, case_id, organ))
        after = index_to_lps(image, np.argwhere(mask).mean(axis=0))
        assert np.linalg.norm(before - after) < 3.0, organ
