"""The released weights: present, unchanged (sha256 against the manifest), loadable as what the demo
profile says they are, documented, and accurate enough on real validation patients."""

import json

import numpy as np
import pytest
import torch

from data_prep import openkbp
from rprloc_core.data import cases
from rprloc_core.data.organs import HAN_ORGANS
from rprloc_core.data.preprocess import PreprocessParams, load_preprocessed, preprocess_case
from rprloc_core.detector.boxes import detect, face_centres
from rprloc_core.detector.network import DetectorNet
from rprloc_core.errors import DataError
from rprloc_core.evaluation.protocol import case_rng, organ_landmarks_mm
from rprloc_core.evaluation.scoring import score_prediction
from rprloc_core.experiments import cc2d_predictions, detector_predictions, models, pin_predictions, weights
from rprloc_core.geometry.landmarks import EXTREME_POINT_NAMES
from rprloc_core.experiments.answer_checks import cut_ranges, cut_volume
from rprloc_core.rprloc.answer_checks import organ_checks
from rprloc_core.rprloc.config import RELEASE_REMAINING_MOVE_WARN_MM
from rprloc_core.rprloc.inference import encode_supports, localize, remaining_moves_mm, stack_organ_landmarks
from rprloc_core.rprloc.pnet import PNet
from rprloc_core.settings import load_settings

SETTINGS = load_settings("demo")
RELEASE = models.release_dir(SETTINGS)
# Mean IoU (%) of Mc + Mf, K = 15, support = the first validation patient with all four organs,
# queries = the next three validation patients (the first four of the split), all four organs.
# The released models (2026-11-28: Mc with a 16-channel first block, Mf with an 8-channel one
# distilled from the previous Mf) reach 40.4 % here; the previous, GPU-trained release 43.7 %; its
# Mf at 5,000 steps 38.9 %, the release before it (Mf r = 40 mm, pairs up to 30 mm) 32.5 %, the
# width-16 Mf before that 33.3 %, the first demo release (CPU, width 8 both) 30.1 %, untrained
# models 0-4 %: the floor fails every one before the last two. Three queries are a small
# sample (the new release is +0.2 to +0.8 points on 39 x 33 validation pairs, -3.3 here).
# Raise it with the weights (the paper-level target is 55 % on the test queries).
IOU_FLOOR_PCT = 40.0


def assert_release_files(folder, max_bytes: int) -> dict:
    """Every model file of a release matches its manifest entry (sha256, size under max_bytes) and
    the release has a model card; returns the manifest."""
    manifest = weights.read_manifest(folder)
    for name, entry in manifest["models"].items():
        path = folder / entry["file"]
        assert weights.sha256(path) == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"] < max_bytes, name
    assert (folder / "MODEL_CARD.md").is_file()
    return manifest


def test_manifest_hashes_and_files():
    manifest = assert_release_files(RELEASE, 5 * 2 ** 20)
    assert manifest["profile"] == "demo" and manifest["torch"].startswith("2.13")
    expected = set(models.train_configs(SETTINGS)) | {models.AUTOENCODER}
    assert set(manifest["models"]) == expected
    assert manifest["data_split"]["train"] and manifest["data_split"]["validation"]


def test_models_are_what_the_profile_says():
    manifest = weights.read_manifest(RELEASE)
    for name, config in models.train_configs(SETTINGS).items():
        model = models.load_models(SETTINGS, [name])[name]
        assert list(model.patch_size) == list(config.patch_size) and model.base_width == config.base_width
        assert np.allclose(model.r_mm, config.r_mm)
        entry = manifest["models"][name]
        assert entry["training"]["mode"] == config.mode and entry["training"]["steps"] == config.steps
        history = models.history(SETTINGS, name)
        assert history.val_loss_mm2.min() == pytest.approx(entry["summary"]["best_val_loss_mm2"])


def test_retrain_only_refuses_an_unknown_model_before_training(capsys):
    from rprloc_core.experiments import retrain

    assert retrain.main(["--profile", "demo", "--only", "finer", "--publish"]) == 2
    assert "no model finer" in capsys.readouterr().err


def test_a_changed_file_is_refused(tmp_path):
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(RELEASE, copy)
    with open(copy / "coarse.pt", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(DataError, match="sha256"):
        weights.released_file(copy, "coarse")
    with pytest.raises(DataError, match="already there"):
        weights.write_release(copy, {}, {}, overwrite=False)


@pytest.fixture(scope="module")
def validation_cases(openkbp_source, tmp_path_factory):
    root = tmp_path_factory.mktemp("weights") / "cases"
    summary = openkbp.convert_openkbp(openkbp_source, root, progress=False, limit=4)
    assert summary.ok, str(summary)
    params = PreprocessParams(spacing_zyx=SETTINGS.preprocess.spacing_zyx)
    table = cases.read_case_table(root)
    ids = table[table.split == "validation"].case_id.tolist()
    return [load_preprocessed(preprocess_case(root, c, params, root.parent / "cache")) for c in ids]


def mean_iou(coarse, fine, validation_cases) -> float:
    support = next(c for c in validation_cases if all(o in c.labels for o in HAN_ORGANS))
    ious = []
    for query in [c for c in validation_cases if c is not support][:3]:
        organs = [o for o in HAN_ORGANS if o in query.labels]
        points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, organs))
        result = localize(query.volume, (support.volume, points), coarse, fine, schedule=("coarse", "fine"), k=15,
                          rng=case_rng(0, query.case_id, support.case_id), organ_of_point=organ_of_point)
        ious += [score_prediction(query, o, p, "extreme")["iou_pct"] for o, p in result.points_by_organ().items()]
    return float(np.mean(ious))


@pytest.mark.realdata
def test_released_models_reach_the_floor_on_validation_patients(validation_cases):
    released = models.load_models(SETTINGS, ["coarse", "fine"])
    iou = mean_iou(released["coarse"], released["fine"], validation_cases)
    print(json.dumps({"mean_iou_pct": iou, "floor_pct": IOU_FLOOR_PCT}))
    assert iou >= IOU_FLOOR_PCT


@pytest.mark.realdata
def test_the_floor_fails_untrained_models(validation_cases):
    released = models.load_models(SETTINGS, ["coarse", "fine"])
    torch.manual_seed(0)
    untrained = {name: PNet(**model.config).eval() for name, model in released.items()}
    iou = mean_iou(untrained["coarse"], untrained["fine"], validation_cases)
    print(json.dumps({"untrained_mean_iou_pct": iou}))
    assert iou < IOU_FLOOR_PCT


def self_localisation_errors(coarse, fine, validation_cases) -> np.ndarray:
    """Mean absolute error (mm) per axis (z, y, x) of Mc + Mf, K = 15, each case its own support."""
    errors = []
    for case in validation_cases:
        organs = [o for o in HAN_ORGANS if o in case.labels]
        truth, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(case, organs))
        result = localize(case.volume, (case.volume, truth), coarse, fine, schedule=("coarse", "fine"), k=15,
                          rng=case_rng(0, case.case_id, case.case_id), organ_of_point=organ_of_point)
        errors.append(np.abs(result.points_mm - truth))
    return np.concatenate(errors).mean(axis=0)


# Self-localisation bound (mm, per axis z, y, x) for the released models on the first four
# validation patients; they measure (7.5, 5.3, 4.3) (the previous release: 9.4, 5.2, 4.2; its Mf at
# 5,000 steps: 10.2, 5.9, 4.4; the Mf with r = 40 mm before it: 12.3, 6.2, 4.6; the width-16 Mf:
# 11.2, 5.7, 4.0); the first demo release measured (20.4, 11.9, 6.5) and fails it on every axis, as
# do untrained models (checked below). The z bound (11.5 mm; 15 until 2026-11-27) also fails the
# r = 40 mm Mf, so a release that gives back the wide Mf's z gain fails.
SELF_LOCALISATION_BOUND_MM = np.array([11.5, 7.0, 5.5])


@pytest.mark.realdata
def test_released_models_find_their_own_landmarks(validation_cases):
    released = models.load_models(SETTINGS, ["coarse", "fine"])
    errors = self_localisation_errors(released["coarse"], released["fine"], validation_cases)
    print(json.dumps({"self_localisation_mae_zyx_mm": errors.round(2).tolist()}))
    assert np.all(errors <= SELF_LOCALISATION_BOUND_MM)
    torch.manual_seed(0)
    untrained = {name: PNet(**model.config).eval() for name, model in released.items()}
    assert not np.all(self_localisation_errors(untrained["coarse"], untrained["fine"], validation_cases)
                      <= SELF_LOCALISATION_BOUND_MM)


def remaining_moves_by_scan(coarse, fine, validation_cases) -> dict:
    """{"whole scan" / "scan below the organs": the mean remaining move (mm) of every organ}: the first
    validation patient with all four organs as the support, the next three as queries."""
    support = next(c for c in validation_cases if all(o in c.labels for o in HAN_ORGANS))
    out = {"whole scan": [], "scan below the organs": []}
    for query in [c for c in validation_cases if c is not support][:3]:
        organs = [o for o in HAN_ORGANS if o in query.labels]
        points, organ_of_point, _ = stack_organ_landmarks(organ_landmarks_mm(support, organs))
        embeddings = encode_supports((support.volume, points), {"coarse": coarse, "fine": fine})
        for variant, (first, stop) in cut_ranges(query).items():
            if variant not in out:
                continue
            scan = cut_volume(query.volume, first, stop)
            result = localize(scan, (support.volume, points), coarse, fine, schedule=("coarse", "average", "fine"),
                              k=15, starts="shared", rng=case_rng(0, query.case_id, support.case_id),
                              organ_of_point=organ_of_point, support_embeddings=embeddings)
            moves = remaining_moves_mm(scan, result.points_mm, fine, embeddings["fine"])
            out[variant] += [c["remaining_move_mm"] for c in organ_checks(scan, result.points_mm, organ_of_point,
                                                                          moves).values()]
    return out


@pytest.mark.realdata
def test_released_models_warn_of_missing_organs_and_not_of_found_ones(validation_cases):
    """The CLI's remaining-move warning (notebook 03): every organ of a scan cut below the organs is
    warned of; organs in whole scans mostly are not (about one in ten over the validation protocol;
    3 of these 10 when it was written: moves 7.4, 6.8, 3.8, 7.6, 38.6, 10.1, 34.8, 15.3, 9.7, 7.1 mm,
    against 25-46 mm for the 10 organs of the cut scans)."""
    released = models.load_models(SETTINGS, ["coarse", "fine"])
    moves = remaining_moves_by_scan(released["coarse"], released["fine"], validation_cases)
    print(json.dumps({k: np.round(v, 1).tolist() for k, v in moves.items()}))
    assert len(moves["scan below the organs"]) >= 6
    assert min(moves["scan below the organs"]) > RELEASE_REMAINING_MOVE_WARN_MM
    whole = np.array(moves["whole scan"])
    assert np.median(whole) < RELEASE_REMAINING_MOVE_WARN_MM and np.mean(whole > RELEASE_REMAINING_MOVE_WARN_MM) < 0.5


# ------------------------------------------------------------------ the supervised detector's release

DETECTOR_RELEASE = detector_predictions.release_dir(SETTINGS)
# Mean box IoU (%) of the released detector (mask rule, chosen on validation in notebook 08) on the
# four organs of the first four validation patients: the release reaches 61.1 %, an untrained network
# of the same architecture 1.2 % (measured when the floor was set).
DETECTOR_FLOOR_PCT = 50.0


def test_detector_release_is_whole_and_documented():
    manifest = assert_release_files(DETECTOR_RELEASE, 5 * 2 ** 20)
    entry = manifest["models"][detector_predictions.NAME]
    assert "masks" in manifest["data_split"]["labels_used"] and manifest["data_split"]["train"]
    assert entry["training"] == SETTINGS.detector.train.to_dict()
    assert entry["summary"]["steps"] == SETTINGS.detector.train.steps
    history = detector_predictions.history(SETTINGS)
    assert history.val_loss.min() == pytest.approx(entry["summary"]["best_val_loss"])


def detector_iou(net, organs, downsample, validation_cases) -> float:
    ious = []
    for case in validation_cases:
        boxes = detect(net, case, organs, downsample, "mask")
        ious += [score_prediction(case, o, case.idx_to_mm(face_centres(boxes[o])), "extreme")["iou_pct"]
                 for o in organs if o in case.labels]
    return float(np.mean(ious))


@pytest.mark.realdata
def test_released_detector_reaches_its_floor_and_an_untrained_one_does_not(validation_cases):
    net, config = detector_predictions.load(SETTINGS)
    released = detector_iou(net, config["organs"], config["downsample"], validation_cases)
    torch.manual_seed(0)
    untrained = detector_iou(DetectorNet(**net.config).eval(), config["organs"], config["downsample"],
                             validation_cases)
    print(json.dumps({"detector_mean_iou_pct": released, "untrained_pct": untrained, "floor_pct": DETECTOR_FLOOR_PCT}))
    assert released >= DETECTOR_FLOOR_PCT > untrained


# ------------------------------------------------------------------------------ PIN's release

PIN_RELEASE = pin_predictions.release_dir(SETTINGS)
# Mean landmark error (mm) of the released PIN-Single (loss C+R, rule C) over the extreme points of
# the organs of the first four validation patients: the release reaches 15.2 mm, untrained networks
# of the same architecture 21.3 mm (their starts, training patients' landmarks, are a fair prior).
PIN_BOUND_MM = 18.0


def test_pin_release_is_whole_and_documented():
    manifest = assert_release_files(PIN_RELEASE, 2 ** 20)
    assert set(manifest["models"]) == set(pin_predictions.networks(SETTINGS))
    for name, entry in manifest["models"].items():
        assert entry["training"] == pin_predictions.train_config(SETTINGS, name).__dict__, name
        assert entry["summary"]["steps"] == pin_predictions.train_config(SETTINGS, name).steps, name
        assert entry["history"] and "val_error_mm" in entry["history"][-1], name
    assert "masks" in manifest["data_split"]["labels_used"] and manifest["data_split"]["train"]
    assert pin_predictions.released_shape_model(SETTINGS).n_landmarks == 24
    assert pin_predictions.training_landmarks(SETTINGS).shape == (len(manifest["data_split"]["train"]), 24, 3)


def pin_single_error(validation_cases, untrained: bool = False) -> float:
    from rprloc_core.pin.training import build_network

    model, starts = pin_predictions.released_shape_model(SETTINGS), pin_predictions.training_landmarks(SETTINGS)
    errors = []
    for case in validation_cases:
        truth = organ_landmarks_mm(case, HAN_ORGANS)
        for organ, points in truth.items():
            for point_name, point in zip(EXTREME_POINT_NAMES, points):
                name = pin_predictions.network_file_name(f"{organ} {point_name}")
                net = None
                if untrained:
                    config = pin_predictions.train_config(SETTINGS, name)
                    net = build_network(pin_predictions.space_of(SETTINGS, name, model), config).eval()
                predicted = pin_predictions.run_network(SETTINGS, case.volume, name, "C", model, starts, case.case_id,
                                                        net=net)
                errors.append(float(np.linalg.norm(predicted[0] - point)))
    return float(np.mean(errors))


@pytest.mark.realdata
def test_released_pin_reaches_its_bound_and_an_untrained_one_does_not(validation_cases):
    released, untrained = pin_single_error(validation_cases), pin_single_error(validation_cases, untrained=True)
    print(json.dumps({"pin_single_error_mm": released, "untrained_mm": untrained, "bound_mm": PIN_BOUND_MM}))
    assert released <= PIN_BOUND_MM < untrained


# ------------------------------------------------------------------------------ CC2D's release

CC2D_RELEASE = cc2d_predictions.release_dir(SETTINGS)
# Mean landmark error (mm) of the released CC2D-SSL over the extreme points of the organs of three
# validation patients (support: the first of the first four validation patients with all four
# organs): the release (window 13, 1,000 stage-1 steps) reaches 27.6 mm (the first release, 500
# steps with window 9, 30.2 mm), an untrained encoder of the same architecture 76.6 mm.
CC2D_SSL_BOUND_MM = 40.0


def test_cc2d_release_is_whole_and_documented():
    manifest = assert_release_files(CC2D_RELEASE, 5 * 2 ** 20)
    assert set(manifest["models"]) == {"ssl", "tpl"}
    for stage, config in (("ssl", SETTINGS.cc2d.train), ("tpl", SETTINGS.cc2d.tpl)):
        entry = manifest["models"][stage]
        # time_limit_s is when the last call would have paused (a GPU call's was shorter), not what was learned
        same = {k: v for k, v in config.to_dict().items() if k != "time_limit_s"}
        assert {k: v for k, v in entry["training"].items() if k != "time_limit_s"} == same, stage
        assert entry["summary"]["steps"] == config.steps, stage
        assert entry["history"] and "val_error_vox" in entry["history"][-1], stage
    assert manifest["cc2d"]["downsample"] == SETTINGS.cc2d.downsample and manifest["torch"].startswith("2.13")
    template = manifest["template"]      # a validation patient (no data read here: make test may run before it exists)
    assert template == manifest["models"]["tpl"]["template"] and template not in manifest["data_split"]["train"]
    assert manifest["data_split"]["train"] and manifest["data_split"]["validation"]
    variants = [row["variant"] for row in manifest["training_ablation"]]
    assert len(variants) == 5 and all(row["steps"] == SETTINGS.cc2d.ablation_steps
                                      for row in manifest["training_ablation"])


def cc2d_ssl_error(encoder, validation_cases) -> float:
    from rprloc_core.cc2d.inference import localize_with_vectors, template_vectors

    support = next(c for c in validation_cases if all(o in c.labels for o in HAN_ORGANS))
    grid = support.volume.downsample(SETTINGS.cc2d.downsample)
    points = np.concatenate([organ_landmarks_mm(support, HAN_ORGANS)[o] for o in HAN_ORGANS])
    vectors = template_vectors(encoder, grid.array, cc2d_predictions.to_index(grid, points))
    errors = []
    for query in [c for c in validation_cases if c is not support][:3]:
        query_grid = query.volume.downsample(SETTINGS.cc2d.downsample)
        found = cc2d_predictions.to_case_mm(query_grid, query.volume,
                                            localize_with_vectors(encoder, query_grid.array, vectors))
        truth = organ_landmarks_mm(query, HAN_ORGANS)
        errors += [float(np.linalg.norm(found[6 * i + j] - truth[organ][j]))
                   for i, organ in enumerate(HAN_ORGANS) if organ in truth for j in range(6)]
    return float(np.mean(errors))


@pytest.mark.realdata
def test_released_cc2d_reaches_its_bound_and_an_untrained_one_does_not(validation_cases):
    from rprloc_core.cc2d.network import CascadeEncoder

    encoder = cc2d_predictions.load(SETTINGS, "ssl")
    released = cc2d_ssl_error(encoder, validation_cases)
    torch.manual_seed(0)
    untrained = cc2d_ssl_error(CascadeEncoder(**encoder.config).eval(), validation_cases)
    print(json.dumps({"cc2d_ssl_error_mm": released, "untrained_mm": untrained, "bound_mm": CC2D_SSL_BOUND_MM}))
    assert released <= CC2D_SSL_BOUND_MM < untrained
