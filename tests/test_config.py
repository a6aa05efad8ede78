"""Tests for resvae_keras.config: profiles, the profile rule, and the train command of a config."""

from __future__ import annotations

import shlex

import pytest

from resvae_keras import config as config_module
from resvae_keras.config import Config, get_profile, profile_from_env


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
    config = Config(widths=(8, 16), extra={"norm": "batch"})
    config.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == config
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left
