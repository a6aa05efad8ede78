"""Tests for resvae_keras.bench: every speed measurement runs offline and reports rates."""

from __future__ import annotations

import pytest

from resvae_keras import bench
from resvae_keras.config import get_profile


def test_data_speed_reports_both_rates():
    result = bench.data_speed(n=24, workers=1, min_seconds=0.05)
    assert result["n"] == 24 and result["size"] == 64
    assert result["preprocess_img_per_s"] > 0 and result["pipeline_img_per_s"] > 0


def test_evaluation_speed_times_the_reconstruction_report_and_the_features(pixel_means):
    config = get_profile("demo", image_size=32, widths=(8, 16), latent_dim=4)
    result = bench.evaluation_speed(n=8, n_features=4, config=config, extractor=pixel_means)
    assert result["architecture"].startswith("32x32, widths=[8, 16]")
    assert result["reconstruction_img_per_s"] > 0 and result["metrics_only_img_per_s"] > 0
    assert result["inception_features_img_per_s"] > 0 and result["inception_n"] == 4
    assert result["celeba_test_split_s"] == bench.CELEBA_TEST_IMAGES / result["reconstruction_img_per_s"]


def test_flop_counter_counts_the_elbo_pass_and_its_gradients():
    from resvae_keras.model import ResVAE

    model = ResVAE(image_size=16, widths=(8,), blocks_per_stage=1, latent_dim=4)
    forward = bench.flops_per_image(model)
    # the stem convolution alone: 8 x 8 outputs x 8 channels x 3 x 3 x 3 inputs x 2
    assert forward > 8 * 8 * 8 * 27 * 2
    assert bench.flops_per_image(model, training=True) > 2 * forward


def test_alternating_step_time_times_every_arm_and_counts_their_flops():
    tiny = dict(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=4, batch_size=4)
    configs = {"residual": get_profile("demo", **tiny),
               "conv": get_profile("demo", architecture="conv", **tiny)}
    table = bench.alternating_step_time(configs, steps=1, rounds=2, warmup=1)
    assert list(table.index) == ["residual", "conv"]
    assert (table["seconds_per_step"] > 0).all() and (table["rounds"] == 2).all()
    assert (table["q25"] <= table["q75"]).all()
    assert (table["train_gflops_per_image"] > table["forward_gflops_per_image"]).all()
    assert table.loc["residual", "params"] != table.loc["conv", "params"]
    with pytest.raises(ValueError, match="configs is empty"):
        bench.alternating_step_time({})


def test_study_step_times_writes_the_benchmark_the_study_reads(tmp_path, monkeypatch):
    import pandas as pd

    from resvae_keras import study

    def fake(configs, steps, rounds):
        assert list(configs) == ["residual", "plain", "conv"]
        assert configs["conv"].architecture == "conv" and configs["plain"].residual is False
        return pd.DataFrame({"seconds_per_step": [0.3, 0.3, 0.1]}, index=list(configs))

    monkeypatch.setattr(bench, "alternating_step_time", fake)
    bench.study_step_times("demo", root=tmp_path)
    assert study.seconds_per_step(study.load_benchmark(tmp_path)) == {
        "residual": 0.3, "plain": 0.3, "conv": 0.1}
