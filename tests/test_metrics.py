"""Tests for resvae_keras.metrics: hand examples and closed forms of the per-image measures."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from resvae_keras import inception, metrics, sample_metrics


@pytest.mark.parametrize("module", [metrics, sample_metrics, inception], ids=lambda m: m.__name__)
def test_import_does_not_load_tensorflow(module):
    code = (
        f"import sys, {module.__name__}\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, 'cv2' in sys.modules)\n"
    )
    root = Path(module.__file__).parents[1]  # this checkout's package comes first
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    assert out.stdout.split() == ["False", "False", "False"]


# --------------------------------------------------------------------------------------
# Reconstruction
# --------------------------------------------------------------------------------------


def test_psnr_identical_is_the_cap(smooth_images):
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


def test_ssim_identical_is_one_and_noise_lowers_it(smooth_images):
    x = smooth_images(4, 2, seed=1)
    noisy = np.clip(x + 0.1 * np.random.default_rng(2).standard_normal(x.shape), 0, 1).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(x, x), 1.0, atol=1e-5)
    np.testing.assert_allclose(metrics.ms_ssim(x, x), 1.0, atol=1e-5)
    assert np.all(metrics.ssim(x, noisy) < 0.95)
    assert np.all(metrics.ms_ssim(x, noisy) < 1.0)


def test_ms_ssim_scale_rule_and_nan_when_too_small(smooth_images):
    assert len(metrics.ms_ssim_power_factors(64, 64)) == 3
    assert len(metrics.ms_ssim_power_factors(32, 32)) == 2
    assert len(metrics.ms_ssim_power_factors(176, 176)) == 5
    assert metrics.ms_ssim_power_factors(20, 20) == ()
    assert sum(metrics.ms_ssim_power_factors(64, 64)) == pytest.approx(1.0)
    x = smooth_images(2, 1, seed=3, size=16)
    df = metrics.reconstruction_metrics(x, x[::-1].copy())
    assert df["ms_ssim"].isna().all()
    assert df["ssim"].notna().all()


def test_reconstruction_metrics_table_and_summary(smooth_images):
    x = smooth_images(5, 2, seed=4)
    x_hat = np.clip(x + 0.05, 0, 1)
    df = metrics.reconstruction_metrics(x, x_hat, batch_size=2)
    assert list(df.columns) == ["mse", "psnr", "ssim", "ms_ssim"]
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
