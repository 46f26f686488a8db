"""Bad inputs never give a silent wrong answer: each broken input is built on the fly (phantom
scans, tiny arrays, a small OpenKBP layout) and must give either the right result or a one-line
error naming the file, exit status 2, and no partial output."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from test_openkbp import make_patient

from data_prep import openkbp
from rprloc_core import cli
from rprloc_core.data.cases import read_case_table
from rprloc_core.data.phantom import make_phantom_case
from rprloc_core.data.preprocess import PreprocessParams, cache_path, preprocess_all


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "images").mkdir()
    for seed in range(1, 4):
        sitk.WriteImage(make_phantom_case(seed)[0], str(root / "images" / f"scan{seed}.nii.gz"))
    support, labels = make_phantom_case(11)
    sitk.WriteImage(support, str(root / "support.nii.gz"))
    (root / "labels").mkdir()
    for organ in ("Brainstem", "Mandible"):
        sitk.WriteImage(labels[organ], str(root / "labels" / f"{organ}.nii.gz"))
    sitk.WriteImage(make_phantom_case(12)[0], str(root / "query.nii.gz"))
    models = root / "models"
    assert cli.main(["train", "--images", str(root / "images"), "--out", str(models), "--profile", "smoke",
                     "--steps", "2"]) == 0
    return root, support, labels


def localize(root, tmp_path, *extra, models=None, support=None, labels=None, query=None):
    out = tmp_path / "out" / "result.json"
    out.parent.mkdir(exist_ok=True)
    argv = ["localize", "--models", str(models or root / "models"), "--support", str(support or root / "support.nii.gz"),
            "--support-labels", str(labels or root / "labels"), "--query", str(query or root / "query.nii.gz"),
            "--out", str(out), "--k", "2", *extra]
    return cli.main(argv), out


def assert_error(code, out, capsys, *words):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    for word in words:
        assert word in err, (word, err)
    assert not out.exists() and not list(out.parent.glob(".*tmp*"))


def write_like(array, reference, path):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))
    return path


# ------------------------------------------------------------------ silent wrong answers before

def test_mask_of_zero_and_half_is_the_organ(scans, tmp_path):
    root, support, labels = scans
    folder = tmp_path / "labels"
    folder.mkdir()
    half = sitk.GetArrayFromImage(labels["Brainstem"]).astype(np.float32) * 0.5
    write_like(half, support, folder / "Brainstem.nii.gz")
    code, out = localize(root, tmp_path, labels=folder)
    assert code == 0 and set(json.loads(out.read_text())["organs"]) == {"Brainstem"}


def test_mask_that_vanishes_when_resampled(scans, tmp_path, capsys):
    root, _, _ = scans
    support, labels = make_phantom_case(11, spacing_zyx=(1.0, 1.0, 1.0))
    support_path = tmp_path / "support_1mm.nii.gz"
    sitk.WriteImage(support, str(support_path))
    folder = tmp_path / "labels"
    folder.mkdir()
    speck = np.zeros(sitk.GetArrayFromImage(support).shape, np.uint8)
    centre = np.argwhere(sitk.GetArrayFromImage(labels["Brainstem"])).mean(axis=0).astype(int)
    speck[tuple(3 * (centre // 3) + 1)] = 1    # one 1 mm voxel between the centres of the 3 mm grid
    speck_path = write_like(speck, support, folder / "Brainstem.nii.gz")
    code, out = localize(root, tmp_path, support=support_path, labels=folder)
    assert_error(code, out, capsys, str(speck_path), "vanishes when resampled")


def test_fine_checkpoint_in_the_coarse_place(scans, tmp_path, capsys):
    root, _, _ = scans
    models = tmp_path / "models"
    for role in ("coarse", "fine"):
        (models / role).mkdir(parents=True)
        (models / role / "best.pt").write_bytes((root / "models" / "fine" / "best.pt").read_bytes())
    code, out = localize(root, tmp_path, models=models)
    assert_error(code, out, capsys, "coarse", "swapped")


def test_coarse_and_fine_swapped(scans, tmp_path, capsys):
    root, _, _ = scans
    models = tmp_path / "models"
    for role, other in (("coarse", "fine"), ("fine", "coarse")):
        (models / role).mkdir(parents=True)
        (models / role / "best.pt").write_bytes((root / "models" / other / "best.pt").read_bytes())
    code, out = localize(root, tmp_path, models=models)
    assert_error(code, out, capsys, "swapped")


def test_missing_fine_model_is_an_error_unless_coarse_only(scans, tmp_path, capsys):
    root, _, _ = scans
    models = tmp_path / "models"
    (models / "coarse").mkdir(parents=True)
    (models / "coarse" / "best.pt").write_bytes((root / "models" / "coarse" / "best.pt").read_bytes())
    code, out = localize(root, tmp_path, models=models)
    assert_error(code, out, capsys, "fine model is missing", "--coarse-only")
    code, out = localize(root, tmp_path, "--coarse-only", models=models)
    assert code == 0 and json.loads(out.read_text())["schedule"] == ["coarse", "coarse"]


def test_all_nan_query(scans, tmp_path, capsys):
    root, support, _ = scans
    query = write_like(np.full(sitk.GetArrayFromImage(support).shape, np.nan, np.float32), support,
                       tmp_path / "nan.nii.gz")
    code, out = localize(root, tmp_path, query=query)
    assert_error(code, out, capsys, str(query), "NaN")


@pytest.mark.parametrize("kind", ["stored values, air near 0", "the same with -2000 padding", "MR-like"])
def test_image_without_air_is_not_read_as_hounsfield_units(scans, tmp_path, capsys, kind):
    """A CT whose stored values were never rescaled to HU (air at 0, not -1000) or an MR image would
    be read as all tissue and localised without a word."""
    root, support, _ = scans
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "query.nii.gz"))).astype(np.float32)
    array = {"stored values, air near 0": hu + 1024,
             "the same with -2000 padding": np.where(np.arange(hu.shape[2]) < 3, -2000, hu + 1024),
             "MR-like": np.clip(hu + 1000, 0, None) / 4}[kind]
    query = write_like(array.astype(np.float32), sitk.ReadImage(str(root / "query.nii.gz")), tmp_path / "q.nii.gz")
    code, out = localize(root, tmp_path, query=query)
    assert_error(code, out, capsys, str(query), "no voxel of air", "Hounsfield")
    support_image = write_like((sitk.GetArrayFromImage(support) + 1024).astype(np.float32), support,
                               tmp_path / "s.nii.gz")
    code, out = localize(root, tmp_path, support=support_image)
    assert_error(code, out, capsys, str(support_image), "support image has no voxel of air")


def test_a_ct_padded_below_air_is_still_a_ct(scans, tmp_path, capsys):
    """Padding outside the field of view (-2000 HU here) is darker than air: the check must look past
    it for the air itself, and accept the scan."""
    root, _, _ = scans
    reference = sitk.ReadImage(str(root / "query.nii.gz"))
    hu = sitk.GetArrayFromImage(reference).astype(np.float32)
    query = write_like(np.where(np.arange(hu.shape[2]) < 3, -2000, hu).astype(np.float32), reference,
                       tmp_path / "padded.nii.gz")
    code, out = localize(root, tmp_path, query=query)
    assert code == 0 and out.is_file(), capsys.readouterr().err


def test_nan_block_in_the_support(scans, tmp_path, capsys):
    root, support, _ = scans
    array = sitk.GetArrayFromImage(support).astype(np.float32)
    array[:5, :5, :5] = np.nan
    path = write_like(array, support, tmp_path / "support_nan.nii.gz")
    code, out = localize(root, tmp_path, support=path)
    assert_error(code, out, capsys, str(path), "125 NaN")


@pytest.mark.parametrize("steps", ["0", "-1", "two"])
def test_train_steps_must_be_positive(scans, tmp_path, capsys, steps):
    root, _, _ = scans
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--images", str(root / "images"), "--out", str(tmp_path / "m"), "--steps", steps])
    assert exit_.value.code == 2 and "--steps" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_truncated_openkbp_ct_fails_that_case(tmp_path):
    source = tmp_path / "openkbp" / "provided-data" / "train-pats"
    make_patient(source / "pt_1", compression="none")
    make_patient(source / "pt_2", compression="none")
    ct = source / "pt_2" / "ct.csv"
    lines = ct.read_text().splitlines()
    ct.write_text("\n".join(lines[: len(lines) // 2]) + "\n")      # cut at a line boundary: still parses
    summary = openkbp.convert_openkbp(tmp_path / "openkbp", tmp_path / "cases", progress=False)
    assert summary.converted == ["pt_1"]
    (case, message), = summary.failed
    assert case == "pt_2" and "ct.csv" in message and "truncated" in message


# ------------------------------------------------------------------ tracebacks before

@pytest.mark.parametrize("where", ["missing folder", "directory"])
def test_output_that_cannot_be_written_fails_first(scans, tmp_path, capsys, where):
    root, _, _ = scans
    target = tmp_path / "nowhere" / "r.json" if where == "missing folder" else tmp_path
    code = cli.main(["localize", "--models", str(root / "models"), "--support", str(root / "support.nii.gz"),
                     "--support-labels", str(root / "labels"), "--query", str(root / "query.nii.gz"),
                     "--out", str(target)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and ("does not exist" in err or "is a folder" in err)
    overlay = tmp_path / "missing" / "o.png"
    code, out = localize(root, tmp_path, "--overlay", str(overlay))
    assert_error(code, out, capsys, "overlay", "does not exist")


@pytest.mark.parametrize("k", ["0", "-3", "100000"])
def test_k_is_checked_before_anything(scans, tmp_path, capsys, k):
    root, _, _ = scans
    with pytest.raises(SystemExit) as exit_:
        localize(root, tmp_path, "--k", k)
    assert exit_.value.code == 2 and "--k" in capsys.readouterr().err


@pytest.mark.parametrize("steps", ["average,fine", "coarse,median", ""])
def test_steps_are_checked_before_anything(scans, tmp_path, capsys, steps):
    root, _, _ = scans
    with pytest.raises(SystemExit) as exit_:
        localize(root, tmp_path, "--steps", steps)
    assert exit_.value.code == 2 and "--steps" in capsys.readouterr().err


@pytest.mark.parametrize("scatter", ["0", "-2", "nan", "wide"])
def test_scatter_width_is_checked_before_anything(scans, tmp_path, capsys, scatter):
    root, _, _ = scans
    with pytest.raises(SystemExit) as exit_:
        localize(root, tmp_path, "--scatter-mm", scatter)
    assert exit_.value.code == 2 and "--scatter-mm" in capsys.readouterr().err


def test_query_smaller_than_a_patch(scans, tmp_path, capsys):
    root, _, _ = scans
    small = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 100, (10, 10, 10)).astype(np.int16))
    small.SetSpacing((3.0, 3.0, 3.0))
    path = tmp_path / "small.nii.gz"
    sitk.WriteImage(small, str(path))
    code, out = localize(root, tmp_path, query=path)
    assert_error(code, out, capsys, str(path), "smaller than the patch")


def test_train_missing_images_unknown_profile_changed_profile(scans, tmp_path, capsys):
    root, _, _ = scans
    assert cli.main(["train", "--images", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "images folder not found" in capsys.readouterr().err
    assert cli.main(["train", "--images", str(root / "images"), "--out", str(tmp_path / "m"),
                     "--profile", "no-such-profile"]) == 2
    assert "no profile" in capsys.readouterr().err
    # a finished smoke run, resumed with the demo profile's settings: refused, not overwritten
    out = tmp_path / "resume"
    shutil.copytree(root / "models" / "coarse", out / "coarse")
    before = (out / "coarse" / "last.pt").read_bytes()
    code = cli.main(["train", "--images", str(root / "images"), "--out", str(out), "--profile", "demo", "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: ") and "cannot resume" in err
    assert (out / "coarse" / "last.pt").read_bytes() == before


def test_stray_folder_in_openkbp_is_reported_not_a_traceback(tmp_path):
    source = tmp_path / "openkbp" / "provided-data" / "train-pats"
    make_patient(source / "pt_1", compression="none")
    (source / "pt_new").mkdir()
    summary = openkbp.convert_openkbp(tmp_path / "openkbp", tmp_path / "cases", progress=False)
    assert summary.converted == ["pt_1"]
    (case, message), = summary.failed
    assert case == "pt_new" and "pt_new" in message


def test_ctrl_c_during_conversion_prints_the_summary(tmp_path, monkeypatch, capsys):
    source = tmp_path / "openkbp" / "provided-data" / "train-pats"
    for n in (1, 2, 3):
        make_patient(source / f"pt_{n}", compression="none")
    real = openkbp.read_patient

    def interrupted_at_pt_2(folder):
        if folder.name == "pt_2":
            raise KeyboardInterrupt
        return real(folder)

    monkeypatch.setattr(openkbp, "read_patient", interrupted_at_pt_2)
    code = openkbp.main(["--source", str(tmp_path / "openkbp"), "--out", str(tmp_path / "cases"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 130 and "1 converted" in captured.out and "interrupted" in captured.err
    assert (tmp_path / "cases" / "cases.csv").is_file() and not list((tmp_path / "cases").glob(".tmp-*"))
    monkeypatch.setattr(openkbp, "read_patient", real)       # a rerun continues
    code = openkbp.main(["--source", str(tmp_path / "openkbp"), "--out", str(tmp_path / "cases"), "--quiet"])
    assert code == 0 and "2 converted, 1 already there" in capsys.readouterr().out


def test_preprocessing_leftovers_are_removed(tmp_path):
    from rprloc_core.data.phantom import write_phantom_dataset

    cases = tmp_path / "cases"
    write_phantom_dataset(cases, 1, 0, 0, seed=0)
    case_id = read_case_table(cases).case_id[0]
    params = PreprocessParams(spacing_zyx=(3.0, 3.0, 3.0))
    final = cache_path(tmp_path / "cache", params, case_id)
    final.parent.mkdir(parents=True)
    valid_half = final.with_suffix(".tmp-123.npz")
    np.savez(valid_half, hu=np.zeros(3))
    broken = final.with_suffix(".tmp-456.npz")
    broken.write_bytes(b"PK\x03\x04 broken")
    result = preprocess_all(cases, [case_id], params, tmp_path / "cache", workers=1, progress=False)
    assert result["done"] == [case_id] and final.is_file()
    assert not valid_half.exists() and not broken.exists()


# ------------------------------------------------------------------ also

def test_unknown_mask_name_is_skipped_with_a_note(scans, tmp_path, capsys):
    root, support, labels = scans
    folder = tmp_path / "labels"
    folder.mkdir()
    sitk.WriteImage(labels["Brainstem"], str(folder / "Brainstem.nii.gz"))
    sitk.WriteImage(labels["Mandible"], str(folder / "Tumour.nii.gz"))
    code, out = localize(root, tmp_path, "--organs", "Brainstem", labels=folder)
    assert code == 0 and "Tumour" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert set(result["organs"]) == {"Brainstem"} and "index_convention" in result


def test_mask_errors_name_the_mask_file(scans, tmp_path, capsys):
    root, support, labels = scans
    folder = tmp_path / "labels"
    folder.mkdir()
    shifted = sitk.Image(labels["Brainstem"])
    shifted.SetOrigin(tuple(o + 5.0 for o in shifted.GetOrigin()))
    sitk.WriteImage(shifted, str(folder / "Brainstem.nii.gz"))
    code, out = localize(root, tmp_path, labels=folder)
    assert_error(code, out, capsys, str(folder / "Brainstem.nii.gz"), "origin")
    empty = write_like(np.zeros(sitk.GetArrayFromImage(support).shape, np.uint8), support, folder / "Brainstem.nii.gz")
    code, out = localize(root, tmp_path, labels=folder)
    assert_error(code, out, capsys, str(empty), "empty")
