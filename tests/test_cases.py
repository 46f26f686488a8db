import numpy as np
import pytest
import SimpleITK as sitk

from rprloc_core.data import cases
from rprloc_core.data.organs import canonical_organ
from rprloc_core.data.phantom import make_phantom_case, write_phantom_dataset
from rprloc_core.errors import DataError, UnknownOrganError


def test_write_and_read_case(tmp_path):
    image, labels = make_phantom_case(1)
    cases.write_case(tmp_path, "ph_1", image, {"Brain_Stem": labels["Brainstem"]}, "train", "phantom")
    table = cases.rebuild_case_table(tmp_path)
    assert table.loc[0, "organs"] == "Brainstem"
    back = cases.load_image(tmp_path, "ph_1")
    assert back.GetSpacing() == pytest.approx(image.GetSpacing())
    assert back.GetOrigin() == pytest.approx(image.GetOrigin())
    label = cases.load_label(tmp_path, "ph_1", "Brainstem")
    assert sitk.GetArrayFromImage(label).sum() == sitk.GetArrayFromImage(labels["Brainstem"]).sum()
    assert not list(tmp_path.glob(".tmp-*"))


def test_bad_labels_are_clear_errors(tmp_path):
    image, labels = make_phantom_case(2)
    empty = sitk.Image(labels["Brainstem"]) * 0
    with pytest.raises(DataError, match="Brainstem.*empty"):
        cases.write_case(tmp_path, "x", image, {"Brainstem": empty}, "train", "t")
    shifted = sitk.Image(labels["Brainstem"])
    shifted.SetOrigin((0.0, 0.0, 0.0))
    with pytest.raises(DataError, match="origin"):
        cases.write_case(tmp_path, "x", image, {"Brainstem": shifted}, "train", "t")
    with pytest.raises(UnknownOrganError, match="Liverish"):
        cases.write_case(tmp_path, "x", image, {"Liverish": labels["Brainstem"]}, "train", "t")
    assert not (tmp_path / "x").exists()


def test_canonical_names():
    assert canonical_organ("Parotid_L") == "LeftParotid"
    assert canonical_organ("BrainStem") == "Brainstem"


def test_phantom_is_deterministic_and_anatomical(tmp_path):
    a, la = make_phantom_case(7)
    b, lb = make_phantom_case(7)
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    c, _ = make_phantom_case(8)
    assert a.GetSize() != c.GetSize() or not np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(c))
    centre = {o: np.argwhere(sitk.GetArrayFromImage(m)).mean(0) for o, m in la.items()}  # (z, y, x)
    assert centre["Mandible"][1] < centre["Brainstem"][1]          # anterior
    assert centre["LeftParotid"][2] > centre["RightParotid"][2]    # patient's left is +x
    assert centre["Brainstem"][0] > centre["SpinalCord"][0]        # superior
    ids = write_phantom_dataset(tmp_path, 2, 1, 1)
    assert len(cases.read_case_table(tmp_path)) == len(ids) == 4
