"""Gray-scale template matching: the fast (FFT) path equals the naive sliding window."""

import numpy as np
import pytest

from rprloc_core.baselines import template_matching as tm
from rprloc_core.geometry.volume import Volume


def smooth_blobs(shape, rng, n_blobs=8, air_below=0.08):
    """A structured volume: a sum of Gaussian blobs, exactly 0 (air) where it is faint."""
    grid = np.indices(shape, dtype=float).transpose(1, 2, 3, 0)
    vol = np.zeros(shape)
    for _ in range(n_blobs):
        centre = rng.uniform(0, shape)
        sigma = rng.uniform(1.5, 4.0, 3)
        vol += rng.uniform(0.3, 1.0) * np.exp(-0.5 * (((grid - centre) / sigma) ** 2).sum(axis=-1))
    vol = np.minimum(vol, 1.0)
    vol[vol < air_below] = 0.0
    return vol.astype(np.float32)


def interior_mask(grid_shape, stride, query_shape, size):
    """Stride-grid centres whose whole window lies inside the query (no zero padding)."""
    axes = []
    for n, s, q, p in zip(grid_shape, (stride,) * 3, query_shape, size):
        c = np.arange(n) * s
        axes.append((c - p // 2 >= 0) & (c - p // 2 + p <= q))
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def assert_same_maps(fast, naive):
    assert fast.score_maps.shape == naive.score_maps.shape
    assert np.array_equal(np.isinf(fast.score_maps), np.isinf(naive.score_maps))
    finite = np.isfinite(naive.score_maps)
    assert not np.isnan(fast.score_maps).any()
    np.testing.assert_allclose(fast.score_maps[finite], naive.score_maps[finite], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(fast.centre_idx, naive.centre_idx)
    np.testing.assert_allclose(fast.score, naive.score, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method", tm.GRAY_METHODS)
@pytest.mark.parametrize("stride", [1, 2])
def test_fast_equals_naive_on_random_volumes(method, stride):
    rng = np.random.default_rng(1)
    query = Volume(rng.random((12, 14, 16)).astype(np.float32), [3.0, 2.0, 2.0])
    templates = rng.random((3, 5, 6, 7)).astype(np.float32)
    fast = tm.match(query, templates, method, stride=stride, return_maps=True)
    naive = tm.match_naive(query, templates, method, stride=stride, return_maps=True)
    assert fast.score_maps.shape == (3,) + tuple(len(range(0, n, stride)) for n in query.shape)
    assert_same_maps(fast, naive)


@pytest.mark.parametrize("method", tm.GRAY_METHODS)
def test_fast_equals_naive_on_smooth_blobs_with_air(method):
    rng = np.random.default_rng(2)
    query = Volume(smooth_blobs((18, 22, 26), rng), [3.0, 2.0, 2.0])
    support = Volume(smooth_blobs((18, 22, 26), rng), [3.0, 2.0, 2.0])
    points = np.array([[9, 11, 13], [3.4, 5.6, 20.2], [0, 0, 0], [17, 21, 25]])
    templates = tm.cut_templates(support, points, (6, 8, 8))
    fast = tm.match(query, templates, method, stride=2, return_maps=True)
    naive = tm.match_naive(query, templates, method, stride=2, return_maps=True)
    assert_same_maps(fast, naive)
    assert np.isfinite(fast.centre_idx).all()


def test_air_windows_get_the_worst_score_never_nan():
    rng = np.random.default_rng(3)
    array = smooth_blobs((16, 20, 20), rng, n_blobs=2)
    array[:, :, :8] = 0.0                     # a slab of pure air
    query = Volume(array, [3.0, 2.0, 2.0])
    templates = tm.cut_templates(query, [[8, 10, 14]], (4, 6, 6))
    for method in ("gs_cosine", "gs_ncc"):
        maps = tm.match(query, templates, method, stride=1, return_maps=True).score_maps
        assert not np.isnan(maps).any()
        assert np.all(maps[0, :, :, :5] == -np.inf)   # windows centred at x < 5 only see air
    result = tm.match(query, np.zeros((1, 4, 6, 6), np.float32), "gs_cosine")
    assert np.isnan(result.centre_idx).all() and np.isnan(result.score).all()  # nothing to match
    air = tm.match(query, np.zeros((1, 4, 6, 6), np.float32), "gs_mse")
    assert air.score[0] == 0.0 and air.centre_idx[0, 2] < 5   # an all-air template finds air


@pytest.mark.parametrize("method", tm.GRAY_METHODS)
def test_template_cut_from_the_query_is_found_at_its_own_position(method):
    rng = np.random.default_rng(4)
    array = smooth_blobs((20, 24, 28), rng)
    array += (array > 0) * rng.uniform(0, 0.05, array.shape).astype(np.float32)   # texture: unique windows
    query = Volume(array, [3.0, 2.0, 2.0], origin_mm=[10.0, -5.0, 3.0])
    points = np.array([[10, 12, 14], [4, 6, 22], [16, 18, 6]], dtype=float)   # on the stride-2 grid
    points = points[array[tuple(points.astype(int).T)] > 0]                   # non-air centres
    templates = tm.cut_templates(query, points, (6, 8, 8))
    result = tm.match(query, templates, method, stride=2)
    np.testing.assert_array_equal(result.centre_idx, points)
    np.testing.assert_allclose(result.centre_mm, query.origin_mm + points * query.spacing)


@pytest.mark.parametrize("method", tm.GRAY_METHODS)
def test_support_point_near_the_border_uses_zero_padding(method):
    rng = np.random.default_rng(5)
    array = rng.uniform(0.1, 1.0, (14, 16, 18)).astype(np.float32)
    query = Volume(array, [3.0, 2.0, 2.0])
    point = np.array([[0.0, 2.0, 16.0]])          # the template leaves the image on two axes
    template = tm.cut_templates(query, point, (6, 8, 8))
    expected = np.pad(array, ((3, 2), (4, 3), (4, 3)))[0:6, 2:10, 16:24]
    np.testing.assert_array_equal(template[0], expected)
    assert (template[0, :3] == 0).all() and (template[0, :, :, 6:] == 0).all()
    fast = tm.match(query, template, method, stride=2)
    naive = tm.match_naive(query, template, method, stride=2)
    np.testing.assert_array_equal(fast.centre_idx, point)
    np.testing.assert_array_equal(naive.centre_idx, point)


def test_ncc_is_unchanged_by_an_affine_intensity_change():
    rng = np.random.default_rng(6)
    array = rng.random((16, 18, 20)).astype(np.float32)
    size = (5, 6, 6)
    templates = np.concatenate([tm.cut_templates(Volume(array, [1, 1, 1]), [[8, 8, 10]], size),
                                rng.random((2,) + size).astype(np.float32)])
    base = tm.match(Volume(array, [1, 1, 1]), templates, "gs_ncc", stride=2, return_maps=True)
    shifted = tm.match(Volume(3.7 * array + 0.8, [1, 1, 1]), templates, "gs_ncc", stride=2, return_maps=True)
    # zero padding is not shifted with the intensities, so only windows inside the query compare;
    # the tolerance is float32's, in which Volume stores the transformed intensities
    inside = interior_mask(base.score_maps.shape[1:], 2, array.shape, size)
    np.testing.assert_allclose(shifted.score_maps[:, inside], base.score_maps[:, inside], atol=1e-6)
    np.testing.assert_array_equal(shifted.centre_idx[0], [8, 8, 10])
    np.testing.assert_allclose(shifted.score[0], 1.0, atol=1e-6)


def test_cosine_is_unchanged_by_scaling():
    rng = np.random.default_rng(7)
    query = Volume(smooth_blobs((14, 16, 18), rng), [3, 2, 2])
    templates = rng.random((3, 4, 6, 6)).astype(np.float32)
    base = tm.match(query, templates, "gs_cosine", stride=1, return_maps=True)
    scaled = tm.match(Volume(2.5 * query.array, [3, 2, 2]), templates, "gs_cosine", stride=1, return_maps=True)
    assert np.array_equal(np.isinf(base.score_maps), np.isinf(scaled.score_maps))
    finite = np.isfinite(base.score_maps)
    np.testing.assert_allclose(scaled.score_maps[finite], base.score_maps[finite], atol=1e-6)  # float32 storage
    np.testing.assert_array_equal(scaled.centre_idx, base.centre_idx)


def test_query_smaller_than_template_is_a_clear_error():
    query = Volume(np.ones((10, 40, 40), np.float32), [3, 2, 2])
    templates = np.ones((2, 16, 32, 32), np.float32)
    for matcher in (tm.match, tm.match_naive):
        with pytest.raises(ValueError, match=r"\(10, 40, 40\).*\(16, 32, 32\)"):
            matcher(query, templates, "gs_ncc")


def test_bad_arguments():
    query = Volume(np.ones((8, 8, 8), np.float32), [1, 1, 1])
    with pytest.raises(ValueError, match="method"):
        tm.match(query, np.ones((1, 2, 2, 2), np.float32), "ssd")
    with pytest.raises(ValueError, match="stride"):
        tm.match(query, np.ones((1, 2, 2, 2), np.float32), "gs_mse", stride=0)
    with pytest.raises(ValueError, match="encoder"):
        tm.match(query, np.ones((1, 2, 2, 2), np.float32), "fm_mse")
    with pytest.raises(ValueError, match="NaN"):
        tm.cut_templates(query, [[np.nan, 1, 1]], (2, 2, 2))


def test_template_chunks_do_not_change_the_result():
    rng = np.random.default_rng(8)
    query = rng.random((10, 12, 14)).astype(np.float32)
    templates = rng.random((5, 4, 4, 4)).astype(np.float32)
    one = tm.gray_score_maps(query, templates, "gs_ncc", stride=2, chunk=1)
    all_ = tm.gray_score_maps(query, templates, "gs_ncc", stride=2, chunk=5)
    np.testing.assert_allclose(one, all_, atol=1e-12)
