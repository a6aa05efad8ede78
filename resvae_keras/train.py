"""``train(config)``: callbacks, checkpoints, resume, distribution and precision.

A run directory (``runs/<profile>`` unless ``config.run_dir`` says otherwise) holds::

    config.json      the Config of the run
    history.csv      one row per epoch: loss terms, val_ terms, beta, epoch time, wall time
    model.keras      the best model by validation loss (ModelCheckpoint)
    last.keras       the model after the last completed epoch, optimizer state included
    two_stage.keras  the second-stage VAE on model.keras's codes (``two_stage_sampler``),
                     with two_stage_history.csv; refitted when model.keras is newer
    grids/epoch_NNN.png   originals / reconstructions / samples after each epoch
    backup/          BackupAndRestore state while a run is in progress

A run killed mid-way restarts from its last completed epoch when ``train`` is
called again with the same run dir (``BackupAndRestore``). A finished run called
again with more ``epochs`` continues from ``last.keras`` with its optimizer state.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

# Registers ResVAE and its layers, so load_model works in a fresh process.
import resvae_keras.model  # noqa: F401
from resvae_keras.config import Config
from resvae_keras.data.images import to_uint8

STRATEGIES = ("none", "mirrored", "auto")
PRECISIONS = (None, "mixed_float16", "mixed_bfloat16")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


def make_strategy(name="none"):
    """A ``tf.distribute`` strategy.

    ``"none"``: the default strategy (one device). ``"mirrored"``: MirroredStrategy
    over every visible GPU (or every logical CPU device when there is no GPU).
    ``"auto"``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` is set, else
    MirroredStrategy when more than one GPU is visible, else the default.
    """
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {list(STRATEGIES)}")
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            return tf.distribute.MultiWorkerMirroredStrategy()
        if len(tf.config.list_logical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy()
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def set_precision(policy):
    """Set Keras' global dtype policy (``None`` means float32). The loss stays float32."""
    if policy not in PRECISIONS:
        raise ValueError(f"mixed_precision={policy!r} is not one of {list(PRECISIONS)}")
    keras.mixed_precision.set_dtype_policy(policy or "float32")


@contextlib.contextmanager
def precision(policy):
    """``set_precision(policy)`` for a block; the previous global policy comes back after,
    so a bfloat16 run does not leave the rest of a notebook or test session in bfloat16."""
    previous = keras.mixed_precision.dtype_policy()
    set_precision(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


class KLWarmup(keras.callbacks.Callback):
    """Ramp beta linearly from 0 to ``beta`` over ``warmup_steps`` optimizer steps.

    The current value is derived from ``optimizer.iterations``, so a resumed run
    continues the ramp where it stopped.
    """

    def __init__(self, beta, warmup_steps):
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps={warmup_steps!r} must be >= 0")
        self.target = float(beta)
        self.warmup_steps = int(warmup_steps)

    def value_at(self, step):
        if self.warmup_steps == 0:
            return self.target
        return self.target * min(1.0, step / self.warmup_steps)

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.model.beta_weight.assign(self.value_at(step))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["beta"] = float(keras.ops.convert_to_numpy(self.model.beta_weight))


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_time_s`` and cumulative ``wall_time_s`` to the epoch logs."""

    def __init__(self, wall_offset=0.0):
        super().__init__()
        self.wall = float(wall_offset)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self._start
        self.wall += elapsed
        if logs is not None:
            logs["epoch_time_s"] = elapsed
            logs["wall_time_s"] = self.wall


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers why, so ``train`` can raise a clear error."""

    message = None

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.message = (
                f"training stopped: the loss became {float(loss)} at batch {batch}. "
                "Try a lower learning_rate, a KL warm-up (kl_warmup_steps), "
                "likelihood='gaussian' instead of the learned variance, or float32 "
                "instead of mixed precision; check the data for NaNs."
            )
            print(self.message)
            self.model.stop_training = True


class SaveGrids(keras.callbacks.Callback):
    """After each epoch, saves originals / reconstructions / samples as one PNG."""

    def __init__(self, images, out_dir, every=1, seed=0):
        super().__init__()
        self.images = np.asarray(images, dtype="float32")
        self.out_dir = Path(out_dir)
        self.every = max(1, int(every))
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        rows = [
            self.images,
            self.model.reconstruct(self.images),
            self.model.sample(len(self.images), seed=self.seed),
        ]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_png_grid(np.stack(rows), self.out_dir / f"epoch_{epoch + 1:03d}.png")


def save_png_grid(grid, path):
    """Tile ``grid`` float [0, 1] of shape (rows, cols, H, W, 3) into one PNG at ``path``."""
    from PIL import Image

    rows, cols, h, w, c = grid.shape
    tiled = grid.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)
    Image.fromarray(to_uint8(tiled)).save(path)


def load_history(run_dir):
    """The run's ``history.csv`` as a DataFrame (one row per epoch, last write wins)."""
    path = Path(run_dir) / "history.csv"
    # A run killed before its first epoch ended leaves an empty file behind.
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    history = pd.read_csv(path)
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def compile_model(model, config):
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    return model


def train(config: Config, verbose="auto", callbacks=()):
    """Train ``config`` into ``config.run_path``; returns ``(model, history DataFrame)``.

    The best model by validation loss is ``model.keras`` in the run dir. Raises
    ``TrainingDivergedError`` when the loss becomes NaN. Runs under
    ``config.mixed_precision`` and restores the previous dtype policy afterwards.
    """
    with precision(config.mixed_precision):
        return _train(config, verbose, callbacks)


def _train(config: Config, verbose, callbacks):
    from resvae_keras import data
    from resvae_keras.model import ResVAE, build_model

    keras.utils.set_random_seed(config.seed)
    run_dir = config.run_path
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")

    cache = data.load_cache(config)
    train_ds = data.make_dataset(
        cache, "train", config.batch_size, shuffle=True, seed=config.seed, drop_remainder=True
    )
    val_ds = data.make_dataset(cache, "val", config.batch_size, shuffle=False)
    val_images = data.as_float_images(cache.images_of("val")[:8])

    history = load_history(run_dir)
    interrupted = (run_dir / "backup").exists()
    last = run_dir / "last.keras"
    strategy = make_strategy(config.strategy)
    with strategy.scope():
        if last.exists() and len(history) and not interrupted:
            # A finished run asked for more epochs: continue with the optimizer state.
            model = keras.models.load_model(last)
            if not isinstance(model, ResVAE):
                raise TypeError(f"{last} does not hold a ResVAE")
            initial_epoch = len(history)
        else:
            model = compile_model(build_model(config), config)
            initial_epoch = 0  # BackupAndRestore moves it to the last completed epoch
            if not interrupted:
                (run_dir / "history.csv").unlink(missing_ok=True)
                history = history.iloc[0:0]
    if initial_epoch >= config.epochs:
        print(f"{run_dir.name}: already trained for {initial_epoch} epochs; nothing to do.")
        model = keras.models.load_model(run_dir / "model.keras")
        if config.two_stage_epochs > 0 and not two_stage_is_current(run_dir):
            two_stage_sampler(config, model, cache, verbose=bool(verbose))
        return model, history

    nan_stop = StopOnNaN()
    wall_offset = float(history["wall_time_s"].iloc[-1]) if "wall_time_s" in history else 0.0
    all_callbacks = [
        EpochTimer(wall_offset),
        KLWarmup(config.beta, config.kl_warmup_steps),
        nan_stop,
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "model.keras"), monitor="val_loss", save_best_only=True
        ),
        keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
        SaveGrids(val_images, run_dir / "grids", every=config.grid_every, seed=config.seed),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        *callbacks,
    ]
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        callbacks=all_callbacks,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles, with the run's seed
    )
    if nan_stop.message:
        raise TrainingDivergedError(nan_stop.message)
    model = keras.models.load_model(run_dir / "model.keras")
    if config.two_stage_epochs > 0 and not two_stage_is_current(run_dir):
        two_stage_sampler(config, model, cache, verbose=bool(verbose))
    return model, load_history(run_dir)


def two_stage_path(run_dir, checkpoint: str = "model.keras") -> Path:
    """The second stage fitted on the codes of ``checkpoint``: ``two_stage.keras`` for the
    best model, ``two_stage_<checkpoint stem>.keras`` for another one (e.g. ``last.keras``)."""
    stem = Path(checkpoint).stem
    return Path(run_dir) / ("two_stage.keras" if stem == "model" else f"two_stage_{stem}.keras")


def two_stage_is_current(run_dir, checkpoint: str = "model.keras") -> bool:
    """True when the second stage exists and is not older than ``checkpoint``."""
    path, source = two_stage_path(run_dir, checkpoint), Path(run_dir) / checkpoint
    return path.exists() and (not source.exists()
                              or path.stat().st_mtime >= source.stat().st_mtime)


def two_stage_sampler(config: Config, model=None, cache=None, checkpoint: str = "model.keras",
                      verbose: bool = True):
    """The run's two-stage sampler (Dai & Wipf 2019, ``latent.TwoStageSampler``).

    Loaded from ``two_stage_path`` when that is current; otherwise fitted for
    ``config.two_stage_epochs`` (at least 1) on the posteriors of the training split under
    ``checkpoint``'s encoder, saved there (with ``two_stage_history.csv``), and returned.
    ``model`` and ``cache`` are loaded when not given.
    """
    from resvae_keras import data
    from resvae_keras.latent import TwoStageSampler, encode_dataset

    run_dir = config.run_path
    path = two_stage_path(run_dir, checkpoint)
    if two_stage_is_current(run_dir, checkpoint):
        return TwoStageSampler.load(path)
    model = model if model is not None else keras.models.load_model(run_dir / checkpoint)
    cache = cache if cache is not None else data.load_cache(config, progress=False)
    rows = cache.split_indices("train")
    epochs = max(1, int(config.two_stage_epochs))
    if verbose:
        state = "is older than " + checkpoint if path.exists() else "is missing"
        print(f"{path.name} {state}: fitting the second-stage VAE on {len(rows)} training "
              f"codes for {epochs} epochs", flush=True)
    start = time.perf_counter()
    batches = (cache.images[rows[i : i + 256]] for i in range(0, len(rows), 256))
    z_mean, z_log_var = encode_dataset(model, batches)
    deterministic = getattr(model, "kind", "vae") == "ae"
    sampler = TwoStageSampler(epochs=epochs, seed=config.seed)
    sampler.fit(z_mean, None if deterministic else z_log_var)
    partial = path.with_name(path.stem + ".partial.keras")  # never a half-written file
    sampler.save(partial)
    os.replace(partial, path)
    sampler.history_.to_csv(path.with_name(path.stem + "_history.csv"), index_label="epoch")
    if verbose:
        print(f"{path.name}: fitted in {time.perf_counter() - start:.0f} s, "
              f"gamma {sampler.vae_.gamma:.3f} (standard units of z)", flush=True)
    return sampler


def load_or_train(config: Config):
    """The run's best model, training it first when ``model.keras`` is missing."""
    path = config.run_path / "model.keras"
    if not path.exists() or (config.run_path / "backup").exists():
        return train(config)[0]
    return keras.models.load_model(path)
