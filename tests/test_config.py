"""Tests for resvae_keras.config: profiles, saving and loading, and old config files."""

from __future__ import annotations

import json

import pytest

from resvae_keras.config import PROFILES, Config, get_profile


def test_save_and_load_round_trip(tmp_path):
    config = get_profile("celeba-subset", norm="batch", widths=(8, 16), eval_images=50)
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config


def test_old_config_files_with_norm_in_extra_load_the_same(tmp_path):
    # config.json files written before norm was a field kept it in "extra".
    values = get_profile("demo").to_dict()
    del values["norm"]
    values["extra"] = {"norm": "batch"}
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert Config.load(tmp_path / "config.json").norm == "batch"
    values["extra"] = {}
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert Config.load(tmp_path / "config.json") == get_profile("demo")


def test_every_profile_sets_the_evaluation_sizes_its_notebooks_use():
    demo, subset = get_profile("demo"), get_profile("celeba-subset")
    assert (demo.eval_images, demo.eval_samples, demo.latent_codes, demo.anomaly_images) == (
        300, 120, 2400, 150
    )
    assert subset.eval_samples == 10_000 and subset.latent_codes == 20_000
    for name in PROFILES:
        config = get_profile(name)
        assert min(config.eval_images, config.eval_samples, config.latent_codes,
                   config.anomaly_images) > 0


def test_unknown_override_names_the_known_fields():
    with pytest.raises(ValueError, match="unknown config field.*'norms'"):
        get_profile("demo", norms="group")
