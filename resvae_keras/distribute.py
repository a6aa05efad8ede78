"""Training one model on several workers (``TF_CONFIG``, strategy ``auto``); see
docs/distributed.md. Each piece is here for one fault of several workers, named above it;
with one process each is the plain default or does nothing.
"""

from __future__ import annotations

import faulthandler
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

from resvae_keras import data

try:
    import fcntl
except ImportError:  # Windows: no lock; start the workers one after another there
    fcntl = None

STRATEGIES = ("none", "mirrored", "auto")
CLUSTER_TIMEOUT_S = 300.0  # how long a worker waits for its peers to start (RESVAE_CLUSTER_TIMEOUT)
_HELP = 'see "Training on several machines" in docs/distributed.md for an example'


class WorkerStateError(ValueError):
    """The workers of a multi-worker run would not start from the same saved state."""


# Fault: workers started together on one machine would build the same cache folder at once.
def prepare_data(config):
    """``data.load_cache(config)`` under a lock on ``<cache_dir>/.prepare.lock``."""
    lock_path = config.cache_path / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        return data.load_cache(config)


# Fault: a malformed TF_CONFIG fails deep inside TensorFlow; this says what is wrong.
def describe_tf_config(text):
    """This task's role in a ``TF_CONFIG`` JSON string: ``workers``, ``task_type``,
    ``task_index``, ``rank`` (the chief first) and ``chief`` (the task writing the run dir)."""
    try:
        tf_config = json.loads(text)
        cluster, task = tf_config["cluster"], tf_config["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(
            f"TF_CONFIG={text!r} is not a JSON object with 'cluster' and 'task' "
            f"{{'type', 'index'}} ({err}); {_HELP}"
        ) from None
    if task_type not in ("chief", "worker"):
        raise ValueError(f"TF_CONFIG task type {task_type!r}: only 'chief' and 'worker' "
                         f"tasks train; {_HELP}")
    if not 0 <= task_index < len(cluster.get(task_type, [])):
        raise ValueError(f"TF_CONFIG task {task_type} {task_index} is not in its cluster "
                         f"{cluster}; {_HELP}")
    return _role(cluster, task_type, task_index)


def _role(cluster, task_type, task_index):
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
    """``describe_tf_config``'s dict for this process; without a cluster, a chief of one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster:
        return _role({}, "chief", 0)
    return _role(cluster, resolver.task_type, resolver.task_id)


_multi_worker_strategy = None  # one per process: collectives are configured once, at startup


def make_strategy(name="none"):
    """A ``tf.distribute`` strategy, made before any other TensorFlow op runs. ``"auto"``:
    multi-worker with ``TF_CONFIG``, else mirrored over several GPUs, else the default."""
    import tensorflow as tf

    global _multi_worker_strategy
    if name not in STRATEGIES:
        raise ValueError(f"strategy={name!r} is not one of {list(STRATEGIES)}")
    tf_config = os.environ.get("TF_CONFIG") if name == "auto" else None
    if tf_config:
        role = describe_tf_config(tf_config)
        print(f"strategy auto: MultiWorkerMirroredStrategy, because TF_CONFIG names "
              f"{role['workers']} workers; this is {role['task_type']} {role['task_index']}"
              f" ({'the chief, writing the run dir' if role['chief'] else 'not the chief'})",
              file=sys.stderr, flush=True)
        if _multi_worker_strategy is None:
            try:
                _multi_worker_strategy = _join_cluster(tf_config, role)
            # Fault: TensorFlow refuses to configure its collective ops once any op has run.
            except RuntimeError as err:
                raise RuntimeError(
                    f"{err}. TensorFlow already ran an op in this process: create the strategy "
                    "first, in a fresh process (python -m resvae_keras train does), before "
                    "loading data or setting seeds."
                ) from err
        return _multi_worker_strategy
    if name == "auto":
        # physical, not logical, devices: listing logical ones would start TensorFlow's
        # runtime and rule out a multi-worker strategy later in this process
        gpus = len(tf.config.list_physical_devices("GPU"))
        if gpus > 1:
            print(f"strategy auto: MirroredStrategy over {gpus} GPUs (TF_CONFIG is not set)",
                  file=sys.stderr, flush=True)
            return tf.distribute.MirroredStrategy()
        print(f"strategy auto: the default strategy (one device), because TF_CONFIG is not "
              f"set and {gpus} GPU{'' if gpus == 1 else 's'} {'is' if gpus == 1 else 'are'} "
              "visible", file=sys.stderr, flush=True)
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def cluster_timeout_s() -> float:
    """``RESVAE_CLUSTER_TIMEOUT`` seconds, else ``CLUSTER_TIMEOUT_S``."""
    text = os.environ.get("RESVAE_CLUSTER_TIMEOUT", "")
    try:
        seconds = float(text) if text else CLUSTER_TIMEOUT_S
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(f"RESVAE_CLUSTER_TIMEOUT={text!r} is no positive number of seconds")
    return seconds


# Fault: a worker whose peer never started waited forever, holding the GIL and ignoring
# Ctrl-C and SIGTERM; so a watchdog process prints the message, and SIGKILL is the last resort.
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
    """``MultiWorkerMirroredStrategy()``, stopped after ``cluster_timeout_s()`` waiting."""
    import tensorflow as tf

    timeout = cluster_timeout_s()
    addresses = ", ".join(a for tasks in json.loads(tf_config)["cluster"].values() for a in tasks)
    message = (f"{role['task_type']} {role['task_index']}: the cluster of TF_CONFIG ({addresses}) "
               f"did not come up within {timeout:g} s; start every task it names with the same "
               "cluster, or set RESVAE_CLUSTER_TIMEOUT (seconds) to wait longer. Stopped.")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(timeout),
                                 message], stdin=subprocess.PIPE)
    # exit status 1 (an error), not 137: faulthandler's timer thread needs no GIL
    with open(os.devnull, "w") as silent:
        faulthandler.dump_traceback_later(timeout + 2, exit=True, file=silent)
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        finally:
            faulthandler.cancel_dump_traceback_later()
            watchdog.stdin.close()
            watchdog.wait()


# Fault: every worker runs the same callbacks, so all of them would write the chief's run dir.
def worker_dir(run_dir, role):
    """A worker's own temporary run folder, named by run dir and task so that a restarted
    worker finds its ``backup/`` again."""
    run_dir = Path(run_dir).resolve()
    digest = hashlib.sha1(str(run_dir).encode()).hexdigest()[:8]
    name = f"resvae-{run_dir.name}-{digest}-{role['task_type']}{role['task_index']}"
    return Path(tempfile.gettempdir()) / name


# Fault: a worker killed while it wrote its end-of-epoch files restored another epoch than
# its peers, and the run then failed in a collective op with no word on why.
def check_same_start(strategy, role, start, epoch, run_dir):
    """Raise ``WorkerStateError`` unless every worker starts the same way (``start``: 0 afresh,
    1 from its backup, 2 from last.keras) at the same epoch; one all-reduce, so also a barrier."""
    import tensorflow as tf

    starts = ("start afresh", "restore its backup", "continue from last.keras")

    rows = np.zeros((role["workers"], 2), "float64")
    rows[role["rank"]] = (start, epoch)
    per_worker = strategy.num_replicas_in_sync // role["workers"]
    total = strategy.reduce(
        tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(rows)), axis=None
    )
    rows = (keras.ops.convert_to_numpy(total) / per_worker).round().astype(int)
    if len({tuple(row) for row in rows}) > 1:
        found = "; ".join(f"worker {rank}: {starts[s]} at epoch {e}"
                          for rank, (s, e) in enumerate(rows))
        raise WorkerStateError(
            f"the workers would not start in step ({found}; the chief first). This happens when "
            "a worker was killed while it wrote its end-of-epoch files, or lost its temporary "
            f"folder. Remove every backup (the chief's {run_dir / 'backup'} and the other "
            f"workers' {Path(tempfile.gettempdir()) / 'resvae-*'} folders) and run again: the "
            "run continues from the chief's last.keras where every worker sees the chief's run "
            "dir (one machine, a shared folder or a copy), and starts over otherwise."
        )


# Fault: under several workers Keras 3 averages a step's per-replica results with
# strategy.reduce(MEAN, axis=0), which fails on scalar metrics ("Invalid reduction
# dimension 0", tensorflow/tensorflow#72388).
def give_scalar_results_a_batch_axis(model):
    """Reshape every result of ``model``'s train and test steps to shape (1,)."""
    for name in ("train_step", "test_step"):
        step = getattr(model, name)

        def with_axis(batch, step=step):
            return {key: keras.ops.reshape(value, (1,)) for key, value in step(batch).items()}

        setattr(model, name, with_axis)
