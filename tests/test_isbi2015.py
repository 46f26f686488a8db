"""The ISBI 2015 cephalometric adapter, on small synthetic files in exactly the release's layout
(the real data cannot be fetched here): BMP images in RawImage/{TrainingData,Test1Data,Test2Data},
two doctors' text files of 19 "x,y" lines followed by classification lines."""

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import isbi2015
from rprloc_core.data.landmark_cases import load_landmark_case, read_case_table
from rprloc_core.errors import DataError
from rprloc_core.metrics import detection_rate

SPLITS = {"TrainingData": ["001", "002"], "Test1Data": ["151"], "Test2Data": ["301"]}
WIDTH, HEIGHT = 40, 50


def _points(rng):
    return np.column_stack([rng.integers(0, WIDTH, 19), rng.integers(0, HEIGHT, 19)])


def make_release(root, rgb_case="002", nested=True, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    truth = {}
    for folder, ids in SPLITS.items():
        (root / "RawImage" / folder).mkdir(parents=True, exist_ok=True)
        for case_id in ids:
            grey = rng.integers(0, 255, size=(HEIGHT, WIDTH)).astype(np.uint8)
            if case_id == rgb_case:      # some distributions store the cephalograms as 24-bit BMPs
                image = sitk.GetImageFromArray(np.repeat(grey[..., None], 3, axis=2), isVector=True)
            else:
                image = sitk.GetImageFromArray(grey)
            sitk.WriteImage(image, str(root / "RawImage" / folder / f"{case_id}.bmp"))
            senior, junior = _points(rng), _points(rng)
            for name, xy in (("senior", senior), ("junior", junior)):
                folder_md = root / ("AnnotationsByMD" if nested else "") / f"400_{name}"
                folder_md.mkdir(parents=True, exist_ok=True)
                lines = [f"{x},{y}" for x, y in xy] + [str(v) for v in rng.integers(1, 4, 8)]
                (folder_md / f"{case_id}.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
            truth[case_id] = (grey, senior, junior)
    return truth


@pytest.mark.parametrize("nested", [True, False])
def test_adapter_writes_the_mean_of_both_doctors_in_mm(tmp_path, nested):
    truth = make_release(tmp_path / "src", nested=nested)
    table = isbi2015.convert(tmp_path / "src", tmp_path / "out")
    assert dict(zip(table.case_id, table.split)) == {"001": "train", "002": "train", "151": "test1", "301": "test2"}
    for case_id, (grey, senior, junior) in truth.items():
        case = load_landmark_case(tmp_path / "out", case_id)
        np.testing.assert_allclose(case.image, grey, atol=0.5)                   # RGB averaged to grey
        np.testing.assert_allclose(case.spacing, [0.1, 0.1])
        expected = (senior + junior) / 2.0 * 0.1                                  # (x, y) px -> mm
        np.testing.assert_allclose(case.landmarks_mm, expected[:, ::-1], atol=1e-9)   # stored (y, x)
        assert case.names[0] == "sella" and len(case.names) == 19
    assert list(read_case_table(tmp_path / "out").columns) == ["case_id", "split", "height_px", "width_px",
                                                               "pixel_mm", "image"]


def test_one_doctor_only(tmp_path):
    truth = make_release(tmp_path / "src")
    isbi2015.convert(tmp_path / "src", tmp_path / "out", annotators=("senior",))
    case = load_landmark_case(tmp_path / "out", "151")
    np.testing.assert_allclose(case.landmarks_mm, truth["151"][1][:, ::-1] * 0.1)


def test_bad_release_files_fail_with_the_file_named(tmp_path):
    make_release(tmp_path / "src")
    path = tmp_path / "src" / "AnnotationsByMD" / "400_junior" / "151.txt"
    path.write_text("1,2\n3,4\n", encoding="utf-8")
    with pytest.raises(DataError, match="151.txt: 2 landmark lines"):
        isbi2015.convert(tmp_path / "src", tmp_path / "out")
    path.write_text("\n".join(["5,5"] * 18 + [f"{WIDTH + 3},4"]), encoding="utf-8")
    with pytest.raises(DataError, match="landmark 19 .* outside the 40 x 50 image"):
        isbi2015.convert(tmp_path / "src", tmp_path / "out")
    path.unlink()
    with pytest.raises(DataError, match="annotation file missing"):
        isbi2015.convert(tmp_path / "src", tmp_path / "out")
    with pytest.raises(DataError, match="RawImage"):
        isbi2015.list_cases(tmp_path / "nothing")
    with pytest.raises(DataError, match="400_senior"):
        isbi2015.convert(tmp_path / "nothing", tmp_path / "out2")
    with pytest.raises(ValueError):
        isbi2015.convert(tmp_path / "src", tmp_path / "out2", annotators=())


def test_cli_and_metrics_on_original_resolution(tmp_path, capsys):
    make_release(tmp_path / "src")
    assert isbi2015.main(["--source", str(tmp_path / "src"), "--out", str(tmp_path / "out")]) == 0
    assert "4 cases" in capsys.readouterr().out
    case = load_landmark_case(tmp_path / "out", "001")
    errors = np.linalg.norm(case.landmarks_mm + [[0.0, 2.2]] - case.landmarks_mm, axis=1)   # 2.2 mm off
    assert detection_rate(errors, (2.0, 2.5)) == {2.0: 0.0, 2.5: 1.0}
    assert isbi2015.main(["--source", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
