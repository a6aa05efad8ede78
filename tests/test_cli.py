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


def _exit_message(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


@pytest.mark.parametrize(
    "error, expected",
    [
        (PermissionError(13, "Permission denied", "/somewhere/cache"),
         "error: Permission denied: /somewhere/cache\ncheck the folder's permissions"),
        (OSError(28, "No space left on device"), "error: No space left on device\nfree some space"),
        (FileExistsError(17, "File exists", "/somewhere/out"), "error: File exists: /somewhere/out"),
    ],
)
def test_os_errors_print_one_clear_message(monkeypatch, error, expected):
    from resvae_keras import data

    def fail(**kwargs):
        raise error

    monkeypatch.setattr(data, "prepare", fail)
    assert _exit_message(["prepare", "--data-dir", "x"]).startswith(expected)


def test_tensorflow_errors_of_memory_and_of_a_lost_worker_say_what_to_do(monkeypatch):
    import tensorflow as tf

    from resvae_keras import data

    for error, expected in (
        (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating"),
         "error: out of memory; lower --batch-size"),
        (tf.errors.UnavailableError(None, None, "Collective ops is aborted by: failed to connect"
                                    "\nAdditional GRPC error information"),
         "error: a worker of the cluster stopped or cannot be reached (UnavailableError; "
         "--debug shows TensorFlow's message)\nStart every worker again with the same command"),
    ):
        def fail(error=error, **kwargs):
            raise error

        monkeypatch.setattr(data, "prepare", fail)
        assert _exit_message(["prepare", "--data-dir", "x"]).startswith(expected)


def test_ctrl_c_exits_130_and_a_bug_shows_its_traceback_with_debug(monkeypatch, capsys):
    from resvae_keras import data

    def interrupted(**kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "prepare", interrupted)
    assert _exit_message(["prepare"]) == 130
    assert "interrupted" in capsys.readouterr().err

    def bug(**kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(data, "prepare", bug)
    message = _exit_message(["prepare"])
    assert "unexpected ZeroDivisionError" in message and "--debug" in message
    with pytest.raises(ZeroDivisionError):
        main(["prepare", "--debug"])


@pytest.mark.parametrize(
    "argv, option",
    [(["--widths", "abc"], "--widths"), (["--widths", "32,0"], "--widths"),
     (["--verbose", "abc"], "--verbose")],
)
def test_malformed_options_are_named_by_argparse(argv, option, capsys):
    assert _exit_message(["train", *argv]) == 2
    assert f"argument {option}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, expected",
    [(["--image-size", "63"], "image_size=63"), (["--epochs", "0"], "epochs=0 (--epochs)")],
)
def test_bad_train_settings_stop_before_any_work(demo_root, tmp_path, monkeypatch, argv, expected):
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))
    run = tmp_path / "runs" / "bad"
    message = _exit_message(["train", "--profile", "celeba-subset", "--data-dir", str(demo_root),
                             "--run-dir", str(run), *argv])
    assert message.startswith(f"error: {expected}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


def test_sample_into_an_existing_file_and_from_another_keras_model(tmp_path):
    import keras

    from resvae_keras.config import Config

    out = tmp_path / "samples.png"
    out.write_bytes(b"")
    message = _exit_message(["sample", "--run-dir", str(tmp_path), "--out", str(out)])
    assert "is a file; give a folder" in message

    Config().save(tmp_path / "config.json")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]).save(tmp_path / "model.keras")
    message = _exit_message(["sample", "--run-dir", str(tmp_path), "--out", str(tmp_path / "s")])
    assert message.startswith("error: ") and "holds a Sequential, not a ResVAE" in message


def test_train_takes_the_conv_architecture():
    from resvae_keras.__main__ import _overrides

    args = build_parser().parse_args(["train", "--architecture", "conv"])
    assert _overrides(args) == {"architecture": "conv"}


def test_study_status_says_what_is_left_and_the_next_command(tmp_path, monkeypatch, capsys):
    from resvae_keras import plan

    committed = plan.plan_path().read_text()
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # the plan, no results: all of it is left
    (tmp_path / "pyproject.toml").write_text("")
    plan.plan_path().parent.mkdir(parents=True)
    plan.plan_path().write_text(committed)
    main(["study", "--status"])
    out = capsys.readouterr().out
    assert "study faithful: 0 of 27 runs finished (lr residual 0/3, lr plain 0/3" in out
    assert "learning rates: residual not chosen" in out
    assert out.rstrip().endswith("next: python -m resvae_keras study")


def test_evaluate_and_sample_accept_the_two_stage_sampler():
    parser = build_parser()
    assert parser.parse_args(["evaluate", "--run-dir", "r", "--sampler", "two_stage"]).sampler == "two_stage"
    args = parser.parse_args(["sample", "--run-dir", "r", "--out", "o", "--sampler", "two_stage"])
    assert args.sampler == "two_stage"
    with pytest.raises(SystemExit):
        parser.parse_args(["sample", "--run-dir", "r", "--out", "o", "--sampler", "flow"])


def test_two_stage_epochs_option_sets_the_config_and_is_checked():
    from resvae_keras.__main__ import _overrides
    from resvae_keras.config import get_profile
    from resvae_keras.train import check_config

    args = build_parser().parse_args(["train", "--profile", "demo", "--two-stage-epochs", "0"])
    assert _overrides(args) == {"two_stage_epochs": 0}
    with pytest.raises(ValueError, match=r"two_stage_epochs=-1 \(--two-stage-epochs\)"):
        check_config(get_profile("demo", two_stage_epochs=-1))
