import errno
import os
import shutil
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from resvae_keras import data, latent
from resvae_keras.callbacks import Checkpoints, KLWarmup
from resvae_keras.config import Config
from resvae_keras.model import ResVAE, load_model
from resvae_keras.train import (
    GRID_ROWS,
    RunSettingsError,
    TrainingDivergedError,
    check_config,
    load_grid,
    load_history,
    precision,
    save_grid,
    train,
    two_stage_is_current,
    two_stage_path,
    two_stage_sampler,
)


def _tiny(demo_root, folder: Path) -> Config:
    """2 epochs of a tiny ResVAE on the 60 demo faces (48 for training: 6 steps of 8);
    one stage and no residual block, whose tracing would double the cost of every run here."""
    return Config(
        profile="celeba-subset",
        data_dir=str(demo_root),
        cache_dir=str(folder / "cache"),
        run_dir=str(folder / "run"),
        image_size=32,
        widths=(8,),
        blocks_per_stage=0,
        latent_dim=4,
        batch_size=8,
        epochs=2,
        seed=0,
        two_stage_epochs=0,  # the second stage has its own test
    )


@pytest.fixture
def tiny_config(demo_root, tmp_path):
    return _tiny(demo_root, tmp_path)


@pytest.fixture(scope="module")
def finished_run(demo_root, tmp_path_factory):
    """The config of a finished ``_tiny`` run with a KL warm-up to beta 2 over 24 steps
    (4 of its 2 x 6) and a 2-epoch second stage; do not modify its run dir (``continued``
    gives a copy)."""
    config = _tiny(demo_root, tmp_path_factory.mktemp("finished")).replace(
        beta=2.0, kl_warmup_steps=24, two_stage_epochs=2)
    train(config, verbose=0)
    return config


def continued(config: Config, tmp_path) -> Config:
    """``config`` pointed at a copy of its run dir (file times kept) under ``tmp_path``."""
    copy = shutil.copytree(config.run_path, tmp_path / "run")
    return config.replace(run_dir=str(copy))


class _EpochRecorder(keras.callbacks.Callback):
    def __init__(self, stop_after=None):
        super().__init__()
        self.epochs = []
        self.stop_after = stop_after

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.stop_after is not None and epoch == self.stop_after:
            raise KeyboardInterrupt("simulated kill")


def test_train_writes_the_run_dir_and_a_loadable_model(finished_run):
    run = finished_run.run_path
    assert {"config.json", "history.csv", "model.keras", "last.keras"} <= {
        p.name for p in run.iterdir()
    }
    assert sorted(p.name for p in (run / "grids").iterdir()) == [
        "epoch_001.npz", "epoch_001.png", "epoch_002.npz", "epoch_002.png"
    ]
    grid, epoch = load_grid(run)
    assert epoch == 2 and grid.dtype == np.float32
    assert grid.shape[0] == len(GRID_ROWS) and grid.shape[2:] == (32, 32, 3)
    validation = data.load_cache(finished_run, progress=False).images_of("val")[:8]
    np.testing.assert_array_equal(grid[0], data.as_float_images(validation))
    assert not (run / "backup").exists()  # removed once the run completed
    assert Config.load(run / "config.json") == finished_run
    history = load_history(run)
    assert list(history["epoch"]) == [0, 1]
    assert {"loss", "reconstruction_loss", "kl_loss", "val_loss", "beta", "wall_time_s"} <= set(
        history.columns
    )
    loaded = keras.models.load_model(run / "model.keras")
    assert loaded.reconstruct(np.zeros((1, 32, 32, 3), "float32")).shape == (1, 32, 32, 3)


def test_train_fits_the_second_stage_once_and_again_when_the_model_is_newer(
    finished_run, tmp_path
):
    config = continued(finished_run, tmp_path)  # trained with two_stage_epochs=2
    run = config.run_path
    path = two_stage_path(run)
    assert path.name == "two_stage.keras" and two_stage_is_current(run)
    assert sorted(p.name for p in run.glob("two_stage*")) == [
        "two_stage.keras", "two_stage_history.csv"]  # no partial file left behind
    history = pd.read_csv(run / "two_stage_history.csv")
    assert list(history["epoch"]) == [0, 1] and {"loss", "gamma"} <= set(history.columns)
    stamp = path.stat().st_mtime_ns
    model, _ = train(config, verbose=0)  # finished run, current second stage: nothing is refitted
    assert path.stat().st_mtime_ns == stamp
    z = two_stage_sampler(config).sample(5, seed=1)
    assert z.shape == (5, config.latent_dim) and path.stat().st_mtime_ns == stamp
    older = (run / "model.keras").stat().st_mtime_ns - 10**9  # however long the fit took
    os.utime(path, ns=(older, older))  # model.keras is now the newer file
    assert not two_stage_is_current(run)
    train(config, verbose=0, second_stage=False)  # as the study calls it: nothing is refitted
    assert not two_stage_is_current(run)
    refitted = two_stage_sampler(config, model, verbose=False)
    assert two_stage_is_current(run) and path.stat().st_mtime_ns > older
    assert refitted.sample(5, seed=1).shape == z.shape
    assert two_stage_path(run, "last.keras").name == "two_stage_last.keras"
    path.unlink()  # 0 epochs: none after training, the sampler's default when one is asked for
    two_stage_sampler(config.replace(two_stage_epochs=0), model, verbose=False)
    assert len(pd.read_csv(run / "two_stage_history.csv")) == latent.TwoStageSampler().epochs


def test_same_seed_gives_the_same_first_epoch_loss(finished_run, tmp_path):
    again = finished_run.replace(epochs=1, run_dir=str(tmp_path / "again"), two_stage_epochs=0)
    again = train(again, verbose=0)[1]
    first = load_history(finished_run.run_path)
    assert first["loss"].iloc[0] == pytest.approx(again["loss"].iloc[0], rel=1e-5)


def test_killed_run_resumes_from_the_last_completed_epoch(tiny_config):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config, verbose=0, callbacks=[_EpochRecorder(stop_after=0)])
    assert (tiny_config.run_path / "backup").exists()
    recorder = _EpochRecorder()
    _, history = train(tiny_config, verbose=0, callbacks=[recorder])
    assert recorder.epochs == [1]  # epoch 0 was kept, not redone
    assert list(history["epoch"]) == [0, 1]


def test_finished_run_continues_with_its_optimizer_state(finished_run, tmp_path):
    config = continued(finished_run, tmp_path).replace(epochs=3, two_stage_epochs=0)
    steps_per_epoch = 48 // 8  # 60 demo faces -> 48 train images
    recorder = _EpochRecorder()
    model, history = train(config, verbose=0, callbacks=[recorder])
    assert recorder.epochs == [2]
    last = keras.models.load_model(config.run_path / "last.keras")
    assert int(last.optimizer.iterations) == 3 * steps_per_epoch
    assert list(history["epoch"]) == [0, 1, 2]


class _PoisonWeights(keras.callbacks.Callback):
    """Sets a decoder kernel to NaN at ``batch`` of ``epoch``: the loss diverges there."""

    def __init__(self, epoch, batch=2):
        super().__init__()
        self.epoch, self.batch, self._now = epoch, batch, None

    def on_epoch_begin(self, epoch, logs=None):
        self._now = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self._now, batch) == (self.epoch, self.batch):
            kernel = self.model.decoder.get_layer("to_subpixels").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_diverged_run_keeps_its_last_good_epoch_and_the_advice_works(tiny_config):
    with pytest.raises(TrainingDivergedError) as info:
        train(tiny_config, verbose=0, callbacks=[_PoisonWeights(epoch=1)])
    message = str(info.value)
    assert "epoch 2, batch 2" in message and "after epoch 1" in message
    assert "--learning-rate 0.0005" in message  # half of 1e-3, the command to run next
    run = tiny_config.run_path
    assert not (run / "backup").exists()
    assert list(load_history(run)["epoch"]) == [0]  # the diverged epoch is not recorded
    for name in ("model.keras", "last.keras"):
        load_model(run / name)  # finite: load_model refuses NaN weights

    # As the message says: the same run with a lower learning rate continues from epoch 1.
    recorder = _EpochRecorder()
    _, history = train(tiny_config.replace(learning_rate=5e-4), verbose=0, callbacks=[recorder])
    assert recorder.epochs == [1] and list(history["epoch"]) == [0, 1]
    last = load_model(run / "last.keras")
    assert float(last.optimizer.learning_rate) == pytest.approx(5e-4)

    # Other settings are refused, even with nothing left to train; config.json stays.
    with pytest.raises(RunSettingsError, match="--latent-dim: 4 in the run, 8 now"):
        train(tiny_config.replace(epochs=1, latent_dim=8), verbose=0)
    train(tiny_config.replace(epochs=1, learning_rate=1e-4), verbose=0)  # nothing to do
    assert Config.load(run / "config.json") == tiny_config.replace(learning_rate=5e-4)


def test_full_disk_keeps_the_last_checkpoint_and_the_rerun_resumes(tiny_config, monkeypatch, capsys):
    saves, original_save = [], ResVAE.save

    def save_until_the_disk_is_full(self, path, *args, **kwargs):
        saves.append(path)
        if len(saves) > 2:  # epoch 0 wrote last.keras and model.keras; epoch 1 fails
            open(path, "wb").write(b"PK\x03\x04 cut short")
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_save(self, path, *args, **kwargs)

    monkeypatch.setattr(ResVAE, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError) as info:
        train(tiny_config, verbose=0)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and "last.keras" in str(info.value)
    run = tiny_config.run_path
    assert not [p.name for p in run.rglob(".*")]  # no temporary file left behind
    load_model(run / "last.keras")  # still the complete epoch-1 checkpoint
    assert list(load_history(run)["epoch"]) == [0]

    # Resuming with other settings is refused by name, before any work.
    with pytest.raises(RunSettingsError, match="--latent-dim: 4 in the run, 8 now") as refused:
        train(tiny_config.replace(latent_dim=8), verbose=0)
    assert "--run-dir" in str(refused.value) and "-2" in str(refused.value)
    assert Config.load(run / "config.json") == tiny_config

    # A damaged backup (as an older version left it) is set aside with a warning.
    (run / "backup" / "latest.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n cut short")
    recorder = _EpochRecorder()
    _, history = train(tiny_config, verbose=0, callbacks=[recorder])
    assert "could not be read" in capsys.readouterr().err
    assert recorder.epochs == [1] and list(history["epoch"]) == [0, 1]


def test_checkpoints_follow_the_neg_elbo_and_skip_non_finite_weights(tmp_path):
    model = ResVAE(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=2)
    model.compile(optimizer=keras.optimizers.Adam())
    model.optimizer.build(model.trainable_variables)
    checkpoints = Checkpoints(tmp_path, monitor="val_neg_elbo")
    checkpoints.set_model(model)
    checkpoints.on_epoch_end(0, {"loss": 50.0, "val_loss": 40.0, "val_neg_elbo": 60.0})
    first = (tmp_path / "model.keras").read_bytes()
    # During a KL warm-up val_loss can fall while the negative ELBO rises: not "better".
    model.log_sigma.assign(-1.0)
    checkpoints.on_epoch_end(1, {"loss": 45.0, "val_loss": 30.0, "val_neg_elbo": 65.0})
    assert (tmp_path / "model.keras").read_bytes() == first
    assert float(load_model(tmp_path / "last.keras").log_sigma) == -1.0
    model.log_sigma.assign(np.nan)
    checkpoints.on_epoch_end(2, {"loss": 40.0, "val_loss": 20.0, "val_neg_elbo": 55.0})
    assert checkpoints.last_epoch == 1  # nothing saved from non-finite weights
    assert float(load_model(tmp_path / "last.keras").log_sigma) == -1.0


@pytest.mark.parametrize(
    "override, match",
    [
        ({"image_size": 63}, "image_size=63"),
        ({"epochs": 0}, r"epochs=0 \(--epochs\)"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"batch_size": 64}, "larger than the 48 training images"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(tiny_config, override, match):
    with pytest.raises(ValueError, match=match):
        train(tiny_config.replace(**override), verbose=0)
    assert not tiny_config.run_path.exists()
    if "batch_size" not in override:  # refused before the data is even read
        assert not tiny_config.cache_path.exists()


def test_kl_warmup_ramps_linearly_and_history_records_beta(finished_run):
    warmup = KLWarmup(beta=2.0, warmup_steps=10)
    assert [warmup.value_at(s) for s in (0, 5, 10, 50)] == [0.0, 1.0, 2.0, 2.0]
    assert (finished_run.beta, finished_run.kl_warmup_steps) == (2.0, 24)
    history = load_history(finished_run.run_path)
    # 6 steps per epoch: the beta at the end of epoch 1 is 2 * 5/24, at the end of epoch 2 2 * 11/24.
    np.testing.assert_allclose(history["beta"], [2 * 5 / 24, 2 * 11 / 24], rtol=1e-6)
    assert "val_neg_elbo" in history  # the checkpoint criterion, at beta = 1 throughout
    with pytest.raises(ValueError, match=r"kl_warmup_steps=-1 \(--kl-warmup-steps\)"):
        check_config(finished_run.replace(kl_warmup_steps=-1))


def test_bad_precision_name(tiny_config):
    with pytest.raises(ValueError, match="float8"):
        with precision("float8"):
            pass
    assert keras.mixed_precision.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="mixed_precision='float8'"):
        check_config(tiny_config.replace(mixed_precision="float8"))


def test_compile_model_creates_the_optimizer_slots_before_the_first_step(tiny_config):
    from resvae_keras.model import build_model
    from resvae_keras.train import compile_model

    model = compile_model(build_model(tiny_config), tiny_config)
    assert model.optimizer.built
    # Adam: a first and a second moment for every trainable weight
    assert len(model.optimizer.variables) >= 2 * len(model.trainable_variables)


def test_precision_restores_the_previous_policy_even_after_an_error():
    with pytest.raises(RuntimeError, match="inside"):
        with precision("mixed_bfloat16"):
            assert keras.mixed_precision.dtype_policy().name == "mixed_bfloat16"
            raise RuntimeError("inside")
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_train_runs_under_the_config_policy_and_restores_it(tiny_config, monkeypatch):
    import resvae_keras.train as train_module

    seen = []

    def check_config(config):  # the first step of train: records the policy, then stops
        seen.append(keras.mixed_precision.dtype_policy().name)
        raise RuntimeError("stop")

    monkeypatch.setattr(train_module, "check_config", check_config)
    with pytest.raises(RuntimeError, match="stop"):
        train(tiny_config.replace(mixed_precision="mixed_bfloat16"))
    assert seen == ["mixed_bfloat16"]
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_load_grid_reads_the_arrays(tmp_path):
    grid = np.random.default_rng(0).random((3, 2, 4, 4, 3)).astype(np.float32)
    (tmp_path / "grids").mkdir()
    save_grid(grid, tmp_path / "grids" / "epoch_007.png")
    loaded, epoch = load_grid(tmp_path)
    assert epoch == 7 and loaded.shape == grid.shape
    np.testing.assert_allclose(loaded, grid, atol=0.5 / 255)
    np.testing.assert_array_equal(load_grid(tmp_path, epoch=7)[0], loaded)


def test_load_history_of_a_run_killed_before_its_first_epoch(tmp_path):
    (tmp_path / "history.csv").write_text("")
    assert load_history(tmp_path).empty


def test_load_history_keeps_the_last_row_per_epoch(tmp_path):
    pd.DataFrame({"epoch": [0, 1, 1], "loss": [3.0, 2.0, 1.5]}).to_csv(tmp_path / "history.csv")
    assert list(load_history(tmp_path)["loss"]) == [3.0, 1.5]


def test_cosine_schedule_warms_up_then_decays_to_zero(tiny_config):
    from resvae_keras.train import learning_rate

    assert learning_rate(tiny_config, 10) == tiny_config.learning_rate  # constant
    config = tiny_config.replace(lr_schedule="cosine", lr_warmup_steps=4, epochs=2)
    schedule = learning_rate(config, steps_per_epoch=10)  # 20 steps: 4 up, 16 down
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 2, 4, 12, 20)]
    assert rates[0] == pytest.approx(0.0)
    assert rates[1] == pytest.approx(config.learning_rate / 2)
    assert rates[2] == pytest.approx(config.learning_rate)
    assert rates[2] > rates[3] > rates[4]
    assert rates[4] == pytest.approx(0.0, abs=1e-9)


def test_adamw_decays_kernels_but_not_the_decoder_sigma(tiny_config):
    from resvae_keras.model import build_model
    from resvae_keras.train import compile_model

    config = tiny_config.replace(optimizer="adamw", weight_decay=0.5, learning_rate=0.1)
    model = compile_model(build_model(config), config)
    kernel = model.decoder.get_layer("project").kernel
    before = {"sigma": float(keras.ops.convert_to_numpy(model.log_sigma)),
              "kernel": np.abs(keras.ops.convert_to_numpy(kernel)).sum()}
    zeros = [keras.ops.zeros_like(w) for w in model.trainable_variables]
    model.optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    assert float(keras.ops.convert_to_numpy(model.log_sigma)) == before["sigma"]
    assert np.abs(keras.ops.convert_to_numpy(kernel)).sum() < 0.99 * before["kernel"]


def test_check_config_names_a_bad_training_lever(tiny_config):
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        check_config(tiny_config.replace(optimizer="sgd"))
    with pytest.raises(ValueError, match="lr_schedule='step'"):
        check_config(tiny_config.replace(lr_schedule="step"))


def test_a_changed_plain_flag_is_shown_as_given_on_the_command_line(finished_run):
    with pytest.raises(RunSettingsError) as info:
        train(finished_run.replace(residual=False, epochs=9), verbose=0)
    lines = str(info.value).splitlines()
    changed = [line for line in lines if line.endswith(" now")]
    assert changed == ["  --plain: False in the run, True now"]


def test_a_negative_seed_names_the_option(tiny_config):
    with pytest.raises(ValueError, match=r"seed=-1 \(--seed\)"):
        train(tiny_config.replace(seed=-1), verbose=0)


def test_three_images_and_batch_one_skip_the_second_stage_with_a_message(tiny_config, capsys):
    config = tiny_config.replace(max_images=3, batch_size=1, epochs=1, two_stage_epochs=1)
    train(config, verbose=0)
    assert "second stage skipped: 1 training images are too few" in capsys.readouterr().err
    assert (config.run_path / "model.keras").is_file()
    assert not two_stage_path(config.run_path).exists()


def test_a_truncated_second_stage_is_called_damaged_and_refitted(finished_run, tmp_path, capsys):
    config = continued(finished_run, tmp_path)
    path = two_stage_path(config.run_path)
    path.write_bytes(path.read_bytes()[:1000])
    sampler = two_stage_sampler(config, verbose=False)
    assert "two_stage.keras is damaged" in capsys.readouterr().err
    assert sampler.sample(2).shape == (2, config.latent_dim)
    assert latent.TwoStageSampler.load(path).latent_dim == config.latent_dim


def test_log_verbosity_is_one_line_per_epoch_under_nbconvert(monkeypatch):
    import io

    from resvae_keras.train import log_verbosity

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # nbconvert, nbval, a pipe: no terminal
    assert log_verbosity() == 2
    monkeypatch.setenv("JPY_SESSION_NAME", "02_training.ipynb")  # JupyterLab
    assert log_verbosity() == "auto"
