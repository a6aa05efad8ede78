"""Numbers that judge a set of samples against real images: realism, diversity, memorization.

Conventions: images are float32 in [0, 1], NHWC, shape (N, H, W, 3) (uint8 in [0, 255] is
accepted and divided by 255); features are float arrays of shape (N, D), one row per image.

- On features (of ``inception.InceptionFeatures``, or dlib's face descriptors in
  ``facespace``): ``frechet_distance``, ``fid``, ``kid``, ``precision_recall``,
  ``density_coverage``.
- Diversity and memorization: ``mean_pairwise_distance``, ``mean_pairwise_ms_ssim``,
  ``nearest_neighbours``, ``nearest_by_identity``.
- Offline: ``sliced_wasserstein`` (numpy and scipy only, per pyramid level) and
  ``face_detection_rate`` (OpenCV's Haar cascade: "is it a face?").
- ``realism_metrics`` runs them all and never raises when the feature network is missing.

TensorFlow, Keras and OpenCV are imported inside the functions that need them, so importing
this module is cheap.
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


def _as_feature_pair(real_feats, fake_feats) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets as float64 (N, D) arrays of the same width D."""
    real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
    for name, array in (("real_feats", real), ("fake_feats", fake)):
        if array.ndim != 2:
            raise ValueError(
                f"`{name}` must be features of shape (N, D); got shape {array.shape}. "
                "Flatten images with x.reshape(len(x), -1), or run a feature extractor first."
            )
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature sizes differ: real {real.shape}, fake {fake.shape}.")
    return real, fake

def _flatten(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError(f"`{name}` must have a leading batch axis, shape (N, ...); got {array.shape}.")
    return array.reshape(len(array), -1)


# --------------------------------------------------------------------------------------
# Measures on features: FID, KID, precision and recall, density and coverage
# --------------------------------------------------------------------------------------


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians: ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Follows the reference FID code (Heusel et al. 2017): when the matrix square root is not
    finite (a singular product), ``eps`` is added to both diagonals; a small imaginary part
    from round-off is dropped, a large one (> 1e-3 on the diagonal) is an error.

    Returns:
        float >= 0, in squared feature units.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(
            f"Mean and covariance shapes do not match: mu1 {mu1.shape}, mu2 {mu2.shape}, "
            f"sigma1 {sigma1.shape}, sigma2 {sigma2.shape}; expected (D,) and (D, D)."
        )
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
    """Fréchet Inception Distance between two feature sets (N, D); lower is better, 0 = same.

    FID is biased upward at small N and its value depends on N, so compare only numbers
    computed with the same N and the same extractor; 10,000 samples per set is the usual
    minimum for comparable numbers (papers use 50,000). Below 2,048 samples the 2048-d
    covariance is singular: a ``UserWarning`` says so. The 2048 x 2048 matrix square root
    takes 10-30 s on two CPU cores.

    Returns:
        float >= 0, in squared feature units.
    """
    real, fake = _as_feature_pair(real_feats, fake_feats)
    n = min(len(real), len(fake))
    if n < 2:
        raise ValueError(f"FID needs at least 2 samples per set; got {len(real)} and {len(fake)}.")
    if n < FID_MIN_SAMPLES:
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


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid(real_feats, fake_feats, n_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
    polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets.

    Each subset draws m = min(subset_size, N_real, N_fake) rows of each set without
    replacement and computes
    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1))
    - 2 sum_{i,j} k(x_i, y_j) / m^2.
    Unlike FID it is unbiased, so small sample sizes are fine; it can be slightly negative.

    Returns:
        (mean, std) over the subsets, in kernel units (often reported x 1e3).
    """
    real, fake = _as_feature_pair(real_feats, fake_feats)
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set; got {len(real)} and {len(fake)}.")
    if n_subsets < 1:
        raise ValueError(f"`n_subsets` must be >= 1; got {n_subsets}.")
    rng = np.random.default_rng(seed)
    values = np.empty(n_subsets)
    for s in range(n_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        values[s] = within - 2.0 * k_xy.sum() / (m * m)
    return float(values.mean()), float(values.std())


def _squared_norms(a: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, a)


def _knn_radii_squared(features: np.ndarray, k: int, batch_size: int) -> np.ndarray:
    """Squared distance of each row to its k-th nearest other row (itself excluded)."""
    norms = _squared_norms(features)
    radii = np.empty(len(features))
    for i in range(0, len(features), batch_size):
        block = features[i : i + batch_size]
        d2 = norms[i : i + batch_size, None] + norms[None, :] - 2.0 * block @ features.T
        np.maximum(d2, 0.0, out=d2)
        d2[np.arange(len(block)), np.arange(i, i + len(block))] = 0.0
        radii[i : i + len(block)] = np.partition(d2, k, axis=1)[:, k]
    return radii


def _fraction_inside(queries: np.ndarray, centres: np.ndarray, radii2: np.ndarray,
                     batch_size: int) -> float:
    """Fraction of queries within at least one centre's k-NN ball."""
    centre_norms = _squared_norms(centres)
    inside = 0
    for i in range(0, len(queries), batch_size):
        block = queries[i : i + batch_size]
        d2 = _squared_norms(block)[:, None] + centre_norms[None, :] - 2.0 * block @ centres.T
        inside += int(np.count_nonzero((d2 <= radii2[None, :]).any(axis=1)))
    return inside / len(queries)


def precision_recall(real_feats, fake_feats, k: int = 3,
                     batch_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) in feature space.

    Each set's manifold is the union of balls around its points, of radius the distance to the
    k-th nearest neighbour in the same set. Precision = share of fake samples inside the real
    manifold (realism); recall = share of real samples inside the fake manifold (coverage).
    Distances are computed ``batch_size`` rows at a time, so 10,000 x 10,000 needs about
    80 MB per block.

    Returns:
        (precision, recall), each in [0, 1].
    """
    real, fake = _as_feature_pair(real_feats, fake_feats)
    if k < 1 or k >= min(len(real), len(fake)):
        raise ValueError(
            f"`k` must be in [1, N - 1]; got k={k} with {len(real)} real and {len(fake)} fake samples."
        )
    real_radii2 = _knn_radii_squared(real, k, batch_size)
    fake_radii2 = _knn_radii_squared(fake, k, batch_size)
    precision = _fraction_inside(fake, real, real_radii2, batch_size)
    recall = _fraction_inside(real, fake, fake_radii2, batch_size)
    return precision, recall


def density_coverage(real_feats, fake_feats, k: int = 5,
                     batch_size: int = 1024) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) in feature space.

    Only the real set's k-NN balls are used (radius: distance to the k-th nearest other real
    sample), so outlying fakes do not inflate the fake manifold as in ``precision_recall``.
    Density = sum over fakes of the number of real balls containing the fake, divided by
    k x N_fake: about 1 when both sets come from one distribution, above 1 when fakes crowd
    around dense real regions, near 0 for fakes away from the data. Coverage = share of real
    samples whose ball contains at least one fake. A fake exactly on a ball's edge counts as
    outside (strict <, as the authors' code). Naeem et al. recommend k = 5.

    Returns:
        (density, coverage): density >= 0 (unbounded, ~1 = matched), coverage in [0, 1].
    """
    real, fake = _as_feature_pair(real_feats, fake_feats)
    if k < 1 or k >= len(real) or len(fake) < 1:
        raise ValueError(
            f"`k` must be in [1, N_real - 1] and there must be fakes; got k={k} with "
            f"{len(real)} real and {len(fake)} fake samples."
        )
    radii2 = _knn_radii_squared(real, k, batch_size)
    real_norms = _squared_norms(real)
    inside_count = 0
    covered = np.zeros(len(real), dtype=bool)
    for i in range(0, len(fake), batch_size):
        block = fake[i : i + batch_size]
        d2 = _squared_norms(block)[:, None] + real_norms[None, :] - 2.0 * block @ real.T
        inside = d2 < radii2[None, :]
        inside_count += int(np.count_nonzero(inside))
        covered |= inside.any(axis=0)
    return inside_count / (k * len(fake)), float(covered.mean())


# --------------------------------------------------------------------------------------
# Diversity and memorization
# --------------------------------------------------------------------------------------


def _random_pairs(n: int, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """All i < j pairs when there are at most max_pairs, else max_pairs random pairs i != j."""
    if n < 2:
        raise ValueError(f"Pairwise measures need at least 2 samples; got {n}.")
    if n * (n - 1) // 2 <= max_pairs:
        return np.triu_indices(n, k=1)
    i = rng.integers(0, n, size=max_pairs)
    j = (i + rng.integers(1, n, size=max_pairs)) % n  # never equal to i
    return i, j


def mean_pairwise_distance(features, max_pairs: int = 100_000, seed: int = 0) -> float:
    """Mean Euclidean distance between distinct samples; higher = more diverse.

    Works on any (N, ...) array: features (N, D), or images (N, H, W, C) which are flattened
    (pixel L2; for [0, 1] images of 64x64x3 the distance is in [0, sqrt(12288)] = [0, 110.9]).
    Uses every pair when there are at most ``max_pairs``, else ``max_pairs`` random pairs.
    """
    flat = _flatten(features, "features")
    i, j = _random_pairs(len(flat), max_pairs, np.random.default_rng(seed))
    total, count = 0.0, 0
    rows = max(1, 2**22 // flat.shape[1])  # about 32 MB per block
    for start in range(0, len(i), rows):
        a = flat[i[start : start + rows]].astype(np.float64)
        b = flat[j[start : start + rows]].astype(np.float64)
        total += float(np.sqrt(np.square(a - b).sum(axis=1)).sum())
        count += len(a)
    return total / count


def mean_pairwise_ms_ssim(images, n_pairs: int = 1000, seed: int = 0,
                          batch_size: int = 256) -> float:
    """Mean MS-SSIM between random distinct pairs of images; lower = more diverse.

    Images float32 in [0, 1], shape (N, H, W, 3); scales as in ``ms_ssim`` (NaN below 21 px).
    Compare with the same number on real images: a model that collapses to a few faces has a
    clearly higher value than the data.
    """
    images = as_float_images(images, "images")
    i, j = _random_pairs(len(images), n_pairs, np.random.default_rng(seed))
    return float(np.mean(metrics.ms_ssim(images[i], images[j], batch_size)))


def nearest_neighbours(queries, references, k: int = 1,
                       batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest references of each query in Euclidean distance (memorization check).

    Args:
        queries: (N, ...) images or features; images are flattened (pixel L2).
        references: (M, ...) with the same trailing shape, e.g. training images (a uint8
            memmap is fine: it is converted one block at a time).
        k: neighbours per query.

    Returns:
        (indices, distances): int64 and float64 arrays of shape (N,) for k = 1, else (N, k),
        nearest first. Distances are in the input's units (pixel values in [0, 1] or
        [0, 255] as given).
    """
    return _nearest(queries, references, k, batch_size)


def nearest_by_identity(queries, query_ids, references, reference_ids, query_rows=None,
                        batch_size: int = 512) -> dict[str, np.ndarray]:
    """Distance of each query to its nearest reference of the same person and of another person.

    The scale a memorization check needs: two photos of one person are usually much closer
    than photos of two people, so a sample is suspicious only when it is nearer to a training
    face than another photo of the same person typically is.

    Args:
        queries: (N, ...) images (flattened: pixel L2), as ``nearest_neighbours``.
        query_ids: person id of each query, int (N,); -1 = unknown (both distances NaN).
        references: (M, ...) e.g. the training images (a uint8 memmap is fine).
        reference_ids: person id of each reference, int (M,); -1 = unknown (never a neighbour).
        query_rows: when the queries are references themselves (e.g. training faces against
            the other training faces), the row of each query in ``references``, so that a
            query is never its own neighbour; None otherwise.

    Returns:
        ``{"same": (N,), "different": (N,)}`` float64 distances in the input's units; NaN
        where the query has no reference of that kind (with identity-disjoint splits, a test
        face has no same-person training face).
    """
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

        result["same"] = _nearest(queries, np.asarray(references[subset]), 1, batch_size, same)[1]

    def different(qi, ri):
        return ((q_ids[qi][:, None] != r_ids[ri][None, :]) & (r_ids[ri][None, :] >= 0)
                & known[qi][:, None])

    result["different"] = _nearest(queries, references, 1, batch_size, different)[1]
    return {key: np.where(np.isfinite(d), d, np.nan) for key, d in result.items()}


def _nearest(queries, references, k: int, batch_size: int,
             allowed: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_neighbours`` among the pairs ``allowed(query rows, reference rows)`` permits
    (a bool matrix per block; None: all); a query with no permitted reference gets inf."""
    queries = _flatten(queries, "queries")
    references = _flatten(references, "references")
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"`queries` and `references` differ in size per sample: {queries.shape[1]} vs "
            f"{references.shape[1]}."
        )
    if not 1 <= k <= len(references):
        raise ValueError(f"`k` must be in [1, {len(references)}]; got {k}.")
    ref_norms = np.concatenate(
        [_squared_norms(references[r : r + batch_size].astype(np.float64))
         for r in range(0, len(references), batch_size)]
    )
    indices = np.zeros((len(queries), k), dtype=np.int64)
    distances = np.zeros((len(queries), k))
    for q_start in range(0, len(queries), batch_size):
        q = queries[q_start : q_start + batch_size].astype(np.float64)
        q_rows = np.arange(q_start, q_start + len(q))
        q_norms = _squared_norms(q)
        best_d2 = np.full((len(q), k), np.inf)
        best_idx = np.zeros((len(q), k), dtype=np.int64)
        for r_start in range(0, len(references), batch_size):
            ref = references[r_start : r_start + batch_size].astype(np.float64)
            r_rows = np.arange(r_start, r_start + len(ref))
            d2 = q_norms[:, None] + ref_norms[None, r_start : r_start + len(ref)] - 2.0 * q @ ref.T
            if allowed is not None:
                d2 = np.where(allowed(q_rows, r_rows), np.maximum(d2, 0.0), np.inf)
            all_d2 = np.concatenate([best_d2, d2], axis=1)
            all_idx = np.concatenate([best_idx, np.broadcast_to(r_rows, d2.shape)], axis=1)
            keep = np.argsort(all_d2, axis=1, kind="stable")[:, :k]
            best_d2 = np.take_along_axis(all_d2, keep, axis=1)
            best_idx = np.take_along_axis(all_idx, keep, axis=1)
        # Recompute the chosen distances directly: the expansion above loses digits when a
        # sample is (nearly) copied, which is exactly the case memorization looks for.
        exact = np.stack(
            [np.sqrt(np.square(q - references[best_idx[:, c]].astype(np.float64)).sum(axis=1))
             for c in range(k)],
            axis=1,
        )
        exact = np.where(np.isfinite(best_d2), exact, np.inf)
        order = np.argsort(exact, axis=1, kind="stable")
        indices[q_start : q_start + len(q)] = np.take_along_axis(best_idx, order, axis=1)
        distances[q_start : q_start + len(q)] = np.take_along_axis(exact, order, axis=1)
    if k == 1:
        return indices[:, 0], distances[:, 0]
    return indices, distances


# --------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian-pyramid patches (offline realism)
# --------------------------------------------------------------------------------------

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0  # outer product = the 5x5 kernel / 256


def _blur(images: np.ndarray, gain: float = 1.0) -> np.ndarray:
    from scipy import ndimage

    out = ndimage.convolve1d(images, _BINOMIAL_5 * gain, axis=1, mode="mirror")
    return ndimage.convolve1d(out, _BINOMIAL_5 * gain, axis=2, mode="mirror")


def _pyr_down(images: np.ndarray) -> np.ndarray:
    return _blur(images)[:, ::2, ::2]


def _pyr_up(images: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    up = np.zeros((images.shape[0], images.shape[1] * 2, images.shape[2] * 2, images.shape[3]),
                  images.dtype)
    up[:, ::2, ::2] = images
    return _blur(up, gain=2.0)[:, : shape[1], : shape[2]]  # 2 x 2 = 4, the reference's gain


def laplacian_pyramid(images, num_levels: int) -> list[np.ndarray]:
    """Laplacian pyramid (as ``cv2.pyrDown``/``pyrUp``): band-pass levels at full, 1/2, ...
    resolution; the last level is the low-pass image. Images (N, H, W, C), float32."""
    pyramid = [np.asarray(images, np.float32)]
    for _ in range(1, num_levels):
        pyramid.append(_pyr_down(pyramid[-1]))
        pyramid[-2] = pyramid[-2] - _pyr_up(pyramid[-1], pyramid[-2].shape)
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


def _normalized(descriptors: np.ndarray) -> np.ndarray:
    mean = descriptors.mean(axis=(0, 1, 2), keepdims=True)
    std = descriptors.std(axis=(0, 1, 2), keepdims=True)
    return ((descriptors - mean) / np.maximum(std, 1e-8)).reshape(len(descriptors), -1)


def _sliced_distance(a: np.ndarray, b: np.ndarray, n_repeats: int, dirs_per_repeat: int,
                     rng: np.random.Generator) -> float:
    results = []
    for _ in range(n_repeats):
        dirs = rng.standard_normal((a.shape[1], dirs_per_repeat))
        dirs /= np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))
        dirs = dirs.astype(np.float32)
        proj_a = np.sort((a @ dirs).T, axis=1)  # sort along contiguous rows: faster
        proj_b = np.sort((b @ dirs).T, axis=1)
        results.append(float(np.abs(proj_a - proj_b).mean()))
    return float(np.mean(results))


def sliced_wasserstein(real_images, fake_images, *, patch_size: int = 7,
                       patches_per_image: int = 128, n_repeats: int = 4,
                       dirs_per_repeat: int = 128, min_resolution: int = 16,
                       max_descriptors: int = 2**17, seed: int = 0,
                       batch_size: int = 256) -> dict[str, float]:
    """Multi-scale sliced Wasserstein distance (Karras et al. 2018, Progressive GAN), x 1e3.

    Numpy and scipy only, no network: the realism number that is always there. Both image sets
    are decomposed into a Laplacian pyramid down to ``min_resolution`` (64x64: levels 64, 32,
    16). At each level, random 7x7x3 patches are drawn, normalized per channel (each set by
    its own mean and std, as in the paper) and flattened to 147-d descriptors; the distance is
    the mean 1-D Wasserstein-1 distance of the two descriptor sets along
    ``n_repeats`` x ``dirs_per_repeat`` random unit directions. Small values at 64 px compare
    fine detail, at 16 px the coarse layout and colour blobs.

    Both sets use min(N_real, N_fake) images (a random subset of the larger set) and the same
    number of patches, ``patches_per_image`` per image, fewer when the total would exceed
    ``max_descriptors`` (the paper uses 16,384 images x 128 patches; cap the memory here at
    about ``max_descriptors`` x 588 bytes per set). Seeded: the same inputs and seed give the
    same numbers; compare only values computed with the same settings.

    Returns:
        ``{"swd_<res>": ... for each level, "swd_mean": ...}``, all x 1e3, >= 0; lower = closer.
    """
    real = as_float_images(real_images, "real_images")
    fake = as_float_images(fake_images, "fake_images")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"Image shapes differ: real {real.shape[1:]}, fake {fake.shape[1:]}.")
    side = min(real.shape[1:3])
    if side < max(min_resolution, patch_size):
        raise ValueError(
            f"Images of {real.shape[1]}x{real.shape[2]} are smaller than min_resolution="
            f"{min_resolution}; lower `min_resolution` (and `patch_size`)."
        )
    resolutions = []
    res = real.shape[1]
    while min(res, side) >= min_resolution and res >= patch_size:
        resolutions.append(res)
        res //= 2
        side //= 2
    rng = np.random.default_rng(seed)
    n = min(len(real), len(fake))
    if n < 1:
        raise ValueError("Both `real_images` and `fake_images` need at least one image.")
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
        descriptors[label] = [_normalized(np.concatenate(parts)) for parts in levels]

    result = {}
    for level, res in enumerate(resolutions):
        distance = _sliced_distance(descriptors["real"][level], descriptors["fake"][level],
                                    n_repeats, dirs_per_repeat, rng)
        result[f"swd_{res}"] = 1e3 * distance
    result["swd_mean"] = float(np.mean(list(result.values())))
    return result


# --------------------------------------------------------------------------------------
# Is it a face? (OpenCV's Haar frontal-face cascade, offline)
# --------------------------------------------------------------------------------------

FACE_CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_UPSCALE = 2
FACE_SCALE_FACTOR = 1.1
FACE_MIN_NEIGHBORS = 5
FACE_MIN_SIZE_FRACTION = 1.0 / 3.0
"""Settings of ``face_detections``: every set is upscaled 2x (bicubic) before the cascade
(Viola & Jones 2001, trained on 24x24 windows) looks at it; ``scaleFactor`` 1.1 and
``minNeighbors`` 5 are OpenCV's usual values; a face must cover at least a third of the side."""


def _opencv():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "face_detection_rate needs OpenCV 4.x with its Haar cascades: "
            "pip install opencv-python-headless==4.14.0.94 (the pin in requirements.txt)."
        ) from exc
    return cv2


@functools.cache
def face_cascade():
    """OpenCV's frontal-face Haar cascade, loaded on first use and kept."""
    cv2 = _opencv()
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / FACE_CASCADE_FILE
    cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
    if cascade is None or cascade.empty():
        raise FileNotFoundError(
            f"OpenCV {cv2.__version__} ships no {FACE_CASCADE_FILE} (5.x dropped the Haar "
            "cascades): pip install opencv-python-headless==4.14.0.94 (requirements.txt)."
        )
    return cascade


def face_detections(images) -> np.ndarray:
    """Whether OpenCV's Haar frontal-face cascade finds at least one face in each image.

    Each image is rounded to 8 bits, turned to grey, upscaled ``FACE_UPSCALE`` times
    (bicubic) and searched with ``FACE_SCALE_FACTOR``, ``FACE_MIN_NEIGHBORS`` and a minimum
    face side of ``FACE_MIN_SIZE_FRACTION`` of the upscaled side (64x64: 128 px searched,
    faces >= 42 px). Compare only rates measured at the same image size.

    Args:
        images: float32 in [0, 1] (or uint8), shape (N, H, W, 3).

    Returns:
        bool array (N,).
    """
    x = as_float_images(images, "images")
    if x.shape[-1] != 3:
        raise ValueError(f"`images` must be RGB, shape (N, H, W, 3); got shape {x.shape}.")
    cv2 = _opencv()
    cascade = face_cascade()
    height, width = x.shape[1] * FACE_UPSCALE, x.shape[2] * FACE_UPSCALE
    side = max(1, int(min(height, width) * FACE_MIN_SIZE_FRACTION))
    found = np.zeros(len(x), dtype=bool)
    for i, image in enumerate(x):
        grey = cv2.cvtColor(to_uint8(image), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_CUBIC)
        faces = cascade.detectMultiScale(grey, scaleFactor=FACE_SCALE_FACTOR,
                                         minNeighbors=FACE_MIN_NEIGHBORS, minSize=(side, side))
        found[i] = len(faces) > 0
    return found


def face_detection_rate(images) -> float:
    """Share of ``images`` in which the Haar cascade finds a face (``face_detections``), in
    [0, 1]; NaN for no images.

    A coarse, offline "is it a face?" check. On 965 held-out 64x64 CelebA crops: real faces
    0.95, blurred with sigma 1 px 0.94 and sigma 2 px 0.91 (it does not rank blurry faces),
    uniform noise 0.00, and the mean face is found (it does not see diversity either). Keep
    SWD and the diversity measures beside it.
    """
    found = face_detections(images)
    return float(found.mean()) if len(found) else float("nan")


# --------------------------------------------------------------------------------------
# Everything about samples at once
# --------------------------------------------------------------------------------------


def realism_metrics(real_images, fake_images, extractor: Callable | None = None, *,
                    kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0) -> dict:
    """Realism and diversity of ``fake_images`` against ``real_images``, as a JSON-ready dict.

    Always there (no network): ``swd`` (``sliced_wasserstein``, x 1e3, per level and mean),
    ``face_rate`` (``face_detection_rate`` of the fakes, in [0, 1]), pixel diversity
    ``pixel_l2_diversity_real`` / ``_fake`` (``mean_pairwise_distance`` on pixels). With a
    working ``extractor`` also ``fid``, ``kid_mean``, ``kid_std``, ``precision``, ``recall``
    and ``feature_diversity_real`` / ``_fake``; ``available`` says which case it is, and
    ``reason`` why features were skipped (no extractor, or ``FeatureExtractorUnavailable``:
    this function never raises for that, so a notebook goes on). No other measure stands in
    for FID when the network is missing.

    Args:
        real_images, fake_images: images float32 in [0, 1], shape (N, H, W, 3).
        extractor: images -> features (N, D), with a ``name``, e.g.
            ``inception.InceptionFeatures()``; it raises ``FeatureExtractorUnavailable`` when
            it cannot run. None skips the feature measures.
        kid_subsets, kid_subset_size: as ``kid``'s ``n_subsets`` and ``subset_size``.
        seed: of SWD, KID and the pairs of the diversity measures.
    """
    real = as_float_images(real_images, "real_images")
    fake = as_float_images(fake_images, "fake_images")
    result: dict = {"n_real": len(real), "n_fake": len(fake)}
    result["swd"] = sliced_wasserstein(real, fake, seed=seed)
    result["face_rate"] = face_detection_rate(fake)
    result["pixel_l2_diversity_real"] = mean_pairwise_distance(real, seed=seed)
    result["pixel_l2_diversity_fake"] = mean_pairwise_distance(fake, seed=seed)
    if extractor is None:
        result.update(available=False, reason="no feature extractor given")
        return result
    result["extractor"] = getattr(extractor, "name", type(extractor).__name__)
    try:
        real_feats, fake_feats = extractor(real), extractor(fake)
    except FeatureExtractorUnavailable as exc:
        result.update(available=False, reason=str(exc))
        return result
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
