"""Measures of a set of samples against real images: realism, diversity, memorization.

Images are float32 in [0, 1], NHWC (uint8 accepted); features are arrays (N, D). TensorFlow,
Keras and OpenCV are imported only inside the functions that need them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from resvae_keras import metrics
from resvae_keras.data.images import as_float_images, to_uint8
from resvae_keras.inception import FeatureExtractorUnavailable

FID_MIN_SAMPLES = 2048
FID_COMPARABLE_SAMPLES = 10_000


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)). As
    the reference FID code (Heusel et al. 2017): ``eps`` is added to both diagonals when the
    square root is not finite; an imaginary part above 1e-3 on the diagonal is an error."""
    from scipy import linalg

    mu1, mu2 = (np.atleast_1d(np.asarray(mu, np.float64)) for mu in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(sigma, np.float64)) for sigma in (sigma1, sigma2))
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(mu1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"Matrix square root has imaginary part {np.max(np.abs(covmean.imag)):.3g}; "
                "the covariances are badly conditioned (use more samples)."
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def fid(real_feats, fake_feats) -> float:
    """Fréchet Inception Distance of two feature sets (N, D), squared feature units. Biased
    upward at small N: compare only values with the same N (``FID_COMPARABLE_SAMPLES``) and
    extractor; below ``FID_MIN_SAMPLES`` a ``UserWarning`` says so."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    if min(len(real), len(fake)) < FID_MIN_SAMPLES:
        warnings.warn(
            f"FID from {len(real)} real and {len(fake)} fake samples (< {FID_MIN_SAMPLES:,}): "
            "the 2048-d covariance is singular and the value is biased upward; it is not "
            f"comparable with FIDs from other sample sizes ({FID_COMPARABLE_SAMPLES:,} needed).",
            UserWarning,
            stacklevel=2,
        )
    return frechet_distance(
        real.mean(axis=0), np.cov(real, rowvar=False), fake.mean(axis=0), np.cov(fake, rowvar=False)
    )


def kid(real_feats, fake_feats, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): ``(mean, std)`` over random subsets
    of m = min(subset_size, N_real, N_fake) rows of each set of the unbiased MMD^2 (may be
    < 0) with kernel k(x, y) = (x.y / D + 1)^3."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    m = min(subset_size, len(real), len(fake))
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for s in range(n_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / a.shape[1] + 1.0) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[s] = within - 2.0 * k_xy.sum() / (m * m)
    return float(values.mean()), float(values.std())


def _squared_norms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def _knn_radii_squared(features: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row (itself excluded)."""
    radii = []
    for i, d2 in zip(range(0, len(features), batch_size),
                     _distance_blocks(features, features, batch_size), strict=True):
        d2 = np.maximum(d2, 0.0)
        d2[np.arange(len(d2)), np.arange(i, i + len(d2))] = 0.0
        radii.append(np.partition(d2, k, axis=1)[:, k])
    return np.concatenate(radii)


def _distance_blocks(queries: np.ndarray, centres: np.ndarray, batch_size: int):
    """Squared distances of ``batch_size`` queries at a time to every centre."""
    centre_norms = _squared_norms(centres)
    for i in range(0, len(queries), batch_size):
        block = queries[i : i + batch_size]
        yield _squared_norms(block)[:, None] + centre_norms[None, :] - 2.0 * block @ centres.T


def precision_recall(real_feats, fake_feats, k: int = 3,
                     batch_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), each in [0, 1]: the share of
    fakes inside the real manifold and of reals inside the fake one, a manifold being the union
    of balls reaching each point's k-th nearest neighbour in its set."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    shares = []
    for queries, centres in ((fake, real), (real, fake)):
        radii2 = _knn_radii_squared(centres, k, batch_size)
        inside = sum(int(np.count_nonzero((d2 <= radii2[None, :]).any(axis=1)))
                     for d2 in _distance_blocks(queries, centres, batch_size))
        shares.append(inside / len(queries))
    return shares[0], shares[1]


def density_coverage(real_feats, fake_feats, k: int = 5,
                     batch_size: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) from the real set's k-NN balls. Density: real
    balls strictly containing each fake, summed, over k x N_fake (~1 when matched, unbounded).
    Coverage: share of real balls holding a fake, in [0, 1]."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    if k < 1 or k >= len(real) or len(fake) < 1:
        raise ValueError(
            f"`k` must be in [1, N_real - 1] and there must be fakes; got k={k} with "
            f"{len(real)} real and {len(fake)} fake samples."
        )
    radii2 = _knn_radii_squared(real, k, batch_size)
    inside_count = 0
    covered = np.zeros(len(real), dtype=bool)
    for d2 in _distance_blocks(fake, real, batch_size):
        inside = d2 < radii2[None, :]
        inside_count += int(np.count_nonzero(inside))
        covered |= inside.any(axis=0)
    return inside_count / (k * len(fake)), float(covered.mean())


def _random_pairs(n: int, max_pairs: int, rng: np.random.Generator):
    """All i < j pairs when there are at most max_pairs, else max_pairs random pairs i != j."""
    if n < 2:
        raise ValueError(f"Pairwise measures need at least 2 samples; got {n}.")
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    i = rng.integers(0, n, size=max_pairs)
    j = (i + rng.integers(1, n, size=max_pairs)) % n  # never equal to i
    return i, j


def mean_pairwise_distance(features, max_pairs: int = 100_000, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct samples (N, ...), flattened; higher = more
    diverse. Every pair when there are at most ``max_pairs``, else that many random pairs."""
    flat = np.asarray(features).reshape(len(features), -1)
    i, j = _random_pairs(len(flat), max_pairs, np.random.default_rng(seed))
    total = 0.0
    rows = max(1, 2**22 // flat.shape[1])  # about 32 MB per block
    for start in range(0, len(i), rows):
        a = flat[i[start : start + rows]].astype(np.float64)
        b = flat[j[start : start + rows]].astype(np.float64)
        total += float(np.sqrt(np.square(a - b).sum(axis=1)).sum())
    return total / len(i)


def mean_pairwise_ms_ssim(images, n_pairs: int = 1000, seed: int = 0) -> float:
    """Mean MS-SSIM of random distinct pairs of images; lower = more diverse."""
    images = as_float_images(images, "images")
    i, j = _random_pairs(len(images), n_pairs, np.random.default_rng(seed))
    return float(np.mean(metrics.ms_ssim(images[i], images[j])))


def nearest_neighbours(queries, references, batch_size: int = 512,
                       allowed: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, distances)``, each (N,): the exact Euclidean nearest of ``references``
    (M, ...) to each query (N, ...), flattened, in the input's units, among the pairs
    ``allowed(query rows, reference rows)`` permits (None: all; none: inf). A uint8 memmap of
    references is read one block at a time."""
    queries = np.asarray(queries).reshape(len(queries), -1)
    references = np.asarray(references).reshape(len(references), -1)
    indices = np.zeros(len(queries), dtype=np.int64)
    distances = np.zeros(len(queries))
    for q_start in range(0, len(queries), batch_size):
        q = queries[q_start : q_start + batch_size].astype(np.float64)
        q_rows = np.arange(q_start, q_start + len(q))
        q_norms = _squared_norms(q)
        best_d2 = np.full(len(q), np.inf)
        best_idx = np.zeros(len(q), dtype=np.int64)
        for r_start in range(0, len(references), batch_size):
            ref = references[r_start : r_start + batch_size].astype(np.float64)
            r_rows = np.arange(r_start, r_start + len(ref))
            d2 = q_norms[:, None] + _squared_norms(ref)[None, :] - 2.0 * q @ ref.T
            if allowed is not None:
                d2 = np.where(allowed(q_rows, r_rows), np.maximum(d2, 0.0), np.inf)
            column = d2.argmin(axis=1)
            block_best = d2[np.arange(len(q)), column]
            better = block_best < best_d2  # ties keep the earlier reference
            best_d2[better] = block_best[better]
            best_idx[better] = r_start + column[better]
        # Recompute the chosen distances directly: the expansion above loses digits when a
        # sample is (nearly) copied, which is exactly the case memorization looks for.
        exact = np.sqrt(np.square(q - references[best_idx]).sum(axis=1))
        indices[q_start : q_start + len(q)] = best_idx
        distances[q_start : q_start + len(q)] = np.where(np.isfinite(best_d2), exact, np.inf)
    return indices, distances


def nearest_by_identity(queries, query_ids, references, reference_ids, query_rows=None,
                        batch_size: int = 512) -> dict[str, np.ndarray]:
    """``{"same": (N,), "different": (N,)}``: distance of each query to its nearest reference
    of the same and of another person, NaN where there is none. Ids: ints, -1 = unknown
    (never a neighbour). ``query_rows``: each query's row in ``references``, if any."""
    q_ids = np.asarray(query_ids).reshape(-1)
    r_ids = np.asarray(reference_ids).reshape(-1)
    if len(q_ids) != len(queries) or len(r_ids) != len(references):
        raise ValueError(
            f"one id per image: {len(q_ids)} query_ids for {len(queries)} queries, "
            f"{len(r_ids)} reference_ids for {len(references)} references."
        )
    rows = np.full(len(q_ids), -1) if query_rows is None else np.asarray(query_rows).reshape(-1)
    known = q_ids >= 0
    result = {"same": np.full(len(q_ids), np.nan), "different": np.full(len(q_ids), np.nan)}
    if not known.any():
        return result
    # Same person: only the references of the queries' people can qualify (a few per person).
    subset = np.flatnonzero(np.isin(r_ids, q_ids[known]) & (r_ids >= 0))
    if len(subset):
        def same(qi, ri):
            return ((q_ids[qi][:, None] == r_ids[subset[ri]][None, :])
                    & (rows[qi][:, None] != subset[ri][None, :]))

        result["same"] = nearest_neighbours(queries, np.asarray(references[subset]), batch_size,
                                            same)[1]

    def different(qi, ri):
        return ((q_ids[qi][:, None] != r_ids[ri][None, :]) & (r_ids[ri][None, :] >= 0)
                & known[qi][:, None])

    result["different"] = nearest_neighbours(queries, references, batch_size, different)[1]
    return {key: np.where(np.isfinite(d), d, np.nan) for key, d in result.items()}


_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # outer product = the 5x5 kernel / 256


def _blur(images: np.ndarray, gain: float = 1.0) -> np.ndarray:
    from scipy import ndimage

    out = ndimage.convolve1d(images, _BINOMIAL_5 * gain, axis=1, mode="mirror")
    return ndimage.convolve1d(out, _BINOMIAL_5 * gain, axis=2, mode="mirror")


def laplacian_pyramid(images, num_levels: int) -> list[np.ndarray]:
    """Laplacian pyramid (as ``cv2.pyrDown``/``pyrUp``): band-pass levels at full, 1/2, ...
    resolution; the last level is the low-pass image. Images (N, H, W, C), float32."""
    pyramid = [np.asarray(images, np.float32)]
    for _ in range(1, num_levels):
        pyramid.append(_blur(pyramid[-1])[:, ::2, ::2])
        n, height, width, channels = pyramid[-1].shape
        up = np.zeros((n, 2 * height, 2 * width, channels), np.float32)
        up[:, ::2, ::2] = pyramid[-1]
        up = _blur(up, gain=2.0)  # 2 x 2 = 4, the reference's gain
        pyramid[-2] = pyramid[-2] - up[:, : pyramid[-2].shape[1], : pyramid[-2].shape[2]]
    return pyramid


def _patches(level: np.ndarray, per_image: int, size: int, rng: np.random.Generator) -> np.ndarray:
    n, height, width, channels = level.shape
    half = size // 2
    image = np.repeat(np.arange(n), per_image)
    y = rng.integers(half, height - half, size=len(image))
    x = rng.integers(half, width - half, size=len(image))
    offsets = np.arange(-half, half + 1)
    return level[
        image[:, None, None], (y[:, None] + offsets)[:, :, None], (x[:, None] + offsets)[:, None, :]
    ]  # (n * per_image, size, size, channels)


def sliced_wasserstein(real_images, fake_images, *, patch_size: int = 7,
                       patches_per_image: int = 128, n_repeats: int = 4,
                       dirs_per_repeat: int = 128, min_resolution: int = 16,
                       max_descriptors: int = 2**17, seed: int = 0,
                       batch_size: int = 256) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance (Karras et al. 2018) x 1e3 of square images,
    lower = closer: ``{"swd_<res>": ..., "swd_mean": ...}``: the mean 1-D Wasserstein-1
    distance along ``n_repeats`` x ``dirs_per_repeat`` random directions of random 7x7x3
    patches, normalized per channel within each set, of each Laplacian-pyramid level down to
    ``min_resolution``; min(N_real, N_fake) images and at most ``max_descriptors`` patches."""
    real = as_float_images(real_images, "real_images")
    fake = as_float_images(fake_images, "fake_images")
    resolutions = []
    res = real.shape[1]
    while res >= max(min_resolution, patch_size):
        resolutions.append(res)
        res //= 2
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    real = real[np.sort(rng.choice(len(real), n, replace=False))] if len(real) > n else real
    fake = fake[np.sort(rng.choice(len(fake), n, replace=False))] if len(fake) > n else fake
    per_image = max(1, min(patches_per_image, max_descriptors // n))

    descriptors = {}
    for label, images in (("real", real), ("fake", fake)):
        levels = [[] for _ in resolutions]
        for start in range(0, n, batch_size):
            pyramid = laplacian_pyramid(images[start : start + batch_size], len(resolutions))
            for level, band in enumerate(pyramid):
                levels[level].append(_patches(band, per_image, patch_size, rng))
        descriptors[label] = []
        for parts in levels:
            patches = np.concatenate(parts)
            mean = patches.mean(axis=(0, 1, 2), keepdims=True)
            std = np.maximum(patches.std(axis=(0, 1, 2), keepdims=True), 1e-8)
            descriptors[label].append(((patches - mean) / std).reshape(len(patches), -1))

    result = {}
    for res, a, b in zip(resolutions, descriptors["real"], descriptors["fake"], strict=True):
        distances = []
        for _ in range(n_repeats):
            dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
            dirs = (dirs / np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))).astype(np.float32)
            proj_a = np.sort((a @ dirs).T, axis=1)  # sort along contiguous rows: faster
            proj_b = np.sort((b @ dirs).T, axis=1)
            distances.append(float(np.abs(proj_a - proj_b).mean()))
        result[f"swd_{res}"] = 1e3 * float(np.mean(distances))
    result["swd_mean"] = float(np.mean(list(result.values())))
    return result


FACE_CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_UPSCALE = 2
FACE_MIN_SIZE_FRACTION = 1.0 / 3.0
"""``face_detection_rate``: images upscaled 2x (bicubic) for the Haar cascade (Viola & Jones
2001), faces at least a third of the side."""


@functools.cache
def face_cascade():
    """OpenCV's frontal-face Haar cascade, loaded on first use and kept."""
    import cv2

    path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / FACE_CASCADE_FILE
    cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
    if cascade is None or cascade.empty():
        raise FileNotFoundError(
            f"OpenCV {cv2.__version__} ships no {FACE_CASCADE_FILE} (5.x dropped the Haar "
            "cascades): pip install opencv-python-headless==4.14.0.94 (requirements.txt)."
        )
    return cascade


def face_detection_rate(images) -> float:
    """Share of ``images`` in which OpenCV's Haar frontal-face cascade finds a face (8-bit grey,
    upscaled ``FACE_UPSCALE`` times), in [0, 1], NaN if none. Coarse: it does not rank blur (real
    0.95, blurred 2 px 0.91 on CelebA test crops) nor see diversity; noise scores 0."""
    x = as_float_images(images, "images")
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "face_detection_rate needs OpenCV 4.x with its Haar cascades: "
            "pip install opencv-python-headless==4.14.0.94 (the pin in requirements.txt)."
        ) from exc
    cascade = face_cascade()
    height, width = x.shape[1] * FACE_UPSCALE, x.shape[2] * FACE_UPSCALE
    side = max(1, int(min(height, width) * FACE_MIN_SIZE_FRACTION))
    found = np.zeros(len(x), dtype=bool)
    for i, image in enumerate(x):
        grey = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_CUBIC)
        # OpenCV's usual scaleFactor and minNeighbors
        faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5,
                                         minSize=(side, side))
        found[i] = len(faces) > 0
    return float(found.mean()) if len(found) else float("nan")


def realism_metrics(real_images, fake_images, extractor: Callable | None = None, *,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """Realism and diversity of ``fake_images`` against ``real_images``, JSON-ready; with a
    working ``extractor`` (images -> (N, D)) also FID, KID, precision, recall and feature
    diversity. ``available`` says which; a missing or unavailable extractor gives ``reason``."""
    real = as_float_images(real_images, "real_images")
    fake = as_float_images(fake_images, "fake_images")
    result: dict = {"n_real": len(real), "n_fake": len(fake),
                    "swd": sliced_wasserstein(real, fake, seed=seed),
                    "face_rate": face_detection_rate(fake),
                    "pixel_l2_diversity_real": mean_pairwise_distance(real, seed=seed),
                    "pixel_l2_diversity_fake": mean_pairwise_distance(fake, seed=seed)}
    if extractor is None:
        return {**result, "available": False, "reason": "no feature extractor given"}
    result["extractor"] = getattr(extractor, "name", type(extractor).__name__)
    try:
        real_feats, fake_feats = extractor(real), extractor(fake)
    except FeatureExtractorUnavailable as exc:
        return {**result, "available": False, "reason": str(exc)}
    kid_mean, kid_std = kid(real_feats, fake_feats, n_subsets=kid_subsets,
                            subset_size=kid_subset_size, seed=seed)
    precision, recall = precision_recall(real_feats, fake_feats, k=3)
    result.update(
        available=True, fid=fid(real_feats, fake_feats), kid_mean=kid_mean, kid_std=kid_std,
        precision=precision, recall=recall,
        feature_diversity_real=mean_pairwise_distance(real_feats, seed=seed),
        feature_diversity_fake=mean_pairwise_distance(fake_feats, seed=seed),
    )
    return result
