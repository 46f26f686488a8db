"""The supervised detector (rprloc_core.detector): targets and augmentation agree with the masks,
both box rules recover a box from perfect network outputs, training resumes exactly, and a model
trained for a few steps runs end to end on a case."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from rprloc_core.data.preprocess import PreprocessedCase
from rprloc_core.detector.boxes import detect, face_centres, mask_box, upsample, vote_box
from rprloc_core.detector.config import DetectorTrainConfig
from rprloc_core.detector.network import DISTANCE_UNIT_MM, DetectorNet
from rprloc_core.detector.samples import (
    coarse_to_fine_index,
    face_distances,
    fine_to_coarse_index,
    make_batch,
    mirrored,
    sample_from_case,
)
from rprloc_core.detector.training import load_detector, train_detector
from rprloc_core.errors import DataError
from rprloc_core.geometry.boxes import VoxelBox, bounding_box, box_from_points
from rprloc_core.geometry.volume import Volume

ORGANS = ["Brainstem", "LeftParotid", "RightParotid"]


def synthetic_case(seed: int, shape=(24, 32, 40), spacing=(3.0, 2.0, 2.0), missing=()) -> PreprocessedCase:
    """Bright blocks on a dim head; the left parotid sits at larger x than the right one."""
    rng = np.random.default_rng(seed)
    image = np.zeros(shape, np.float32)
    image[2:-2, 3:-3, 4:-4] = 0.3
    labels = {}
    corners = {"Brainstem": (8, 10, 17), "LeftParotid": (6, 14, 28), "RightParotid": (6, 14, 6)}
    sizes = {"Brainstem": (6, 5, 4), "LeftParotid": (5, 6, 5), "RightParotid": (5, 6, 5)}
    for organ in ORGANS:
        if organ in missing:
            continue
        lo = np.asarray(corners[organ]) + rng.integers(-1, 2, 3)
        hi = lo + np.asarray(sizes[organ])
        mask = np.zeros(shape, np.uint8)
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 1
        labels[organ] = mask
        image[mask > 0] = 0.8 if organ == "Brainstem" else 0.6
    image += rng.normal(0, 0.02, shape).astype(np.float32)
    return PreprocessedCase(f"c{seed}", Volume(image, np.asarray(spacing)), (image * 1000).astype(np.int16), labels)


def test_network_shapes():
    net = DetectorNet(n_organs=3, width=4, levels=2)
    logits, distances = net(torch.zeros(2, 1, 8, 12, 16))
    assert logits.shape == (2, 3, 8, 12, 16) and distances.shape == (2, 3, 6, 8, 12, 16)
    assert net.multiple == 4


def test_index_conversions_round_trip_and_pooling_keeps_centres():
    idx = np.array([0.0, 3.0, 7.5])
    np.testing.assert_allclose(coarse_to_fine_index(fine_to_coarse_index(idx, 2), 2), idx)
    # a coarse voxel's centre is the mean of the fine voxel centres it pools
    fine = np.arange(8, dtype=np.float32)[None, None, :].repeat(2, 0).repeat(2, 1)
    pooled = Volume(fine, np.ones(3)).downsample(2).array
    np.testing.assert_allclose(pooled[0, 0], coarse_to_fine_index(np.arange(4), 2))


def test_targets_match_the_masks_at_full_resolution():
    case = synthetic_case(0, missing=("RightParotid",))
    sample = sample_from_case(case, ORGANS, downsample=1)
    assert sample.present.tolist() == [True, True, False]
    for i, organ in enumerate(ORGANS[:2]):
        box = bounding_box(case.labels[organ])
        np.testing.assert_array_equal(sample.lo[i], box.lo)
        np.testing.assert_array_equal(sample.hi[i], box.hi)
    assert np.isnan(sample.lo[2]).all() and not sample.masks[2].any()


def test_face_distances_are_zero_on_the_faces_and_positive_inside():
    case = synthetic_case(1)
    sample = sample_from_case(case, ORGANS, downsample=1)
    d = face_distances(sample.lo, sample.hi, sample.image.shape, sample.spacing)
    for i in range(len(ORGANS)):
        inside = sample.masks[i] > 0.5
        assert (d[i][:, inside] >= 0).all()
        np.testing.assert_allclose(d[i][:, inside].min(axis=1), 0.0, atol=1e-4)
        extent_mm = (sample.hi[i] - sample.lo[i]) * sample.spacing
        np.testing.assert_allclose(d[i][:3, inside].max(axis=1), extent_mm, atol=1e-4)


def test_mirroring_flips_the_image_and_swaps_left_and_right():
    case = synthetic_case(2)
    sample = sample_from_case(case, ORGANS, downsample=1)
    flipped = mirrored(sample, ORGANS)
    np.testing.assert_array_equal(flipped.image, sample.image[:, :, ::-1])
    left, right = ORGANS.index("LeftParotid"), ORGANS.index("RightParotid")
    np.testing.assert_array_equal(flipped.masks[left], sample.masks[right][:, :, ::-1])
    for i in range(len(ORGANS)):       # the mirrored boxes are the boxes of the mirrored masks
        box = bounding_box(flipped.masks[i] > 0.5)
        np.testing.assert_array_equal(flipped.lo[i], box.lo)
        np.testing.assert_array_equal(flipped.hi[i], box.hi)
    twice = mirrored(flipped, ORGANS)
    np.testing.assert_array_equal(twice.masks, sample.masks)
    np.testing.assert_array_equal(twice.lo, sample.lo)


@pytest.mark.parametrize("crop", [None, (16, 24, 40)])
def test_batches_carry_boxes_that_agree_with_their_masks(crop):
    samples = [sample_from_case(synthetic_case(s), ORGANS, 1) for s in (3, 4)]
    batch = make_batch(samples, 8, np.random.default_rng(0), max_shift=3, intensity_jitter=0.1, crop=crop)
    assert batch["image"].shape[2:] == batch["masks"].shape[2:]
    assert all(n % 8 == 0 for n in batch["image"].shape[2:])
    distances = batch["distances"].numpy() * DISTANCE_UNIT_MM
    spacing = samples[0].spacing
    for b in range(2):
        for i in range(len(ORGANS)):
            inside = batch["inside"][b, i].numpy()
            assert inside.any()
            box = bounding_box(inside)
            # the voxel at the box's low corner is as far from the low faces as the box is cut
            at = tuple(np.argwhere(inside)[0])
            idx = np.asarray(at, float)
            np.testing.assert_allclose(distances[b, i, :3][(slice(None), *at)], (idx - box.lo) * spacing, atol=1e-3)
            if crop is None:      # nothing cut: every face is touched by the mask
                np.testing.assert_allclose(distances[b, i][:, inside].min(axis=1), 0.0, atol=1e-3)


def test_both_rules_recover_the_box_from_perfect_outputs():
    case = synthetic_case(5)
    sample = sample_from_case(case, ORGANS, downsample=1)
    distances = face_distances(sample.lo, sample.hi, sample.image.shape, sample.spacing)
    for i in range(len(ORGANS)):
        prob = sample.masks[i].copy()
        prob[0, 0, 0] = 0.9        # a stray voxel: not in the largest component, ignored
        lo, hi = mask_box(prob)
        np.testing.assert_array_equal(lo, sample.lo[i])
        np.testing.assert_array_equal(hi, sample.hi[i])
        lo, hi = vote_box(prob, distances[i], sample.spacing)
        np.testing.assert_allclose(lo, sample.lo[i], atol=1e-4)
        np.testing.assert_allclose(hi, sample.hi[i], atol=1e-4)


def test_a_weak_organ_still_gets_a_box():
    prob = np.zeros((10, 10, 10), np.float32)
    prob[4:6, 3:7, 2:5] = 0.2     # never reaches 0.5
    lo, hi = mask_box(prob)
    np.testing.assert_array_equal(lo, [4, 3, 2])
    np.testing.assert_array_equal(hi, [5, 6, 4])


def test_upsampled_probabilities_keep_the_organ_in_place():
    case = synthetic_case(6)
    mask = case.labels["Brainstem"].astype(np.float32)
    fine = upsample(Volume(mask, case.spacing).downsample(2).array, 2, mask.shape)
    assert fine.shape == mask.shape
    lo, hi = mask_box(fine)
    box = bounding_box(mask)
    assert np.abs(lo - box.lo).max() <= 1 and np.abs(hi - box.hi).max() <= 1


def test_face_centres_are_scored_as_the_box():
    box = VoxelBox(np.array([1.0, 2.0, 3.0]), np.array([4.0, 8.0, 5.0]))
    rebuilt = box_from_points(face_centres(box))
    np.testing.assert_array_equal(rebuilt.lo, box.lo)
    np.testing.assert_array_equal(rebuilt.hi, box.hi)


def tiny_config(**changes) -> DetectorTrainConfig:
    return replace(DetectorTrainConfig(organs=tuple(ORGANS), downsample=1, width=2, levels=2, batch_size=2,
                                       steps=4, crop=(16, 16, 24), max_shift=2, val_every=2, checkpoint_every=1),
                   **changes)


def test_training_resumes_exactly_and_refuses_other_settings(tmp_path):
    train = [sample_from_case(synthetic_case(s), ORGANS, 1) for s in range(3)]
    validation = [sample_from_case(synthetic_case(9), ORGANS, 1)]
    once = train_detector(tiny_config(), train, validation, tmp_path / "once", progress=False)
    train_detector(tiny_config(steps=2), train, validation, tmp_path / "twice", progress=False)
    resumed = train_detector(tiny_config(), train, validation, tmp_path / "twice", progress=False)
    assert once["steps"] == resumed["steps"] == 4 and resumed["resumed"]
    assert (once["calls"], resumed["calls"]) == (1, 2)      # what the release's summary.resumed reads
    a = torch.load(tmp_path / "once" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "twice" / "last.pt", weights_only=False)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name])
    with pytest.raises(DataError, match="lr"):
        train_detector(tiny_config(lr=1e-4), train, validation, tmp_path / "once", progress=False)


def test_a_trained_model_boxes_every_organ_of_a_case(tmp_path):
    train = [sample_from_case(synthetic_case(s), ORGANS, 2) for s in range(3)]
    config = tiny_config(downsample=2, crop=(8, 8, 16), steps=2)
    train_detector(config, train, [], tmp_path, progress=False)
    net, saved = load_detector(tmp_path / "best.pt")
    case = synthetic_case(7)
    for rule in ("mask", "votes"):
        boxes = detect(net, case, saved["organs"], saved["downsample"], rule)
        assert set(boxes) == set(ORGANS)
        for box in boxes.values():
            assert np.all(box.lo <= box.hi) and np.all(box.lo >= 0)
            assert np.all(box.hi <= np.asarray(case.volume.shape) - 1)
    with pytest.raises(ValueError, match="rule"):
        detect(net, case, saved["organs"], 2, "nearest")
