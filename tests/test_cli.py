import pytest

from resvae_keras.__main__ import build_parser, main


def test_missing_celeba_folder_exits_nonzero_with_download_guidance(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["prepare", "--data-dir", str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path)])
    message = str(exit_info.value.code)
    assert exit_info.value.code != 0
    assert "nowhere" in message and 'section "Getting CelebA"' in message


def test_demo_data_then_prepare(tmp_path, capsys):
    main(["demo-data", "--out", str(tmp_path / "demo"), "--n", "20", "--seed", "3"])
    main(["prepare", "--data-dir", str(tmp_path / "demo"), "--cache-dir", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert "20 images 64x64" in out and "train" in out


def test_train_overrides_are_parsed_into_the_config():
    from resvae_keras.__main__ import _overrides

    args = build_parser().parse_args(
        ["train", "--profile", "demo", "--epochs", "3", "--plain", "--widths", "8,16", "--beta", "0.5"]
    )
    assert _overrides(args) == {"epochs": 3, "beta": 0.5, "widths": (8, 16), "residual": False}


def test_train_takes_the_conv_architecture():
    from resvae_keras.__main__ import _overrides

    args = build_parser().parse_args(["train", "--architecture", "conv"])
    assert _overrides(args) == {"architecture": "conv"}


def test_study_status_says_what_is_left_and_the_next_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # no results: the whole design is left
    (tmp_path / "pyproject.toml").write_text("")
    main(["study", "--status"])
    out = capsys.readouterr().out
    assert "study: 0 of 15 runs finished (residual 0/3, plain 0/3, conv 0/3" in out
    assert out.rstrip().endswith("next: python -m resvae_keras study")
