"""The callbacks ``train`` runs at every epoch end, and the checkpoint writes they make:
each through a temporary file after a free-space check, none after a non-finite epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from resvae_keras.data._io import atomic_write, check_free_space, display_path
from resvae_keras.model import nonfinite_weights


class KLWarmup(keras.callbacks.Callback):
    """Ramp beta linearly from 0 to ``beta`` over ``warmup_steps`` optimizer steps (read
    from ``optimizer.iterations``, so a resumed run continues the ramp)."""

    def __init__(self, beta, warmup_steps):
        super().__init__()
        self.target = float(beta)
        self.warmup_steps = int(warmup_steps)

    def value_at(self, step):
        ramp = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        return self.target * ramp

    def on_train_batch_begin(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.model.beta_weight.assign(self.value_at(step))

    def on_epoch_end(self, epoch, logs=None):
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
        logs.update(epoch_time_s=elapsed, wall_time_s=self.wall)


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """TerminateOnNaN that remembers where, so ``train`` can raise a clear error."""

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)) and self.where is None:
            self.where = (self._epoch, batch, float(loss))
            print(f"the loss became {float(loss)} in epoch {self._epoch + 1}, batch {batch}: "
                  "stopping", file=sys.stderr)
            self.model.stop_training = True


def finite_epoch(model, logs) -> bool:
    """True when the epoch's loss and every weight of ``model`` are finite (safe to save)."""
    return bool(np.isfinite((logs or {}).get("loss", 0.0))) and not nonfinite_weights(model)


def _state_bytes(model) -> int:
    """About the bytes a checkpoint of ``model`` takes: weights, optimizer state, 1 MiB slack."""
    variables = list(model.weights) + list(getattr(model.optimizer, "variables", []))
    return sum(int(np.prod(v.shape)) * 4 for v in variables) + 2**20


def save_model(model, path):
    """``model.save(path)`` atomically, after a free-space check."""
    path = Path(path)
    check_free_space(path.parent, _state_bytes(model), f"saving {path.name}")
    try:
        with atomic_write(path) as tmp:
            model.save(tmp)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), display_path(path)) from error


class Checkpoints(keras.callbacks.Callback):
    """After each finite epoch: ``last.keras``, and ``model.keras`` when ``monitor`` improved.
    ``last_epoch``: the last epoch saved in this ``fit``; ``first_epoch``: the first run."""

    def __init__(self, run_dir, monitor, best=math.inf):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.best = best
        self.first_epoch = self.last_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if not finite_epoch(self.model, logs):
            return
        save_model(self.model, self.run_dir / "last.keras")
        self.last_epoch = epoch
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and value < self.best:
            self.best = float(value)
            save_model(self.model, self.run_dir / "model.keras")


class Backup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that writes atomically, skips non-finite epochs, and sets
    ``learning_rate`` after restoring (it may have changed)."""

    def __init__(self, backup_dir, learning_rate=None):
        super().__init__(str(backup_dir))
        self.learning_rate = learning_rate  # None: a schedule, restored with the optimizer

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.learning_rate is not None:
            self.model.optimizer.learning_rate = float(self.learning_rate)

    def on_epoch_end(self, epoch, logs=None):
        if finite_epoch(self.model, logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        folder = Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        check_free_space(folder, _state_bytes(self.model), "the training backup")
        try:
            # weights first: a crash between the two writes redoes an epoch, never skips one
            with atomic_write(self._weights_path) as tmp:
                self.model.save_weights(str(tmp), overwrite=True)
            with atomic_write(self._training_metadata_path) as tmp:
                tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": 0}))
        except OSError as error:
            raise OSError(error.errno, error.strerror or str(error),
                          display_path(folder)) from error


def unreadable_backup(backup_dir) -> str | None:
    """Why ``backup_dir`` cannot be restored (``None`` when it can): every weight is read."""
    import h5py

    folder = Path(backup_dir)
    try:
        epoch = json.loads((folder / "training_metadata.json").read_text())["epoch"]
        if int(epoch) < 0:
            raise ValueError(f"epoch {epoch}")
        with h5py.File(folder / "latest.weights.h5", "r") as weights:
            weights.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception as error:  # any damage means: do not restore from it
        return f"{type(error).__name__}: {error}"
    return None
