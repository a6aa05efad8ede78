import json

import numpy as np
import pandas as pd
import pytest

from resvae_keras import study


def test_study_runs_differ_only_in_what_their_name_says():
    base = study.study_config("residual_s0").to_dict()
    runs = study.study_runs()
    assert sum(n.startswith("residual_s") for n in runs) >= 3
    assert sum(n.startswith("plain_s") for n in runs) >= 3
    for name, overrides in runs.items():
        config = study.study_config(name).to_dict()
        changed = {k for k in config if config[k] != base[k]} - {"run_dir"}
        assert changed == set(overrides), name
        assert config["epochs"] == study.STUDY_EPOCHS


def test_sharpness_drops_when_an_image_is_blurred():
    rng = np.random.default_rng(0)
    sharp = rng.uniform(size=(2, 16, 16, 3))
    blurred = (sharp + np.roll(sharp, 1, axis=1) + np.roll(sharp, 1, axis=2)) / 3
    assert np.all(study.sharpness(blurred) < study.sharpness(sharp))


def _fake_results(tmp_path, values):
    for name, (psnr, epoch_time) in values.items():
        folder = tmp_path / name
        folder.mkdir()
        metrics = {c: 1.0 for c in study.ABLATION_COLUMNS}
        metrics.update(psnr=psnr, median_epoch_time_s=epoch_time, kl_nats=10.0,
                       reconstruction_nats=5.0, mse=0.01, sample_swd_mean_x1e3=3.0)
        (folder / "metrics.json").write_text(json.dumps(metrics))
        pd.DataFrame({"epoch": [0], "val_loss": [1.0]}).to_csv(folder / "history.csv")
    return study.load_results(tmp_path)


def test_ablation_table_summary_and_verdict(tmp_path):
    results = _fake_results(tmp_path, {
        "residual_s0": (30.0, 60.0), "residual_s1": (30.2, 61.0), "residual_s2": (29.9, 59.0),
        "plain_s0": (25.0, 60.5), "plain_s1": (25.1, 59.5), "plain_s2": (24.8, 60.0),
        "beta_2_s0": (20.0, 60.0),
    })
    table = study.ablation_table(results)
    assert list(table["arm"]) == ["plain"] * 3 + ["residual"] * 3
    summary = study.arm_summary(table)
    assert summary.loc["residual", "psnr_mean"] == pytest.approx(30.0333, abs=1e-3)
    assert summary.loc["plain", "n_seeds"] == 3
    lines = {line.split(":")[0]: line for line in study.verdict(table)}
    assert lines["psnr"].endswith("residual better")
    assert lines["median_epoch_time_s"].endswith("no significant difference")
    assert list(study.beta_table(results).index) == [1.0, 2.0]


def test_verdict_needs_two_seeds_per_arm():
    table = study.ablation_table({})
    assert study.verdict(table) == ["not enough seeds per arm for a comparison yet"]
