"""A sampler's faces judged against held-out faces: realism, diversity and memorization,
beside the reference rows (real faces, reconstructions) and in dlib's face space. Images are
float32 in [0, 1], (N, S, S, 3) (uint8 accepted); distances are pixel L2, intensities in [0, 1].
"""

from __future__ import annotations

import functools

import numpy as np

from resvae_keras import facespace, inception, latent, sample_metrics
from resvae_keras.data._io import blas_threads, display_path
from resvae_keras.data.images import as_float_images

MAX_DEFAULT_SAMPLES = sample_metrics.FID_COMPARABLE_SAMPLES
"""Cap on the default sample count, the size of the test split."""
REFERENCE_SETS = {
    "real_test": "held-out test faces, against as many training faces (other people): the floor",
    "reconstructions": "the test faces' reconstructions from z_mean: blurry, but faces",
}


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


class _MemoizedFeatures:
    """A feature extractor that remembers the features of arrays it has seen and a failure
    to load (reported once, not retried per sampler)."""

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
            # the message reaches metrics.json: show the weights file as display_path does
            message, weights = str(exc), getattr(self.extractor, "weights_file", lambda: None)()
            if weights is not None:
                message = message.replace(str(weights), display_path(weights))
            self._failure = inception.FeatureExtractorUnavailable(message)
            raise self._failure from exc
        self._memo.append((images, features))
        return features


def feature_extractor(allow_download: bool = False, extractor=None):
    """The feature network for FID/KID/precision/recall (default ``InceptionFeatures``),
    remembering the features it computed."""
    if extractor is None:
        extractor = inception.InceptionFeatures(allow_download=allow_download)
    return extractor if isinstance(extractor, _MemoizedFeatures) else _MemoizedFeatures(extractor)


def nearest_training_neighbours(images, train_images):
    """``(indices, distances)`` of the nearest ``train_images`` (uint8, a memmap is fine, or
    float) in pixel L2, intensities in [0, 1]."""
    scale = 255.0 if np.asarray(train_images[:1]).dtype == np.uint8 else 1.0
    with blas_threads():
        indices, distances = sample_metrics.nearest_neighbours(
            as_float_images(images) * scale, train_images)
    return indices, distances / scale


class SampleReferences:
    """The held-out faces samples are judged against, and the training faces (uint8, a memmap
    is fine) the memorization check searches with ``memorization_queries`` images; numbers
    about them are kept. ``real_ids``, ``train_ids``: person ids (-1 unknown) or None."""

    def __init__(self, real_images, train_images, memorization_queries: int = 500, seed: int = 0,
                 real_ids=None, train_ids=None):
        self.real = as_float_images(real_images)
        self.train = train_images
        self.memorization_queries = int(memorization_queries)
        self.seed = seed
        self.real_ids = None if real_ids is None else np.asarray(real_ids)
        self.train_ids = None if train_ids is None else np.asarray(train_ids)

    @classmethod
    def from_cache(cls, cache, max_real: int | None = MAX_DEFAULT_SAMPLES,
                   memorization_queries: int = 500, seed: int = 0) -> SampleReferences:
        """The first ``max_real`` test images, all of train, and the cache's person ids."""
        return cls(cache.images_of("test", max_real), cache.view_of("train"),
                   memorization_queries, seed, real_ids=cache.identities_of("test", max_real),
                   train_ids=cache.identities_of("train"))

    @functools.cached_property
    def real_ms_ssim(self) -> float:
        """Mean MS-SSIM of random pairs of real images (the diversity of the data)."""
        return sample_metrics.mean_pairwise_ms_ssim(self.real, seed=self.seed)

    @functools.cached_property
    def test_to_train(self) -> np.ndarray:
        """Distances of held-out faces to their nearest training face (the reference)."""
        return nearest_training_neighbours(self.real[: self.memorization_queries], self.train)[1]

    @functools.cached_property
    def identity(self) -> dict:
        """Quantiles of the distances of held-out and of training faces to the nearest
        training face of the same and of another person; ``available: false`` without ids."""
        if self.real_ids is None or self.train_ids is None:
            return {"available": False,
                    "reason": "the data has no person identities (identity_CelebA.txt), so "
                              "same- and different-person distances are not available"}
        n = min(self.memorization_queries, len(self.train))
        train_rows = np.sort(np.random.default_rng(self.seed).choice(
            len(self.train), n, replace=False))
        queries = {  # images, their person ids, their rows in train
            "test": (self.real[: self.memorization_queries],
                     self.real_ids[: self.memorization_queries], None),
            "train": (self.train[train_rows], self.train_ids[train_rows], train_rows),
        }
        scale = 255.0 if np.asarray(self.train[:1]).dtype == np.uint8 else 1.0
        result = {"available": True,
                  "n_test_queries": int(min(self.memorization_queries, len(self.real))),
                  "n_train_queries": int(n)}
        for name, (images, ids, rows) in queries.items():
            with blas_threads():
                found = sample_metrics.nearest_by_identity(
                    as_float_images(images) * scale, ids, self.train, self.train_ids, rows)
            for kind in ("same", "different"):
                result[f"{name}_to_train_{kind}_identity"] = _quantiles(found[kind] / scale)
        return result

    def memorization(self, samples) -> dict:
        """Nearest-training-face distances of samples against those of held-out faces."""
        queries = as_float_images(samples)[: self.memorization_queries]
        sample_to_train = nearest_training_neighbours(queries, self.train)[1]
        same = (self.identity.get("train_to_train_same_identity") or {}).get("median")
        return {
            "n_queries": len(queries),
            "n_train": len(self.train),
            "distance": "pixel L2, intensities in [0, 1]",
            "sample_to_train": _quantiles(sample_to_train),
            "test_to_train": _quantiles(self.test_to_train),
            "median_ratio": float(np.median(sample_to_train) / np.median(self.test_to_train)),
            "share_closer_than_test_p01": float(np.mean(
                sample_to_train < np.quantile(self.test_to_train, 0.01))),
            "identity": self.identity,
            "median_ratio_to_same_identity": (
                float(np.median(sample_to_train) / same) if same else None),
        }


def sample_report(model, references: SampleReferences, sampler="prior", n: int | None = None,
                  *, temperature: float = 1.0, seed: int = 0, extractor=None):
    """``(report, samples)``: ``n`` samples (default as many as real images, at most 10,000),
    float32 (n, S, S, 3), and a JSON-ready dict with ``realism``, ``diversity`` and
    ``memorization``. ``sampler``: a sampler or ``"prior"``; ``extractor``: feature network
    for FID/KID/precision/recall, None for offline only."""
    n = min(len(references.real), MAX_DEFAULT_SAMPLES) if n is None else int(n)
    sampler_object = latent.make_sampler(model, sampler, seed=seed)
    extractor = None if extractor is None else feature_extractor(extractor=extractor)
    samples = latent.sample_images(model, sampler_object, n=n, temperature=temperature, seed=seed)
    samples = np.clip(samples, 0.0, 1.0)
    with blas_threads():
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
    report = {
        "sampler": latent.sampler_name(sampler),
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
    """The rows of ``REFERENCE_SETS``, measured like samples: SWD (``real_test``: against as
    many training faces), face rate and pairwise MS-SSIM."""
    real = references.real
    rows = np.sort(np.random.default_rng(seed).choice(
        len(references.train), min(len(real), len(references.train)), replace=False))
    sets = {
        "real_test": (as_float_images(np.asarray(references.train[rows])), real),
        "reconstructions": (real, np.clip(model.reconstruct(real), 0.0, 1.0)),
    }
    out = {}
    for name, (reference, images) in sets.items():
        with blas_threads():
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
    """``facespace.face_space_table`` of the test faces with ``samples`` (``{name: images}``)
    and the reconstructions; ``{"skipped": reason}`` without dlib. ``settings`` go to it."""
    reason = facespace.unavailable_reason()
    if reason is not None:
        return {"skipped": reason}
    sets = {**samples, "reconstructions": np.clip(model.reconstruct(references.real), 0.0, 1.0)}
    with blas_threads():
        return facespace.face_space_table(references.real, references.train, sets, seed=seed,
                                          **settings)


def real_reference_row(references: SampleReferences) -> dict:
    """The diversity and nearest-training numbers of the held-out real faces."""
    return {
        "pixel_l2_diversity": sample_metrics.mean_pairwise_distance(references.real,
                                                                    seed=references.seed),
        "ms_ssim_between_samples": references.real_ms_ssim,
        "nearest_train_median": float(np.median(references.test_to_train)),
    }
