"""Tests for resvae_keras.sample_metrics: closed forms, hand examples, offline behaviour."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from resvae_keras import inception, sample_metrics

# --------------------------------------------------------------------------------------
# FID, KID, precision and recall, density and coverage
# --------------------------------------------------------------------------------------


def closed_form_fid(mu1, var1, mu2, var2):
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2)))


def test_frechet_distance_matches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    expected = closed_form_fid(mu1, var1, mu2, var2)
    assert sample_metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    assert sample_metrics.frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0.0, abs=1e-9)


def test_fid_on_gaussian_samples_matches_closed_form():
    rng = np.random.default_rng(6)
    mu1, mu2 = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, -1.0, 0.5, 0.0])
    var1, var2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([4.0, 1.0, 0.5, 0.25])
    n = 20_000
    a = mu1 + np.sqrt(var1) * rng.standard_normal((n, 4))
    b = mu2 + np.sqrt(var2) * rng.standard_normal((n, 4))
    expected = closed_form_fid(mu1, var1, mu2, var2)  # 3.47
    assert sample_metrics.fid(a, b) == pytest.approx(expected, rel=0.03)


def test_fid_warns_below_2048_samples():
    feats = np.random.default_rng(7).standard_normal((100, 4))
    with pytest.warns(UserWarning, match="2,048"):
        sample_metrics.fid(feats, feats + 1)


def test_kid_is_unbiased_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    mean, std = sample_metrics.kid(a, b, n_subsets=50, subset_size=100)
    assert abs(mean) < 3 * std
    shifted_mean, _ = sample_metrics.kid(a, b + 1.0, n_subsets=50, subset_size=100)
    assert shifted_mean > 10 * std


def test_kid_equals_unbiased_mmd_on_a_hand_example():
    x = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 1.0]])
    d, m = 2, 3

    def k(u, v):
        return (np.dot(u, v) / d + 1) ** 3

    within = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    expected = within / (m * (m - 1)) - 2 * cross / m**2
    mean, std = sample_metrics.kid(x, y, n_subsets=1, subset_size=10)
    assert mean == pytest.approx(expected, rel=1e-12)
    assert std == 0.0


def test_precision_recall_identical_and_far_apart():
    feats = np.random.default_rng(9).standard_normal((300, 8))
    assert sample_metrics.precision_recall(feats, feats, k=3, batch_size=64) == (1.0, 1.0)
    precision, recall = sample_metrics.precision_recall(feats, feats + 100.0, k=3, batch_size=64)
    assert precision == 0.0 and recall == 0.0


def test_precision_uses_the_kth_neighbour_radius():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])  # radii k=1: 1, 1, 2, 4; k=2: 3, 2, 3, 6
    fake = np.array([[-2.0], [1.5], [11.5], [13.5]])
    assert sample_metrics.precision_recall(real, fake, k=1)[0] == pytest.approx(1 / 4)
    assert sample_metrics.precision_recall(real, fake, k=2)[0] == pytest.approx(3 / 4)


def test_precision_recall_sees_a_collapsed_generator():
    rng = np.random.default_rng(10)
    real = rng.standard_normal((500, 4))
    fake = 0.05 * rng.standard_normal((500, 4))  # all samples near the mean: realistic, no coverage
    precision, recall = sample_metrics.precision_recall(real, fake)
    assert precision > 0.9 and recall < 0.3


def test_density_coverage_counts_real_balls():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])  # radii k=1: 1, 1, 2, 4
    fake = np.array([[0.5], [6.0], [20.0]])
    density, coverage = sample_metrics.density_coverage(real, fake, k=1)
    # 0.5 lies in the balls of 0 and 1 (not of 3: 2.5 > 2); 6.0 in the ball of 7; 20.0 in none
    assert density == pytest.approx(3 / (1 * 3))
    assert coverage == pytest.approx(3 / 4)  # the balls of 0, 1 and 7 hold a fake; 3's none


def test_density_coverage_of_one_distribution_and_of_a_collapse():
    rng = np.random.default_rng(11)
    real, same = rng.standard_normal((800, 4)), rng.standard_normal((800, 4))
    density, coverage = sample_metrics.density_coverage(real, same, k=5)
    assert 0.8 < density < 1.2 and coverage > 0.9
    collapsed = 0.05 * rng.standard_normal((800, 4))
    assert sample_metrics.density_coverage(real, collapsed, k=5)[1] < 0.1
    with pytest.raises(ValueError, match="`k`"):
        sample_metrics.density_coverage(real[:3], same, k=5)


# --------------------------------------------------------------------------------------
# Diversity, memorization, SWD
# --------------------------------------------------------------------------------------


def test_mean_pairwise_distance_exact_on_three_points():
    points = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert sample_metrics.mean_pairwise_distance(points) == pytest.approx(4.0)  # (3 + 4 + 5) / 3
    images = np.zeros((2, 2, 2, 3))
    images[1] = 1.0
    assert sample_metrics.mean_pairwise_distance(images) == pytest.approx(math.sqrt(12))
    many = np.random.default_rng(11).standard_normal((300, 2))
    sampled = sample_metrics.mean_pairwise_distance(many, max_pairs=20_000)
    assert sampled == pytest.approx(sample_metrics.mean_pairwise_distance(many), rel=0.05)


def test_mean_pairwise_ms_ssim_lower_for_diverse_sets(smooth_images):
    diverse = smooth_images(6, 2, seed=12)
    collapsed = np.repeat(diverse[:1], 6, axis=0)
    assert sample_metrics.mean_pairwise_ms_ssim(collapsed, n_pairs=10) == pytest.approx(1.0, abs=1e-5)
    assert sample_metrics.mean_pairwise_ms_ssim(diverse, n_pairs=10) < 0.9


def test_nearest_neighbours_exact_on_a_tiny_set():
    references = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0], [3.0, 3.0]])
    queries = np.array([[9.0, 1.0], [0.0, 0.0], [1.0, 4.0]])
    indices, distances = sample_metrics.nearest_neighbours(queries, references, batch_size=2)
    assert list(indices) == [1, 0, 2]
    np.testing.assert_allclose(distances, [math.sqrt(2), 0.0, math.sqrt(2)])
    indices3, _ = sample_metrics.nearest_neighbours(queries, references, batch_size=3)
    assert list(indices3) == [1, 0, 2]
    images = references.reshape(4, 1, 1, 2)
    np.testing.assert_array_equal(sample_metrics.nearest_neighbours(images, images)[0], np.arange(4))


def test_nearest_by_identity_on_a_tiny_fixture():
    # references: person 7 at x = 0 and x = 1, person 8 at x = 3, an unknown face at x = 0.5
    references = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    reference_ids = np.array([7, 7, 8, -1])
    queries = np.array([[0.2, 0.0], [2.0, 0.0], [5.0, 0.0], [9.0, 9.0]])
    query_ids = np.array([7, 8, 9, -1])  # 9: nobody of that person among the references
    out = sample_metrics.nearest_by_identity(queries, query_ids, references, reference_ids, batch_size=2)
    np.testing.assert_allclose(out["same"], [0.2, 1.0, np.nan, np.nan])
    # the unknown face at 0.5 never counts as "another person"
    np.testing.assert_allclose(out["different"], [2.8, 1.0, 2.0, np.nan])
    # training faces against the others: a face is never its own neighbour
    own = sample_metrics.nearest_by_identity(references[:3], reference_ids[:3], references,
                                      reference_ids, query_rows=[0, 1, 2])
    np.testing.assert_allclose(own["same"], [1.0, 1.0, np.nan])
    np.testing.assert_allclose(own["different"], [3.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="one id per image"):
        sample_metrics.nearest_by_identity(queries, query_ids[:2], references, reference_ids)


def test_sliced_wasserstein_small_for_same_distribution_large_for_different(smooth_images):
    settings = {"patches_per_image": 64, "n_repeats": 2, "dirs_per_repeat": 64}
    a, b = smooth_images(64, 1, seed=13), smooth_images(64, 1, seed=14)
    blurry = smooth_images(64, 3, seed=15)
    same = sample_metrics.sliced_wasserstein(a, b, **settings)
    different = sample_metrics.sliced_wasserstein(a, blurry, **settings)
    assert set(same) == {"swd_64", "swd_32", "swd_16", "swd_mean"}
    assert same["swd_mean"] < 0.5 * different["swd_mean"]
    assert same["swd_64"] < 0.5 * different["swd_64"]
    assert sample_metrics.sliced_wasserstein(a, b, **settings) == same  # seeded


def test_sliced_wasserstein_per_level_floor_of_real_faces_is_below_noise(demo_cache):
    faces = demo_cache.images  # two halves of the demo faces: real against real
    noise = np.random.default_rng(0).random((30, 64, 64, 3), dtype=np.float32)
    settings = {"patches_per_image": 32, "n_repeats": 2, "dirs_per_repeat": 64}
    floor = sample_metrics.sliced_wasserstein(faces[:30], faces[30:], **settings)
    against_noise = sample_metrics.sliced_wasserstein(faces[:30], noise, **settings)
    assert list(floor) == ["swd_64", "swd_32", "swd_16", "swd_mean"]
    for level in ("swd_16", "swd_32", "swd_64"):
        assert floor[level] < 0.5 * against_noise[level], level
    assert floor["swd_mean"] == pytest.approx(np.mean([floor[f"swd_{r}"] for r in (16, 32, 64)]))


def test_laplacian_pyramid_of_a_constant_image_has_no_detail():
    x = np.full((2, 32, 32, 3), 0.6, np.float32)
    high, low = sample_metrics.laplacian_pyramid(x, 2)
    assert low.shape == (2, 16, 16, 3) and high.shape == x.shape
    np.testing.assert_allclose(low, 0.6, atol=1e-6)
    np.testing.assert_allclose(high, 0.0, atol=1e-6)


# --------------------------------------------------------------------------------------
# Is it a face? (Haar cascade)
# --------------------------------------------------------------------------------------


def test_face_detection_rate_finds_demo_faces_and_not_noise(demo_cache, monkeypatch):
    faces = demo_cache.images  # uint8, the 60 generated demo faces (no CelebA image)
    face_rate = sample_metrics.face_detection_rate(faces)
    assert face_rate == pytest.approx(round(face_rate * len(faces)) / len(faces))  # a share
    noise = np.random.default_rng(0).random((len(faces), 64, 64, 3), dtype=np.float32)
    flat = np.full((4, 64, 64, 3), 0.5, np.float32)
    noise_rate = sample_metrics.face_detection_rate(noise)
    assert face_rate >= 0.4 and noise_rate <= 0.05 and face_rate > noise_rate + 0.3
    assert sample_metrics.face_detection_rate(flat) == 0.0
    # a face smaller than the minimum side does not count
    monkeypatch.setattr(sample_metrics, "FACE_MIN_SIZE_FRACTION", 0.99)
    assert sample_metrics.face_detection_rate(faces) == 0.0


def test_face_detection_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(ImportError, match="opencv-python-headless==4"):
        sample_metrics.face_detection_rate(np.zeros((1, 64, 64, 3), np.float32))


def test_face_detection_checks_its_input():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        sample_metrics.face_detection_rate(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sample_metrics.face_detection_rate(np.full((1, 64, 64, 3), 2.0, np.float32))


# --------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------


def test_realism_goes_on_without_the_feature_network(offline, smooth_images):
    real, fake = smooth_images(24, 1, seed=17), smooth_images(24, 3, seed=18)
    result = sample_metrics.realism_metrics(real, fake, inception.InceptionFeatures())
    assert result["available"] is False
    assert str(inception.inception_weights_path()) in result["reason"]
    assert result["swd"]["swd_mean"] > 0 and "fid" not in result
    assert offline == []


def test_realism_metrics_with_a_working_extractor(pixel_means, smooth_images):
    real, fake = smooth_images(40, 1, seed=20), smooth_images(40, 1, seed=21)
    with pytest.warns(UserWarning, match="2,048"):
        result = sample_metrics.realism_metrics(real, fake, pixel_means, kid_subsets=5,
                                                kid_subset_size=20)
    assert result["available"] is True and result["extractor"] == "pixel_moments"
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "feature_diversity_fake"):
        assert np.isfinite(result[key])
    assert 0 <= result["precision"] <= 1 and result["n_fake"] == 40
