"""Every number that judges a trained run, computed in one place.

Notebooks 03-05 and ``python -m resvae_keras evaluate`` call these functions; the
measures themselves live in ``metrics`` (reconstruction, realism, diversity), ``anomaly``
(anomalous images, scores, AUROC) and ``latent`` (samplers, active units). What this module adds is the orchestration:
which images, how many, which sampler, and one ``metrics.json`` per run.

| piece | what | used by |
| --- | --- | --- |
| ``reconstruction_report`` | per-image MSE/PSNR/SSIM/MS-SSIM and negative ELBO, summary, per-attribute breakdown | notebook 03 |
| ``sample_report``, ``reference_report`` | samples of a sampler (prior, two-stage, GMM): face rate, SWD per level, diversity, memorization; the same for real faces and reconstructions | notebook 04 |
| ``face_space_report`` | samples, reconstructions and calibration rows in dlib's face-descriptor space (``facespace``) | ``evaluate_run`` |
| ``encode_split``, ``attribute_strength_effect`` | codes of a split, what an attribute vector does | notebook 05 |
| ``evaluate_run`` | all of the above on the test split, into ``<run_dir>/metrics.json`` | CLI ``evaluate`` |
| ``write_samples`` | CLI ``sample`` | CLI |

Conventions: images are float32 in [0, 1], shape (N, H, W, 3) (uint8 from the cache
is accepted and divided by 255); ELBO terms are per image, in nats; anomaly scores are
"higher = more anomalous". Nothing here reaches the network unless
``allow_download=True`` is passed (it fetches the InceptionV3 weights for FID).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

import resvae_keras.model  # noqa: F401  (registers ResVAE and its layers for load_model)
from resvae_keras import baselines, facespace, inception, latent, metrics, sample_metrics
from resvae_keras.anomaly import (
    ANOMALY_SCORES,
    CORRUPTION_STRENGTHS,
    NON_FACE_KINDS,
    anomaly_report,
)
from resvae_keras.config import Config, project_root
from resvae_keras.data._io import atomic_write
from resvae_keras.data.images import as_float_images, to_uint8

METRICS_VERSION = 1
MAX_DEFAULT_SAMPLES = sample_metrics.FID_COMPARABLE_SAMPLES
"""Default sample count is the size of the test split, capped here (10,000: the FID minimum
for numbers comparable across runs; ``sample_metrics.fid`` warns below 2,048)."""
SAMPLERS = ("prior", "two_stage", "gmm")
TEMPERATURES = {"prior": (1.0, 0.7), "two_stage": (1.0,), "gmm": (1.0,)}
"""Temperatures ``evaluate_run`` samples each sampler at."""
REFERENCE_SETS = {
    "real_test": "held-out test faces, against as many training faces (other people): the floor",
    "reconstructions": "the test faces' reconstructions from z_mean: blurry, but faces",
}
"""The reference rows ``reference_report`` measures beside the samplers."""


# -- small helpers ------------------------------------------------------------------


def _to_numpy(x) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def _display_text(text: str) -> str:
    """``text`` with paths under the project root made relative and the home folder shown
    as ``~`` (no absolute paths). Only whole path components match: a sibling folder
    whose name merely starts with the root's name is left as it is."""
    text = _shorten_folder(text, str(project_root()), "")
    home = str(Path.home())
    return _shorten_folder(text, home, "~/") if home not in ("/", "") else text


def _shorten_folder(text: str, folder: str, prefix: str) -> str:
    """``folder/x`` -> ``prefix + x`` and a bare ``folder`` -> ``prefix`` or ``.`` in ``text``."""
    pattern = re.escape(folder.rstrip(os.sep)) + r"(?![^\s/'\"),:;\]])(/)?"
    return re.sub(pattern, lambda m: prefix if m.group(1) else (prefix.rstrip("/") or "."), text)


def _jsonable(value):
    """``value`` with numpy scalars and arrays turned into Python, NaN and inf into None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        from resvae_keras.data._io import display_path

        return display_path(value)
    if isinstance(value, str):
        return _display_text(value)
    return value


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "std": None}
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}


def _quantiles(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"n": 0}
    return {
        "n": len(values),
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p01": float(np.quantile(values, 0.01)),
        "p05": float(np.quantile(values, 0.05)),
        "min": float(values.min()),
    }


def _blas_threads(limit: int | None = None):
    """A context that caps numpy's BLAS threads: at ``limit``, or at 1 on machines with at
    most 4 cores, where BLAS threads spinning against TensorFlow's own threads make the
    patch projections and distance blocks of the sample metrics several times slower."""
    from threadpoolctl import threadpool_limits

    if limit is None and (os.cpu_count() or 1) > 4:
        return threadpool_limits(limits=None)
    return threadpool_limits(limits=limit or 1, user_api="blas")


def resolve_run_dir(run_dir) -> Path:
    """The run folder: ``run_dir`` as given, else relative to the project root."""
    path = Path(run_dir).expanduser()
    if not (path / "config.json").is_file() and not path.is_absolute():
        path = project_root() / path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"run_dir={str(run_dir)!r} holds no config.json: train it first "
            "(python -m resvae_keras train --profile demo) or pass the folder of a finished run."
        )
    return path


def load_run(run_dir, checkpoint: str = "model.keras"):
    """``(config, model)`` of a finished run: ``config.json`` and a saved model, by default the
    best by the validation negative ELBO (``model.keras``); ``checkpoint="last.keras"`` is the
    model after the last epoch (all runs of a study at the same number of steps).

    Raises ``model.ModelFileError`` (a ``ValueError``) when the file is damaged, not a
    ResVAE, or holds NaN weights: nothing is computed from a broken model.
    """
    from resvae_keras.model import load_model

    path = resolve_run_dir(run_dir)
    # run_dir says where the run is now (it may have moved since config.json was written)
    config = Config.load(path / "config.json").replace(run_dir=str(path))
    if not (path / checkpoint).is_file():
        raise FileNotFoundError(
            f"{_display_text(str(path / checkpoint))} is missing: the run has not finished an "
            "epoch yet. Train it (python -m resvae_keras train) and evaluate again."
        )
    model = load_model(path / checkpoint)
    _check_config_matches(config, model, path / checkpoint)
    return config, model


def _check_config_matches(config: Config, model, model_path: Path) -> None:
    """Raise ``ValueError`` when the run's ``config.json`` describes another model than the
    saved one (an edited config.json)."""
    from resvae_keras.model import CONFIG_ARGUMENTS

    differ = [f"{name} {getattr(config, name)!r} in config.json, {getattr(model, name)!r} in "
              f"{model_path.name}" for name in CONFIG_ARGUMENTS
              if name in ("image_size", "latent_dim", "widths", "blocks_per_stage", "kind",
                          "architecture", "likelihood", "norm", "residual")
              and tuple(np.atleast_1d(getattr(config, name))) != tuple(
                  np.atleast_1d(getattr(model, name)))]
    if differ:
        raise ValueError(
            f"{_display_text(str(model_path.parent / 'config.json'))} does not describe the "
            f"saved model ({'; '.join(differ)}): it was edited after training. Restore it "
            "(set those values back) and run the command again."
        )


def split_images(cache, split: str, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` images (all with ``None``) of a cache split, uint8 (n, S, S, 3)."""
    rows = cache.split_indices(split)
    if limit is not None:
        rows = rows[: int(limit)]
    if not len(rows):
        raise ValueError(f"split={split!r} of the cache has no images; see cache.summary()")
    return np.asarray(cache.images[rows])


def split_view(cache, split: str) -> np.ndarray:
    """All images of a cache split, uint8 (n, S, S, 3), without loading them when the split
    is one contiguous block of the memmap (the official CelebA partition is)."""
    rows = cache.split_indices(split)
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return cache.images[rows[0] : rows[-1] + 1]
    return np.asarray(cache.images[rows])


# -- reconstruction -------------------------------------------------------------------


def reconstruction_report(model, images, attributes: pd.DataFrame | None = None, *,
                          batch_size: int = 256, chunk_size: int = 2048, seed: int = 0):
    """How well ``model`` reconstructs ``images``.

    Args:
        images: float32 in [0, 1] or uint8 (the cache), shape (N, S, S, 3); worked through
            ``chunk_size`` images at a time, so a whole CelebA split fits in memory.
        attributes: optional bool attribute columns, one row per image (e.g.
            ``cache.attributes_of("test")``); its index labels the rows.
        seed: seed of the dequantization and posterior draws behind the ELBO.

    Returns:
        ``(per_image, summary, breakdown)``:

        - per_image: one row per image: ``mse`` ([0, 1]), ``psnr`` (dB), ``ssim``,
          ``ms_ssim``, ``neg_elbo`` (nats, = ``reconstruction_nll`` + ``kl``, of the
          dequantized image, see ``ResVAE.elbo``; NaN for the autoencoder),
          ``bits_per_dim`` (an upper bound on the 8-bit code length, see
          ``metrics.bits_per_dim``), and ``sharpness`` / ``sharpness_original``
          (``metrics.laplacian_variance`` of the reconstruction and of the image);
        - summary: ``metrics.summarize(per_image)``: mean, std and count per column;
        - breakdown: ``metrics.per_attribute_breakdown`` of the MSE (empty without
          ``attributes``), largest gap first.
    """
    if attributes is not None and len(attributes) != len(images):
        raise ValueError(
            f"attributes has {len(attributes)} rows but images has {len(images)}; pass one "
            "row per image (e.g. cache.attributes_of(split) with cache.images_of(split))"
        )
    import keras

    noise = keras.random.SeedGenerator(seed)
    num_dims = int(np.prod(images.shape[1:]))
    frames = []
    for start in range(0, len(images), chunk_size):
        x = as_float_images(images[start : start + chunk_size])
        x_hat = np.clip(model.reconstruct(x, batch_size), 0.0, 1.0)
        elbo = model.elbo(x, batch_size, seed=noise)
        frame = metrics.reconstruction_metrics(x, x_hat, batch_size)
        frame["neg_elbo"] = elbo["neg_elbo"]
        frame["reconstruction_nll"] = elbo["reconstruction"]
        frame["kl"] = elbo["kl"]
        frame["bits_per_dim"] = metrics.bits_per_dim(elbo["neg_elbo"], num_dims)
        frame["sharpness"] = metrics.laplacian_variance(x_hat)
        frame["sharpness_original"] = metrics.laplacian_variance(x)
        frames.append(frame)
    if not frames:
        raise ValueError("images is empty: pass at least one image")
    per_image = pd.concat(frames, ignore_index=True)
    if attributes is not None:
        per_image.index = attributes.index
    per_image.index.name = "image" if attributes is not None else None
    summary = metrics.summarize(per_image)
    breakdown = (
        metrics.per_attribute_breakdown(per_image["mse"], attributes)
        if attributes is not None else pd.DataFrame()
    )
    return per_image, summary, breakdown


def reconstruction_dict(per_image: pd.DataFrame, model=None) -> dict:
    """The reconstruction numbers of ``reconstruction_report`` as a JSON-ready dict."""
    num_dims = int(np.prod(model.image_shape)) if model is not None else None
    result = {"n_images": len(per_image)}
    for column in ("mse", "psnr", "ssim", "ms_ssim"):
        result[column] = _mean_std(per_image[column])
    result["neg_elbo_nats"] = _mean_std(per_image["neg_elbo"])
    result["reconstruction_nll_nats"] = _mean_std(per_image["reconstruction_nll"])
    result["kl_nats"] = _mean_std(per_image["kl"])
    result["bits_per_dim"] = _mean_std(per_image["bits_per_dim"])
    result["sharpness_ratio"] = metrics.sharpness_ratio(
        per_image["sharpness"], per_image["sharpness_original"])
    if model is not None:
        result.update(
            num_dims=num_dims,
            likelihood=model.likelihood,
            bits_per_dim_is_bound=model.likelihood != "bernoulli" and model.kind == "vae",
            decoder_sigma=model.decoder_sigma,
        )
    return result


def evaluate_reconstruction_on(model, images, seed: int = 0) -> dict:
    """Reconstruction numbers of ``model`` on any images (e.g. a folder of other face crops).

    Args:
        images: float32 in [0, 1] or uint8, shape (N, S, S, 3) with S = ``model.image_size``.

    Returns:
        JSON-ready dict: ``n_images``; mean and std of ``mse``, ``psnr``, ``ssim``,
        ``ms_ssim``, ``neg_elbo_nats``, its ``reconstruction_nll_nats`` and ``kl_nats``
        parts, ``bits_per_dim``; and the likelihood it was computed with.
    """
    if tuple(np.shape(images)[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"images have shape {np.shape(images)[1:]} per image but the model takes "
            f"{tuple(model.image_shape)}; crop and resize them like the cache (data.prepare)"
        )
    per_image, _, _ = reconstruction_report(model, images, seed=seed)
    return reconstruction_dict(per_image, model)


def originals_and_reconstructions(model, images) -> np.ndarray:
    """A 2-row grid: the images over their reconstructions, float32 (2, n, S, S, 3)."""
    x = as_float_images(images)
    return np.stack([x, np.clip(model.reconstruct(x), 0.0, 1.0)])


# -- latent codes -----------------------------------------------------------------------


def encode_split(model, cache, split: str = "train", limit: int | None = None,
                 batch_size: int = 256):
    """Encode the first ``limit`` images of a cache split.

    Returns:
        ``(z_mean, z_log_var, attributes)``: float32 (n, latent_dim) twice and the
        split's bool attribute table for the same rows.
    """
    images = split_images(cache, split, limit)
    z_mean, z_log_var = latent.encode_dataset(model, images, batch_size)
    return z_mean, z_log_var, cache.attributes_of(split).iloc[: len(images)]


def latent_report(z_mean, z_log_var, threshold: float = 0.01, top: int = 10) -> dict:
    """Active units (Burda et al. 2016) and the KL per dimension, JSON-ready.

    ``active_units`` counts dimensions whose E[z_j | x] varies over the images by more
    than ``threshold``; ``top_units`` are the dimensions with the largest mean KL (nats).
    ELBO surgery says why decoding prior draws can fail: ``aggregate_kl_lower_bound_nats``
    bounds KL(q(z) || N(0, I)) from below, with q(z) the aggregate posterior of these images
    (``latent.aggregate_kl_lower_bound``), and ``aggregate_std`` summarises q(z)'s standard
    deviation per dimension (the prior has 1 in each).
    """
    mask, ranking = latent.active_units(z_mean, threshold, z_log_var)
    kl = latent.kl_per_dimension(z_mean, z_log_var)
    spread = latent.aggregate_posterior_std(z_mean, z_log_var)
    return {
        "n_images": len(z_mean),
        "latent_dim": int(np.shape(z_mean)[1]),
        "threshold": threshold,
        "active_units": int(mask.sum()),
        "kl_total_nats": float(kl.sum()),
        "aggregate_kl_lower_bound_nats": latent.aggregate_kl_lower_bound(kl.sum(), len(z_mean)),
        "aggregate_std": {"min": float(spread.min()), "median": float(np.median(spread)),
                          "max": float(spread.max())},
        "top_units": ranking[:top].tolist(),
        "top_units_kl_nats": kl[ranking[:top]].tolist(),
    }


def attribute_strength_effect(model, images, vector, strengths, detector) -> pd.DataFrame:
    """What adding an attribute vector does, measured by a detector.

    Args:
        images: faces float32 in [0, 1], shape (n, S, S, 3).
        vector: attribute vector (d,), e.g. from ``latent.attribute_vector``.
        strengths: multiples of ``vector`` to add to each face's ``z_mean``.
        detector: images (n, S, S, 3) -> bool (n,), e.g. ``data.detect_demo_eyeglasses``.

    Returns:
        DataFrame indexed by ``strength`` with ``rate`` (share of decoded faces the
        detector fires on, in [0, 1]) and ``n_images``.
    """
    grid = latent.attribute_arithmetic(model, as_float_images(images), vector, strengths)
    rates = [float(np.mean(detector(grid[:, j]))) for j in range(grid.shape[1])]
    index = pd.Index(np.asarray(strengths, dtype=float), name="strength")
    return pd.DataFrame({"rate": rates, "n_images": len(grid)}, index=index)


# -- samples: realism, diversity, memorization ------------------------------------------


class _MemoizedFeatures:
    """A feature extractor that remembers the features of arrays it has seen (the real
    images are compared with several samplers) and a failure to load (so a missing file
    is reported once, not retried per sampler)."""

    def __init__(self, extractor):
        self.extractor = extractor
        self.name = getattr(extractor, "name", type(extractor).__name__)
        self._memo: list[tuple[np.ndarray, np.ndarray]] = []
        self._failure: Exception | None = None

    def __call__(self, images) -> np.ndarray:
        for seen, features in self._memo:
            if seen is images:
                return features
        if self._failure is not None:
            raise self._failure
        try:
            features = self.extractor(images)
        except inception.FeatureExtractorUnavailable as exc:
            self._failure = inception.FeatureExtractorUnavailable(_display_text(str(exc)))
            raise self._failure from exc
        self._memo.append((images, features))
        return features


def feature_extractor(allow_download: bool = False, extractor=None):
    """The feature network for FID/KID/precision/recall, remembering features it computed.

    Default: ``inception.InceptionFeatures()`` with weights from the local Keras cache only,
    or fetched when ``allow_download=True``. When they are missing, the realism functions
    report ``available: false`` with the reason instead of failing.
    """
    if extractor is None:
        extractor = inception.InceptionFeatures(allow_download=allow_download)
    return extractor if isinstance(extractor, _MemoizedFeatures) else _MemoizedFeatures(extractor)


def nearest_training_neighbours(images, train_images, k: int = 1):
    """Nearest training images of ``images`` in pixel L2.

    Args:
        images: float32 in [0, 1], shape (n, S, S, 3).
        train_images: uint8 (e.g. ``split_images(cache, "train")``, a memmap is fine) or
            float in [0, 1].

    Returns:
        ``(indices, distances)`` into ``train_images``; distances are pixel L2 in [0, 1]
        intensity units (at most sqrt(S*S*3) = 110.9 for 64x64).
    """
    x = as_float_images(images)
    with _blas_threads():
        if np.asarray(train_images[:1]).dtype == np.uint8:
            indices, distances = sample_metrics.nearest_neighbours(x * 255.0, train_images, k=k)
            return indices, distances / 255.0
        return sample_metrics.nearest_neighbours(x, train_images, k=k)


def split_identities(cache, split: str, limit: int | None = None) -> np.ndarray | None:
    """Person ids (int, -1 unknown) of the rows ``split_images`` returns; None when the cache
    knows no identities (the demo faces, a CelebA folder without ``identity_CelebA.txt``)."""
    if "identity" not in cache.table.columns:
        return None
    ids = cache.table["identity"].to_numpy()[cache.split_indices(split)]
    ids = ids[: int(limit)] if limit is not None else ids
    return ids.astype(np.int64) if (ids >= 0).any() else None


def _identity_neighbours(images, ids, train_images, train_ids, query_rows=None) -> dict:
    """``sample_metrics.nearest_by_identity`` in [0, 1] intensity units (uint8 training images too)."""
    x = as_float_images(images)
    with _blas_threads():
        if np.asarray(train_images[:1]).dtype == np.uint8:
            out = sample_metrics.nearest_by_identity(x * 255.0, ids, train_images, train_ids, query_rows)
            return {key: value / 255.0 for key, value in out.items()}
        return sample_metrics.nearest_by_identity(x, ids, train_images, train_ids, query_rows)


class SampleReferences:
    """The real images samples are judged against, with the numbers about them kept.

    Args:
        real_images: held-out faces (the test split), float32 in [0, 1] or uint8.
        train_images: the training faces (uint8, a memmap is fine) for the memorization
            check: a sample much nearer to a training face than held-out faces are is a copy.
        memorization_queries: how many samples (and test faces) search all training faces.
        seed: seed of the random pairs and subsets.
        real_ids, train_ids: person ids of the real and training images (-1 unknown), for
            the same- and different-person distances; None when unknown.
    """

    def __init__(self, real_images, train_images, memorization_queries: int = 500, seed: int = 0,
                 real_ids=None, train_ids=None):
        self.real = as_float_images(real_images)
        self.train = train_images
        self.memorization_queries = int(memorization_queries)
        self.seed = seed
        self.real_ids = None if real_ids is None else np.asarray(real_ids)
        self.train_ids = None if train_ids is None else np.asarray(train_ids)
        self._real_ms_ssim: float | None = None
        self._test_to_train: np.ndarray | None = None
        self._identity: dict | None = None

    @classmethod
    def from_cache(cls, cache, max_real: int | None = MAX_DEFAULT_SAMPLES,
                   memorization_queries: int = 500, seed: int = 0) -> SampleReferences:
        """Real images: the first ``max_real`` test images; training images: all of train;
        person ids from the cache when it has them."""
        return cls(split_images(cache, "test", max_real), split_view(cache, "train"),
                   memorization_queries, seed, real_ids=split_identities(cache, "test", max_real),
                   train_ids=split_identities(cache, "train"))

    @property
    def real_ms_ssim(self) -> float:
        """Mean MS-SSIM of random pairs of real images (the diversity of the data)."""
        if self._real_ms_ssim is None:
            self._real_ms_ssim = sample_metrics.mean_pairwise_ms_ssim(self.real, seed=self.seed)
        return self._real_ms_ssim

    @property
    def test_to_train(self) -> np.ndarray:
        """Distances of held-out faces to their nearest training face (the reference)."""
        if self._test_to_train is None:
            queries = self.real[: self.memorization_queries]
            self._test_to_train = nearest_training_neighbours(queries, self.train)[1]
        return self._test_to_train

    @property
    def identity(self) -> dict:
        """Nearest-training-face distances split by person: of held-out faces, and of training
        faces to the other training faces, to the nearest face of the same person and of another
        person (``sample_metrics.nearest_by_identity``). JSON-ready; ``available: false`` without ids."""
        if self._identity is None:
            if self.real_ids is None or self.train_ids is None:
                self._identity = {
                    "available": False,
                    "reason": "the data has no person identities (identity_CelebA.txt), so "
                              "same- and different-person distances are not available",
                }
                return self._identity
            n = min(self.memorization_queries, len(self.train))
            train_rows = np.sort(np.random.default_rng(self.seed).choice(
                len(self.train), n, replace=False))
            test = _identity_neighbours(self.real[: self.memorization_queries],
                                        self.real_ids[: self.memorization_queries],
                                        self.train, self.train_ids)
            train = _identity_neighbours(np.asarray(self.train[train_rows]),
                                         self.train_ids[train_rows], self.train, self.train_ids,
                                         query_rows=train_rows)
            self._identity = {
                "available": True,
                "n_test_queries": int(min(self.memorization_queries, len(self.real))),
                "n_train_queries": int(n),
                "test_to_train_same_identity": _quantiles(test["same"]),
                "test_to_train_different_identity": _quantiles(test["different"]),
                "train_to_train_same_identity": _quantiles(train["same"]),
                "train_to_train_different_identity": _quantiles(train["different"]),
            }
        return self._identity

    def memorization(self, samples) -> dict:
        """Nearest-training-face distances of samples against those of held-out faces, and
        (with person ids) against photos of the same person and of other people."""
        queries = as_float_images(samples)[: self.memorization_queries]
        sample_to_train = nearest_training_neighbours(queries, self.train)[1]
        reference = self.test_to_train
        identity = self.identity
        same = (identity.get("train_to_train_same_identity") or {}).get("median")
        return {
            "n_queries": len(queries),
            "n_train": len(self.train),
            "distance": "pixel L2, intensities in [0, 1]",
            "sample_to_train": _quantiles(sample_to_train),
            "test_to_train": _quantiles(reference),
            "median_ratio": float(np.median(sample_to_train) / np.median(reference)),
            "share_closer_than_test_p01": float(
                np.mean(sample_to_train < np.quantile(reference, 0.01))
            ),
            "identity": identity,
            "median_ratio_to_same_identity": (
                float(np.median(sample_to_train) / same) if same else None),
        }


def make_sampler(model, sampler="prior", cache=None, n_components: int = 10,
                 max_fit_images: int = 20_000, seed: int = 0, config: Config | None = None,
                 checkpoint: str = "model.keras"):
    """A latent sampler: ``"prior"`` (N(0, I)); ``"two_stage"``, the run's second-stage VAE
    (``train.two_stage_sampler``: loads ``two_stage.keras`` of ``config``'s run dir, fitting and
    saving it first when missing or older than ``checkpoint``; without ``config`` it is fitted
    on ``cache``'s training codes and not saved); or ``"gmm"``, a Gaussian mixture fitted to the
    ``z_mean`` of up to ``max_fit_images`` training faces (needs ``cache``). A sampler object
    is returned as is."""
    if not isinstance(sampler, str):
        return sampler
    if sampler == "prior":
        return latent.PriorSampler(model.latent_dim)
    if sampler == "two_stage":
        from resvae_keras.train import two_stage_sampler

        if config is not None:
            return two_stage_sampler(config, model, cache, checkpoint)
        if cache is None:
            raise ValueError("sampler='two_stage' needs config= (the run's, to load or save "
                             "two_stage.keras) or cache= (to fit it on the training codes)")
        print("fitting a second-stage VAE on the training codes (not saved: pass config= "
              "to keep it in the run dir)", file=sys.stderr, flush=True)
        z_mean, z_log_var, _ = encode_split(model, cache, "train")
        deterministic = getattr(model, "kind", "vae") == "ae"
        return latent.TwoStageSampler(seed=seed).fit(z_mean, None if deterministic else z_log_var)
    if sampler == "gmm":
        if cache is None:
            raise ValueError("sampler='gmm' is fitted to training codes: pass cache=")
        z_mean, _, _ = encode_split(model, cache, "train", max_fit_images)
        # EM on small matrices: BLAS threads only compete (25x slower on a busy 2-core machine)
        with _blas_threads(1):
            return latent.GaussianMixtureSampler(n_components=n_components, seed=seed).fit(z_mean)
    raise ValueError(f"sampler={sampler!r} is not one of {list(SAMPLERS)}")


def _sampler_name(sampler) -> str:
    if isinstance(sampler, str):
        return sampler
    if isinstance(sampler, latent.GaussianMixtureSampler):
        return "gmm"
    if isinstance(sampler, latent.PriorSampler):
        return "prior"
    if isinstance(sampler, latent.TwoStageSampler):
        return "two_stage"
    return type(sampler).__name__


def sample_report(model, references, sampler="prior", n: int | None = None, *,
                  temperature: float = 1.0, seed: int = 0, extractor=None):
    """Draw ``n`` samples and judge them against held-out faces.

    Args:
        references: a ``SampleReferences`` or a cache (its test and train splits are used).
        sampler: ``"prior"``, ``"two_stage"`` or ``"gmm"`` (both fitted here on the training
            codes; need a cache as ``references``) or a sampler object (see ``make_sampler``).
        n: number of samples; default the number of real images (at most 10,000).
        temperature: scales the latent draws (< 1: nearer the mode, less diverse).
        extractor: feature network for FID/KID/precision/recall (see ``feature_extractor``);
            ``None`` reports the offline measures only.

    Returns:
        ``(report, samples)``: a JSON-ready dict with ``sampler``, ``temperature``,
        ``n_images``, ``realism`` (SWD per level and face rate always; FID, KID, precision,
        recall when ``available``), ``diversity`` (pixel L2, MS-SSIM, feature distance, each for the
        samples and the real images) and ``memorization``; and the samples, float32 in
        [0, 1], shape (n, S, S, 3).
    """
    cache = None
    if not isinstance(references, SampleReferences):
        cache, references = references, SampleReferences.from_cache(references, seed=seed)
    n = min(len(references.real), MAX_DEFAULT_SAMPLES) if n is None else int(n)
    sampler_object = make_sampler(model, sampler, cache, seed=seed)
    samples = latent.sample_images(model, sampler_object, n=n, temperature=temperature, seed=seed)
    samples = np.clip(samples, 0.0, 1.0)
    with _blas_threads():
        realism = sample_metrics.realism_metrics(references.real, samples, extractor, seed=seed)
        memorization = references.memorization(samples)
    diversity = {
        "pixel_l2_fake": realism.pop("pixel_l2_diversity_fake"),
        "pixel_l2_real": realism.pop("pixel_l2_diversity_real"),
        "ms_ssim_fake": sample_metrics.mean_pairwise_ms_ssim(samples, seed=seed),
        "ms_ssim_real": references.real_ms_ssim,
    }
    for side in ("fake", "real"):
        if f"feature_diversity_{side}" in realism:
            diversity[f"feature_l2_{side}"] = realism.pop(f"feature_diversity_{side}")
    if "reason" in realism:
        realism["reason"] = _display_text(realism["reason"])
    report = {
        "sampler": _sampler_name(sampler),
        "temperature": float(temperature),
        "seed": seed,
        "n_images": n,
        "n_real": len(references.real),
        "fid_comparable": bool(n >= sample_metrics.FID_COMPARABLE_SAMPLES),
        "realism": realism,
        "diversity": diversity,
        "memorization": memorization,
    }
    return report, samples


def reference_report(model, references: SampleReferences, seed: int = 0) -> dict:
    """The reference rows beside the samplers, measured against the same held-out faces.

    ``real_test``: the held-out faces themselves (face rate, pairwise MS-SSIM), with the SWD
    between them and as many random training faces: the floor SWD reaches for two real sets.
    ``reconstructions``: the decoded ``z_mean`` of the held-out faces, the "blurry but a face"
    row (at 64 px the SWD mostly measures blur; at 16 px layout and colour).

    Returns:
        ``{name: {"sampler": name, "description", "temperature": None, "n_images",
        "realism": {"swd": {...}, "face_rate"}, "diversity": {"ms_ssim_fake"}}}`` for each
        name of ``REFERENCE_SETS``; SWD x 1e3 per level and mean, face rate in [0, 1].
    """
    real = references.real
    rows = np.sort(np.random.default_rng(seed).choice(
        len(references.train), min(len(real), len(references.train)), replace=False))
    sets = {
        "real_test": (as_float_images(np.asarray(references.train[rows])), real),
        "reconstructions": (real, np.clip(model.reconstruct(real), 0.0, 1.0)),
    }
    out = {}
    for name, (reference, images) in sets.items():
        with _blas_threads():
            swd = sample_metrics.sliced_wasserstein(reference, images, seed=seed)
        ms_ssim = (references.real_ms_ssim if name == "real_test"
                   else sample_metrics.mean_pairwise_ms_ssim(images, seed=seed))
        out[name] = {
            "sampler": name, "description": REFERENCE_SETS[name], "temperature": None,
            "n_images": len(images),
            "realism": {"swd": swd, "face_rate": sample_metrics.face_detection_rate(images)},
            "diversity": {"ms_ssim_fake": ms_ssim},
        }
    return out


def face_space_report(model, references: SampleReferences, samples: dict, seed: int = 0,
                      **settings) -> dict:
    """The samples, the test reconstructions and the calibration rows in dlib's face space.

    ``facespace.face_space_table`` of ``references.real`` (the test faces) and
    ``references.train``, with every sample set of ``samples`` (``{"<sampler>_t<T>":
    images}``) and ``"reconstructions"`` (the decoded ``z_mean`` of the test faces).
    ``settings`` go to ``face_space_table`` (``max_per_half``, ``max_train``, ...).

    Returns:
        ``{"rows": {...}, "settings": {...}}`` as ``face_space_table``, or ``{"skipped":
        reason}`` when dlib or its models are not installed (the reason says what to install).
    """
    reason = facespace.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    sets = {**samples, "reconstructions": np.clip(model.reconstruct(references.real), 0.0, 1.0)}
    with _blas_threads():
        return facespace.face_space_table(references.real, references.train, sets, seed=seed,
                                          **settings)


def sample_table(reports) -> pd.DataFrame:
    """One row per ``sample_report`` (or ``reference_report`` row) dict: the headline numbers
    side by side (face rate in [0, 1]; SWD x 1e3 per pyramid level, coarsest first, and their
    mean); NaN where a row has no such number."""
    rows = []
    for report in reports:
        realism, diversity = report["realism"], report["diversity"]
        levels = {f"{k}_x1e3": v for k, v in realism["swd"].items() if k != "swd_mean"}
        nearest = (report.get("memorization") or {}).get("sample_to_train") or {}
        temperature = report.get("temperature")
        rows.append({
            "sampler": report["sampler"],
            "temperature": np.nan if temperature is None else temperature,
            "n_images": report["n_images"],
            "face_rate": realism.get("face_rate", np.nan),
            **dict(sorted(levels.items(), key=lambda kv: int(kv[0].split("_")[1]))),
            "swd_mean_x1e3": realism["swd"]["swd_mean"],
            "fid": realism.get("fid", np.nan),
            "kid_mean": realism.get("kid_mean", np.nan),
            "precision": realism.get("precision", np.nan),
            "recall": realism.get("recall", np.nan),
            "pixel_l2_diversity": diversity.get("pixel_l2_fake", np.nan),
            "ms_ssim_between_samples": diversity["ms_ssim_fake"],
            "nearest_train_median": nearest.get("median", np.nan),
        })
    return pd.DataFrame(rows).set_index(["sampler", "temperature"])


def real_reference_row(references: SampleReferences) -> dict:
    """The same diversity and nearest-training numbers for held-out real faces."""
    return {
        "pixel_l2_diversity": sample_metrics.mean_pairwise_distance(references.real, seed=references.seed),
        "ms_ssim_between_samples": references.real_ms_ssim,
        "nearest_train_median": float(np.median(references.test_to_train)),
    }


# -- the whole run ----------------------------------------------------------------------


def _log(verbose: bool, text: str) -> None:
    if verbose:
        print(text, file=sys.stderr, flush=True)


def evaluate_run(run_dir, n_samples: int | None = None, allow_download: bool = False,
                 sampler: str | None = None, extractor=None, *, data_dir=None, cache_dir=None,
                 out=None, seed: int = 0, n_anomaly: int = 2000,
                 memorization_queries: int = 500, verbose: bool = True,
                 n_test: int | None = None, anomaly: bool = True,
                 checkpoint: str = "model.keras", face_space: bool = True) -> dict:
    """Evaluate a finished run on its held-out test split; write and return ``metrics.json``.

    The one evaluator: the main run and every run of the study write this schema. A smaller
    evaluation (the study's) sets ``n_test``, ``n_samples`` and ``anomaly=False``.

    Args:
        run_dir: the run folder (``config.json``, ``model.keras``).
        n_samples: samples per sampler; default the size of the test split, capped at
            10,000 (needed for FIDs comparable across runs; below 2,048 FID is biased and
            ``sample_metrics.fid`` warns).
        n_test: use the first ``n_test`` test images (reconstruction, latent statistics and
            the real images samples are compared with); default all.
        anomaly: run the anomaly detection part (the slowest); ``False`` writes
            ``anomaly: {"skipped": true, "results": {}}``.
        checkpoint: the saved model to evaluate (``model.keras``, the best by validation
            loss, or ``last.keras``, the model after the last epoch).
        allow_download: fetch the InceptionV3 weights when missing (the only network use).
            Without them FID/KID/precision/recall are ``available: false`` with the reason.
        sampler: ``"prior"``, ``"two_stage"`` or ``"gmm"`` for one sampler; ``None`` for all
            (the prior at temperatures 1.0 and 0.7, the others at 1.0). The two-stage VAE is
            the run's ``two_stage.keras``, fitted and saved first when missing or stale.
        extractor: a feature extractor to use instead of InceptionV3.
        data_dir, cache_dir: evaluate on another dataset (another CelebA folder, prepared
            into ``cache_dir``). The result then goes to ``metrics_<folder name>.json``
            unless ``out`` says otherwise, so the run's own ``metrics.json`` stays.
        out: path of the JSON file.
        n_anomaly: clean test faces (and as many of each anomaly) for anomaly detection.
        memorization_queries: samples whose nearest training face is searched.
        face_space: run ``face_space_report`` (dlib; about 0.12 s of one core per image, some
            6,000 images for a 965-face test split); ``False`` writes ``face_space:
            {"skipped": ...}``, as does a machine without dlib.

    Returns:
        the dict written: ``version``, ``created``, ``run``, ``profile``, ``demo``,
        ``model``, ``data``, ``settings``, ``training``, ``reconstruction``,
        ``per_attribute``, ``latent``, ``samples`` (one report per sampler and temperature,
        key ``<sampler>_t<T>``), ``sample_references`` (``reference_report``: the real-face
        floor and the reconstructions, with the same face rate, SWD and MS-SSIM),
        ``face_space`` (``face_space_report``), ``anomaly``, ``timings_s`` and ``summary``.
    """
    from resvae_keras import data

    started = time.perf_counter()
    timings = {}
    path = resolve_run_dir(run_dir)
    run_config, model = load_run(path, checkpoint)
    overrides = {k: v for k, v in {"data_dir": data_dir, "cache_dir": cache_dir}.items() if v}
    config = run_config.replace(**overrides) if overrides else run_config
    if out is None:
        other = Path(str(data_dir or cache_dir)).name if overrides else None
        out = path / (f"metrics_{other}.json" if other else "metrics.json")
    cache = data.load_cache(config, progress=verbose)
    if not overrides:
        from resvae_keras.run_dir import SPLIT_FILE, check_run_split

        if not check_run_split(path, cache, "evaluate"):
            print(f"warning: {_display_text(str(path))} has no {SPLIT_FILE} (trained by an "
                  "older version), so its test split cannot be checked against the split it "
                  "was trained on; if the data changed since training, test images may be "
                  "images it trained on", file=sys.stderr, flush=True)
    test_images = split_images(cache, "test", n_test)
    attributes = cache.attributes_of("test").iloc[: len(test_images)]
    n_samples = min(len(test_images), MAX_DEFAULT_SAMPLES) if n_samples is None else int(n_samples)
    if n_samples < sample_metrics.FID_MIN_SAMPLES:
        _log(verbose, f"note: {n_samples} samples per sampler; FID needs >= "
                      f"{sample_metrics.FID_COMPARABLE_SAMPLES:,} to compare across runs")
    samplers = SAMPLERS if sampler is None else (sampler,)
    for name in samplers:
        if name not in SAMPLERS:
            raise ValueError(f"sampler={name!r} is not one of {list(SAMPLERS)} (or None for all)")

    tick = time.perf_counter()
    per_image, _, breakdown = reconstruction_report(model, test_images, attributes, seed=seed)
    timings["reconstruction"] = time.perf_counter() - tick
    _log(verbose, f"reconstruction of {len(test_images)} test images: {timings['reconstruction']:.1f} s")

    tick = time.perf_counter()
    linear = baselines.pca_baselines(split_view(cache, "train"), test_images, model.latent_dim,
                                     seed)
    timings["baselines"] = time.perf_counter() - tick
    _log(verbose, f"PCA baselines (k = {', '.join(str(b['n_components']) for b in linear.values())}):"
                  f" {timings['baselines']:.1f} s")

    tick = time.perf_counter()
    z_mean, z_log_var = latent.encode_dataset(model, test_images)
    latent_numbers = latent_report(z_mean, z_log_var)
    timings["latent"] = time.perf_counter() - tick

    features = feature_extractor(allow_download, extractor)
    references = SampleReferences.from_cache(
        cache, min(len(test_images), MAX_DEFAULT_SAMPLES), memorization_queries, seed)
    samples, sample_images = {}, {}
    for name in samplers:
        tick = time.perf_counter()
        # the second stage belongs to the run: fitted on (and saved with) its own training codes
        sampler_object = make_sampler(model, name, None if overrides else cache, seed=seed,
                                      config=run_config, checkpoint=checkpoint)
        for temperature in TEMPERATURES[name]:
            report, images = sample_report(model, references, sampler_object, n_samples,
                                           temperature=temperature, seed=seed, extractor=features)
            samples[f"{name}_t{temperature:g}"] = report
            # the face-space step uses at most MAX_PER_HALF of them, and reads 8-bit images
            sample_images[f"{name}_t{temperature:g}"] = to_uint8(images[: facespace.MAX_PER_HALF])
        timings[f"samples_{name}"] = time.perf_counter() - tick
        _log(verbose, f"samples from {name}: {timings[f'samples_{name}']:.1f} s")
    tick = time.perf_counter()
    sample_references = reference_report(model, references, seed=seed)
    timings["sample_references"] = time.perf_counter() - tick
    tick = time.perf_counter()
    face_space_numbers = (
        # the memorization check describes at most 4 training faces per sample: all 2,000
        # for the main run, a few hundred for a small (study or demo) evaluation
        face_space_report(model, references, sample_images, seed=seed,
                          max_train=min(facespace.MAX_TRAIN, 4 * n_samples),
                          progress=None if verbose else False)
        if face_space else {"skipped": "not asked for (face_space=False)"})
    timings["face_space"] = time.perf_counter() - tick
    _log(verbose, f"face space: {timings['face_space']:.1f} s")

    if anomaly:
        tick = time.perf_counter()
        n_clean = min(len(test_images), int(n_anomaly))
        table = anomaly_report(model, test_images[:n_clean], seed=seed)
        timings["anomaly"] = time.perf_counter() - tick
        results: dict = {}
        for (kind, score), row in table.iterrows():
            results.setdefault(kind, {})[score] = {
                k: row[k] for k in ("auroc", "ap", "mean_clean", "mean_anomalous")
            }
        anomaly_numbers = {
            "n_clean": n_clean,
            "n_anomalous_per_set": n_clean,
            "seed": seed,
            "corruption_strengths": CORRUPTION_STRENGTHS,
            "non_face_kinds": list(NON_FACE_KINDS),
            "scores": ANOMALY_SCORES,
            "results": results,
        }
    else:
        anomaly_numbers = {"skipped": True, "results": {}}
    timings["total"] = time.perf_counter() - started

    reconstruction = reconstruction_dict(per_image, model)
    result = {
        "version": METRICS_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": path.name,
        "profile": config.profile,
        "demo": bool(cache.is_demo),
        "model": {
            "params": int(model.count_params()),
            "latent_dim": model.latent_dim,
            "image_size": model.image_size,
            "widths": list(model.widths),
            "architecture": getattr(model, "architecture", "resnet"),
            "residual": model.residual,
            "kind": model.kind,
            "likelihood": model.likelihood,
            "beta": model.beta,
            "decoder_sigma": model.decoder_sigma,
        },
        "data": {
            "source": cache.manifest.get("source_display"),
            "split": "test",
            "split_rule": cache.manifest.get("split_rule"),
            "split_counts": cache.manifest.get("split_counts"),
        },
        "settings": {
            "n_test": len(test_images),
            "n_samples": n_samples,
            "checkpoint": checkpoint,
            "samplers": list(samplers),
            "temperatures": {name: list(TEMPERATURES[name]) for name in samplers},
            "seed": seed,
            "allow_download": allow_download,
            "extractor": features.name,
            "memorization_queries": memorization_queries,
        },
        "training": training_summary(path, model),
        "reconstruction": reconstruction,
        "baselines": linear,
        "per_attribute": {
            "error": "mse",
            "n_images": len(per_image),
            "rows": breakdown.to_dict(orient="index"),
        },
        "latent": latent_numbers,
        "samples": samples,
        "sample_references": sample_references,
        "face_space": face_space_numbers,
        "anomaly": anomaly_numbers,
        "timings_s": timings,
    }
    result["summary"] = _summary(result)
    result = _jsonable(result)
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    _log(verbose, f"wrote {_display_text(str(out))} in {timings['total']:.1f} s")
    return result


def training_summary(run_dir, model=None) -> dict:
    """How the run was trained, from its ``history.csv`` (and the evaluated model's optimizer).

    Returns a JSON-ready dict: ``epochs``, ``steps`` (optimizer steps of the evaluated model;
    None without an optimizer), ``wall_time_s`` and ``median_epoch_time_s`` (as measured,
    under whatever load the machine had), ``best_val_loss`` and ``final_val_neg_elbo`` (the
    validation negative ELBO at beta = 1 after the last epoch, nats per image).
    """
    from resvae_keras.train import load_history

    history = load_history(run_dir)
    optimizer = getattr(model, "optimizer", None)
    steps = int(_to_numpy(optimizer.iterations)) if optimizer is not None else None
    if not len(history):
        return {"epochs": 0, "steps": steps}
    if "val_neg_elbo" in history.columns:
        neg_elbo = history["val_neg_elbo"]
    elif {"val_reconstruction_loss", "val_kl_loss"} <= set(history.columns):
        neg_elbo = history["val_reconstruction_loss"] + history["val_kl_loss"]
    else:
        neg_elbo = None
    return {
        "epochs": len(history),
        "steps": steps,
        "wall_time_s": float(history["wall_time_s"].iloc[-1]) if "wall_time_s" in history else None,
        "median_epoch_time_s": (float(history["epoch_time_s"].median())
                                if "epoch_time_s" in history else None),
        "best_val_loss": float(history["val_loss"].min()) if "val_loss" in history else None,
        "final_val_neg_elbo": float(neg_elbo.iloc[-1]) if neg_elbo is not None else None,
    }


def _summary(result: dict) -> dict:
    """The headline numbers of a metrics dict, flat, for the report tables."""
    rec = result["reconstruction"]
    summary = {
        "profile": result["profile"],
        "demo": result["demo"],
        "n_test_images": rec["n_images"],
        "mse": rec["mse"]["mean"],
        "psnr_db": rec["psnr"]["mean"],
        "ssim": rec["ssim"]["mean"],
        "ms_ssim": rec["ms_ssim"]["mean"],
        "neg_elbo_nats": rec["neg_elbo_nats"]["mean"],
        "bits_per_dim": rec["bits_per_dim"]["mean"],
        "kl_nats": rec["kl_nats"]["mean"],
        "sharpness_ratio": rec.get("sharpness_ratio"),
        "active_units": result["latent"]["active_units"],
        "latent_dim": result["latent"]["latent_dim"],
        "n_samples": result["settings"]["n_samples"],
    }
    for key, baseline in result.get("baselines", {}).items():
        summary[f"psnr_db_{key}"] = baseline["psnr"]["mean"]  # e.g. psnr_db_pca_128
        summary[f"bits_per_dim_{key}"] = baseline["ppca_bits_per_dim"]
    for key, report in {**result["samples"], **result.get("sample_references", {})}.items():
        realism = report["realism"]
        summary[f"swd_{key}"] = realism["swd"]["swd_mean"]
        for level, value in realism["swd"].items():
            if level != "swd_mean":
                summary[f"{level}_{key}"] = value  # e.g. swd_16_prior_t1, swd_16_real_test
        summary[f"face_rate_{key}"] = realism.get("face_rate")
    for key, report in result["samples"].items():
        realism = report["realism"]
        summary[f"fid_{key}"] = realism.get("fid")
        summary[f"kid_{key}"] = realism.get("kid_mean")
        summary[f"precision_{key}"] = realism.get("precision")
        summary[f"recall_{key}"] = realism.get("recall")
    summary["fid_available"] = any(r["realism"]["available"] for r in result["samples"].values())
    for anomaly, by_score in result["anomaly"]["results"].items():
        summary[f"auroc_{anomaly}"] = by_score["neg_elbo"]["auroc"]
    return summary


# -- CLI helpers ------------------------------------------------------------------------


def evaluate_folder(run_dir, data_dir, cache_dir=None) -> Path:
    """Reconstruction metrics of a run on EVERY image of another CelebA-layout folder.

    The folder is cropped and cached like the training data (``data.prepare``, into
    ``cache_dir``, default ``data/cache/<folder name>``); splits are ignored. Writes
    ``run_dir/metrics_<folder name>.json`` with ``data`` and ``reconstruction`` and
    returns its path. Used for the generalization check on other face crops.
    """
    from resvae_keras import data
    from resvae_keras.data._io import display_path

    config, model = load_run(run_dir)
    folder = Path(data_dir).name
    cache = data.prepare(data_dir, size=config.image_size,
                         cache_dir=cache_dir or config.resolve(f"data/cache/{folder}"),
                         progress=False)
    result = {
        "data": {"source": display_path(data_dir), "n_images": len(cache),
                 "crop_rule": cache.manifest.get("crop_rule")},
        "reconstruction": evaluate_reconstruction_on(model, np.asarray(cache.images)),
    }
    out = resolve_run_dir(run_dir) / f"metrics_{folder}.json"
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    return out


def write_samples(run_dir, n: int = 64, out_dir="samples", temperature: float = 1.0,
                  sampler: str = "two_stage", seed: int = 0, batch_size: int = 256) -> list[Path]:
    """Decode ``n`` samples of a run and write them as ``sample_00000.png`` ... in ``out_dir``.

    ``sampler="gmm"`` fits the mixture on the run's training codes first (loads the cache);
    ``sampler="two_stage"`` loads the run's ``two_stage.keras`` (fitting and saving it first,
    with a message, when it is missing or older than ``model.keras``). Samples are drawn,
    decoded and written ``batch_size`` at a time (batch ``b > 0`` with a seed derived from
    ``(seed, b)``), so memory does not grow with ``n``. Nothing is written for a
    non-finite ``temperature``, a model or second stage with non-finite weights, or when
    ``out_dir``'s disk lacks room for ``n`` images; a batch that decodes to non-finite
    pixels removes this call's images and raises ``ValueError``. Returns the paths written.
    """
    from PIL import Image

    from resvae_keras.data._io import check_free_space

    n = latent._check_count(n, "n (--n)")
    temperature = latent.check_temperature(temperature)
    if isinstance(seed, bool) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed={seed!r} (--seed): expected an integer in [0, 4294967295]")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir={str(out_dir)!r} (--out) is a file; give a folder for the PNGs")
    config, model = load_run(run_dir)
    # a face PNG takes about a quarter of its raw pixels; more files than that cannot fit
    check_free_space(out, n * config.image_size**2 * 3 // 4, f"{n:,} samples (--n)")
    cache = None
    if sampler == "gmm":
        from resvae_keras import data

        cache = data.load_cache(config, progress=False)
    sampler_object = make_sampler(model, sampler, cache, seed=seed, config=config)
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
