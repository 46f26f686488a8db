"""Patch auto-encoder: dense encoding equals window-by-window encoding; training resumes exactly."""

import numpy as np
import pytest
import torch

from rprloc_core.baselines import feature_matching as ae
from rprloc_core.baselines import template_matching as tm
from rprloc_core.baselines import windows
from rprloc_core.geometry.volume import Volume

SMALL = ae.AEConfig(patch_size=(8, 12, 12), latent_dim=8, channels=(4, 8))


def textured_volume(shape, rng):
    """Smooth structure plus texture, air (0) in one corner, so every window is different."""
    grid = np.indices(shape, dtype=float)
    vol = 0.5 + 0.3 * np.sin(grid[0] / 2.0) * np.cos(grid[1] / 3.0) + 0.2 * np.sin(grid[2] / 2.5)
    vol = vol + rng.uniform(0, 0.1, shape)
    vol[: shape[0] // 3, : shape[1] // 3, : shape[2] // 3] = 0.0
    return np.clip(vol, 0, 1).astype(np.float32)


def windows_at_grid(array, size, stride):
    padded = windows.pad_for_windows(array, size)
    centres = [(z, y, x) for z in range(0, array.shape[0], stride)
               for y in range(0, array.shape[1], stride) for x in range(0, array.shape[2], stride)]
    return centres, np.stack([padded[z:z + size[0], y:y + size[1], x:x + size[2]] for z, y, x in centres])


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_dense_latents_equal_window_by_window_encoding(stride):
    rng = np.random.default_rng(0)
    model = ae.build_autoencoder(SMALL, seed=1)
    query = textured_volume((11, 15, 17), rng)
    dense = ae.dense_latents(model, query, stride=stride)
    grid = tuple(len(range(0, n, stride)) for n in query.shape)
    assert dense.shape == (SMALL.latent_dim,) + grid
    _, windows = windows_at_grid(query, SMALL.patch_size, stride)
    one_by_one = ae.encode_windows(model, windows)
    np.testing.assert_allclose(dense.reshape(SMALL.latent_dim, -1).T, one_by_one, rtol=0, atol=1e-5)


def test_dense_latents_default_config_and_slabs():
    """The default 16x32x32 encoder (anisotropic pooling) at stride 2, in one slab and in many."""
    rng = np.random.default_rng(1)
    config = ae.AEConfig()
    model = ae.build_autoencoder(config, seed=2)
    query = textured_volume((19, 34, 35), rng)
    whole = ae.dense_latents(model, query, stride=2)
    slabs = ae.dense_latents(model, query, stride=2, max_slab_bytes=1)    # one output z per slab
    np.testing.assert_allclose(slabs, whole, rtol=0, atol=1e-5)
    centres, windows = windows_at_grid(query, config.patch_size, 2)
    pick = rng.choice(len(centres), size=40, replace=False)
    one_by_one = ae.encode_windows(model, windows[pick])
    flat = whole.reshape(config.latent_dim, -1).T
    np.testing.assert_allclose(flat[pick], one_by_one, rtol=0, atol=1e-5)


@pytest.mark.parametrize("config", [SMALL, ae.AEConfig(), ae.AEConfig(patch_size=(16, 16, 16), latent_dim=4)])
def test_reconstruction_has_the_patch_shape(config):
    model = ae.build_autoencoder(config, seed=0)
    x = torch.rand((2, 1) + config.patch_size)
    assert model.encode(x).shape == (2, config.latent_dim)
    assert model(x).shape == x.shape


@pytest.mark.parametrize("method", tm.FEATURE_METHODS)
def test_feature_matching_fast_equals_naive(method):
    rng = np.random.default_rng(3)
    model = ae.build_autoencoder(SMALL, seed=4)
    query = Volume(textured_volume((12, 16, 18), rng), [3, 2, 2])
    templates = rng.random((2,) + SMALL.patch_size).astype(np.float32)
    fast = tm.match(query, templates, method, stride=2, encoder=model, return_maps=True)
    naive = tm.match_naive(query, templates, method, stride=2, encoder=model, return_maps=True)
    np.testing.assert_allclose(fast.score_maps, naive.score_maps, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(fast.centre_idx, naive.centre_idx)


@pytest.mark.parametrize("method", tm.FEATURE_METHODS)
def test_feature_matching_finds_a_template_cut_from_the_query(method):
    rng = np.random.default_rng(5)
    model = ae.build_autoencoder(SMALL, seed=6)      # untrained: identical windows, identical latents
    query = Volume(textured_volume((14, 18, 20), rng), [3, 2, 2], origin_mm=[1.0, 2.0, 3.0])
    points = np.array([[8, 10, 12], [12, 16, 2], [6, 0, 18]], dtype=float)   # on the stride-2 grid
    templates = tm.cut_templates(query, points, SMALL.patch_size)
    result = tm.match(query, templates, method, stride=2, encoder=model)
    np.testing.assert_array_equal(result.centre_idx, points)
    np.testing.assert_allclose(result.centre_mm, query.idx_to_mm(points))


def test_latent_scores():
    w = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 2.0]])
    t = np.array([[1.0, 1.0]])
    np.testing.assert_allclose(ae.latent_scores(w, t, "fm_mse")[:, 0], [0.5, 1.0, 1.0])
    cos = ae.latent_scores(w, t, "fm_cosine")[:, 0]
    np.testing.assert_allclose(cos[[0, 2]], [np.sqrt(0.5), 1.0])
    assert cos[1] == -np.inf                       # a zero latent never wins


def test_sample_patches_are_centred_on_non_air():
    rng = np.random.default_rng(7)
    volumes = [textured_volume((10, 14, 14), rng), Volume(textured_volume((12, 12, 16), rng), [3, 2, 2])]
    patches = ae.sample_patches(volumes, 20, SMALL.patch_size, rng)
    centre = tuple(s // 2 for s in SMALL.patch_size)
    assert patches.shape == (20,) + SMALL.patch_size
    assert (patches[(slice(None),) + centre] > 0).all()


def test_training_is_seeded_and_resumes_exactly(tmp_path):
    volumes = [textured_volume((12, 16, 16), np.random.default_rng(i)) for i in range(3)]
    kwargs = dict(batch_size=2, checkpoint_every=2, progress=False)
    straight = ae.train_autoencoder(volumes, SMALL, 4, np.random.default_rng(42),
                                    checkpoint_path=tmp_path / "a.pt", **kwargs)
    again = ae.train_autoencoder(volumes, SMALL, 4, np.random.default_rng(42), **kwargs)
    assert len(straight.history) == 4 and np.isfinite(straight.history).all()
    np.testing.assert_allclose(again.history, straight.history, rtol=1e-6)

    first = ae.train_autoencoder(volumes, SMALL, 2, np.random.default_rng(42),
                                 checkpoint_path=tmp_path / "b.pt", **kwargs)
    assert first.step == 2
    resumed = ae.train_autoencoder(volumes, SMALL, 4, np.random.default_rng(999),   # state comes from the file
                                   checkpoint_path=tmp_path / "b.pt", **kwargs)
    assert resumed.step == 4
    np.testing.assert_allclose(resumed.history, straight.history, rtol=1e-5)
    assert not list(tmp_path.glob("*.tmp"))                        # atomic writes leave no temp file

    loaded = ae.load_autoencoder(tmp_path / "b.pt")
    for a, b in zip(loaded.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="config"):
        ae.train_autoencoder(volumes, ae.AEConfig(patch_size=(8, 12, 12), latent_dim=4, channels=(4, 8)), 5,
                             np.random.default_rng(0), checkpoint_path=tmp_path / "b.pt", **kwargs)


def test_reconstruction_examples():
    rng = np.random.default_rng(8)
    model = ae.build_autoencoder(SMALL, seed=0)
    pairs = ae.reconstruction_examples(model, [textured_volume((10, 14, 14), rng)], 3, rng)
    assert len(pairs) == 3
    for image, recon in pairs:
        assert image.shape == recon.shape == SMALL.patch_size[1:]


def test_query_latents_can_be_shared_between_organs():
    rng = np.random.default_rng(9)
    model = ae.build_autoencoder(SMALL, seed=3)
    query = Volume(textured_volume((12, 14, 16), rng), [3, 2, 2])
    templates = rng.random((2,) + SMALL.patch_size).astype(np.float32)
    latents = ae.dense_latents(model, query.array, stride=2)
    shared = tm.match(query, templates, "fm_cosine", encoder=model, query_latents=latents, return_maps=True)
    fresh = tm.match(query, templates, "fm_cosine", encoder=model, return_maps=True)
    np.testing.assert_array_equal(shared.score_maps, fresh.score_maps)
    with pytest.raises(ValueError, match="query latents"):
        tm.match(query, templates, "fm_cosine", stride=1, encoder=model, query_latents=latents)
