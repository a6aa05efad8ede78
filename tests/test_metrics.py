"""Tests for resvae_keras.metrics: hand examples, closed forms, offline behaviour."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from resvae_keras import metrics


def smooth_images(n, sigma, seed, size=64):
    """Random images blurred by `sigma` pixels, rescaled to [0, 1]."""
    images = np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)
    images = ndimage.gaussian_filter(images, (0, sigma, sigma, 0))
    low, high = images.min(), images.max()
    return ((images - low) / (high - low)).astype(np.float32)


# --------------------------------------------------------------------------------------
# Module import stays light
# --------------------------------------------------------------------------------------


def test_import_does_not_load_tensorflow():
    path = Path(metrics.__file__)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('metrics_only', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'cv2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
    assert importlib.util.find_spec("resvae_keras.metrics") is not None


# --------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------


def test_psnr_identical_is_the_cap():
    x = smooth_images(2, 2, seed=0, size=16)
    assert np.all(metrics.psnr(x, x) == metrics.PSNR_CAP_DB)
    assert metrics.PSNR_CAP_DB == 100.0


def test_psnr_of_known_mse():
    x = np.zeros((2, 8, 8, 3), np.float32)
    x_hat = np.full_like(x, 0.1)
    x_hat[1] = 0.3
    np.testing.assert_allclose(metrics.mse(x, x_hat), [0.01, 0.09], rtol=1e-6)
    np.testing.assert_allclose(metrics.psnr(x, x_hat), 10 * np.log10(1 / np.array([0.01, 0.09])), rtol=1e-6)
    np.testing.assert_allclose(metrics.psnr(x, x_hat)[0], 20.0, rtol=1e-6)


def test_uint8_is_scaled_and_out_of_range_floats_are_refused():
    x8 = np.full((1, 4, 4, 3), 255, np.uint8)
    np.testing.assert_allclose(metrics.mse(x8, np.zeros((1, 4, 4, 3), np.float32)), [1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        metrics.mse(np.full((1, 4, 4, 3), 255.0), np.zeros((1, 4, 4, 3)))
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(np.zeros((1, 4, 4, 3)), np.zeros((2, 4, 4, 3)))


def test_ssim_identical_is_one_and_noise_lowers_it():
    x = smooth_images(4, 2, seed=1)
    noisy = np.clip(x + 0.1 * np.random.default_rng(2).standard_normal(x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-5)
    np.testing.assert_allclose(metrics.ms_ssim(x, x), 1.0, atol=1e-5)
    assert np.all(metrics.ssim(x, noisy) < 0.95)
    assert np.all(metrics.ms_ssim(x, noisy) < 1.0)


def test_ms_ssim_scale_rule_and_nan_when_too_small():
    assert metrics.ms_ssim_scales(64, 64) == 3
    assert metrics.ms_ssim_scales(32, 32) == 2
    assert metrics.ms_ssim_scales(176, 176) == 5
    assert metrics.ms_ssim_scales(20, 20) == 0
    assert sum(metrics.ms_ssim_power_factors(64, 64)) == pytest.approx(1.0)
    x = smooth_images(2, 1, seed=3, size=16)
    df = metrics.reconstruction_metrics(x, x[::-1].copy())
    assert df["ms_ssim"].isna().all()
    assert df["ssim"].notna().all()


def test_reconstruction_metrics_table_and_summary():
    x = smooth_images(5, 2, seed=4)
    x_hat = np.clip(x + 0.05, 0, 1)
    names = [f"{i:06d}.jpg" for i in range(5)]
    df = metrics.reconstruction_metrics(x, x_hat, batch_size=2, index=names)
    assert list(df.columns) == ["mse", "psnr", "ssim", "ms_ssim"]
    assert list(df.index) == names
    np.testing.assert_allclose(df["mse"], metrics.mse(x, x_hat))
    summary = metrics.summarize(df)
    assert summary.loc["psnr", "mean"] == pytest.approx(df["psnr"].mean())
    assert summary.loc["ssim", "std"] == pytest.approx(df["ssim"].std())
    assert list(summary["count"]) == [5, 5, 5, 5]


def test_bits_per_dim_hand_example():
    # a uniform density on [0, 1]: each 8-bit bin of width 1/255 gets 1/255 -> log2(255) bits
    assert metrics.bits_per_dim(0.0, 1) == pytest.approx(math.log2(255))
    num_dims = 64 * 64 * 3
    nll = num_dims * (1.5 * math.log(2) - math.log(255))  # chosen to give 1.5 bpd
    assert metrics.bits_per_dim(nll, num_dims) == pytest.approx(1.5)
    two = metrics.bits_per_dim(np.array([0.0, num_dims * math.log(2)]), num_dims)
    np.testing.assert_allclose(two, [math.log2(255), math.log2(255) + 1])
    with pytest.raises(ValueError, match="num_dims"):
        metrics.bits_per_dim(1.0, 0)


def test_per_attribute_breakdown_finds_the_real_gap():
    rng = np.random.default_rng(5)
    n = 400
    names = [f"{i:06d}.jpg" for i in range(n)]
    eyeglasses = rng.random(n) < 0.3
    smiling = rng.random(n) < 0.5
    errors = rng.normal(1.0, 0.1, n) + 0.5 * eyeglasses
    attributes = pd.DataFrame(
        {"Eyeglasses": eyeglasses, "Smiling": smiling, "partition": 2}, index=names
    )
    table = metrics.per_attribute_breakdown(pd.Series(errors, index=names), attributes)
    assert list(table.index) == ["Eyeglasses", "Smiling"]
    row = table.loc["Eyeglasses"]
    assert row["n_with"] == eyeglasses.sum() and row["n_without"] == n - eyeglasses.sum()
    assert row["difference"] == pytest.approx(errors[eyeglasses].mean() - errors[~eyeglasses].mean())
    se = math.sqrt(errors[eyeglasses].var(ddof=1) / eyeglasses.sum()
                   + errors[~eyeglasses].var(ddof=1) / (~eyeglasses).sum())
    assert row["se_difference"] == pytest.approx(se)
    assert row["t"] == pytest.approx(row["difference"] / se)
    assert row["t"] > 20 and abs(table.loc["Smiling", "t"]) < 3
    # a default 0..N-1 index is matched by position
    by_position = metrics.per_attribute_breakdown(pd.Series(errors), attributes)
    pd.testing.assert_frame_equal(by_position, table)


def test_strongest_and_significant_attributes_of_a_breakdown():
    breakdown = pd.DataFrame(
        {"difference": [0.5, -0.4, 0.1, 0.9, 0.0], "t": [12.0, -9.0, 1.0, np.nan, 0.5],
         "p_value": [1e-6, 0.004, 0.3, np.nan, 0.6]},
        index=["Eyeglasses", "Smiling", "Male", "Bald", "Young"])
    strongest = metrics.strongest_attributes(breakdown, k=3)
    assert list(strongest.index) == ["Eyeglasses", "Smiling", "Male"]  # by |t|, NaN t left out
    found = metrics.significant_attributes(breakdown, alpha=0.05)
    assert found["n_tested"] == 4 and found["threshold"] == pytest.approx(0.0125)
    assert found["worse"] == ["Eyeglasses"] and found["better"] == ["Smiling"]
    assert found["n_significant"] == 2
    assert metrics.significant_attributes(breakdown, alpha=0.01)["better"] == []  # 0.004 > 0.0025


def test_best_and_worst():
    best, worst = metrics.best_and_worst([0.3, 0.1, np.nan, 0.5, 0.2], k=2)
    assert list(best) == [1, 4] and list(worst) == [3, 0]
    best, worst = metrics.best_and_worst([20.0, 30.0, 25.0], k=1, higher_is_better=True)
    assert list(best) == [1] and list(worst) == [0]


# --------------------------------------------------------------------------------------
# FID, KID, precision and recall
# --------------------------------------------------------------------------------------


def closed_form_fid(mu1, var1, mu2, var2):
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2)))


def test_frechet_distance_matches_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 1.0])
    expected = closed_form_fid(mu1, var1, mu2, var2)
    assert metrics.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    assert metrics.frechet_distance(mu1, np.diag(var1), mu1, np.diag(var1)) == pytest.approx(0.0, abs=1e-9)


def test_fid_on_gaussian_samples_matches_closed_form():
    rng = np.random.default_rng(6)
    mu1, mu2 = np.array([0.0, 0.0, 0.0, 0.0]), np.array([1.0, -1.0, 0.5, 0.0])
    var1, var2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([4.0, 1.0, 0.5, 0.25])
    n = 20_000
    a = mu1 + np.sqrt(var1) * rng.standard_normal((n, 4))
    b = mu2 + np.sqrt(var2) * rng.standard_normal((n, 4))
    expected = closed_form_fid(mu1, var1, mu2, var2)  # 3.47
    assert metrics.fid(a, b) == pytest.approx(expected, rel=0.03)


def test_fid_warns_below_2048_samples():
    feats = np.random.default_rng(7).standard_normal((100, 4))
    with pytest.warns(UserWarning, match="2,048"):
        metrics.fid(feats, feats + 1)


def test_kid_is_unbiased_for_one_distribution_and_large_for_two():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    mean, std = metrics.kid(a, b, n_subsets=50, subset_size=100)
    assert abs(mean) < 3 * std
    shifted_mean, _ = metrics.kid(a, b + 1.0, n_subsets=50, subset_size=100)
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
    mean, std = metrics.kid(x, y, n_subsets=1, subset_size=10)
    assert mean == pytest.approx(expected, rel=1e-12)
    assert std == 0.0


def test_precision_recall_identical_and_far_apart():
    feats = np.random.default_rng(9).standard_normal((300, 8))
    assert metrics.precision_recall(feats, feats, k=3, batch_size=64) == (1.0, 1.0)
    precision, recall = metrics.precision_recall(feats, feats + 100.0, k=3, batch_size=64)
    assert precision == 0.0 and recall == 0.0


def test_precision_uses_the_kth_neighbour_radius():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])  # radii k=1: 1, 1, 2, 4; k=2: 3, 2, 3, 6
    fake = np.array([[-2.0], [1.5], [11.5], [13.5]])
    assert metrics.precision_recall(real, fake, k=1)[0] == pytest.approx(1 / 4)
    assert metrics.precision_recall(real, fake, k=2)[0] == pytest.approx(3 / 4)


def test_precision_recall_sees_a_collapsed_generator():
    rng = np.random.default_rng(10)
    real = rng.standard_normal((500, 4))
    fake = 0.05 * rng.standard_normal((500, 4))  # all samples near the mean: realistic, no coverage
    precision, recall = metrics.precision_recall(real, fake)
    assert precision > 0.9 and recall < 0.3


def test_density_coverage_counts_real_balls():
    real = np.array([[0.0], [1.0], [3.0], [7.0]])  # radii k=1: 1, 1, 2, 4
    fake = np.array([[0.5], [6.0], [20.0]])
    density, coverage = metrics.density_coverage(real, fake, k=1)
    # 0.5 lies in the balls of 0 and 1 (not of 3: 2.5 > 2); 6.0 in the ball of 7; 20.0 in none
    assert density == pytest.approx(3 / (1 * 3))
    assert coverage == pytest.approx(3 / 4)  # the balls of 0, 1 and 7 hold a fake; 3's none


def test_density_coverage_of_one_distribution_and_of_a_collapse():
    rng = np.random.default_rng(11)
    real, same = rng.standard_normal((800, 4)), rng.standard_normal((800, 4))
    density, coverage = metrics.density_coverage(real, same, k=5)
    assert 0.8 < density < 1.2 and coverage > 0.9
    collapsed = 0.05 * rng.standard_normal((800, 4))
    assert metrics.density_coverage(real, collapsed, k=5)[1] < 0.1
    with pytest.raises(ValueError, match="`k`"):
        metrics.density_coverage(real[:3], same, k=5)


# --------------------------------------------------------------------------------------
# Diversity, memorization, SWD
# --------------------------------------------------------------------------------------


def test_mean_pairwise_distance_exact_on_three_points():
    points = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert metrics.mean_pairwise_distance(points) == pytest.approx(4.0)  # (3 + 4 + 5) / 3
    images = np.zeros((2, 2, 2, 3))
    images[1] = 1.0
    assert metrics.mean_pairwise_distance(images) == pytest.approx(math.sqrt(12))
    many = np.random.default_rng(11).standard_normal((300, 2))
    sampled = metrics.mean_pairwise_distance(many, max_pairs=20_000)
    assert sampled == pytest.approx(metrics.mean_pairwise_distance(many), rel=0.05)


def test_mean_pairwise_ms_ssim_lower_for_diverse_sets():
    diverse = smooth_images(6, 2, seed=12)
    collapsed = np.repeat(diverse[:1], 6, axis=0)
    assert metrics.mean_pairwise_ms_ssim(collapsed, n_pairs=10) == pytest.approx(1.0, abs=1e-5)
    assert metrics.mean_pairwise_ms_ssim(diverse, n_pairs=10) < 0.9


def test_nearest_neighbours_exact_on_a_tiny_set():
    references = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0], [3.0, 3.0]])
    queries = np.array([[9.0, 1.0], [0.0, 0.0], [1.0, 4.0]])
    indices, distances = metrics.nearest_neighbours(queries, references, batch_size=2)
    assert list(indices) == [1, 0, 2]
    np.testing.assert_allclose(distances, [math.sqrt(2), 0.0, math.sqrt(2)])
    indices2, distances2 = metrics.nearest_neighbours(queries, references, k=2, batch_size=3)
    assert indices2.shape == (3, 2) and list(indices2[1]) == [0, 3]
    np.testing.assert_allclose(distances2[1], [0.0, math.sqrt(18)])
    images = references.reshape(4, 1, 1, 2)
    np.testing.assert_array_equal(metrics.nearest_neighbours(images, images)[0], np.arange(4))


def test_nearest_by_identity_on_a_tiny_fixture():
    # references: person 7 at x = 0 and x = 1, person 8 at x = 3, an unknown face at x = 0.5
    references = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    reference_ids = np.array([7, 7, 8, -1])
    queries = np.array([[0.2, 0.0], [2.0, 0.0], [5.0, 0.0], [9.0, 9.0]])
    query_ids = np.array([7, 8, 9, -1])  # 9: nobody of that person among the references
    out = metrics.nearest_by_identity(queries, query_ids, references, reference_ids, batch_size=2)
    np.testing.assert_allclose(out["same"], [0.2, 1.0, np.nan, np.nan])
    # the unknown face at 0.5 never counts as "another person"
    np.testing.assert_allclose(out["different"], [2.8, 1.0, 2.0, np.nan])
    # training faces against the others: a face is never its own neighbour
    own = metrics.nearest_by_identity(references[:3], reference_ids[:3], references,
                                      reference_ids, query_rows=[0, 1, 2])
    np.testing.assert_allclose(own["same"], [1.0, 1.0, np.nan])
    np.testing.assert_allclose(own["different"], [3.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="one id per image"):
        metrics.nearest_by_identity(queries, query_ids[:2], references, reference_ids)


def test_laplacian_variance_and_sharpness_ratio_drop_when_images_are_blurred():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(size=(3, 16, 16, 3))
    blurred = (sharp + np.roll(sharp, 1, axis=1) + np.roll(sharp, 1, axis=2)) / 3
    assert np.all(metrics.laplacian_variance(blurred) < metrics.laplacian_variance(sharp))
    flat = np.full((1, 16, 16, 3), 0.5)
    assert metrics.laplacian_variance(flat)[0] == 0.0
    reference = metrics.laplacian_variance(sharp)
    assert metrics.sharpness_ratio(reference, reference) == 1.0
    assert metrics.sharpness_ratio(metrics.laplacian_variance(blurred), reference) < 0.5
    with pytest.raises(ValueError, match="no edges"):
        metrics.sharpness_ratio(reference, metrics.laplacian_variance(flat))


def test_sliced_wasserstein_small_for_same_distribution_large_for_different():
    settings = {"patches_per_image": 64, "n_repeats": 2, "dirs_per_repeat": 64}
    a, b = smooth_images(64, 1, seed=13), smooth_images(64, 1, seed=14)
    blurry = smooth_images(64, 3, seed=15)
    same = metrics.sliced_wasserstein(a, b, **settings)
    different = metrics.sliced_wasserstein(a, blurry, **settings)
    assert set(same) == {"swd_64", "swd_32", "swd_16", "swd_mean"}
    assert same["swd_mean"] < 0.5 * different["swd_mean"]
    assert same["swd_64"] < 0.5 * different["swd_64"]
    assert metrics.sliced_wasserstein(a, b, **settings) == same  # seeded


def test_sliced_wasserstein_per_level_floor_of_real_faces_is_below_noise(demo_cache):
    faces = demo_cache.images  # two halves of the demo faces: real against real
    noise = np.random.default_rng(0).random((30, 64, 64, 3), dtype=np.float32)
    settings = {"patches_per_image": 32, "n_repeats": 2, "dirs_per_repeat": 64}
    floor = metrics.sliced_wasserstein(faces[:30], faces[30:], **settings)
    against_noise = metrics.sliced_wasserstein(faces[:30], noise, **settings)
    assert list(floor) == ["swd_64", "swd_32", "swd_16", "swd_mean"]
    for level in ("swd_16", "swd_32", "swd_64"):
        assert floor[level] < 0.5 * against_noise[level], level
    assert floor["swd_mean"] == pytest.approx(np.mean([floor[f"swd_{r}"] for r in (16, 32, 64)]))


def test_laplacian_pyramid_of_a_constant_image_has_no_detail():
    x = np.full((2, 32, 32, 3), 0.6, np.float32)
    high, low = metrics.laplacian_pyramid(x, 2)
    assert low.shape == (2, 16, 16, 3) and high.shape == x.shape
    np.testing.assert_allclose(low, 0.6, atol=1e-6)
    np.testing.assert_allclose(high, 0.0, atol=1e-6)


# --------------------------------------------------------------------------------------
# Is it a face? (Haar cascade)
# --------------------------------------------------------------------------------------


def test_face_detection_rate_finds_demo_faces_and_not_noise(demo_cache):
    faces = demo_cache.images  # uint8, the 60 generated demo faces (no CelebA image)
    found = metrics.face_detections(faces)
    assert found.dtype == bool and found.shape == (len(faces),)
    face_rate = metrics.face_detection_rate(faces)
    assert face_rate == pytest.approx(found.mean())
    noise = np.random.default_rng(0).random((len(faces), 64, 64, 3), dtype=np.float32)
    flat = np.full((4, 64, 64, 3), 0.5, np.float32)
    noise_rate = metrics.face_detection_rate(noise)
    assert face_rate >= 0.4 and noise_rate <= 0.05 and face_rate > noise_rate + 0.3
    assert metrics.face_detection_rate(flat) == 0.0
    # a face smaller than a third of the searched image does not count
    assert not metrics.face_detections(faces[found][:4], min_size_fraction=0.99).any()


def test_face_detection_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setattr(metrics, "_face_cascade", None)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(ImportError, match="opencv-python-headless==4"):
        metrics.face_detection_rate(np.zeros((1, 64, 64, 3), np.float32))


def test_face_detection_checks_its_input():
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        metrics.face_detections(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.face_detections(np.full((1, 64, 64, 3), 2.0, np.float32))


# --------------------------------------------------------------------------------------
# Feature extractors offline
# --------------------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in tmp_path and a network that always times out."""
    calls = []

    def urlopen(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_download_failure_says_where_to_put_the_file(offline):
    target = metrics.inception_weights_path()
    assert target.name == metrics.INCEPTION_WEIGHTS_FILE
    assert target.parent.parent == metrics.keras_cache_dir()
    with pytest.raises(metrics.FeatureExtractorUnavailable) as info:
        metrics.download_inception_weights(timeout=0.1)
    message = str(info.value)
    assert "timed out" in message and str(target) in message and metrics.INCEPTION_WEIGHTS_URL in message
    assert isinstance(info.value, RuntimeError)
    assert len(offline) == 1
    assert list(target.parent.iterdir()) == []  # no partial file left behind


def test_missing_weights_never_touch_the_network_and_realism_goes_on(offline):
    extractor = metrics.InceptionFeatures()
    assert isinstance(extractor, metrics.FeatureExtractor)
    with pytest.raises(metrics.FeatureExtractorUnavailable, match="allow_download=True"):
        extractor.load()
    assert offline == []
    real, fake = smooth_images(24, 1, seed=17), smooth_images(24, 3, seed=18)
    result = metrics.realism_metrics(real, fake, extractor)
    assert result["available"] is False
    assert str(metrics.inception_weights_path()) in result["reason"]
    assert result["swd"]["swd_mean"] > 0 and "fid" not in result
    downloading = metrics.InceptionFeatures(allow_download=True)
    with pytest.raises(metrics.FeatureExtractorUnavailable, match="timed out"):
        downloading.load()
    assert len(offline) == 1


def test_weights_in_the_keras_cache_are_used_without_network(offline):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    # legacy_h5_format writes the same .h5 layout as Keras' published weights file.
    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                           input_shape=(299, 299, 3))
    path = metrics.inception_weights_path()
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    extractor = metrics.InceptionFeatures(batch_size=2)
    features = extractor(smooth_images(3, 2, seed=19))
    assert offline == []
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    np.testing.assert_array_equal(extractor._model.get_weights()[0], model.get_weights()[0])


def test_realism_metrics_with_a_working_extractor(pixel_means):
    real, fake = smooth_images(40, 1, seed=20), smooth_images(40, 1, seed=21)
    with pytest.warns(UserWarning, match="2,048"):
        result = metrics.realism_metrics(real, fake, pixel_means, kid_subsets=5, kid_subset_size=20)
    assert result["available"] is True and result["extractor"] == "pixel_moments"
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "feature_diversity_fake"):
        assert np.isfinite(result[key])
    assert 0 <= result["precision"] <= 1 and result["n_fake"] == 40
