import argparse
from pathlib import Path

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


def test_an_argparse_error_takes_two_lines_not_the_usage_block(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--epochs", "x"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "usage:" not in err
    assert err.splitlines() == ["resvae train: error: argument --epochs: invalid int value: 'x'",
                                "(run resvae train --help for the options)"]


def test_train_takes_a_cache_dir():
    from resvae_keras.__main__ import _overrides

    args = build_parser().parse_args(["train", "--cache-dir", "elsewhere/cache"])
    assert _overrides(args)["cache_dir"] == "elsewhere/cache"


def test_a_symlink_loop_among_the_images_gives_a_message(demo_copy, tmp_path):
    images = demo_copy / "img_align_celeba"
    (images / "zz_a.jpg").symlink_to(images / "zz_b.jpg")
    (images / "zz_b.jpg").symlink_to(images / "zz_a.jpg")
    message = _exit_message(["prepare", "--data-dir", str(demo_copy),
                             "--cache-dir", str(tmp_path / "cache")])
    assert message.startswith("error: Too many levels of symbolic links")
    assert "point at each other in a loop" in message


# Prepare with slow decoding (so a signal always arrives mid-build): every task of the
# worker processes first marks that decoding began. Ctrl-C works as in a terminal even when
# the tests run in the background (whose processes start with SIGINT ignored).
_SLOW_PREPARE = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
import resvae_keras.data.cache as cache
from resvae_keras.data.crop import decode_chunk

def slow_decode(job):
    Path(sys.argv[1]).touch()
    time.sleep(0.5)
    return decode_chunk(job)

cache.decode_chunk, cache._CHUNK = slow_decode, 4
from resvae_keras.__main__ import main
main(sys.argv[2:])
"""


def _run_until(argv, started: Path, signal_number, group: bool, tmp_path):
    """Run ``python -c <argv[0]> argv[1:]``, send ``signal_number`` once ``started`` exists
    (to the process group when ``group``: Ctrl-C in a terminal); ``(exit status, stderr)``."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "TF_CPP_MIN_LOG_LEVEL": "2", "RESVAE_HOME": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-c", *argv], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        while not started.exists() and process.poll() is None:
            time.sleep(0.2)
        if group:
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"still running 120 s after signal {signal_number}")
    return process.returncode, err


@pytest.fixture(scope="module")
def demo_300(tmp_path_factory):
    """300 demo faces: enough for prepare to decode in worker processes."""
    from resvae_keras import data

    return data.write_demo_dataset(tmp_path_factory.mktemp("d300") / "celeba", n=300, seed=1)


@pytest.mark.parametrize("signal_name, group, code", [("SIGINT", True, 130),
                                                      ("SIGTERM", False, 143)])
def test_an_interrupted_prepare_ends_with_one_message_and_no_half_cache(
        demo_300, tmp_path, signal_name, group, code):
    import signal

    started = tmp_path / "decoding"
    status, err = _run_until([_SLOW_PREPARE, str(started), "prepare", "--data-dir",
                              str(demo_300), "--cache-dir", str(tmp_path / "cache")], started,
                             getattr(signal, signal_name), group, tmp_path)
    assert status == code, err[-3000:]
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-3000:]
    assert err.count("Run the same command again") == 1
    assert list((tmp_path / "cache").iterdir()) == []  # no folder left, complete or not


def test_sigterm_ends_training_with_a_message_and_a_loadable_checkpoint(demo_300, tmp_path):
    import signal

    from resvae_keras.model import load_model

    run = tmp_path / "run"
    status, err = _run_until(
        ["import sys; from resvae_keras.__main__ import main; main(sys.argv[1:])", "train",
         "--profile", "celeba-subset", "--data-dir", str(demo_300), "--cache-dir",
         str(tmp_path / "cache"), "--run-dir", str(run), "--image-size", "32", "--widths", "8",
         "--blocks-per-stage", "0", "--latent-dim", "4", "--batch-size", "8", "--epochs", "500",
         "--two-stage-epochs", "0", "--verbose", "0"],
        run / "last.keras", signal.SIGTERM, False, tmp_path)  # after the first epoch
    assert status == 143, err[-3000:]
    assert "terminated (SIGTERM)" in err and "Traceback" not in err, err[-3000:]
    assert not list(run.glob(".*.tmp-*")) and not list(run.glob("backup/.*.tmp-*"))
    assert load_model(run / "last.keras").latent_dim == 4


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
