"""The OpenKBP adapter on a small synthetic upstream copy written in the real file format."""

import gzip
import lzma

import numpy as np
import pytest
import SimpleITK as sitk

from data_prep import openkbp
from rprloc_core.data import cases
from rprloc_core.errors import DataError


def _sparse_csv(flat_values: dict, is_mask: bool) -> str:
    lines = [",data"]
    for index, value in sorted(flat_values.items()):
        lines.append(f"{index}," if is_mask else f"{index},{value}")
    return "\n".join(lines) + "\n"


def _write(path, text, compression):
    path = path.parent / (path.name + {"none": "", "gz": ".gz", "xz": ".xz"}[compression])
    if compression == "gz":
        path.write_bytes(gzip.compress(text.encode()))
    elif compression == "xz":
        path.write_bytes(lzma.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _flat(i0, i1, i2):
    return int(np.ravel_multi_index((i0, i1, i2), openkbp.GRID))


def make_patient(folder, compression="xz", spacing=(3.9, 3.9, 2.5)):
    """CT with a body block; Brainstem at axis0=70 (posterior), Mandible at axis0=40 (anterior);
    LeftParotid at axis1=80, RightParotid at axis1=48; SpinalCord below (axis2 larger)."""
    folder.mkdir(parents=True)
    ct = {}
    for i0 in range(30, 90, 4):
        for i1 in range(30, 100, 4):
            for i2 in range(20, 110, 6):
                ct[_flat(i0, i1, i2)] = 1064.0   # 40 HU
    ct[_flat(50, 50, 50)] = 6000.0                # a 16-bit value: must be clipped to 4095
    organs = {"Brainstem": (70, 64, 40), "Mandible": (40, 64, 60), "LeftParotid": (60, 80, 55),
              "RightParotid": (60, 48, 55), "SpinalCord": (75, 64, 90)}
    for a, b, c in organs.values():               # tissue under every organ, as in a real scan
        ct.update({_flat(a + d, b + e, c + f): 1064.0 for d in range(-1, 2) for e in range(-1, 2) for f in range(-1, 2)})
    _write(folder / "ct.csv", _sparse_csv(dict(sorted(ct.items())), False), compression)
    _write(folder / "voxel_dimensions.csv", "\n".join(str(s) for s in spacing) + "\n", compression)
    for organ, (a, b, c) in organs.items():
        voxels = {_flat(a + d, b + e, c + f): "" for d in range(-1, 2) for e in range(-1, 2) for f in range(-1, 2)}
        _write(folder / f"{organ}.csv", _sparse_csv(voxels, True), compression)
    return organs


@pytest.fixture
def upstream(tmp_path):
    base = tmp_path / "openkbp" / "provided-data"
    make_patient(base / "train-pats" / "pt_1", "xz")
    make_patient(base / "train-pats" / "pt_2", "gz")
    make_patient(base / "validation-pats" / "pt_201", "none", spacing=(2.0, 2.0, 3.0))
    make_patient(base / "test-pats" / "pt_241", "xz")
    return tmp_path / "openkbp"


def test_reads_every_compression_and_orients_lps(upstream):
    for case_id, split, folder in openkbp.list_patients(upstream):
        image, labels = openkbp.read_patient(folder)
        arr = sitk.GetArrayFromImage(image)
        assert arr.max() == 4095 - 1024 and arr.min() == -1024
        centre = {o: image.TransformContinuousIndexToPhysicalPoint(
            tuple(np.argwhere(sitk.GetArrayFromImage(m)).mean(0)[::-1])) for o, m in labels.items()}
        assert centre["Mandible"][1] < centre["Brainstem"][1]          # anterior = smaller y (LPS)
        assert centre["LeftParotid"][0] > centre["RightParotid"][0]    # patient's left = larger x
        assert centre["Brainstem"][2] > centre["SpinalCord"][2]        # superior = larger z
    s0, s1, s2 = 2.0, 2.0, 3.0
    image, _ = openkbp.read_patient(upstream / "provided-data" / "validation-pats" / "pt_201")
    assert image.GetSpacing() == (s1, s0, s2)


def test_exact_voxel_mapping(upstream):
    image, labels = openkbp.read_patient(upstream / "provided-data" / "train-pats" / "pt_1")
    # upstream voxel (i0, i1, i2) = (70, 64, 40) is the brainstem centre: x = i1*s1, y = i0*s0, z = -i2*s2
    point = image.TransformIndexToPhysicalPoint((64, 70, 127 - 40))
    assert np.allclose(point, (64 * 3.9, 70 * 3.9, -40 * 2.5))
    assert sitk.GetArrayFromImage(labels["Brainstem"])[127 - 40, 70, 64] == 1


def test_convert_is_idempotent_and_reports_bad_cases(upstream, tmp_path):
    base = upstream / "provided-data"
    bad = base / "train-pats" / "pt_3"
    make_patient(bad, "xz")
    (bad / "voxel_dimensions.csv.xz").unlink()                          # missing voxel_dimensions
    truncated = base / "train-pats" / "pt_4"
    make_patient(truncated, "none")
    text = (truncated / "ct.csv").read_text(encoding="utf-8")
    (truncated / "ct.csv").write_text(text[: len(text) // 2] + "12", encoding="utf-8")   # truncated mid-row
    (truncated / "ct.csv").write_text((truncated / "ct.csv").read_text(encoding="utf-8") + "\nabc,def\n")
    empty = base / "train-pats" / "pt_5"
    make_patient(empty, "none")
    (empty / "Brainstem.csv").write_text(",data\n", encoding="utf-8")                    # empty mask
    corrupt = base / "train-pats" / "pt_6"
    make_patient(corrupt, "xz")
    (corrupt / "ct.csv.xz").write_bytes(b"not xz at all")             # corrupt compression

    out = tmp_path / "cases"
    summary = openkbp.convert_openkbp(upstream, out, progress=False)
    failed = dict(summary.failed)
    assert set(failed) == {"pt_3", "pt_4", "pt_5", "pt_6"}
    assert "voxel_dimensions" in failed["pt_3"]
    assert "ct.csv" in failed["pt_4"]
    assert "Brainstem.csv" in failed["pt_5"] and "empty" in failed["pt_5"]
    assert "ct.csv.xz" in failed["pt_6"]
    assert sorted(summary.converted) == ["pt_1", "pt_2", "pt_201", "pt_241"]
    table = cases.read_case_table(out)
    assert dict(zip(table.case_id, table.split)) == {"pt_1": "train", "pt_2": "train", "pt_201": "validation",
                                                     "pt_241": "test"}
    assert not (out / "pt_3").exists()
    again = openkbp.convert_openkbp(upstream, out, progress=False)
    assert again.converted == [] and sorted(again.skipped) == ["pt_1", "pt_2", "pt_201", "pt_241"]


def test_not_an_openkbp_folder(tmp_path):
    with pytest.raises(DataError, match="not an OpenKBP source"):
        openkbp.list_patients(tmp_path)
