"""Speed measurements: ``python -m resvae_keras bench data|train|eval`` and the study's
per-step times. Nothing reaches the network: random weights and images, temp folders.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import timeit
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from resvae_keras.config import Config, get_profile

CELEBA_TEST_IMAGES = 19_962


def _architecture(config: Config) -> str:
    size = config.image_size
    return (f"{size}x{size}, widths={list(config.widths)}, "
            f"blocks={config.blocks_per_stage}, latent={config.latent_dim}")


def data_speed(n: int = 2000, size: int = 64, batch_size: int = 64, workers: int | None = None,
               min_seconds: float = 2.0, progress: bool = False) -> dict:
    """Images per second of ``data.prepare`` (``preprocess_img_per_s``) on ``n`` demo JPEGs
    in a temp folder, and of the training pipeline on that cache for ``min_seconds``."""
    from resvae_keras import data

    with tempfile.TemporaryDirectory(prefix="resvae-bench-") as tmp:
        root = data.write_demo_dataset(Path(tmp) / "demo", n=n, seed=0, progress=progress)
        started = time.perf_counter()
        with warnings.catch_warnings(action="ignore", category=data.CelebaDataWarning):
            cache = data.prepare(
                root, size=size, cache_dir=Path(tmp) / "cache", progress=progress, workers=workers
            )
        preprocess_s = time.perf_counter() - started

        dataset = data.make_dataset(cache, "train", batch_size=batch_size, seed=0)
        for _ in dataset.take(2):  # build the pipeline and fill the prefetch buffer
            pass
        seen, started = 0, time.perf_counter()
        while time.perf_counter() - started < min_seconds:
            for images in dataset:
                seen += int(images.shape[0])
        pipeline_s = time.perf_counter() - started
        return {
            "n": n,
            "size": size,
            "batch_size": batch_size,
            "workers": cache.manifest["workers"],
            "preprocess_img_per_s": round(n / preprocess_s, 1),
            "pipeline_img_per_s": round(seen / pipeline_s, 1),
            "preprocess_s": round(preprocess_s, 2),
        }


def flops_per_image(model, training=False):
    """FLOPs for one image of ``model.elbo_terms`` (with ``training``, and its gradients),
    counted by TensorFlow's profiler."""
    import tensorflow as tf

    def cost(x):
        if not training:
            return model.elbo_terms(x)["loss"]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.elbo_terms(x, training=True)["loss"])
        return tape.gradient(loss, model.trainable_weights)

    spec = tf.TensorSpec((1, *model.image_shape), tf.float32)
    concrete = tf.function(cost).get_concrete_function(spec)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(
        graph=concrete.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
    )
    return int(profile.total_float_ops)


def training_speed(config: Config | None = None, batch_size=64, steps=20, warmup=3, repeats=3):
    """Training images/s of ``config``'s architecture (default ``celeba-subset``) on random
    images (median of ``repeats``), GFLOPs per image, and the ratio to the peak GFLOP/s of a
    float32 2048 x 2048 matmul (the roofline)."""
    import keras
    import tensorflow as tf

    from resvae_keras.model import build_model
    from resvae_keras.train import compile_model, precision

    config = config or get_profile("celeba-subset")
    with precision(config.mixed_precision):
        keras.utils.set_random_seed(0)
        model = compile_model(build_model(config), config)
        size = config.image_size
        images = np.random.default_rng(0).uniform(size=(batch_size, size, size, 3))
        ds = tf.data.Dataset.from_tensors(images.astype("float32")).repeat()
        model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
        times = timeit.repeat(lambda: model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0,
                                                shuffle=False), number=1, repeat=repeats)
        img_per_s = float(np.median([steps * batch_size / t for t in times]))
        forward = flops_per_image(model, training=False)
        training = flops_per_image(model, training=True)
        achieved = img_per_s * training / 1e9
        a, b = tf.random.normal((2048, 2048), seed=1), tf.random.normal((2048, 2048), seed=2)
        matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
        matmul(a, b).numpy()  # traced before it is timed
        times = timeit.repeat(lambda: matmul(a, b).numpy(), number=1, repeat=10)
        peak = 2 * 2048**3 / float(np.median(times)) / 1e9
    return {
        "architecture": _architecture(config),
        "precision": config.mixed_precision or "float32",
        "batch_size": batch_size,
        "params": int(model.count_params()),
        "img_per_s": img_per_s,
        "forward_gflops_per_image": forward / 1e9,
        "train_gflops_per_image": training / 1e9,
        "achieved_gflop_per_s": achieved,
        "matmul_peak_gflop_per_s": peak,
        "ratio_to_peak": achieved / peak,
    }


def alternating_step_time(configs: dict, batch_size: int | None = None, steps: int = 10,
                          rounds: int = 6, warmup: int = 3, seed: int = 0):
    """Seconds per training step of each of ``configs`` (``{name: Config}``) as a DataFrame
    by name: each round times ``steps`` steps of every model on one random batch, the order
    rotated by one per round so that changing load falls on every arm alike."""
    import keras
    import pandas as pd
    import tensorflow as tf

    from resvae_keras.model import build_model
    from resvae_keras.train import compile_model, precision

    if not configs:
        raise ValueError("configs is empty: pass {name: Config} for at least one architecture")
    first = next(iter(configs.values()))
    batch_size = int(batch_size or first.batch_size)
    models = {}
    for name, config in configs.items():
        with precision(config.mixed_precision):
            keras.utils.set_random_seed(seed)
            models[name] = compile_model(build_model(config), config)
    size = first.image_size
    images = tf.constant(
        np.random.default_rng(seed).uniform(size=(batch_size, size, size, 3)).astype("float32"))
    for model in models.values():
        for _ in range(int(warmup)):
            model.train_on_batch(images)
    names = list(models)
    per_step = {name: [] for name in names}
    for r in range(int(rounds)):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            # train_on_batch returns numbers: every timed step has finished
            seconds = timeit.timeit(partial(models[name].train_on_batch, images), number=int(steps))
            per_step[name].append(seconds / int(steps))
    rows = {}
    for name, model in models.items():
        values = np.asarray(per_step[name])
        rows[name] = {
            "seconds_per_step": float(np.median(values)),
            "q25": float(np.quantile(values, 0.25)),
            "q75": float(np.quantile(values, 0.75)),
            "per_round_s": values.tolist(),
            "img_per_s": batch_size / float(np.median(values)),
            "rounds": int(rounds),
            "steps_per_round": int(steps),
            "batch_size": batch_size,
            "params": int(model.count_params()),
            "forward_gflops_per_image": flops_per_image(model, training=False) / 1e9,
            "train_gflops_per_image": flops_per_image(model, training=True) / 1e9,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def study_step_times(profile: str = "celeba-subset", runs=None, root=None) -> dict:
    """``alternating_step_time`` of each study arm's lowest-seed run, written to (and
    returned as) ``benchmark.json`` under ``root`` (default ``study.results_root(profile)``)."""
    import tensorflow as tf

    from resvae_keras import study

    table = study.load_runs() if runs is None else runs
    arms = table[table["group"] == "arms"].sort_values("seed", kind="stable").drop_duplicates("arm")
    configs = {row.arm: study.study_config(row.name, table, profile)
               for row in arms.sort_index().itertuples()}
    settings = study.study_settings(profile)
    frame = alternating_step_time(configs, steps=settings["benchmark_steps"],
                                  rounds=settings["benchmark_rounds"])
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": profile,
        "cpu_count": os.cpu_count(),
        "tensorflow": tf.__version__,
        "note": "arms timed in one process, alternating, on one random batch "
                "(bench.alternating_step_time)",
        "arms": frame.to_dict(orient="index"),
    }
    root = Path(root or study.results_root(profile))
    root.mkdir(parents=True, exist_ok=True)
    (root / study.BENCHMARK_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def _images_per_s(run, images, warm: int) -> float:
    """Images per second of ``run(images)``, after one uncounted call on ``images[:warm]``."""
    run(images[:warm])
    return len(images) / timeit.timeit(lambda: run(images), number=1)


def evaluation_speed(n: int = 512, n_features: int = 64, config: Config | None = None,
                     seed: int = 0, extractor=None) -> dict:
    """Images per second of ``evaluate.reconstruction_report`` (random model and images), of
    ``extractor`` (default: random-weight InceptionV3) and of ``metrics.reconstruction_metrics``."""
    import keras
    import tensorflow as tf

    from resvae_keras import evaluate, inception, metrics
    from resvae_keras.model import build_model

    config = config or get_profile("celeba-subset")
    keras.utils.set_random_seed(seed)
    model = build_model(config)
    size = config.image_size
    images = np.random.default_rng(seed).random((int(n), size, size, 3), dtype=np.float32)
    rate = _images_per_s(lambda x: evaluate.reconstruction_report(model, x), images, 64)
    rng = np.random.default_rng(seed)
    images = rng.random((int(n_features), size, size, 3), dtype=np.float32)
    noisy = np.clip(images + 0.05 * rng.standard_normal(images.shape, dtype=np.float32), 0, 1)
    extractor = extractor if extractor is not None else inception.InceptionFeatures(weights=None)
    warm = min(int(n_features), getattr(extractor, "batch_size", 8))
    return {
        "architecture": _architecture(config),
        "n": int(n),
        "reconstruction_img_per_s": rate,
        "celeba_test_split_s": CELEBA_TEST_IMAGES / rate,
        "inception_features_img_per_s": _images_per_s(extractor, images, warm),
        "inception_n": int(n_features),
        "metrics_only_img_per_s": _images_per_s(
            lambda x: metrics.reconstruction_metrics(x, noisy[:len(x)]), images, warm),
        "device": ", ".join(d.device_type for d in tf.config.list_logical_devices()),
    }
