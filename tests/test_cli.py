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


def test_evaluate_and_sample_accept_the_two_stage_sampler():
    parser = build_parser()
    assert parser.parse_args(["evaluate", "--run-dir", "r", "--sampler", "two_stage"]).sampler == "two_stage"
    args = parser.parse_args(["sample", "--run-dir", "r", "--out", "o", "--sampler", "two_stage"])
    assert args.sampler == "two_stage"
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--run-dir", "r", "--out", "o", "--sampler", "flow"])
