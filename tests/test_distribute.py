"""Several workers and several devices: ``resvae_keras.distribute``.

The slow tests start TensorFlow in subprocesses: two logical CPU devices in one, and two
workers of one cluster over localhost.
"""

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from resvae_keras.config import Config, get_profile
from resvae_keras.distribute import (
    CLUSTER_TIMEOUT_S,
    cluster_timeout_s,
    describe_tf_config,
    make_strategy,
    worker_dir,
)
from resvae_keras.train import load_history, train


def test_a_bad_strategy_name_is_refused():
    with pytest.raises(ValueError, match="strategy='tpu'"):
        make_strategy("tpu")


def test_two_logical_devices_give_the_single_device_loss():
    """One mirrored step on 2 logical CPUs matches the single-device loss and update.

    The deterministic autoencoder is used so that no sampling noise enters: each
    replica draws its own noise, so a VAE step differs by design, not by a bug. The
    same process checks that claim: the two replicas' ``Sampling`` draws differ (they
    were equal when both read the same seed state), while each step of the generator
    still moves both, and a VAE trains one mirrored step to a finite loss.
    """
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import keras
        from resvae_keras.model import ResVAE
        from resvae_keras.distribute import make_strategy

        x = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
        def one_step(strategy):
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model = ResVAE(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=4,
                               kind="ae")
                model.compile(optimizer=keras.optimizers.SGD(0.01))
            weights = np.load("weights.npy", allow_pickle=True) if init else None
            if weights is not None:
                model.set_weights(list(weights))
            ds = tf.data.Dataset.from_tensor_slices(x).batch(8)
            loss = model.fit(ds, epochs=1, verbose=0, shuffle=False).history["loss"][0]
            return loss, model.get_weights()
        init = False
        keras.utils.set_random_seed(0)
        ref = ResVAE(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=4, kind="ae")
        np.save("weights.npy", np.array(ref.get_weights(), dtype=object), allow_pickle=True)
        init = True
        single_loss, single_w = one_step(tf.distribute.get_strategy())
        strategy = make_strategy("mirrored")
        mirrored_loss, mirrored_w = one_step(strategy)
        diff = max(float(np.max(np.abs(a - b))) for a, b in zip(single_w, mirrored_w))
        from resvae_keras.layers import Sampling
        with strategy.scope():
            layer = Sampling(seed=0)
            vae = ResVAE(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=4)
            vae.compile(optimizer=keras.optimizers.SGD(0.01))
        zeros = tf.zeros((4, 3))
        draw = tf.function(lambda: strategy.run(lambda: layer([zeros, zeros])))
        first, second = ([v.numpy() for v in strategy.experimental_local_results(draw())]
                         for _ in range(2))
        vae_loss = vae.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1,
                           verbose=0).history["loss"][0]
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "single": single_loss,
                          "mirrored": mirrored_loss, "max_weight_diff": diff,
                          "replicas_draw_alike": bool(np.allclose(*first)),
                          "steps_draw_alike": bool(np.allclose(first[0], second[0])),
                          "vae_loss": vae_loss}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        cwd=pytest.importorskip("tempfile").mkdtemp(),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["mirrored"] == pytest.approx(result["single"], rel=1e-5)
    assert result["max_weight_diff"] < 1e-5
    assert not result["replicas_draw_alike"] and not result["steps_draw_alike"]
    assert math.isfinite(result["vae_loss"])


def _tf_config(task_type, index, cluster=None):
    cluster = cluster or {"worker": ["localhost:1", "localhost:2"]}
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_tf_config_names_the_chief_and_counts_the_workers():
    assert describe_tf_config(_tf_config("worker", 0)) == {
        "workers": 2, "task_type": "worker", "task_index": 0, "rank": 0, "chief": True
    }
    assert not describe_tf_config(_tf_config("worker", 1))["chief"]
    with_chief = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    assert describe_tf_config(_tf_config("chief", 0, with_chief))["chief"]
    second = describe_tf_config(_tf_config("worker", 1, with_chief))
    assert (second["workers"], second["rank"], second["chief"]) == (3, 2, False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a JSON object"),
        (json.dumps({"cluster": {"worker": ["a:1"]}}), "not a JSON object"),
        (_tf_config("worker", 2), "worker 2 is not in its cluster"),
        (_tf_config("evaluator", 0, {"worker": ["a:1"], "evaluator": ["b:1"]}), "only 'chief'"),
    ],
)
def test_bad_tf_config_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message) as err:
        describe_tf_config(text)
    assert "Training on several machines" in str(err.value)


def test_auto_strategy_says_what_it_chose_and_why(monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = make_strategy("auto")
    assert strategy.num_replicas_in_sync == 1  # no GPU on the test machine
    assert "strategy auto: the default strategy (one device), because TF_CONFIG is not set" in (
        capsys.readouterr().err
    )


def test_worker_dir_is_fixed_per_run_and_task_and_outside_the_run_dir(tmp_path):
    role = describe_tf_config(_tf_config("worker", 1))
    first = worker_dir(tmp_path / "run", role)
    assert first == worker_dir(tmp_path / "run", role)  # a restarted worker finds its backup
    assert first != worker_dir(tmp_path / "other", role)
    assert first != worker_dir(tmp_path / "run", describe_tf_config(_tf_config("worker", 0)))
    assert tmp_path / "run" not in first.parents


# The demo profile with 40 faces instead of 3000 (drawing them is most of the cost), then
# the command line exactly as a user runs it.
_CLI_WITH_40_DEMO_FACES = (
    "import resvae_keras.config as c; c._PROFILE_OVERRIDES['demo']['demo_images'] = 40; "
    "from resvae_keras.__main__ import main; main()"
)


def _free_localhost_ports(n):
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    except OSError as err:
        pytest.skip(f"sockets on localhost are unavailable here ({err}); two workers need them")
    finally:
        for sock in sockets:
            sock.close()


def test_a_worker_whose_peer_never_starts_exits_with_a_message(tmp_path):
    """TensorFlow waits for every worker of TF_CONFIG with no limit, holding the GIL and
    ignoring SIGTERM; the watchdog process of ``make_strategy`` ends the lone worker."""
    cluster = {"worker": [f"localhost:{port}" for port in _free_localhost_ports(2)]}
    env = {**os.environ, "RESVAE_HOME": str(tmp_path), "RESVAE_CLUSTER_TIMEOUT": "2",
           "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CLI_WITH_40_DEMO_FACES, "train", "--profile", "demo",
             "--strategy", "auto", "--run-dir", "runs/alone"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the lone worker still waited for its peer after 120 s")
    assert out.returncode == 1, out.stderr[-3000:]  # an error, not a kill (137)
    assert (f"worker 0: the cluster of TF_CONFIG ({', '.join(cluster['worker'])}) did not come "
            "up within 2 s") in out.stderr
    assert not (tmp_path / "runs" / "alone").exists()


def test_cluster_timeout_reads_the_environment(monkeypatch):
    monkeypatch.delenv("RESVAE_CLUSTER_TIMEOUT", raising=False)
    assert cluster_timeout_s() == CLUSTER_TIMEOUT_S
    monkeypatch.setenv("RESVAE_CLUSTER_TIMEOUT", "45")
    assert cluster_timeout_s() == 45.0
    for bad in ("soon", "0", "-1"):
        monkeypatch.setenv("RESVAE_CLUSTER_TIMEOUT", bad)
        with pytest.raises(ValueError, match="RESVAE_CLUSTER_TIMEOUT"):
            cluster_timeout_s()


def test_two_workers_over_loopback_train_like_one_process(tmp_path, monkeypatch):
    """Two worker processes (MultiWorkerMirroredStrategy over localhost) train one epoch.

    Both exit 0, only the chief writes its run dir, and the losses match this process
    training the same global batch (2 x 16) with the same seed: one step on 32 of 40 faces,
    so the validation loss checks the update the two workers agreed on. This process uses a
    one-device MirroredStrategy: Keras draws one batch to build a model made under any
    strategy, so such runs start one shuffle later than a run without one. The
    deterministic autoencoder keeps sampling noise out (each worker draws its own);
    the agreement is then float round-off, about 1e-6 relative, checked at 1e-4.
    """
    ports = _free_localhost_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # data, cache and runs land under tmp_path
    monkeypatch.delenv("TF_CONFIG", raising=False)
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
        ),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    # no second-stage sampler: only the chief would fit one, after training; the tiniest
    # model (one stage, no residual block), as most of the time goes to starting the
    # processes and tracing the steps
    settings = dict(kind="ae", image_size=32, max_images=40, epochs=1, seed=0, two_stage_epochs=0,
                    widths=(8,), blocks_per_stage=0, latent_dim=4)
    args = ["train", "--profile", "demo", "--kind", "ae", "--image-size", "32",
            "--max-images", "40", "--epochs", "1", "--seed", "0", "--two-stage-epochs", "0",
            "--widths", "8", "--blocks-per-stage", "0", "--latent-dim", "4",
            "--batch-size", "16", "--strategy", "auto", "--verbose", "0"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _CLI_WITH_40_DEMO_FACES, *args, "--run-dir", f"runs/mw{i}"],
            env={**env, "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}})},
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in (0, 1)
    ]
    try:
        single = train(
            get_profile("demo", demo_images=40, batch_size=32, strategy="mirrored",
                        run_dir=str(tmp_path / "runs" / "single"), **settings),
            verbose=0,
        )[1].iloc[0]
        outputs = [worker.communicate(timeout=300) for worker in workers]
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
        pytest.fail("the two workers did not finish in 300 s: "
                    + " | ".join(worker.communicate()[1][-1500:] for worker in workers))
    finally:
        for worker in workers:
            if worker.poll() is None:  # the reference run above failed
                worker.kill()
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, f"{worker.args[-1]} failed:\n{err[-3000:]}"
    assert "MultiWorkerMirroredStrategy, because TF_CONFIG names 2 workers" in outputs[0][1]
    assert "worker 1 done; the chief wrote the run dir" in outputs[1][0]

    chief = tmp_path / "runs" / "mw0"
    assert {"config.json", "split.json", "history.csv", "model.keras", "last.keras",
            "grids"} == {p.name for p in chief.iterdir()}
    assert not (tmp_path / "runs" / "mw1").exists()
    assert not list(temp.glob("resvae-*"))  # worker 1's temporary folder is removed
    assert Config.load(chief / "config.json").batch_size == 16  # per worker

    both = load_history(chief).iloc[0]
    assert math.isfinite(both["loss"]) and math.isfinite(both["val_loss"])
    assert both["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert both["val_loss"] == pytest.approx(single["val_loss"], rel=1e-4)
