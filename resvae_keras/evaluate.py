"""Every number that judges a trained run, written to one ``metrics.json`` per run.

The measures live in ``metrics``, ``sample_metrics``, ``sample_quality``, ``anomaly`` and
``latent_space``; this module chooses the images, counts and samplers. Images are float32 in
[0, 1] (uint8 accepted); ELBO terms are nats per image. Nothing reaches the network unless
``allow_download=True`` (the InceptionV3 weights for FID).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from PIL import Image

from resvae_keras import baselines, facespace, latent, latent_space, metrics, record, sample_metrics
from resvae_keras import sample_quality as quality
from resvae_keras.config import Config, project_root
from resvae_keras.data import load_cache, prepare
from resvae_keras.data._io import atomic_write, check_free_space, display_path
from resvae_keras.data.images import as_float_images, to_uint8
from resvae_keras.latent import SAMPLERS
from resvae_keras.model import load_model
from resvae_keras.run_dir import SPLIT_FILE, check_run_split, load_history

METRICS_VERSION = 1
TEMPERATURES = {"prior": (1.0, 0.7), "two_stage": (1.0,), "gmm": (1.0,)}
"""Temperatures ``evaluate_run`` samples each sampler at."""
# the model settings metrics.json records
_MODEL_KEYS = ("latent_dim", "image_size", "widths", "architecture", "residual", "kind",
               "likelihood", "beta", "decoder_sigma")
# the settings load_run requires config.json and the saved model to agree on
_CHECKED = ("image_size", "widths", "blocks_per_stage", "latent_dim", "residual", "kind",
            "likelihood", "norm", "architecture")


def _jsonable(value):
    """``value`` with numpy scalars and arrays turned into Python, NaN and inf into None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return _jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return display_path(value)
    return value


def _write_json(path: Path, result: dict) -> dict:
    """Write ``_jsonable(result)`` to ``path`` atomically; return it."""
    result = _jsonable(result)
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def load_run(run_dir, checkpoint: str = "model.keras"):
    """``(config, model)`` of a finished run (``run_dir`` as given, else relative to the project
    root); ``checkpoint``: ``model.keras`` (best by validation loss) or ``last.keras``. A broken
    model file raises ``model.ModelFileError``; a ``config.json`` edited to describe another
    model, ``ValueError``."""
    path = Path(run_dir).expanduser()
    if not (path / "config.json").is_file() and not path.is_absolute():
        path = project_root() / path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"run_dir={str(run_dir)!r} holds no config.json: train it first "
            "(python -m resvae_keras train --profile demo) or pass the folder of a finished run."
        )
    # run_dir says where the run is now (it may have moved since config.json was written)
    config = Config.load(path / "config.json").replace(run_dir=str(path))
    model_path = path / checkpoint
    if not model_path.is_file():
        raise FileNotFoundError(
            f"{display_path(model_path)} is missing: the run has not finished an "
            "epoch yet. Train it (python -m resvae_keras train) and evaluate again."
        )
    model = load_model(model_path)
    differ = [f"{name} {getattr(config, name)!r} in config.json, {getattr(model, name)!r} in "
              f"{model_path.name}" for name in _CHECKED
              if tuple(np.atleast_1d(getattr(config, name)))
              != tuple(np.atleast_1d(getattr(model, name)))]
    if differ:
        raise ValueError(
            f"{display_path(path / 'config.json')} does not describe the saved model "
            f"({'; '.join(differ)}): it was edited after training. Restore it (set those "
            "values back) and run the command again."
        )
    return config, model


def reconstruction_report(model, images, attributes: pd.DataFrame | None = None, *,
                          seed: int = 0):
    """``(per_image, summary, breakdown)`` of how well ``model`` reconstructs ``images``.

    One row per image (``reconstruction_metrics``, ``neg_elbo`` = ``reconstruction_nll`` +
    ``kl`` in nats, ``bits_per_dim``, ``sharpness``, ``sharpness_original``), its
    ``metrics.summarize``, and the MSE by the bool ``attributes`` (empty without).
    """
    if attributes is not None and len(attributes) != len(images):
        raise ValueError(
            f"attributes has {len(attributes)} rows but images has {len(images)}; pass one "
            "row per image (e.g. cache.attributes_of(split) with cache.images_of(split))"
        )
    noise = keras.random.SeedGenerator(seed)
    num_dims = int(np.prod(images.shape[1:]))
    frames = []
    for start in range(0, len(images), 2048):  # bounded memory on the full test split
        x = as_float_images(images[start : start + 2048])
        x_hat = np.clip(model.reconstruct(x), 0.0, 1.0)
        elbo = model.elbo(x, seed=noise)
        frames.append(metrics.reconstruction_metrics(x, x_hat).assign(
            neg_elbo=elbo["neg_elbo"], reconstruction_nll=elbo["reconstruction"], kl=elbo["kl"],
            bits_per_dim=metrics.bits_per_dim(elbo["neg_elbo"], num_dims),
            sharpness=metrics.laplacian_variance(x_hat),
            sharpness_original=metrics.laplacian_variance(x)))
    if not frames:
        raise ValueError("images is empty: pass at least one image")
    per_image = pd.concat(frames, ignore_index=True)
    breakdown = pd.DataFrame()
    if attributes is not None:
        per_image.index = attributes.index.rename("image")
        breakdown = metrics.per_attribute_breakdown(per_image["mse"], attributes)
    return per_image, metrics.summarize(per_image), breakdown


def reconstruction_dict(per_image: pd.DataFrame, model) -> dict:
    """The reconstruction numbers of ``reconstruction_report`` as a JSON-ready dict."""
    columns = {"mse": "mse", "psnr": "psnr", "ssim": "ssim", "ms_ssim": "ms_ssim",
               "neg_elbo_nats": "neg_elbo", "reconstruction_nll_nats": "reconstruction_nll",
               "kl_nats": "kl", "bits_per_dim": "bits_per_dim"}
    return {
        "n_images": len(per_image),
        **{key: _mean_std(per_image[column]) for key, column in columns.items()},
        "sharpness_ratio": metrics.sharpness_ratio(per_image["sharpness"],
                                                   per_image["sharpness_original"]),
        "num_dims": int(np.prod(model.image_shape)),
        "likelihood": model.likelihood,
        "bits_per_dim_is_bound": model.likelihood != "bernoulli" and model.kind == "vae",
        "decoder_sigma": model.decoder_sigma,
    }


def evaluate_reconstruction_on(model, images, seed: int = 0) -> dict:
    """``reconstruction_dict`` of ``model`` on any images of its size."""
    per_image, _, _ = reconstruction_report(model, images, seed=seed)
    return reconstruction_dict(per_image, model)


def originals_and_reconstructions(model, images) -> np.ndarray:
    """A 2-row grid: the images over their reconstructions, float32 (2, n, S, S, 3)."""
    x = as_float_images(images)
    return np.stack([x, np.clip(model.reconstruct(x), 0.0, 1.0)])


def sample_table(reports) -> pd.DataFrame:
    """One row per ``quality.sample_report`` or ``reference_report`` row: its ``sampler_record``
    numbers, pixel diversity and median nearest-training distance, NaN where missing."""
    rows = []
    for report in reports:
        numbers = record.sampler_record(report)
        nearest = record.lookup(report, "memorization.sample_to_train") or {}
        row = {
            "sampler": report["sampler"], "temperature": report.get("temperature"),
            "n_images": report["n_images"],
            **{k: v for k, v in numbers.items() if k != "ms_ssim"},
            "pixel_l2_diversity": record.lookup(report, "diversity.pixel_l2_fake"),
            "ms_ssim_between_samples": numbers["ms_ssim"],
            "nearest_train_median": nearest.get("median"),
        }
        rows.append({k: np.nan if v is None else v for k, v in row.items()})
    return pd.DataFrame(rows).set_index(["sampler", "temperature"])


def _log(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


def evaluate_run(run_dir, n_samples: int | None = None, allow_download: bool = False,
                 sampler: str | None = None, *, data_dir=None, cache_dir=None, out=None,
                 n_anomaly: int = 2000, memorization_queries: int = 500, verbose: bool = True,
                 n_test: int | None = None, anomaly: bool = True,
                 checkpoint: str = "model.keras", face_space: bool = True) -> dict:
    """Evaluate a finished run on its test split; write and return ``metrics.json``.

    An autoencoder gets the reconstruction and baselines only. ``n_samples`` per sampler
    defaults to the test split's size, at most 10,000; ``sampler`` None runs all at their
    ``TEMPERATURES``. ``data_dir``/``cache_dir`` evaluate another dataset, into
    ``metrics_<folder>.json`` unless ``out`` is given. Every draw is seeded by 0.
    """
    started, timings = time.perf_counter(), {}
    run_config, model = load_run(run_dir, checkpoint)
    path = Path(run_config.run_dir)
    overrides = {k: v for k, v in {"data_dir": data_dir, "cache_dir": cache_dir}.items() if v}
    other = f"metrics_{Path(str(data_dir or cache_dir)).name}.json" if overrides else None
    out = out or path / (other or "metrics.json")
    cache = load_cache(run_config.replace(**overrides), progress=verbose)
    if not overrides and not check_run_split(path, cache, "evaluate"):
        print(f"warning: {display_path(path)} has no {SPLIT_FILE} (trained by an "
              "older version), so its test split cannot be checked against the split it "
              "was trained on; if the data changed since training, test images may be "
              "images it trained on", file=sys.stderr, flush=True)
    test_images = cache.images_of("test", n_test)
    n_real = min(len(test_images), quality.MAX_DEFAULT_SAMPLES)  # held-out faces to compare with
    n_samples = n_real if n_samples is None else int(n_samples)
    if n_samples < sample_metrics.FID_MIN_SAMPLES:
        _log(verbose, f"note: {n_samples} samples per sampler; FID needs >= "
                      f"{sample_metrics.FID_COMPARABLE_SAMPLES:,} to compare across runs")
    samplers = SAMPLERS if sampler is None else (sampler,)
    if not set(samplers) <= set(SAMPLERS):
        raise ValueError(f"sampler={sampler!r} is not one of {list(SAMPLERS)} (or None for all)")
    if model.kind == "ae":  # the reconstruction reference: no posterior, prior or bound
        samplers, anomaly, face_space = (), False, False

    parts = _reconstruction_step(model, cache, test_images, timings, verbose)
    with _timed(timings, "latent"):
        parts["latent"] = (latent_space.latent_report(*latent.encode_dataset(model, test_images))
                           if model.kind == "vae" else {"skipped": "an autoencoder has no posterior"})
    features = quality.feature_extractor(allow_download)
    references = quality.SampleReferences.from_cache(cache, n_real, memorization_queries)
    # the second stage belongs to the run: fitted on (and saved with) its own training codes
    parts.update(_samples_step(model, references, samplers, n_samples, features, timings,
                               verbose, face_space, cache=None if overrides else cache,
                               config=run_config, checkpoint=checkpoint))
    parts["anomaly"] = (_anomaly_step(model, test_images, n_anomaly, timings) if anomaly
                        else {"skipped": True, "results": {}})
    timings["total"] = time.perf_counter() - started
    settings = {
        "n_test": len(test_images), "n_samples": n_samples, "checkpoint": checkpoint,
        "samplers": list(samplers), "temperatures": {n: list(TEMPERATURES[n]) for n in samplers},
        "seed": 0, "allow_download": allow_download, "extractor": features.name,
        "memorization_queries": memorization_queries}
    result = _write_json(out, _record(run_config, model, cache, settings, parts, timings))
    _log(verbose, f"wrote {display_path(out)} in {timings['total']:.1f} s")
    return result


@contextlib.contextmanager
def _timed(timings: dict, key: str, label: str | None = None):
    """Time the ``with`` block into ``timings[key]`` (seconds); print it under ``label``."""
    tick = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - tick
    _log(bool(label), f"{label}: {timings[key]:.1f} s")


def _reconstruction_step(model, cache, test_images, timings: dict, verbose: bool) -> dict:
    """The record's ``reconstruction``, ``baselines`` and ``per_attribute``."""
    attributes = cache.attributes_of("test").iloc[: len(test_images)]
    with _timed(timings, "reconstruction",
                verbose and f"reconstruction of {len(test_images)} test images"):
        per_image, _, breakdown = reconstruction_report(model, test_images, attributes)
    with _timed(timings, "baselines"):
        linear = baselines.pca_baselines(cache.view_of("train"), test_images, model.latent_dim)
    ks = ", ".join(str(b["n_components"]) for b in linear.values())
    _log(verbose, f"PCA baselines (k = {ks}): {timings['baselines']:.1f} s")
    return {
        "reconstruction": reconstruction_dict(per_image, model),
        "baselines": linear,
        "per_attribute": {"error": "mse", "n_images": len(per_image),
                          "rows": breakdown.to_dict(orient="index")},
    }


def _samples_step(model, references, samplers, n_samples: int, features, timings: dict,
                  verbose: bool, face_space: bool, **sampler_settings) -> dict:
    """The record's ``samples`` (by ``<sampler>_t<T>``), ``sample_references`` and
    ``face_space``; ``sampler_settings`` go to ``latent.make_sampler``."""
    reports, images_by_key = {}, {}
    for name in samplers:
        with _timed(timings, f"samples_{name}", verbose and f"samples from {name}"):
            sampler = latent.make_sampler(model, name, **sampler_settings)
            for temperature in TEMPERATURES[name]:
                key = f"{name}_t{temperature:g}"
                reports[key], images = quality.sample_report(
                    model, references, sampler, n_samples, temperature=temperature,
                    extractor=features)
                # the face-space step uses at most MAX_PER_HALF of them, and reads 8-bit images
                images_by_key[key] = to_uint8(images[: facespace.MAX_PER_HALF])
    with _timed(timings, "sample_references"):
        references_rows = quality.reference_report(model, references)
    with _timed(timings, "face_space", verbose and "face space"):
        face_space_rows = (
            # the memorization check describes at most 4 training faces per sample: all 2,000
            # for the main run, a few hundred for a small (study or demo) evaluation
            quality.face_space_report(model, references, images_by_key,
                                      max_train=min(facespace.MAX_TRAIN, 4 * n_samples),
                                      progress=None if verbose else False)
            if face_space else {"skipped": "not asked for (face_space=False)"})
    return {"samples": reports, "sample_references": references_rows,
            "face_space": face_space_rows}


def _anomaly_step(model, test_images, n_anomaly: int, timings: dict) -> dict:
    """The record's ``anomaly``: ``anomaly.anomaly_table`` of the first ``n_anomaly`` test faces."""
    from resvae_keras import anomaly

    n_clean = min(len(test_images), int(n_anomaly))
    with _timed(timings, "anomaly"):
        sets = anomaly.anomaly_sets(test_images[:n_clean], seed=0)
        table = anomaly.anomaly_table(anomaly.score_sets(model, sets, seed=0))
    columns = ["auroc", "ap", "mean_clean", "mean_anomalous"]
    results = {kind: rows.droplevel(0)[columns].to_dict(orient="index")
               for kind, rows in table.groupby(level=0, sort=False)}
    return {"n_clean": n_clean, "n_anomalous_per_set": n_clean, "seed": 0,
            "corruption_strengths": anomaly.CORRUPTION_STRENGTHS,
            "non_face_kinds": list(anomaly.NON_FACE_KINDS), "scores": anomaly.ANOMALY_SCORES,
            "results": results}


def _record(config: Config, model, cache, settings: dict, parts: dict, timings: dict) -> dict:
    """The ``metrics.json`` record: run, model, data, settings, training, ``parts``, timings."""
    path = Path(config.run_dir)
    optimizer = getattr(model, "optimizer", None)
    history = record.history_summary(load_history(path))
    manifest = cache.manifest
    return {
        "version": METRICS_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": path.name,
        "profile": config.profile,
        "demo": bool(cache.is_demo),
        "model": {"params": int(model.count_params()),
                  **{key: getattr(model, key) for key in _MODEL_KEYS}},
        "data": {"source": manifest.get("source_display"), "split": "test",
                 "split_rule": manifest.get("split_rule"),
                 "split_counts": manifest.get("split_counts")},
        "settings": settings,
        "training": {"epochs": history["epochs"],
                     "steps": None if optimizer is None else int(optimizer.iterations.numpy()),
                     **history},
        **parts,  # reconstruction, baselines, per_attribute, latent, samples, ..., anomaly
        "timings_s": timings,
    }


def evaluate_folder(run_dir, data_dir, cache_dir=None) -> Path:
    """Reconstruction numbers of a run on every image of another CelebA-layout folder
    (prepared into ``cache_dir``), written to ``run_dir/metrics_<folder>.json``; its path."""
    config, model = load_run(run_dir)
    folder = Path(data_dir).name
    cache = prepare(data_dir, size=config.image_size,
                    cache_dir=cache_dir or config.resolve(f"data/cache/{folder}"),
                    progress=False)
    out = Path(config.run_dir) / f"metrics_{folder}.json"
    _write_json(out, {
        "data": {"source": display_path(data_dir), "n_images": len(cache),
                 "crop_rule": cache.manifest.get("crop_rule")},
        "reconstruction": evaluate_reconstruction_on(model, np.asarray(cache.images)),
    })
    return out


def write_samples(run_dir, n: int = 64, out_dir="samples", temperature: float = 1.0,
                  sampler: str = "two_stage", seed: int = 0, batch_size: int = 256) -> list[Path]:
    """Write ``n`` samples of a run as ``sample_00000.png`` ... in ``out_dir``; their paths.
    Batch b > 0 is seeded by ``(seed, b)``; on any error this call's images are removed."""
    n = latent.check_count(n, "n (--n)")
    temperature = latent.check_temperature(temperature)
    if isinstance(seed, bool) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed={seed!r} (--seed): expected an integer in [0, 4294967295]")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir={str(out_dir)!r} (--out) is a file; give a folder for the PNGs")
    config, model = load_run(run_dir)
    # a face PNG takes about a quarter of its raw pixels; more files than that cannot fit
    check_free_space(out, n * config.image_size**2 * 3 // 4, f"{n:,} samples (--n)")
    cache = load_cache(config, progress=False) if sampler == "gmm" else None
    sampler_object = latent.make_sampler(model, sampler, cache, seed=seed, config=config)
    out.mkdir(parents=True, exist_ok=True)
    width, paths = max(5, len(str(n - 1))), []
    try:
        for start in range(0, n, batch_size):
            batch = start // batch_size
            batch_seed = seed if batch == 0 else int(
                np.random.SeedSequence([int(seed), batch]).generate_state(1)[0])
            images = latent.sample_images(model, sampler_object, n=min(batch_size, n - start),
                                          temperature=temperature, seed=batch_seed)
            for i, image in enumerate(to_uint8(images), start):
                paths.append(out / f"sample_{i:0{width}d}.png")
                with atomic_write(paths[-1]) as tmp:
                    Image.fromarray(image).save(tmp, format="PNG")
    except Exception:
        for path in paths:
            path.unlink(missing_ok=True)
        raise
    return paths
