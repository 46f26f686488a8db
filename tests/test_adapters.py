"""Dataset adapters on tiny synthetic datasets written in each dataset's own layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import _convert, generic, nih_pancreas, pddca, structseg
from rprloc_core.data.cases import load_image, load_label, read_case_table
from rprloc_core.errors import DataError, UnknownOrganError

SIZE_XYZ = (20, 24, 28)
SHAPE_ZYX = SIZE_XYZ[::-1]
SPACING_XYZ = (0.98, 0.98, 3.0)
ORIGIN_XYZ = (-120.5, -95.25, -310.0)


def make_ct(seed: int = 0) -> sitk.Image:
    array = np.random.default_rng(seed).integers(-1000, 1500, SHAPE_ZYX).astype(np.int16)
    return on_grid(array)


def on_grid(array: np.ndarray, spacing=SPACING_XYZ, origin=ORIGIN_XYZ) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def box_mask(z0, z1, y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros(SHAPE_ZYX, np.uint8)
    mask[z0:z1, y0:y1, x0:x1] = 1
    return mask


# Organ boxes (z, y, x slices) that do not overlap, so one multi-label map can hold them all.
BOXES = {
    "Brainstem": (2, 8, 10, 14, 8, 12),
    "LeftParotid": (10, 16, 4, 9, 14, 18),
    "RightParotid": (10, 16, 4, 9, 1, 5),
    "SpinalCord": (18, 27, 15, 19, 9, 11),
    "MandibleLeft": (20, 24, 2, 6, 11, 16),
    "MandibleRight": (20, 24, 2, 6, 4, 9),
}


def masks() -> dict:
    return {name: box_mask(*box) for name, box in BOXES.items()}


def write(image_or_array, path: Path, like: sitk.Image | None = None) -> Path:
    image = image_or_array
    if isinstance(image_or_array, np.ndarray):
        image = sitk.GetImageFromArray(image_or_array)
        image.CopyInformation(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def assert_case(out: Path, case_id: str, ct: sitk.Image, expected: dict) -> None:
    """Geometry preserved, exactly the expected organs, with the expected voxel counts and places."""
    image = load_image(out, case_id)
    assert image.GetSize() == ct.GetSize()
    assert np.allclose(image.GetSpacing(), ct.GetSpacing())
    assert np.allclose(image.GetOrigin(), ct.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(ct))
    table = read_case_table(out).set_index("case_id")
    assert sorted(table.loc[case_id, "organs"]) == sorted(expected)
    for organ, mask in expected.items():
        label = load_label(out, case_id, organ)
        assert np.allclose(label.GetOrigin(), ct.GetOrigin())
        got = sitk.GetArrayFromImage(label)
        assert got.sum() == mask.sum() > 0
        assert np.array_equal(got > 0, mask > 0)


def failed_messages(summary) -> dict:
    return dict(summary.failed)


# ---------------------------------------------------------------- shared loop


def test_run_conversion_records_failures_and_resumes(tmp_path):
    ct = make_ct()
    mask = box_mask(*BOXES["Brainstem"])

    def load(arg):
        if arg == "bad":
            raise DataError(tmp_path / "bad.nii.gz", "made up problem")
        if arg == "itk":
            raise RuntimeError("Exception thrown in SimpleITK ReadImage: /src/itk.cxx:12:\n"
                               "ITK ERROR: ImageFileReader(0x55d1): Could not read /x/y.nrrd")
        return ct, {"brain_stem": on_grid(mask)}

    (tmp_path / "out" / ".tmp-old-1234").mkdir(parents=True)  # left by an interrupted run
    items = [("a", "train", "ok"), ("b", "test", "bad"), ("c", "validation", "itk")]
    summary = _convert.run_conversion(items, load, tmp_path / "out", source="unit", progress=False)
    assert summary.converted == ["a"] and summary.skipped == []
    messages = failed_messages(summary)
    assert "bad.nii.gz: made up problem" in messages["b"]
    assert messages["c"] == "RuntimeError: Could not read /x/y.nrrd"
    assert not (tmp_path / "out" / ".tmp-old-1234").exists()
    table = read_case_table(tmp_path / "out")
    assert table["case_id"].tolist() == ["a"] and table["organs"].tolist() == [["Brainstem"]]
    assert "FAILED b" in str(summary) and set(summary.to_frame()["status"]) == {"converted", "failed"}

    again = _convert.run_conversion(items, load, tmp_path / "out", source="unit", progress=False)
    assert again.converted == [] and again.skipped == ["a"] and len(again.failed) == 2


def test_run_conversion_lets_programming_errors_through(tmp_path):
    def broken(arg):
        raise KeyError("a bug, not a bad file")

    with pytest.raises(KeyError):
        _convert.run_conversion([("a", "train", None)], broken, tmp_path, progress=False)
    assert (tmp_path / "cases.csv").is_file()  # the table still reflects what is on disk


def test_seeded_split_is_deterministic_and_covers_all_cases():
    ids = [f"case{i}" for i in range(20)]
    first, _ = _convert.assign_splits(ids, seed=3)
    second, _ = _convert.assign_splits(list(reversed(ids)), seed=3)
    assert first == second
    counts = {s: list(first.values()).count(s) for s in ("train", "validation", "test")}
    assert counts == {"train": 13, "validation": 2, "test": 5}
    assert _convert.assign_splits(ids, seed=4)[0] != first


def test_truncated_nifti_is_an_error_naming_the_file(tmp_path):
    for name in ("ct.nii.gz", "ct2.nii"):
        path = write(make_ct(), tmp_path / name)
        truncate(path)
        with pytest.raises(DataError, match=name.replace(".", r"\.") + ".*truncated"):
            _convert.read_image(path)


# ---------------------------------------------------------------- generic folder


def write_generic_folder_form(root: Path) -> dict:
    """Four cases with per-organ mask files; c3 has an empty mask, c4 a truncated image."""
    expected = {}
    m = masks()
    for case_id, ext, seed in (("c1", "nii.gz", 1), ("c2", "mha", 2), ("c3", "nrrd", 3), ("c4", "nii.gz", 4)):
        ct = make_ct(seed)
        write(ct, root / "images" / f"{case_id}.{ext}")
        write(m["Brainstem"], root / "labels" / case_id / "Brainstem.nii.gz", ct)
        write(m["LeftParotid"], root / "labels" / case_id / "Parotid_L.nrrd", ct)  # an alias
        expected[case_id] = (ct, {"Brainstem": m["Brainstem"], "LeftParotid": m["LeftParotid"]})
    write(m["LeftParotid"], root / "labels" / "c1" / "Eye_L.nii.gz", make_ct(1))  # not ours: skipped
    write(np.zeros(SHAPE_ZYX, np.uint8), root / "labels" / "c3" / "RightParotid.nii.gz", make_ct(3))
    truncate(root / "images" / "c4.nii.gz")
    write(m["Brainstem"], root / "labels" / "c5" / "Brainstem.nii.gz", make_ct(5))  # labels, no image
    write(make_ct(6), root / "images" / "c6.nii.gz")  # image, no labels: unlabelled training volume
    (root / "splits.csv").write_text("case_id,split\nc1,train\nc2,test\nc3,val\nc4,train\nc5,train\nc6,train\n", encoding="utf-8")
    return expected


def test_generic_folder_form(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    expected = write_generic_folder_form(src)
    summary = generic.convert(src, out, progress=False)
    assert sorted(summary.converted) == ["c1", "c2", "c6"]
    messages = failed_messages(summary)
    assert set(messages) == {"c3", "c4", "c5"}
    assert "RightParotid.nii.gz" in messages["c3"] and "empty" in messages["c3"]
    assert "c4.nii.gz" in messages["c4"] and "truncated" in messages["c4"]
    assert "c5" in messages["c5"] and "without an image" in messages["c5"]
    notes = dict(summary.notes)
    assert "Eye_L" in notes["c1"] and "unlabelled" in notes["c6"]

    table = read_case_table(out).set_index("case_id")
    assert table.loc["c1", "split"] == "train" and table.loc["c2", "split"] == "test"
    assert table.loc["c6", "organs"] == []
    for case_id in ("c1", "c2"):
        assert_case(out, case_id, *expected[case_id])

    again = generic.convert(src, out, progress=False)
    assert again.converted == [] and sorted(again.skipped) == ["c1", "c2", "c6"]
    assert set(failed_messages(again)) == {"c3", "c4", "c5"}


def write_generic_map_form(root: Path, label_map_text: str, map_name: str = "label_map.json") -> dict:
    m = masks()
    ct = make_ct(7)
    label = np.zeros(SHAPE_ZYX, np.uint8)
    for value, name in ((1, "Brainstem"), (2, "MandibleLeft"), (3, "MandibleRight"), (9, "SpinalCord")):
        label[m[name] > 0] = value
    write(ct, root / "images" / "m1.nii.gz")
    write(label, root / "labels" / "m1.nii.gz", ct)
    shifted = on_grid(label, origin=(ORIGIN_XYZ[0] + 5.0, ORIGIN_XYZ[1], ORIGIN_XYZ[2]))
    write(ct, root / "images" / "m2.nii.gz")
    write(shifted, root / "labels" / "m2.nii.gz")  # off the image grid
    (root / map_name).write_text(label_map_text, encoding="utf-8")
    return {"m1": (ct, {"Brainstem": m["Brainstem"], "Mandible": m["MandibleLeft"] | m["MandibleRight"]})}


@pytest.mark.parametrize("map_name,text", [
    ("label_map.json", json.dumps({"1": "Brainstem", "2": "Mandible", "3": "mandible"})),
    ("label_map.csv", "value,organ\n1,Brain_Stem\n2,Mandible\n3,Mandible\n"),
])
def test_generic_label_map_form(tmp_path, map_name, text):
    src, out = tmp_path / "src", tmp_path / "out"
    expected = write_generic_map_form(src, text, map_name)
    summary = generic.convert(src, out, seed=1, progress=False)
    assert summary.converted == ["m1"]
    assert "m2.nii.gz" in failed_messages(summary)["m2"] and "origin" in failed_messages(summary)["m2"]
    assert "[9]" in dict(summary.notes)["m1"]  # value 9 is in the file but not in the map
    assert_case(out, "m1", *expected["m1"])


def test_generic_unknown_organ_in_label_map_stops_with_the_map_named(tmp_path):
    src = tmp_path / "src"
    write_generic_map_form(src, json.dumps({"1": "Brainstem", "2": "Eye_L"}))
    with pytest.raises(UnknownOrganError, match="label_map.json.*Eye_L"):
        generic.convert(src, tmp_path / "out", progress=False)


def test_generic_case_with_both_label_forms_fails(tmp_path):
    src = tmp_path / "src"
    write_generic_map_form(src, json.dumps({"1": "Brainstem"}))
    write(box_mask(*BOXES["Brainstem"]), src / "labels" / "m1" / "Brainstem.nii.gz", make_ct(7))
    summary = generic.convert(src, tmp_path / "out", progress=False)
    assert "both" in failed_messages(summary)["m1"]


# ---------------------------------------------------------------- StructSeg 2019


def structseg_label(drop=()) -> np.ndarray:
    m = masks()
    label = np.zeros(SHAPE_ZYX, np.uint8)
    for value, name in ((1, "Brainstem"), (12, "LeftParotid"), (13, "RightParotid"), (20, "SpinalCord"),
                        (21, "MandibleLeft"), (22, "MandibleRight")):
        if value not in drop:
            label[m[name] > 0] = value
    label[0:2, 0:2, 0:2] = 2  # Eye_L: defined by the challenge, not used here, not noted
    return label


def test_structseg(tmp_path):
    src, out = tmp_path / "HaN_OAR", tmp_path / "out"
    m = masks()
    cts = {n: make_ct(10 + n) for n in (1, 2, 3)}
    for n, ct in cts.items():
        write(ct, src / str(n) / "data.nii.gz")
    write(structseg_label(), src / "1" / "label.nii.gz", cts[1])
    write(structseg_label(drop=(13,)), src / "2" / "label.nii.gz", cts[2])
    wrong = sitk.GetImageFromArray(structseg_label()[:, :, :-2])
    wrong.SetSpacing(SPACING_XYZ)
    wrong.SetOrigin(ORIGIN_XYZ)
    write(wrong, src / "3" / "label.nii.gz")

    summary = structseg.convert(src, out, progress=False)
    assert sorted(summary.converted) == ["structseg_1", "structseg_2"]
    message = failed_messages(summary)["structseg_3"]
    assert str(src / "3" / "label.nii.gz") in message and "grid" in message
    assert "RightParotid" in dict(summary.notes)["structseg_2"]
    assert all("Eye" not in note and "[2]" not in note for _, note in summary.notes)

    organs = {name: m[name] for name in ("Brainstem", "LeftParotid", "RightParotid", "SpinalCord")}
    organs["Mandible"] = m["MandibleLeft"] | m["MandibleRight"]  # the union of labels 21 and 22
    assert organs["Mandible"].sum() == m["MandibleLeft"].sum() + m["MandibleRight"].sum()
    assert_case(out, "structseg_1", cts[1], organs)
    del organs["RightParotid"]
    assert_case(out, "structseg_2", cts[2], organs)
    assert set(read_case_table(out)["source"]) == {"structseg2019"}

    again = structseg.convert(src, out, progress=False)
    assert again.converted == [] and sorted(again.skipped) == ["structseg_1", "structseg_2"]


# ---------------------------------------------------------------- PDDCA


def test_pddca(tmp_path):
    src, out = tmp_path / "pddca", tmp_path / "out"
    m = masks()
    names = {"BrainStem": m["Brainstem"], "Mandible": m["MandibleLeft"], "Parotid_L": m["LeftParotid"],
             "Parotid_R": m["RightParotid"], "Chiasm": m["SpinalCord"], "OpticNerve_L": m["SpinalCord"]}
    cts = {}
    for i, case in enumerate(("0522c0001", "0522c0002", "0522c0003", "0522c0004")):
        cts[case] = ct = make_ct(20 + i)
        write(ct, src / case / "img.nrrd")
        for name, mask in names.items():
            write(mask, src / case / "structures" / f"{name}.nrrd", ct)
    truncate(src / "0522c0002" / "img.nrrd")
    write(np.zeros(SHAPE_ZYX, np.uint8), src / "0522c0003" / "structures" / "Parotid_R.nrrd", cts["0522c0003"])
    (src / "0522c0004" / "img.nrrd").unlink()

    summary = pddca.convert(src, out, progress=False)
    assert summary.converted == ["pddca_0522c0001"]
    messages = failed_messages(summary)
    assert "0522c0002/img.nrrd" in messages["pddca_0522c0002"] and "cannot read" in messages["pddca_0522c0002"]
    assert "Parotid_R.nrrd" in messages["pddca_0522c0003"] and "empty" in messages["pddca_0522c0003"]
    assert "0522c0004/img.nrrd" in messages["pddca_0522c0004"] and "missing" in messages["pddca_0522c0004"]
    assert "Chiasm, OpticNerve_L" in dict(summary.notes)["pddca_0522c0001"]
    assert_case(out, "pddca_0522c0001", cts["0522c0001"],
                {"Brainstem": m["Brainstem"], "Mandible": m["MandibleLeft"],
                 "LeftParotid": m["LeftParotid"], "RightParotid": m["RightParotid"]})
    again = pddca.convert(src, out, progress=False)
    assert again.converted == [] and again.skipped == ["pddca_0522c0001"]


# ---------------------------------------------------------------- NIH Pancreas-CT


def write_dicom_series(folder: Path, ct: sitk.Image, series_number: int) -> None:
    """One file per slice with the tags GDCM needs to stack them back into the same 3-D volume."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = f"1.2.826.0.1.3680043.2.1125.{series_number}"
    array = sitk.GetArrayFromImage(ct)
    for k in range(array.shape[0]):
        slice_image = sitk.GetImageFromArray(array[k])
        slice_image.SetSpacing(ct.GetSpacing()[:2])
        position = ct.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {"0008|0060": "CT", "0020|000d": uid + ".1", "0020|000e": uid + ".2",
                "0008|0018": f"{uid}.3.{k + 1}", "0020|0013": str(k + 1),
                "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0032": "\\".join(f"{v:.4f}" for v in position),
                "0018|0050": str(ct.GetSpacing()[2])}
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k + 1:04d}.dcm"))
        writer.Execute(slice_image)


def test_nih_pancreas(tmp_path):
    src, labels, out = tmp_path / "Pancreas-CT", tmp_path / "labels", tmp_path / "out"
    pancreas = box_mask(8, 14, 6, 12, 5, 15)
    cts = {}
    for number in (1, 2, 3, 4):
        cts[number] = ct = make_ct(30 + number)
        write_dicom_series(src / f"PANCREAS_{number:04d}" / f"1.2.3.{number}" / f"1.2.3.{number}.9", ct, number)
    write(pancreas, labels / "label0001.nii.gz", cts[1])  # same grid
    # 0002: stored top-down (z flipped in the array, and the header says so): same voxels in space
    flipped = on_grid(pancreas[::-1].copy(),
                      origin=cts[2].TransformIndexToPhysicalPoint((0, 0, SIZE_XYZ[2] - 1)))
    flipped.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))
    write(flipped, labels / "label0002.nii.gz")
    # 0003: header lost (unit spacing at the origin), array still on the CT's voxels
    write(on_grid(pancreas, spacing=(1, 1, 1), origin=(0, 0, 0)), labels / "label0003.nii.gz")
    # 0004: a different grid altogether
    write(on_grid(pancreas[:, :, :-3].copy(), spacing=(1, 1, 1), origin=(0, 0, 0)), labels / "label0004.nii.gz")
    write(pancreas, labels / "label0005.nii.gz", cts[1])  # no DICOM folder for it

    summary = nih_pancreas.convert(src, out, labels, progress=False)
    assert summary.converted == ["PANCREAS_0001", "PANCREAS_0002", "PANCREAS_0003"]
    messages = failed_messages(summary)
    assert set(messages) == {"PANCREAS_0004", "PANCREAS_0005"}
    assert "label0004.nii.gz" in messages["PANCREAS_0004"] and "PANCREAS_0004" in messages["PANCREAS_0004"]
    assert "label0005.nii.gz" in messages["PANCREAS_0005"]
    notes = dict(summary.notes)
    assert "PANCREAS_0001" not in notes
    assert "resampled" in notes["PANCREAS_0002"] and "CHECK VISUALLY" in notes["PANCREAS_0003"]
    for number in (1, 2, 3):
        assert_case(out, f"PANCREAS_{number:04d}", cts[number], {"Pancreas": pancreas})
    assert read_case_table(out)["source"].eq("nih_pancreas").all()

    again = nih_pancreas.convert(src, out, labels, progress=False)
    assert again.converted == [] and len(again.skipped) == 3


def test_cli_prints_summary_and_exit_status(tmp_path, capsys):
    src = tmp_path / "HaN_OAR"
    ct = make_ct(40)
    write(ct, src / "1" / "data.nii.gz")
    write(structseg_label(), src / "1" / "label.nii.gz", ct)
    assert structseg.main(["--source", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "1 converted" in capsys.readouterr().out
    (src / "2").mkdir()
    (src / "2" / "data.nii.gz").write_bytes(b"not an image")
    assert structseg.main(["--source", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    assert "FAILED structseg_2" in capsys.readouterr().out
