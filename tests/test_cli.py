import argparse

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
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # no results: the whole design is left
    (tmp_path / "pyproject.toml").write_text("")
    main(["study", "--status"])
    out = capsys.readouterr().out
    assert "study: 0 of 15 runs finished (residual 0/3, plain 0/3, conv 0/3" in out
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


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, sub.choices


def test_every_option_of_every_command_has_help_and_shows_its_default():
    _, commands = _commands()
    assert set(commands) >= {"demo-data", "prepare", "train", "evaluate", "sample", "bench",
                             "study", "report"}
    for name, command in commands.items():
        formatter = command._get_formatter()
        for action in command._actions:
            if "-h" in action.option_strings:
                continue
            assert (action.help or "").strip(), f"{name} {action.option_strings} has no help"
            takes_value = action.nargs != 0 and action.option_strings and not action.required
            if takes_value:
                shown = formatter._get_help_string(action)
                assert "default" in shown, f"{name} {action.option_strings[0]}: no default"


def test_train_help_shows_each_profiles_default_where_they_differ():
    from resvae_keras.config import PROFILES, get_profile

    _, commands = _commands()
    text = " ".join(commands["train"].format_help().split())  # undo the line wrapping
    epochs = ", ".join(f"{p} {get_profile(p).epochs}" for p in PROFILES)
    assert f"(default: {epochs})" in text
    assert len({get_profile(p).epochs for p in PROFILES}) > 1  # the case being tested
    assert f"(default: {get_profile('demo').beta})" in text  # the same in every profile


def test_version_prints_the_package_version(capsys):
    from resvae_keras import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"resvae {__version__}"


def test_top_level_help_is_plain_text_and_names_the_entry_point():
    parser, commands = _commands()
    text = parser.format_help()
    assert text.startswith("usage: resvae ")
    assert "``" not in text and "| ---" not in text and "|" not in text.replace("[-h]", "")
    for name in commands:
        assert f"\n    {name} " in text  # each command listed with its one-line help
