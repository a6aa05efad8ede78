"""Tests for resvae_keras.config: profiles, the profile rule, the train command of a config,
saving and loading (old config files included) and the evaluation sizes."""

from __future__ import annotations

import json
import shlex

import pytest

from resvae_keras import config as config_module
from resvae_keras.config import PROFILES, Config, get_profile, profile_from_env


@pytest.mark.parametrize(
    "env, gpu, expected",
    [
        ({"RESVAE_PROFILE": "demo", "CELEBA_DIR": "/data/celeba"}, True, "demo"),
        ({"CELEBA_DIR": "/data/celeba"}, False, "celeba-subset"),
        ({"CELEBA_DIR": "/data/celeba"}, True, "celeba"),
        ({}, True, "demo"),
    ],
)
def test_one_profile_rule(monkeypatch, capsys, env, gpu, expected):
    for name in ("RESVAE_PROFILE", "CELEBA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(config_module, "gpu_visible", lambda: gpu)
    assert profile_from_env() == expected
    if env == {"CELEBA_DIR": "/data/celeba"}:  # a guess is said aloud
        assert f"profile {expected}" in capsys.readouterr().err


def test_the_cli_follows_resvae_profile(monkeypatch):
    from resvae_keras.__main__ import _profile, build_parser

    monkeypatch.setenv("RESVAE_PROFILE", "celeba-subset")
    assert _profile(build_parser().parse_args(["train"])) == "celeba-subset"
    assert _profile(build_parser().parse_args(["train", "--profile", "demo"])) == "demo"


def test_train_command_gives_back_the_config():
    from resvae_keras.__main__ import _overrides, build_parser

    config = get_profile("celeba", latent_dim=16, widths=(8, 16), residual=False,
                         mixed_precision=None, run_dir="runs/my run", max_images=300)
    command = config.train_command()
    assert command.startswith("python -m resvae_keras train --profile celeba ")
    args = build_parser().parse_args(shlex.split(command)[3:])
    assert get_profile(args.profile, **_overrides(args)) == config


def test_config_json_round_trip(tmp_path):
    config = Config(widths=(8, 16), norm="batch", eval_images=50)
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left


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


@pytest.mark.parametrize(
    "text, match",
    [("{\"epochs\": 3,", r"config.json is not valid JSON"),
     ("[1, 2]", r"config.json holds a JSON list, not an object"),
     ('{"latent_dim": "32", "residual": 1, "widths": [8, "x"]}',
      r"latent_dim='32' \(expected int\), residual=1 \(expected bool\), widths=\[8, 'x'\]"),
     ],
)
def test_an_edited_config_json_names_the_file_and_the_setting(tmp_path, text, match):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ValueError, match=match):
        Config.load(tmp_path / "config.json")


def test_the_cache_dir_is_a_train_option():
    assert "cache_dir" in config_module.CLI_OPTIONS
    assert "--cache-dir x" in get_profile("demo", cache_dir="x").train_command()


def test_checkout_file_finds_the_report_words_in_a_checkout_and_says_what_to_do_outside(
        tmp_path, monkeypatch):
    from resvae_keras.config import checkout_file, project_root

    assert checkout_file("report/laporan.toml") == project_root() / "report" / "laporan.toml"
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # a folder that is no checkout
    with pytest.raises(FileNotFoundError) as error:
        checkout_file("report/laporan.toml")
    message = str(error.value)
    assert "report/laporan.toml" in message and "checkout" in message
    assert "RESVAE_HOME" in message


@pytest.mark.parametrize(
    ("env", "stops"),
    [
        ({"JPY_SESSION_NAME": "/x/notebooks/02_training.ipynb"}, True),  # Run All in lab, demo
        ({"JPY_SESSION_NAME": "/x/notebooks/02_training.ipynb", "RESVAE_PROFILE": "demo"}, False),
        ({"JPY_SESSION_NAME": "/x/notebooks/02_training-Copy1.ipynb"}, False),  # a copy
        ({}, False),  # nbconvert, nbval, scripts
        ({"JPY_SESSION_NAME": "/x/notebooks/02_training.ipynb", "CELEBA_DIR": "/celeba"}, False),
    ],
)
def test_notebook_config_stops_run_all_from_overwriting_saved_outputs(monkeypatch, env, stops):
    for name in ("JPY_SESSION_NAME", "RESVAE_PROFILE", "CELEBA_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(config_module, "gpu_visible", lambda: False)  # CELEBA_DIR: celeba-subset
    if stops:
        with pytest.raises(config_module.ProfileMismatchError, match="Save Notebook As.*RESVAE_P"):
            config_module.notebook_config()
    else:
        config = config_module.notebook_config(epochs=3)
        assert config.epochs == 3
        assert config.profile == env.get("RESVAE_PROFILE", "celeba-subset" if "CELEBA_DIR" in env
                                         else "demo")
