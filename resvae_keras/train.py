"""``train(config)``: callbacks, checkpoints, resume, distribution and precision.

A run directory (``runs/<profile>`` unless ``config.run_dir`` says otherwise) holds::

    config.json      the Config of the saved model (rewritten only when training starts)
    history.csv      one row per epoch: loss terms, neg_elbo, val_ terms, beta, epoch time, wall time
    model.keras      the best model by validation negative ELBO at beta = 1 (``val_neg_elbo``;
                     ``val_loss`` for the autoencoder), comparable across a KL warm-up
    last.keras       the model after the last completed epoch, optimizer state included
    two_stage.keras  the second-stage VAE on model.keras's codes (``two_stage_sampler``),
                     with two_stage_history.csv; refitted when model.keras is newer
    grids/epoch_NNN.png   originals / reconstructions / samples after each epoch (and .npz:
                          the same grid as a uint8 array, see load_grid)
    backup/          BackupAndRestore state while a run is in progress

A run killed mid-way restarts from its last completed epoch when ``train`` is
called again with the same run dir (``BackupAndRestore``). A finished run called
again with more ``epochs`` continues from ``last.keras`` with its optimizer state.
Either may change only the settings in ``CONTINUABLE``; any other difference from
the run's ``config.json`` is refused with a message naming each setting.

Checkpoints and backups are written to a temporary file and renamed into place, after
a free-space check, and never after an epoch whose loss or weights are not finite:
a diverged run keeps its last good epoch, and a full disk never leaves a truncated
file. An unreadable ``backup/`` (e.g. from an older version) is set aside with a
warning, and training continues from ``last.keras``.

With several workers (``TF_CONFIG``, strategy ``auto``) only the chief writes the run
dir; every other worker writes the same files into ``worker_dir``, a temporary folder
that keeps its ``backup/`` across a restart and is removed when the run completes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

# Registers ResVAE and its layers, so load_model works in a fresh process.
import resvae_keras.model  # noqa: F401
from resvae_keras import data
from resvae_keras.config import Config, option_name
from resvae_keras.data._io import atomic_write, check_free_space, display_path
from resvae_keras.data.images import to_uint8
from resvae_keras.run_dir import (  # noqa: F401  (load_history: also train.load_history)
    SPLIT_FILE,
    RunDirError,
    RunLockedError,
    backup_epoch,
    check_run_split,
    load_history,
    record_split,
    resume_point,
    run_lock,
)

try:
    import fcntl
except ImportError:  # Windows: workers on one machine must not build the data at once
    fcntl = None

STRATEGIES = ("none", "mirrored", "auto")
PRECISIONS = (None, "mixed_float16", "mixed_bfloat16")
CONTINUABLE = (
    "epochs", "learning_rate", "strategy", "grid_every", "run_dir", "cache_dir",
    "eval_images", "eval_samples", "latent_codes", "anomaly_images", "two_stage_epochs",
)  # fmt: skip
"""Settings a run may change when it continues (the evaluation sizes and the second stage
do not touch the first stage's training); any other one needs a new run dir."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message says what was kept and what to run next."""


class RunSettingsError(ValueError):
    """A run dir asked to continue with settings other than those it was trained with."""


class WorkerStateError(ValueError):
    """The workers of a multi-worker run would not start from the same saved state."""


def describe_tf_config(text):
    """The cluster that a ``TF_CONFIG`` JSON string names, checked.

    Returns a dict: ``workers`` (chief plus workers, >= 1), ``task_type``, ``task_index``
    and ``chief`` (True for the task that writes the run dir: the ``chief`` task, or
    worker 0 when the cluster has no chief). Raises ``ValueError`` saying what is wrong.
    """
    help_text = 'see README section "Training on several machines" for an example'
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"TF_CONFIG={text!r} is not a JSON object with 'cluster' and 'task' "
            f"{{'type', 'index'}} ({err}); {help_text}"
        ) from None
    if task_type not in ("chief", "worker"):
        raise ValueError(f"TF_CONFIG task type {task_type!r}: only 'chief' and 'worker' "
                         f"tasks train; {help_text}")
    if not 0 <= task_index < len(cluster.get(task_type, [])):
        raise ValueError(f"TF_CONFIG task {task_type} {task_index} is not in its cluster "
                         f"{cluster}; {help_text}")
    return cluster_role(cluster, task_type, task_index)


def cluster_role(cluster, task_type, task_index):
    """``describe_tf_config``'s dict for a cluster ``{job: [address, ...]}`` and one task;
    ``rank`` numbers the training tasks 0 .. workers - 1, the chief first."""
    chiefs = len(cluster.get("chief", []))
    task_index = int(task_index or 0)
    return {
        "workers": max(1, chiefs + len(cluster.get("worker", []))),
        "task_type": task_type,
        "task_index": task_index,
        "rank": task_index + (chiefs if task_type == "worker" else 0),  # chief first
        "chief": task_type == "chief" or (task_type == "worker" and task_index == 0 and not chiefs),
    }


def worker_role(strategy):
    """``describe_tf_config``'s dict for this process under ``strategy``.

    One process without a cluster (the default or a mirrored strategy) is the chief of
    a one-worker cluster.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return cluster_role({}, "chief", 0)
    return cluster_role(cluster, resolver.task_type, resolver.task_id)


_multi_worker_strategy = None  # one per process: collectives are configured once, at startup
CLUSTER_TIMEOUT_S = 300.0  # how long a worker waits for its peers to start (RESVAE_CLUSTER_TIMEOUT)


def make_strategy(name="none"):
    """A ``tf.distribute`` strategy; create it before any other TensorFlow op runs.

    ``"none"``: the default strategy (one device). ``"mirrored"``: MirroredStrategy
    over every visible GPU (or every logical CPU device when there is no GPU).
    ``"auto"``: MultiWorkerMirroredStrategy when ``TF_CONFIG`` is set, else
    MirroredStrategy when more than one GPU is visible, else the default; it prints
    its choice and the reason to stderr.

    MultiWorkerMirroredStrategy configures TensorFlow's collective ops, which is only
    possible before the first op runs, so it is created once per process and reused.
    """
    import tensorflow as tf

    global _multi_worker_strategy
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {list(STRATEGIES)}")
    if name == "auto":
        if os.environ.get("TF_CONFIG"):
            role = describe_tf_config(os.environ["TF_CONFIG"])
            _say(
                f"strategy auto: MultiWorkerMirroredStrategy, because TF_CONFIG names "
                f"{role['workers']} workers; this is {role['task_type']} {role['task_index']}"
                f" ({'the chief, writing the run dir' if role['chief'] else 'not the chief'})"
            )
            if _multi_worker_strategy is None:
                try:
                    _multi_worker_strategy = _join_cluster(os.environ["TF_CONFIG"], role)
                except RuntimeError as err:
                    raise RuntimeError(
                        f"{err}. TensorFlow already ran an op in this process: create the "
                        "strategy first, in a fresh process (python -m resvae_keras train "
                        "does), before loading data or setting seeds."
                    ) from err
            return _multi_worker_strategy
        # physical, not logical, devices: listing logical ones would start TensorFlow's
        # runtime and rule out a multi-worker strategy later in this process
        gpus = len(tf.config.list_physical_devices("GPU"))
        if gpus > 1:
            _say(f"strategy auto: MirroredStrategy over {gpus} GPUs (TF_CONFIG is not set)")
            return tf.distribute.MirroredStrategy()
        _say(f"strategy auto: the default strategy (one device), because TF_CONFIG is not "
             f"set and {gpus} GPU{'' if gpus == 1 else 's'} {'is' if gpus == 1 else 'are'} "
             "visible")
        return tf.distribute.get_strategy()
    if os.environ.get("TF_CONFIG"):
        _say(f"strategy {name}: TF_CONFIG is set but ignored; this process trains alone "
             "(use strategy 'auto' to train with the cluster)")
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def cluster_timeout_s() -> float:
    """Seconds a worker waits for the rest of its cluster: ``RESVAE_CLUSTER_TIMEOUT``, else
    ``CLUSTER_TIMEOUT_S``."""
    text = os.environ.get("RESVAE_CLUSTER_TIMEOUT", "")
    try:
        seconds = float(text) if text else CLUSTER_TIMEOUT_S
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(f"RESVAE_CLUSTER_TIMEOUT={text!r} is no positive number of seconds")
    return seconds


# Run in its own process: while TensorFlow waits for the cluster it holds the GIL, so no
# Python thread of the waiting process runs. EOF on stdin (joined, or the worker ended):
# nothing to do. The waiting process ends itself (faulthandler's C thread, exit status 1)
# a little later; SIGKILL is the last resort.
_WATCHDOG = """
import os, select, signal, sys, time
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
if not select.select([sys.stdin], [], [], timeout)[0]:
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    if not select.select([sys.stdin], [], [], 30)[0]:
        os.kill(parent, signal.SIGKILL)
"""


def _join_cluster(tf_config: str, role: dict):
    """``MultiWorkerMirroredStrategy()``, which waits until every task of ``TF_CONFIG`` has
    started, with no limit, ignoring SIGTERM meanwhile. A watchdog process ends this one
    with a message when the cluster has not come up within ``cluster_timeout_s()``: a
    worker whose peer crashed or was never started stops instead of hanging."""
    import subprocess

    import tensorflow as tf

    timeout = cluster_timeout_s()
    addresses = ", ".join(a for tasks in json.loads(tf_config)["cluster"].values() for a in tasks)
    message = (f"{role['task_type']} {role['task_index']}: the cluster of TF_CONFIG ({addresses}) "
               f"did not come up within {timeout:g} s; start every task it names with the same "
               "cluster, or set RESVAE_CLUSTER_TIMEOUT (seconds) to wait longer. Stopped.")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout),
                                 message], stdin=subprocess.PIPE)
    # exit status 1 (an error), not 137: faulthandler's timer thread needs no GIL
    silent = open(os.devnull, "w")  # noqa: SIM115  (closed below)
    faulthandler.dump_traceback_later(timeout + 2, exit=True, file=silent)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        faulthandler.cancel_dump_traceback_later()
        silent.close()
        watchdog.stdin.close()
        watchdog.wait()


def _say(message):
    print(message, file=sys.stderr, flush=True)


def worker_dir(run_dir, role):
    """The temporary folder where a worker other than the chief writes its run files.

    Its name is fixed by the run dir and the task, so a worker restarted after a kill
    finds its ``backup/`` again; ``train`` removes it once the run completes.
    """
    run_dir = Path(run_dir).resolve()
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]
    name = f"resvae-{run_dir.name}-{digest}-{role['task_type']}{role['task_index']}"
    return Path(tempfile.gettempdir()) / name


def _from_every_worker(strategy, role, values):
    """``values`` (a few numbers) of every worker, one row per worker in task order (the
    chief first); also a barrier. One all-reduce: each worker fills its own row."""
    import tensorflow as tf

    rows = np.zeros((role["workers"], len(values)), "float64")
    rows[role["rank"]] = values
    per_worker = strategy.num_replicas_in_sync // role["workers"]
    total = strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(rows)), axis=None
    )
    return (keras.ops.convert_to_numpy(total) / per_worker).round().astype(int)


_STARTS = ("start afresh", "restore its backup", "continue from last.keras")


def _check_same_start(strategy, role, start, epoch, run_dir):
    """Raise ``WorkerStateError`` unless every worker starts the same way (``_STARTS[start]``)
    at the same epoch: they must create and restore the model in step."""
    rows = _from_every_worker(strategy, role, (start, epoch))
    if len({tuple(row) for row in rows}) > 1:
        found = "; ".join(f"worker {rank}: {_STARTS[s]} at epoch {e}"
                          for rank, (s, e) in enumerate(rows))
        raise WorkerStateError(
            f"the workers would not start in step ({found}; the chief first). This happens when "
            "a worker was killed while it wrote its end-of-epoch files, or lost its temporary "
            f"folder. Remove every backup (the chief's {run_dir / 'backup'} and the other "
            f"workers' {Path(tempfile.gettempdir()) / 'resvae-*'} folders) and run again: the "
            "run continues from the chief's last.keras where every worker sees the chief's run "
            "dir (one machine, a shared folder or a copy), and starts over otherwise."
        )


def _scalar_results_with_a_batch_axis(model):
    """Work around Keras 3 under several workers: it averages a step's per-replica results
    with ``strategy.reduce(MEAN, axis=0)``, which fails on scalar metrics ("Invalid
    reduction dimension 0", tensorflow/tensorflow#72388). With a leading axis of one
    that reduction is the plain mean over the replicas. The saved model is unchanged."""
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def with_axis(data, step=step):
            return {key: keras.ops.reshape(value, (1,)) for key, value in step(data).items()}

        setattr(model, name, with_axis)


def shard_by_data(dataset):
    """``dataset`` with AutoShardPolicy.DATA: under MultiWorkerMirroredStrategy every worker
    runs the same (same-seed) pipeline of global batches and keeps its own slice of each.
    No effect with one worker."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


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
    from resvae_keras.model import nonfinite_weights

    return bool(np.isfinite((logs or {}).get("loss", 0.0))) and not nonfinite_weights(model)


def _state_bytes(model) -> int:
    """About the bytes a checkpoint of ``model`` takes: weights, optimizer state, 1 MiB slack."""
    variables = list(model.weights) + list(getattr(model.optimizer, "variables", []))
    return sum(int(np.prod(v.shape)) * 4 for v in variables) + 2**20


def save_model(model, path):
    """``model.save(path)`` through a temporary file beside ``path``, after a free-space
    check: ``path`` always holds either its old content or the complete new model."""
    path = Path(path)
    check_free_space(path.parent, _state_bytes(model), f"saving {path.name}")
    try:
        with atomic_write(path) as tmp:
            model.save(tmp)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), display_path(path)) from error


class Checkpoints(keras.callbacks.Callback):
    """After each epoch: ``last.keras``, and ``model.keras`` when ``monitor`` improved on ``best``.

    Epochs whose loss or weights are not finite are not saved. ``last_epoch`` is the last
    epoch saved in this ``fit`` (``None`` when none was) and ``first_epoch`` the first one run.
    """

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
    """``BackupAndRestore`` that writes atomically after a free-space check, skips
    non-finite epochs, and sets ``learning_rate`` after restoring (it may have changed)."""

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
            raise OSError(error.errno, error.strerror or str(error), display_path(folder)) from error


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


GRID_ROWS = ("validation", "reconstruction", "prior sample")


class SaveGrids(keras.callbacks.Callback):
    """After each epoch, saves validation faces, their reconstructions and prior samples
    (the rows ``GRID_ROWS``) with ``save_grid``: ``epoch_NNN.png`` and ``epoch_NNN.npz``."""

    def __init__(self, images, out_dir, every=1, seed=0):
        super().__init__()
        self.images = np.asarray(images, dtype="float32")
        self.out_dir = Path(out_dir)
        self.every = max(1, int(every))
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every or not finite_epoch(self.model, logs):
            return
        rows = [
            self.images,
            self.model.reconstruct(self.images),
            self.model.sample(len(self.images), seed=self.seed),
        ]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        save_grid(np.stack(rows), self.out_dir / f"epoch_{epoch + 1:03d}.png")


def save_grid(grid, path):
    """Save ``grid`` float [0, 1] of shape (rows, cols, H, W, 3) twice: tiled into one PNG
    at ``path`` (to look at) and as the uint8 array ``grid`` in ``path`` with suffix .npz
    (for ``load_grid`` and ``plots.image_grid``)."""
    from PIL import Image

    grid = to_uint8(grid)
    rows, cols, h, w, c = grid.shape
    with atomic_write(path) as tmp:
        Image.fromarray(grid.transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)).save(
            tmp, format="PNG")
    with atomic_write(Path(path).with_suffix(".npz")) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, grid=grid)


def load_grid(run_dir, epoch: int | None = None) -> tuple[np.ndarray, int]:
    """The grid ``SaveGrids`` saved after ``epoch`` (1-based; default: the last one saved).

    Returns:
        ``(grid, epoch)``: float32 in [0, 1], shape (rows, cols, H, W, 3) with the rows
        ``GRID_ROWS``, and the epoch it was saved after.
    """
    from PIL import Image

    from resvae_keras.data.images import as_float_images

    grids = Path(run_dir) / "grids"
    saved = sorted(grids.glob("epoch_*.png"))
    if not saved:
        raise FileNotFoundError(f"{grids} holds no epoch_NNN grid: train the run first")
    png = saved[-1] if epoch is None else grids / f"epoch_{int(epoch):03d}.png"
    if png.with_suffix(".npz").is_file():
        with np.load(png.with_suffix(".npz")) as stored:
            grid = stored["grid"]
    else:  # a run saved before the arrays were: cut the tiled PNG back into its tiles
        tiled = np.asarray(Image.open(png).convert("RGB"))
        side = tiled.shape[0] // len(GRID_ROWS)
        grid = tiled.reshape(len(GRID_ROWS), side, -1, side, 3).transpose(0, 2, 1, 3, 4)
    shape = grid.shape
    return as_float_images(grid.reshape(-1, *shape[2:])).reshape(shape), int(png.stem[6:])


def prepare_data(config):
    """``data.load_cache(config)``, one process at a time on this machine.

    Workers started together on one machine share the data and cache folders: the
    first builds them, the others wait for it and reuse them (an exclusive lock on
    ``<cache_dir>/.prepare.lock``; no lock where ``fcntl`` is missing). Runs no
    TensorFlow op.
    """
    lock_path = config.cache_path / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return data.load_cache(config)


OPTIMIZERS = ("adam", "adamw")
LR_SCHEDULES = ("constant", "cosine")


def learning_rate(config, steps_per_epoch: int = 1):
    """The optimizer's learning rate: ``config.learning_rate`` (``lr_schedule="constant"``),
    or a linear warm-up from 0 over ``lr_warmup_steps`` to it and a cosine decay to 0 at step
    ``epochs * steps_per_epoch`` (``"cosine"``: large steps early, small ones to settle)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    total = max(int(steps_per_epoch) * config.epochs, 2)
    warmup = min(int(config.lr_warmup_steps), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=config.learning_rate, warmup_steps=warmup
    )


def compile_model(model, config, steps_per_epoch: int = 1):
    """Compile ``model`` with ``config.optimizer`` at ``learning_rate(config, steps_per_epoch)``
    and create the optimizer's slots now: created inside the first traced train step instead,
    they make TensorFlow trace that step twice (a few seconds per run on a CPU).

    AdamW decays the kernels only: not the biases, the normalization scales or the decoder's
    log sigma, whose decay would pull sigma towards 1 and weaken the likelihood."""
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
    """Raise ``ValueError`` naming the first setting of ``config`` that cannot work.

    ``train`` calls it before it reads data or writes anything.
    """
    from resvae_keras.model import (
        ARCHITECTURES,
        KINDS,
        RECONSTRUCTION_LIKELIHOODS,
        _check_architecture,
    )

    def fail(name, expected):
        raise ValueError(
            f"{name}={getattr(config, name)!r} ({option_name(name)}): expected {expected}"
        )

    counts = ["epochs", "batch_size", "latent_dim", "image_size", "grid_every"]
    for name in counts + (["max_images"] if config.max_images is not None else []):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            fail(name, "a positive integer")
    if not (isinstance(config.kl_warmup_steps, (int, np.integer)) and config.kl_warmup_steps >= 0):
        fail("kl_warmup_steps", "an integer >= 0")
    if not (isinstance(config.two_stage_epochs, (int, np.integer))
            and config.two_stage_epochs >= 0):
        fail("two_stage_epochs", "an integer >= 0 (0: no second stage)")
    if isinstance(config.seed, bool) or not isinstance(config.seed, (int, np.integer)) or not (
            0 <= config.seed < 2**32):
        fail("seed", "an integer in [0, 4294967295]")
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        fail("learning_rate", "a positive number, e.g. 0.001")
    if not (math.isfinite(config.beta) and config.beta >= 0):
        fail("beta", "a number >= 0")
    if not 0 <= config.sigma_min < 1:
        fail("sigma_min", "a number in [0, 1) (0: no floor)")
    if not (isinstance(config.lr_warmup_steps, (int, np.integer)) and config.lr_warmup_steps >= 0):
        fail("lr_warmup_steps", "an integer >= 0")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        fail("weight_decay", "a number >= 0")
    choices = {"kind": KINDS, "likelihood": tuple(RECONSTRUCTION_LIKELIHOODS),
               "architecture": ARCHITECTURES, "strategy": STRATEGIES,
               "mixed_precision": PRECISIONS, "optimizer": OPTIMIZERS,
               "lr_schedule": LR_SCHEDULES, "flip": (True, False)}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            fail(name, f"one of {list(allowed)}")
    _check_architecture(config.image_size, config.widths, config.blocks_per_stage,
                        config.latent_dim)


def has_trained_state(run_dir) -> bool:
    """True when ``run_dir`` holds anything a re-run would continue from."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in ("model.keras", "last.keras", "backup")) or (
        not load_history(run_dir).empty
    )


def changed_settings(saved: Config, asked: Config) -> list[str]:
    """Config fields in which ``asked`` differs from the run's ``saved`` one, other than
    ``CONTINUABLE``; paths are compared after resolving them."""
    changed = []
    for name, value in saved.to_dict().items():
        if name in CONTINUABLE:
            continue
        new = getattr(asked, name)
        if name == "data_dir":
            value, new = (saved.resolve(value) if value else None), (asked.resolve(new) if new else None)
        elif name == "widths":
            value, new = tuple(value), tuple(new)
        if value != new:
            changed.append(name)
    return changed


def _option_value(config: Config, name: str):
    """The value of ``name``'s command-line option: ``--plain`` is ``not residual``."""
    return not config.residual if name == "residual" else getattr(config, name)


def _settings_message(run_dir: Path, saved: Config, asked: Config, changed: list[str]) -> str:
    shown = display_path(run_dir)
    lines = [f"{shown} holds a run trained with other settings; it was not changed:"]
    lines += [f"  {option_name(n)}: {_option_value(saved, n)!r} in the run, "
              f"{_option_value(asked, n)!r} now" for n in changed]
    suffix = 2
    while run_dir.with_name(f"{run_dir.name}-{suffix}").exists():
        suffix += 1
    new_dir = str(Path(asked.run_dir or f"runs/{asked.profile}").with_name(f"{run_dir.name}-{suffix}"))
    lines += [
        "To continue it, drop those options (a run may change only --epochs and "
        "--learning-rate). To train these settings, start a new run in another folder:",
        f"  {asked.train_command(run_dir=new_dir)}",
        f"or delete {shown} to start it over.",
    ]
    return "\n".join(lines)


def _best_model(run_dir):
    """``model.keras`` of a run (``last.keras`` if no epoch improved the monitored loss)."""
    from resvae_keras.model import load_model

    path = Path(run_dir) / "model.keras"
    return load_model(path if path.exists() else Path(run_dir) / "last.keras")


def _diverged_message(config: Config, where, kept_epochs: int) -> str:
    epoch, batch, loss = where
    shown = display_path(config.run_path)
    lower = float(f"{config.learning_rate / 2:.2g}")
    if kept_epochs:
        kept = (f"{shown} keeps its last good state: last.keras after epoch {kept_epochs} "
                "and the best model.keras. Re-run with a lower learning_rate to continue from "
                "there:")
    else:
        kept = "No epoch had finished, so nothing was saved. Re-run with a lower learning_rate:"
    return "\n".join([
        f"training diverged: the loss became {loss} in epoch {epoch + 1}, batch {batch}; "
        "nothing of that epoch was saved.",
        kept,
        f"  {config.train_command(learning_rate=lower)}",
        "If it diverges again, start a new run with a KL warm-up (--kl-warmup-steps 500), "
        "--likelihood gaussian or --mixed-precision float32, in another folder "
        "(--run-dir), and check the data for NaNs.",
    ])


def train(config: Config, verbose="auto", callbacks=(), strategy=None, second_stage=True):
    """Train ``config`` into ``config.run_path``; returns ``(model, history DataFrame)``.

    The best model by validation negative ELBO (``val_neg_elbo``; ``val_loss`` for the
    autoencoder) is ``model.keras`` in the run dir. Raises, before anything is written,
    ``ValueError`` for a setting that cannot work (``check_config``, a batch larger than
    the training split) and ``RunSettingsError`` when the run dir holds a run with other
    settings; ``TrainingDivergedError`` when the loss becomes NaN (the last good epoch
    is kept); ``OSError`` when a file cannot be written (e.g. ``DiskFullError``).
    Runs under ``config.mixed_precision`` and restores the previous dtype policy afterwards.

    ``strategy``: a ``tf.distribute`` strategy, or ``None`` for ``make_strategy(config.strategy)``.
    ``second_stage``: afterwards fit the second-stage VAE on ``model.keras``'s codes (when
    ``config.two_stage_epochs > 0``); the study passes False, as it evaluates ``last.keras``,
    whose own second stage the evaluation fits.
    The order matters for several workers (``TF_CONFIG``): the data first (no TensorFlow op
    runs there, and its decoding processes fork before the strategy's network threads
    exist), then the strategy, then everything else. ``config.batch_size`` is the batch of
    one worker: each step trains on a global batch of ``batch_size * workers`` images,
    sharded by ``shard_by_data``. Only the chief writes the run dir.
    """
    with precision(config.mixed_precision):
        return _train(config, verbose, callbacks, strategy, second_stage)


def _train(config: Config, verbose, callbacks, strategy, second_stage):
    check_config(config)
    run_dir = config.run_path
    second_stage = second_stage and config.two_stage_epochs > 0  # fitted on model.keras after
    if (run_dir / "config.json").is_file() and has_trained_state(run_dir):
        saved = Config.load(run_dir / "config.json")
        changed = changed_settings(saved, config)
        if changed:
            raise RunSettingsError(_settings_message(run_dir, saved, config, changed))

    cache = prepare_data(config)
    if strategy is None:
        strategy = make_strategy(config.strategy)
    role = worker_role(strategy)
    keras.utils.set_random_seed(config.seed)
    # Only the chief writes the run dir. Any other worker writes the same files (its
    # callbacks run in step with the chief's) into a temporary folder of its own.
    out_dir = run_dir if role["chief"] else worker_dir(run_dir, role)
    n_train = len(cache.split_indices("train"))
    global_batch = config.batch_size * role["workers"]
    if n_train < global_batch:
        workers = f" x {role['workers']} workers" if role["workers"] > 1 else ""
        raise ValueError(
            f"batch_size={config.batch_size}{workers} (--batch-size) is larger than the "
            f"{n_train} training images, so not one full batch exists and nothing would be "
            f"trained; use --batch-size {n_train // role['workers']} or less, or more images "
            "(--max-images)"
        )
    train_ds = data.make_dataset(cache, "train", global_batch, shuffle=True, seed=config.seed,
                                 drop_remainder=True, flip=config.flip)
    val_ds = data.make_dataset(cache, "val", global_batch, shuffle=False)
    train_ds, val_ds = shard_by_data(train_ds), shard_by_data(val_ds)
    val_images = data.as_float_images(cache.images_of("val")[:8])
    with run_lock(out_dir):
        return _train_locked(config, verbose, callbacks, strategy, second_stage, cache, role,
                             out_dir, (train_ds, val_ds, val_images), n_train // global_batch)


def _train_locked(config: Config, verbose, callbacks, strategy, second_stage, cache, role,
                  out_dir, datasets, steps_per_epoch):
    """``_train`` once the run dir is locked: resume or start, fit, save."""
    from resvae_keras.model import build_model, load_model

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
        _check_same_start(strategy, role, start, epoch, run_dir)
    with strategy.scope():
        if continued:
            # A finished run asked for more epochs: continue with the optimizer state.
            model = load_model(state_dir / "last.keras")
            if config.lr_schedule == "constant":
                model.optimizer.learning_rate = config.learning_rate
            initial_epoch = len(history)
        else:
            model = compile_model(build_model(config), config, steps_per_epoch)
            initial_epoch = 0  # BackupAndRestore moves it to the last completed epoch
            if not interrupted:
                (out_dir / "history.csv").unlink(missing_ok=True)
                history = history.iloc[0:0]
    if role["workers"] > 1:
        _scalar_results_with_a_batch_axis(model)
    if initial_epoch >= config.epochs:
        print(f"{run_dir.name}: already trained for {initial_epoch} epochs; nothing to do.")
        model = _best_model(state_dir)
        if not role["chief"]:
            shutil.rmtree(out_dir, ignore_errors=True)
        elif second_stage and not two_stage_is_current(run_dir):
            model = _second_stage(config, model, cache, verbose)
        return model, history
    config.save(out_dir / "config.json")
    if not (len(history) or interrupted) or not (out_dir / SPLIT_FILE).exists():
        record_split(out_dir, cache, fresh=not (len(history) or interrupted))
    return _fit(config, verbose, callbacks, role, second_stage, cache, out_dir, model, history,
                datasets, initial_epoch)


def _fit(config: Config, verbose, callbacks, role, second_stage, cache, out_dir, model, history,
         datasets, initial_epoch):
    """``model.fit`` with the run's callbacks from ``initial_epoch``; then the best model
    (and its second stage). Raises ``TrainingDivergedError`` when the loss became NaN."""
    train_ds, val_ds, val_images = datasets
    backup = out_dir / "backup"
    monitor = "val_loss" if config.kind == "ae" else "val_neg_elbo"
    best = float(history[monitor].min()) if monitor in history and len(history) else math.inf
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
        Backup(backup, config.learning_rate if config.lr_schedule == "constant" else None),
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
    try:
        if nan_stop.where:
            # history.csv keeps only the epochs whose state was saved
            saved_until = (checkpoints.last_epoch + 1 if checkpoints.last_epoch is not None
                           else checkpoints.first_epoch or 0)
            history = load_history(out_dir)
            history = history[history["epoch"] < saved_until] if len(history) else history
            if len(history):
                with atomic_write(out_dir / "history.csv") as tmp:
                    history.to_csv(tmp, index=False)
            else:
                (out_dir / "history.csv").unlink(missing_ok=True)
            raise TrainingDivergedError(_diverged_message(config, nan_stop.where, len(history)))
        model = _best_model(out_dir)
        if role["chief"] and second_stage and not two_stage_is_current(config.run_path):
            model = _second_stage(config, model, cache, verbose)
        return model, load_history(out_dir)
    finally:
        if not role["chief"]:
            shutil.rmtree(out_dir, ignore_errors=True)  # the chief's run dir has the run


# The second stage's fit needs this many training codes (one batch of its default size
# would do, but a handful of codes gives a degenerate fit of no use to anyone).
MIN_SECOND_STAGE_CODES = 8


def _second_stage(config: Config, model, cache, verbose):
    """Fit the run's second stage after training, or say why it is skipped; returns ``model``."""
    n_train = len(cache.split_indices("train"))
    if n_train < MIN_SECOND_STAGE_CODES:
        _say(f"second stage skipped: {n_train} training images are too few to fit it (it needs "
             f"{MIN_SECOND_STAGE_CODES} or more; --max-images). The run itself is saved; "
             "sample with --sampler prior.")
        return model
    two_stage_sampler(config, model, cache, verbose=bool(verbose))
    return model


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
    ``config.two_stage_epochs`` (0, "not after training", means the sampler's default) on the
    posteriors of the training split under ``checkpoint``'s encoder, saved there (with
    ``two_stage_history.csv``), and returned.
    ``model`` and ``cache`` are loaded when not given.
    """
    from resvae_keras import data
    from resvae_keras.latent import TwoStageSampler, encode_dataset
    from resvae_keras.model import DamagedModelFileError

    run_dir = config.run_path
    path = two_stage_path(run_dir, checkpoint)
    if two_stage_is_current(run_dir, checkpoint):
        try:
            return TwoStageSampler.load(path)
        except DamagedModelFileError as error:  # NaN weights are refused, not refitted
            _say(f"{display_path(path)} is damaged ({type(error).__name__}); fitting the "
                 "second stage again")
            path.unlink()
    if model is None:
        model = (_best_model(run_dir) if checkpoint == "model.keras"
                 else resvae_keras.model.load_model(run_dir / checkpoint))
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
    deterministic = getattr(model, "kind", "vae") == "ae"
    sampler = TwoStageSampler(epochs=epochs, seed=config.seed)
    sampler.fit(z_mean, None if deterministic else z_log_var)
    save_model(sampler.vae_, path)
    with atomic_write(path.with_name(path.stem + "_history.csv")) as tmp:
        sampler.history_.to_csv(tmp, index_label="epoch")
    if verbose:
        print(f"{path.name}: fitted in {time.perf_counter() - start:.0f} s, "
              f"gamma {sampler.vae_.gamma:.3f} (standard units of z)", flush=True)
    return sampler


def log_verbosity() -> str | int:
    """Keras' ``verbose`` for a notebook: ``"auto"`` (a live progress bar) in JupyterLab or a
    terminal; 2 (one line per epoch) under nbconvert, nbval or a pipe, whose saved output a
    progress bar would fill with thousands of backspaces."""
    interactive = os.environ.get("JPY_SESSION_NAME") or sys.stdout.isatty()
    return "auto" if interactive else 2


def load_or_train(config: Config):
    """The run's best model, training it first when ``model.keras`` is missing."""
    from resvae_keras.model import load_model

    path = config.run_path / "model.keras"
    if not path.exists() or (config.run_path / "backup").exists():
        return train(config, verbose=log_verbosity())[0]
    return load_model(path)
