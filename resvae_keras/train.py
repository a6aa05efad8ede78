"""``train(config)``: callbacks, checkpoints, resume and precision.

A run dir holds config.json, history.csv, model.keras (best by ``val_neg_elbo``, or
``val_loss`` for the autoencoder), last.keras (with optimizer state), two_stage.keras,
grids/ and, while training, backup/. A killed run resumes from its last completed epoch; a
finished one given more ``epochs`` continues from last.keras. Only the settings in
``CONTINUABLE`` may change.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

from resvae_keras import data, distribute
from resvae_keras.callbacks import (
    Backup,
    Checkpoints,
    EpochTimer,
    KLWarmup,
    StopOnNaN,
    finite_epoch,
    save_model,
    unreadable_backup,
)
from resvae_keras.config import Config, option_name, reject_setting
from resvae_keras.data._io import atomic_write, display_path
from resvae_keras.model import DamagedModelFileError, build_model, check_settings, load_model
from resvae_keras.run_dir import (
    backup_epoch,
    check_run_split,
    load_history,
    record_split,
    resume_point,
    run_lock,
)

GRID_ROWS = ("validation", "reconstruction", "prior sample")
MIN_SECOND_STAGE_CODES = 8  # fewer codes give a degenerate second-stage fit
CONTINUABLE = (
    "epochs", "learning_rate", "strategy", "grid_every", "run_dir", "cache_dir",
    "eval_images", "eval_samples", "latent_codes", "anomaly_images", "two_stage_epochs",
)  # fmt: skip


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class RunSettingsError(ValueError):
    """A run dir asked to continue with settings other than those it was trained with."""


@contextlib.contextmanager
def precision(policy):
    """Keras' global dtype policy ``policy`` (``None``: float32) for a block; the previous
    policy comes back after. The loss stays float32."""
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(policy or "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


class SaveGrids(keras.callbacks.Callback):
    """After each epoch, saves the rows ``GRID_ROWS`` as ``epoch_NNN.png`` and ``.npz``."""

    def __init__(self, images, out_dir, every=1, seed=0):
        super().__init__()
        self.images = np.asarray(images, dtype="float32")
        self.out_dir = Path(out_dir)
        self.every = max(1, int(every))
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or not finite_epoch(self.model, logs):
            return
        rows = [self.images, self.model.reconstruct(self.images),
                self.model.sample(len(self.images), seed=self.seed)]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_grid(np.stack(rows), self.out_dir / f"epoch_{epoch + 1:03d}.png")


def save_grid(grid, path):
    """Save ``grid``, float [0, 1] of shape (rows, cols, H, W, 3), tiled as the PNG ``path``
    and as a uint8 array in ``path`` with suffix .npz."""
    from PIL import Image

    grid = data.to_uint8(grid)
    rows, cols, h, w, c = grid.shape
    with atomic_write(path) as tmp:
        Image.fromarray(grid.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)).save(
            tmp, format="PNG")
    with atomic_write(Path(path).with_suffix(".npz")) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, grid=grid)


def load_grid(run_dir, epoch: int | None = None) -> tuple[np.ndarray, int]:
    """``(grid, epoch)``: the grid saved after ``epoch`` (1-based; default: the last one),
    float32 in [0, 1], shape (rows, cols, H, W, 3) with the rows ``GRID_ROWS``."""
    grids = Path(run_dir) / "grids"
    saved = sorted(grids.glob("epoch_*.png"))
    if not saved:
        raise FileNotFoundError(f"{grids} holds no epoch_NNN grid: train the run first")
    png = saved[-1] if epoch is None else grids / f"epoch_{int(epoch):03d}.png"
    with np.load(png.with_suffix(".npz")) as stored:  # uint8, as save_grid writes it
        return stored["grid"].astype(np.float32) / np.float32(255.0), int(png.stem[6:])


def learning_rate(config, steps_per_epoch: int = 1):
    """``config.learning_rate``, or for ``"cosine"`` a linear warm-up over ``lr_warmup_steps``
    to it and a cosine decay to 0 at step ``epochs * steps_per_epoch``."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = max(int(steps_per_epoch) * config.epochs, 2)
    warmup = min(int(config.lr_warmup_steps), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=config.learning_rate, warmup_steps=warmup
    )


def compile_model(model, config, steps_per_epoch: int = 1):
    """Compile ``model`` with ``config.optimizer`` and build its slots now (built inside the
    first train step, they make TensorFlow trace it twice). AdamW decays kernels only: a
    decayed log sigma would pull sigma towards 1."""
    rate = learning_rate(config, steps_per_epoch)
    if config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "log_sigma"])
    else:
        optimizer = keras.optimizers.Adam(rate)
    model.compile(optimizer=optimizer)
    model.optimizer.build(model.trainable_variables)
    return model


def check_config(config: Config) -> None:
    """Raise ``ValueError`` naming the first setting of ``config`` that cannot work."""
    lowest = dict(epochs=1, batch_size=1, latent_dim=1, image_size=1, grid_every=1,
                  kl_warmup_steps=0, two_stage_epochs=0, lr_warmup_steps=0, seed=0)
    if config.max_images is not None:
        lowest["max_images"] = 1
    for name, low in lowest.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            reject_setting(config, name, f"an integer >= {low}")
    if config.seed >= 2**32:
        reject_setting(config, "seed", "an integer in [0, 4294967295]")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        reject_setting(config, "learning_rate", "a positive number, e.g. 0.001")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        reject_setting(config, "weight_decay", "a number >= 0")
    check_settings(config, strategy=distribute.STRATEGIES, optimizer=("adam", "adamw"),
                   mixed_precision=(None, "mixed_float16", "mixed_bfloat16"),
                   lr_schedule=("constant", "cosine"), flip=(True, False))


def _best_model(run_dir):
    """``model.keras`` of a run (``last.keras`` if no epoch improved the monitored loss)."""
    path = Path(run_dir) / "model.keras"
    return load_model(path if path.exists() else Path(run_dir) / "last.keras")


def train(config: Config, verbose="auto", callbacks=(), second_stage=True):
    """Train ``config`` into ``config.run_path``; returns ``(model, history DataFrame)``.

    Raises ``ValueError`` or ``RunSettingsError`` before anything is written, and
    ``TrainingDivergedError`` when the loss becomes NaN (the last good epoch is kept).
    ``second_stage``: then fit the second-stage VAE on ``model.keras``'s codes.
    """
    with precision(config.mixed_precision):
        check_config(config)
        _refuse_other_settings(config)
        # data before the strategy: its decoding processes fork before TensorFlow's threads exist
        cache = distribute.prepare_data(config)
        strategy = distribute.make_strategy(config.strategy)
        role = distribute.worker_role(strategy)
        keras.utils.set_random_seed(config.seed)
        run_dir = config.run_path
        # only the chief writes the run dir; other workers write into a folder of their own
        out_dir = run_dir if role["chief"] else distribute.worker_dir(run_dir, role)
        datasets, steps_per_epoch = _datasets(config, cache, role["workers"])
        with run_lock(out_dir):
            model, history, initial_epoch = _resume_or_build(config, strategy, role, cache,
                                                             out_dir, steps_per_epoch)
            trained_dir, diverged = run_dir, None
            if initial_epoch >= config.epochs:
                print(f"{run_dir.name}: already trained for {initial_epoch} epochs; nothing to do.")
            else:
                diverged = _fit(config, verbose, callbacks, out_dir, model, history, datasets,
                                initial_epoch)
                trained_dir, history = out_dir, load_history(out_dir)
            try:
                if diverged:
                    raise TrainingDivergedError(diverged)
                model = _best_model(trained_dir)
                if (role["chief"] and second_stage and config.two_stage_epochs > 0
                        and not two_stage_is_current(run_dir)):
                    n_train = len(cache.split_indices("train"))
                    if n_train >= MIN_SECOND_STAGE_CODES:
                        two_stage_sampler(config, model, cache, verbose=bool(verbose))
                    else:
                        print(f"second stage skipped: {n_train} training images are too few "
                              f"to fit it (it needs {MIN_SECOND_STAGE_CODES} or more; "
                              "--max-images). The run itself is saved; sample with --sampler "
                              "prior.", file=sys.stderr, flush=True)
                return model, history
            finally:
                if not role["chief"]:
                    shutil.rmtree(out_dir, ignore_errors=True)  # the chief's run dir has the run


def _refuse_other_settings(config: Config) -> None:
    """Raise ``RunSettingsError`` when the run dir's settings outside ``CONTINUABLE`` differ."""
    run_dir = config.run_path
    trained = any((run_dir / name).exists() for name in ("model.keras", "last.keras", "backup"))
    if not (run_dir / "config.json").is_file() or not (trained or len(load_history(run_dir))):
        return
    saved = Config.load(run_dir / "config.json")

    def value(c, name):  # data_dir compared as the folder it names
        return c.resolve(c.data_dir) if name == "data_dir" and c.data_dir else getattr(c, name)

    changed = [name for name in saved.to_dict()
               if name not in CONTINUABLE and value(saved, name) != value(config, name)]
    if not changed:
        return

    def shown(c, name):  # the option's value: --plain is `not residual`
        return not c.residual if name == "residual" else getattr(c, name)

    suffix = next(n for n in itertools.count(2)
                  if not run_dir.with_name(f"{run_dir.name}-{n}").exists())
    new_dir = Path(config.run_dir or f"runs/{config.profile}").with_name(f"{run_dir.name}-{suffix}")
    raise RunSettingsError("\n".join([
        f"{display_path(run_dir)} holds a run trained with other settings; it was not changed:",
        *(f"  {option_name(n)}: {shown(saved, n)!r} in the run, {shown(config, n)!r} now"
          for n in changed),
        "To continue it, drop those options (a run may change only --epochs and "
        "--learning-rate). To train these settings, start a new run in another folder:",
        f"  {config.train_command(run_dir=str(new_dir))}",
        f"or delete {display_path(run_dir)} to start it over.",
    ]))


def _datasets(config: Config, cache, workers: int):
    """``((train_ds, val_ds, val_images), steps_per_epoch)`` over global batches of
    ``batch_size * workers`` images; ``val_images``: 8 faces for the epoch grids."""
    n_train = len(cache.split_indices("train"))
    global_batch = config.batch_size * workers
    if n_train < global_batch:
        shown = f" x {workers} workers" if workers > 1 else ""
        raise ValueError(
            f"batch_size={config.batch_size}{shown} (--batch-size) is larger than the "
            f"{n_train} training images, so not one full batch exists and nothing would be "
            f"trained; use --batch-size {n_train // workers} or less, or more images "
            "(--max-images)"
        )
    train_ds = data.make_dataset(cache, "train", global_batch, shuffle=True, seed=config.seed,
                                 drop_remainder=True, flip=config.flip)
    val_ds = data.make_dataset(cache, "val", global_batch, shuffle=False)
    val_images = data.as_float_images(cache.images_of("val")[:8])
    return (train_ds, val_ds, val_images), n_train // global_batch


def _resume_or_build(config: Config, strategy, role, cache, out_dir, steps_per_epoch):
    """``(model, history so far, initial epoch)``: a new model (``Backup`` restores an
    interrupted run's weights in ``fit``), or ``last.keras`` of a finished run."""
    run_dir = config.run_path
    backup = out_dir / "backup"
    reason = unreadable_backup(backup) if backup.exists() else None
    if reason:
        shutil.rmtree(backup)
        print(f"warning: {display_path(backup)} could not be read ({reason}); it was removed, "
              "and training continues from last.keras", file=sys.stderr)
    interrupted = backup.exists()
    # A finished run that is continued: another worker reads the chief's files where it
    # sees them (one machine, or a shared folder).
    state_dir = out_dir if interrupted or role["chief"] else run_dir
    history, continued = resume_point(state_dir, backup, interrupted, steps_per_epoch)
    if len(history) or interrupted:
        check_run_split(run_dir, cache, "train")
    if role["workers"] > 1:  # also waits until every worker is ready
        start = 1 if interrupted else 2 if continued else 0
        epoch = backup_epoch(backup) if interrupted else len(history) if continued else 0
        distribute.check_same_start(strategy, role, start, epoch, run_dir)
    with strategy.scope():
        if continued:
            model = load_model(state_dir / "last.keras")  # Backup sets a new constant rate
            initial_epoch = len(history)
        else:
            model = compile_model(build_model(config), config, steps_per_epoch)
            initial_epoch = 0  # BackupAndRestore moves it to the last completed epoch
            if not interrupted:
                (out_dir / "history.csv").unlink(missing_ok=True)
                history = history.iloc[0:0]
    if role["workers"] > 1:
        distribute.give_scalar_results_a_batch_axis(model)
    if initial_epoch < config.epochs:
        config.save(out_dir / "config.json")
        if not (len(history) or interrupted):
            record_split(out_dir, cache)
    return model, history, initial_epoch


def _fit(config: Config, verbose, callbacks, out_dir, model, history, datasets, initial_epoch):
    """``model.fit`` into ``out_dir``; returns ``None``, or after a NaN loss the message for
    ``TrainingDivergedError``, with ``history.csv`` cut back to the epochs saved."""
    train_ds, val_ds, val_images = datasets
    monitor = "val_loss" if config.kind == "ae" else "val_neg_elbo"
    best = float(history[monitor].min()) if monitor in history else math.inf  # NaN if empty
    nan_stop = StopOnNaN()
    checkpoints = Checkpoints(out_dir, monitor, best=best if math.isfinite(best) else math.inf)
    wall_offset = float(history["wall_time_s"].iloc[-1]) if "wall_time_s" in history else 0.0
    all_callbacks = [
        EpochTimer(wall_offset),
        KLWarmup(config.beta, config.kl_warmup_steps),
        nan_stop,
        checkpoints,
        SaveGrids(val_images, out_dir / "grids", every=config.grid_every, seed=config.seed),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        # last of the writers: a crash before it redoes the epoch from the previous backup
        Backup(out_dir / "backup",
               config.learning_rate if config.lr_schedule == "constant" else None),
        *callbacks,
    ]
    # shuffle=False: the tf.data pipeline shuffles, with the run's seed
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
              callbacks=all_callbacks, verbose=verbose, shuffle=False)
    if not nan_stop.where:
        return None
    saved_until = (checkpoints.last_epoch + 1 if checkpoints.last_epoch is not None
                   else checkpoints.first_epoch or 0)
    history = load_history(out_dir)
    history = history[history["epoch"] < saved_until] if len(history) else history
    if len(history):
        with atomic_write(out_dir / "history.csv") as tmp:
            history.to_csv(tmp, index=False)
        kept = (f"{display_path(config.run_path)} keeps its last good state: last.keras after "
                f"epoch {len(history)} and the best model.keras. Re-run with a lower "
                "learning_rate to continue from there:")
    else:
        (out_dir / "history.csv").unlink(missing_ok=True)
        kept = "No epoch had finished, so nothing was saved. Re-run with a lower learning_rate:"
    epoch, batch, loss = nan_stop.where
    lower = float(f"{config.learning_rate / 2:.2g}")
    return "\n".join([
        f"training diverged: the loss became {loss} in epoch {epoch + 1}, batch {batch}; "
        "nothing of that epoch was saved.",
        kept,
        f"  {config.train_command(learning_rate=lower)}",
        "If it diverges again, start a new run with a KL warm-up (--kl-warmup-steps 500), "
        "--likelihood gaussian or --mixed-precision float32, in another folder "
        "(--run-dir), and check the data for NaNs.",
    ])


def two_stage_path(run_dir, checkpoint: str = "model.keras") -> Path:
    """``two_stage.keras`` for model.keras, else ``two_stage_<checkpoint stem>.keras``."""
    stem = Path(checkpoint).stem
    return Path(run_dir) / ("two_stage.keras" if stem == "model" else f"two_stage_{stem}.keras")


def two_stage_is_current(run_dir, checkpoint: str = "model.keras") -> bool:
    """True when the second stage exists and is not older than ``checkpoint``."""
    path, source = two_stage_path(run_dir, checkpoint), Path(run_dir) / checkpoint
    return path.exists() and (not source.exists()
                              or path.stat().st_mtime >= source.stat().st_mtime)


def two_stage_sampler(config: Config, model=None, cache=None, checkpoint: str = "model.keras",
                      verbose: bool = True):
    """The run's ``latent.TwoStageSampler``: loaded from ``two_stage_path`` when current,
    else fitted on the training codes of ``checkpoint`` and saved there."""
    from resvae_keras.latent import TwoStageSampler, encode_dataset

    run_dir = config.run_path
    path = two_stage_path(run_dir, checkpoint)
    if two_stage_is_current(run_dir, checkpoint):
        try:
            return TwoStageSampler.load(path)
        except DamagedModelFileError as error:  # NaN weights are refused, not refitted
            print(f"{display_path(path)} is damaged ({type(error).__name__}); fitting the "
                  "second stage again", file=sys.stderr, flush=True)
            path.unlink()
    if model is None:
        model = (_best_model(run_dir) if checkpoint == "model.keras"
                 else load_model(run_dir / checkpoint))
    cache = cache if cache is not None else data.load_cache(config, progress=False)
    rows = cache.split_indices("train")
    epochs = int(config.two_stage_epochs) or TwoStageSampler().epochs
    if verbose:
        state = "is older than " + checkpoint if path.exists() else "is missing"
        print(f"{path.name} {state}: fitting the second-stage VAE on {len(rows)} training "
              f"codes for {epochs} epochs", flush=True)
    start = time.perf_counter()
    batches = (cache.images[rows[i : i + 256]] for i in range(0, len(rows), 256))
    z_mean, z_log_var = encode_dataset(model, batches)
    sampler = TwoStageSampler(epochs=epochs, seed=config.seed)
    sampler.fit(z_mean, None if model.kind == "ae" else z_log_var)
    save_model(sampler.vae_, path)
    with atomic_write(path.with_name(path.stem + "_history.csv")) as tmp:
        sampler.history_.to_csv(tmp, index_label="epoch")
    if verbose:
        print(f"{path.name}: fitted in {time.perf_counter() - start:.0f} s, "
              f"gamma {sampler.vae_.gamma:.3f} (standard units of z)", flush=True)
    return sampler


def log_verbosity() -> str | int:
    """Keras' ``verbose``: ``"auto"`` in JupyterLab or a terminal; 2 (a line per epoch)
    elsewhere, where a progress bar would fill the saved output with backspaces."""
    interactive = os.environ.get("JPY_SESSION_NAME") or sys.stdout.isatty()
    return "auto" if interactive else 2


def load_or_train(config: Config):
    """The run's best model, training it first when ``model.keras`` is missing."""
    path = config.run_path / "model.keras"
    if not path.exists() or (config.run_path / "backup").exists():
        return train(config, verbose=log_verbosity())[0]
    return load_model(path)
