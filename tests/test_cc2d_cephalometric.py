"""CC2D in the paper's own setting (rprloc_core.cc2d.cephalometric), on small synthetic files in the
ISBI 2015 release layout converted by data_prep.isbi2015: the reduced grid maps to original mm
exactly, a translated copy of the template is found with zero error in original mm, and the CLI
trains both stages, predicts both test sets, writes its tables and fails on bad inputs in one line."""

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from test_cc2d import LocalContent

from data_prep import isbi2015
from rprloc_core.cc2d import cephalometric as ceph
from rprloc_core.cc2d.config import CC2DTrainConfig
from rprloc_core.errors import DataError

HEIGHT, WIDTH = 96, 108             # multiples of the test's pooling factor 3 (and of 3 x 4, the coarsest stride)
FACTOR = 3
SHIFT_PX = np.array([12, 24])       # (y, x) original pixels: (4, 8) reduced pixels, whole coarsest cells
FOLDERS = {"train": "TrainingData", "test1": "Test1Data", "test2": "Test2Data"}


def write_release(source, cases: dict) -> None:
    """ISBI 2015 release files: {case_id: (split, grey uint8 (H, W), landmarks (19, 2) (y, x) px)},
    both doctors giving the same positions."""
    for case_id, (split, grey, points) in cases.items():
        folder = source / "RawImage" / FOLDERS[split]
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(grey), str(folder / f"{case_id}.bmp"))
        lines = [f"{x},{y}" for y, x in points] + ["1"] * 8
        for doctor in ("senior", "junior"):
            notes = source / "AnnotationsByMD" / f"400_{doctor}"
            notes.mkdir(parents=True, exist_ok=True)
            (notes / f"{case_id}.txt").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")


def noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH)).astype(np.uint8)


def block_centre_points(seed: int) -> np.ndarray:
    """19 distinct landmarks (y, x) px at centres of 3 x 3 blocks (3 k + 1), k in 6..18: away from
    the edges and from the wrap-around seams of the shifted copy."""
    cells = np.random.default_rng(seed).choice(13 * 13, size=19, replace=False)
    return 3 * (6 + np.stack(np.unravel_index(cells, (13, 13)), axis=1)) + 1


@pytest.fixture(scope="module")
def shifted_cases(tmp_path_factory):
    """Template 001 and its landmarks; 151 (test1) is 001 rolled by SHIFT_PX with the landmarks moved
    with it; 301 (test2) is 001 itself."""
    tmp = tmp_path_factory.mktemp("ceph")
    template, points = noise(1), block_centre_points(0)
    write_release(tmp / "src", {"001": ("train", template, points), "002": ("train", noise(2), points),
                                "151": ("test1", np.roll(template, SHIFT_PX, axis=(0, 1)), points + SHIFT_PX),
                                "301": ("test2", template, points)})
    isbi2015.convert(tmp / "src", tmp / "cases")
    return tmp / "cases"


# -------------------------------------------------------------------------------------- the grid

def test_reduced_grid_maps_block_centres_exactly_and_clips_partial_blocks():
    grid = ceph.ReducedGrid(6, (2400, 1935), (0.1, 0.1))
    assert ceph.reduced_shape(grid.shape, 6) == (400, 323)
    centres_mm = np.array([[2.5, 2.5], [6 * 399 + 2.5, 6 * 100 + 2.5]]) * 0.1
    np.testing.assert_allclose(grid.to_reduced(centres_mm), [[0, 0], [399, 100]], atol=1e-9)
    np.testing.assert_allclose(grid.to_mm([[0, 0], [399, 100]]), centres_mm, atol=1e-9)
    # the last column block holds 3 pixels (1932..1934); its centre 1934.5 is clipped to 1934
    np.testing.assert_allclose(grid.to_mm([[0, 322]]), [[0.25, 193.4]], atol=1e-9)
    assert grid.to_reduced([[0.0, 193.4]])[0, 1] == pytest.approx((1934 - 2.5) / 6)
    assert np.all(grid.to_reduced([[0.0, 0.0]]) == 0)              # never before the first centre


def test_pool_means_blocks_and_normalise_maps_percentiles():
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    pooled = ceph.pool(image, 2)
    assert pooled.shape == (2, 3)
    assert pooled[0, 0] == pytest.approx(np.mean([0, 1, 5, 6])) and pooled[1, 2] == pytest.approx(np.mean([14, 19]))
    np.testing.assert_array_equal(ceph.pool(image, 1), image)
    ramp = np.linspace(0, 255, 1001, dtype=np.float32)
    out = ceph.normalise(ramp, "ramp")
    assert out.min() == 0 and out.max() == 1 and out[500] == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(DataError, match="constant"):
        ceph.normalise(np.full((8, 8), 7.0), "flat.nii.gz")
    with pytest.raises(ValueError, match="positive integer"):
        ceph.check_factor(2.5)


# ----------------------------------------------------------------------------- a known answer

def test_a_translated_copy_and_the_template_itself_are_found_with_zero_error(shifted_cases):
    predictions = ceph.predict_cases(LocalContent(2), shifted_cases, "001", ["151", "301"], downsample=FACTOR)
    assert len(predictions) == 2 * 19 and set(predictions.split) == {"test1", "test2"}
    truth = ceph.prediction_errors(predictions, shifted_cases)
    assert truth.error_mm.max() < 1e-6, truth.error_mm.max()
    metrics = ceph.landmark_metrics(predictions, shifted_cases)
    overall = metrics[metrics.landmark == "all"].set_index("split")
    assert overall.loc["test1", "mre_mm"] < 1e-6 and overall.loc["test1", "sdr_2mm_pct"] == 100.0
    assert len(metrics) == 2 * 20 and metrics.n.tolist()[:19] == [1] * 19


def test_metrics_measure_errors_in_original_mm(shifted_cases):
    predictions = ceph.predict_cases(LocalContent(2), shifted_cases, "001", ["151"], downsample=FACTOR)
    moved = predictions.assign(x_mm=predictions.x_mm + np.where(predictions["index"] <= 10, 2.2, 3.5))
    metrics = ceph.landmark_metrics(moved, shifted_cases).set_index("landmark")
    assert list(metrics.columns[-4:]) == ["sdr_2mm_pct", "sdr_2_5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct"]
    assert metrics.loc["all", "mre_mm"] == pytest.approx((10 * 2.2 + 9 * 3.5) / 19, abs=1e-6)
    assert metrics.loc["all", ["sdr_2mm_pct", "sdr_2_5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct"]].tolist() == \
        pytest.approx([0.0, 1000 / 19, 1000 / 19, 100.0])
    assert metrics.loc["sella", "mre_mm"] == pytest.approx(2.2, abs=1e-6)
    with pytest.raises(DataError, match="no ground truth"):
        ceph.landmark_metrics(moved.assign(index=moved["index"] + 100), shifted_cases)


# ------------------------------------------------------------------------------- end to end

def tiny_stage1(steps=2) -> CC2DTrainConfig:
    return CC2DTrainConfig(dims=2, base_width=4, embedding_length=8, n_scales=3, crop_size=(16, 16), local_window=5,
                           steps=steps, batch_size=2, checkpoint_every=1, val_every=10)


def test_stage1_resumes_and_refuses_another_grid(shifted_cases, tmp_path):
    ceph.train_on_landmark_cases(shifted_cases, tmp_path, tiny_stage1(1), downsample=FACTOR, progress=False)
    summary = ceph.train_on_landmark_cases(shifted_cases, tmp_path, tiny_stage1(2), downsample=FACTOR,
                                           progress=False)
    assert summary["resumed"] and summary["steps"] == 2
    with pytest.raises(DataError, match="other settings .downsample"):
        ceph.train_on_landmark_cases(shifted_cases, tmp_path, tiny_stage1(3), downsample=2, progress=False)


def test_cli_trains_both_stages_and_writes_predictions_and_metrics(shifted_cases, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--cases", str(shifted_cases), "--out", str(out), "--steps", "2", "--tpl", "--tpl-steps", "2",
            "--downsample", str(FACTOR), "--device", "cpu", "--quiet"]
    assert ceph.main(args) == 0
    printed = capsys.readouterr().out
    assert "CC2D-SSL test1 (19 landmarks): MRE" in printed and "CC2D-TPL test2" in printed
    predictions = pd.read_csv(out / "predictions.csv", dtype={"case_id": str, "template_id": str})
    assert len(predictions) == 2 * 2 * 19 and set(predictions.method) == {"CC2D-SSL", "CC2D-TPL"}
    assert predictions.y_mm.between(0, (HEIGHT - 1) * 0.1).all()                # original mm, inside the image
    assert predictions.x_mm.between(0, (WIDTH - 1) * 0.1).all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"mre_mm", "sdr_2mm_pct", "sdr_2_5mm_pct", "sdr_3mm_pct", "sdr_4mm_pct"} <= set(metrics.columns)
    assert len(metrics[metrics.landmark == "all"]) == 4 and metrics.mre_mm.notna().all()
    (tpl_dir,) = out.glob("tpl-*")
    assert len(pd.read_csv(tpl_dir / "pseudo_labels.csv")) == 2 * 19
    assert ceph.main(args) == 0                                           # a rerun resumes, nothing to train
    assert pd.read_csv(out / "predictions.csv", dtype={"case_id": str, "template_id": str}).equals(predictions)
    assert list(out.glob("tpl-*")) == [tpl_dir]                           # same stage 1: the same stage-2 folder


def test_bad_inputs_are_one_line_errors(shifted_cases, tmp_path, capsys):
    def error(*extra) -> str:
        assert ceph.main(["--out", str(tmp_path / "o"), "--quiet", "--device", "cpu", *extra]) == 2
        return capsys.readouterr().err.strip()

    assert "no such landmark case folder" in error("--cases", str(tmp_path / "missing"))
    message = error("--cases", str(shifted_cases), "--template", "999")
    assert "template '999' is not in the table" in message and len(message.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert "no landmark case table" in error("--cases", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="template '999'"):
        ceph.predict_cases(LocalContent(2), shifted_cases, "999", ["151"], downsample=FACTOR)
    with pytest.raises(DataError, match="'validation' cases"):
        ceph.train_on_landmark_cases(shifted_cases, tmp_path / "v", tiny_stage1(), split="validation")
    with pytest.raises(SystemExit):
        ceph.main(["--cases", str(shifted_cases), "--out", str(tmp_path), "--steps", "0"])
