"""Numbers that judge a VAE's reconstructions, one per image.

Images are float32 in [0, 1], NHWC, shape (N, H, W, 3) (uint8 in [0, 255] is accepted and
divided by 255). ``mse``, ``psnr`` (capped at ``PSNR_CAP_DB``), ``ssim``, ``ms_ssim`` and
``reconstruction_metrics`` (one row per image); ``laplacian_variance`` and
``sharpness_ratio`` (how sharp reconstructions are next to the real images); ``summarize``,
``bits_per_dim``, ``per_attribute_breakdown`` (with ``strongest_attributes`` and
``significant_attributes``) and ``best_and_worst``.

Measures of samples (FID, SWD, diversity, ...) live in ``sample_metrics``, anomaly scores in
``anomaly``. TensorFlow is imported inside the functions that need it, so importing this
module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from resvae_keras.data.images import as_float_images
from resvae_keras.stats import welch

PSNR_CAP_DB = 100.0
"""PSNR of identical images, dB. MSE below ``10 ** (-PSNR_CAP_DB / 10)`` is clipped to it, so
a perfect reconstruction gives exactly 100 dB, a finite number that means and stds survive."""

SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Scale weights of Wang, Simoncelli & Bovik (2003), finest scale first."""


def _as_pair(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    x = as_float_images(x, "x")
    x_hat = as_float_images(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(
            f"`x` and `x_hat` must have the same shape; got {x.shape} and {x_hat.shape}."
        )
    return x, x_hat


def mse(x, x_hat) -> np.ndarray:
    """Mean squared error per image, over pixels and channels.

    Args:
        x, x_hat: images float32 in [0, 1], shape (N, H, W, C).

    Returns:
        float64 array (N,), in [0, 1] (squared intensity units).
    """
    return _mse(*_as_pair(x, x_hat))


def _mse(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    diff = x.astype(np.float64) - x_hat.astype(np.float64)
    return np.mean(np.square(diff).reshape(len(x), -1), axis=1)


def psnr_from_mse(mse_values) -> np.ndarray:
    """PSNR in dB for peak value 1: ``10 log10(1 / mse)``, capped at ``PSNR_CAP_DB`` (100 dB)."""
    mse_values = np.asarray(mse_values, dtype=np.float64)
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse_values, floor)), PSNR_CAP_DB)


def psnr(x, x_hat) -> np.ndarray:
    """Peak signal-to-noise ratio per image, dB (peak 1.0).

    Typical values for 64x64 faces: 20-30 dB. Identical images give ``PSNR_CAP_DB`` = 100 dB
    rather than infinity, so averages stay finite.

    Returns:
        float64 array (N,), in [0, 100].
    """
    return psnr_from_mse(mse(x, x_hat))


def ms_ssim_scales(height: int, width: int, filter_size: int = SSIM_FILTER_SIZE) -> int:
    """How many MS-SSIM scales fit an image of ``height`` x ``width`` pixels.

    The rule: keep the standard 11x11 Gaussian window (sigma 1.5) at every scale and drop the
    coarsest scales that are smaller than the window. Scale s (s = 1 is full size) has side
    ``ceil(side / 2 ** (s - 1))``; the number of scales is the largest s <= 5 with that side
    >= ``filter_size``. So 64x64 gets 3 scales (64, 32, 16), 32x32 gets 2, 128x128 gets 4 and
    176x176 or more gets all 5. Fewer than 2 scales (side < 21) is not multi-scale: 0 is
    returned and ``ms_ssim`` gives NaN.
    """
    side = min(int(height), int(width))
    scales = 0
    for s in range(1, len(MS_SSIM_POWER_FACTORS) + 1):
        if math.ceil(side / 2 ** (s - 1)) >= filter_size:
            scales = s
    return scales if scales >= 2 else 0


def ms_ssim_power_factors(height: int, width: int) -> tuple[float, ...]:
    """Scale weights used for an image size: the first ``ms_ssim_scales`` standard weights,
    renormalized to sum to 1 (64x64: 0.071, 0.453, 0.476). Empty when too small."""
    n = ms_ssim_scales(height, width)
    weights = np.asarray(MS_SSIM_POWER_FACTORS[:n], dtype=np.float64)
    return tuple(float(w) for w in weights / weights.sum()) if n else ()


def _batched(fn: Callable, x: np.ndarray, x_hat: np.ndarray, batch_size: int) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    out = [fn(x[i : i + batch_size], x_hat[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def ssim(x, x_hat, batch_size: int = 256) -> np.ndarray:
    """Structural similarity per image (``tf.image.ssim``, max_val=1, 11x11 Gaussian window,
    sigma 1.5, k1=0.01, k2=0.03), averaged over positions and channels.

    Returns:
        float64 array (N,), in [-1, 1]; 1 means identical. NaN for images smaller than 11 px.
    """
    return _ssim(*_as_pair(x, x_hat), batch_size)


def _ssim(x: np.ndarray, x_hat: np.ndarray, batch_size: int) -> np.ndarray:
    if min(x.shape[1:3]) < SSIM_FILTER_SIZE:
        return np.full(len(x), np.nan)
    import tensorflow as tf

    def batch_ssim(a, b):
        return tf.image.ssim(
            tf.constant(a), tf.constant(b), max_val=1.0,
            filter_size=SSIM_FILTER_SIZE, filter_sigma=SSIM_FILTER_SIGMA,
        ).numpy()

    return _batched(batch_ssim, x, x_hat, batch_size)


def ms_ssim(x, x_hat, batch_size: int = 256) -> np.ndarray:
    """Multi-scale SSIM per image (``tf.image.ssim_multiscale``, max_val=1).

    The number of scales depends on the image size (see ``ms_ssim_scales``: 3 scales for
    64x64, weights renormalized by ``ms_ssim_power_factors``), so only compare MS-SSIM of
    images of the same size.

    Returns:
        float64 array (N,), in [0, 1]; 1 means identical. NaN when the images are smaller than
        21 px, where fewer than two scales fit the 11x11 window.
    """
    return _ms_ssim(*_as_pair(x, x_hat), batch_size)


def _ms_ssim(x: np.ndarray, x_hat: np.ndarray, batch_size: int) -> np.ndarray:
    power_factors = ms_ssim_power_factors(*x.shape[1:3])
    if not power_factors:
        return np.full(len(x), np.nan)
    import tensorflow as tf

    def batch_ms_ssim(a, b):
        return tf.image.ssim_multiscale(
            tf.constant(a), tf.constant(b), max_val=1.0, power_factors=power_factors,
            filter_size=SSIM_FILTER_SIZE, filter_sigma=SSIM_FILTER_SIGMA,
        ).numpy()

    return _batched(batch_ms_ssim, x, x_hat, batch_size)


def reconstruction_metrics(x, x_hat, batch_size: int = 256) -> pd.DataFrame:
    """Per-image reconstruction quality.

    Args:
        x: original images float32 in [0, 1], shape (N, H, W, 3).
        x_hat: reconstructions, same shape and range.
        batch_size: images per SSIM call (memory only; the numbers do not depend on it).

    Returns:
        DataFrame, one row per image, columns ``mse`` ([0, 1]), ``psnr`` (dB, capped at 100),
        ``ssim`` ([-1, 1]) and ``ms_ssim`` ([0, 1], NaN below 21 px).
    """
    x, x_hat = _as_pair(x, x_hat)
    mse_values = _mse(x, x_hat)
    return pd.DataFrame(
        {
            "mse": mse_values,
            "psnr": psnr_from_mse(mse_values),
            "ssim": _ssim(x, x_hat, batch_size),
            "ms_ssim": _ms_ssim(x, x_hat, batch_size),
        }
    )


def laplacian_variance(images) -> np.ndarray:
    """Sharpness of each image: the variance of the 3x3 Laplacian of its grey image.

    The grey image is the mean of the three channels (values in [0, 1]); the Laplacian
    ``4 x[i, j] - x[i-1, j] - x[i+1, j] - x[i, j-1] - x[i, j+1]`` is taken on the interior
    pixels. A blurred image has weaker edges, hence a smaller variance.

    Args:
        images: float32 in [0, 1] (or uint8), shape (N, H, W, 3).

    Returns:
        float64 (N,), >= 0, in squared intensity units.
    """
    grey = as_float_images(images, "images").astype(np.float64).mean(axis=-1)
    laplacian = (
        4.0 * grey[:, 1:-1, 1:-1]
        - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    )
    return laplacian.reshape(len(laplacian), -1).var(axis=1)


def sharpness_ratio(laplacian_var, reference_laplacian_var) -> float:
    """How sharp a set of images is next to a reference set (e.g. reconstructions against the
    real test faces they reconstruct): mean ``laplacian_variance`` of the images over the mean
    ``laplacian_variance`` of the reference.

    1 means as sharp as the reference, below 1 blurrier (a VAE's reconstructions typically
    score well below 1), above 1 more high-frequency content than the real images (noise,
    ringing). A ratio of means, so one flat image cannot dominate it.

    Args:
        laplacian_var: per-image ``laplacian_variance`` of the images, shape (N,).
        reference_laplacian_var: the same for the reference images, shape (M,).
    """
    reference = float(np.mean(reference_laplacian_var))
    if not reference > 0:
        raise ValueError("the reference images have no edges (Laplacian variance 0); "
                         "pass real images as the reference")
    return float(np.mean(laplacian_var)) / reference


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1) and count of non-NaN values of every numeric column.

    Returns:
        DataFrame indexed by the column names of ``df``, columns ``mean``, ``std``, ``count``.
    """
    numeric = df.select_dtypes(include="number")
    return pd.DataFrame(
        {"mean": numeric.mean(), "std": numeric.std(ddof=1), "count": numeric.count()}
    )


def bits_per_dim(nll_nats, num_dims: int):
    """Negative ELBO of dequantized 8-bit images, in nats, as bits per dimension.

    An 8-bit value k sits at k/255 in [0, 1], so it owns a bin of width 1/255 around that
    point. The model is a density p on continuous values. Score y = (k + u - 1/2)/255 with
    u ~ U[0, 1)^D (``ResVAE.elbo`` does, by default) and Jensen's inequality gives (Theis et
    al. 2016)

        -log P(k) = -log E_u[p(y)] + D log 255 <= E_u[-ELBO(y)] + D log 255      (nats)
        bpd = (nll + D log 255) / (D log 2),

    an upper bound on the 8-bit code length (a uniform density on [0, 1] gives log2(255) =
    7.99 bpd). ``nll`` is one draw of u per image, an unbiased estimate of the expectation.
    The bin width is 1/255, not 1/256, because the images are k/255. Without the noise
    (density at the bin centre times its width) the number would be an approximation only;
    for sigma >> 1/255 it differs by about 1/(24 sigma^2 255^2) nats per dimension.
    The bound needs a real density (the Gaussian likelihoods); the Bernoulli "likelihood" on
    continuous values is not one, and the autoencoder has no ELBO (NaN in, NaN out).

    Args:
        nll_nats: negative ELBO per image in nats (scalar or array) of dequantized images.
        num_dims: D = H * W * C (12288 for 64x64x3).

    Returns:
        bits per dimension, same shape as ``nll_nats``.
    """
    if int(num_dims) < 1:
        raise ValueError(f"`num_dims` must be >= 1 (H * W * C); got {num_dims}.")
    nll = np.asarray(nll_nats, dtype=np.float64)
    result = (nll + num_dims * np.log(255.0)) / (num_dims * np.log(2.0))
    return float(result) if result.ndim == 0 else result


def per_attribute_breakdown(errors: pd.Series, attributes: pd.DataFrame) -> pd.DataFrame:
    """Mean error of images with and without each binary attribute, with a Welch t-test.

    Args:
        errors: one number per image (e.g. the ``mse`` column). When its index is the default
            0..N-1 it is matched to ``attributes`` by position, otherwise by label.
        attributes: bool columns, one row per image (other columns, e.g. ``partition``, are
            ignored), like ``Cache.attributes_of(split)``.

    Returns:
        DataFrame indexed by attribute, sorted by ``difference`` (largest first), columns:
        ``n_with``, ``n_without``, ``mean_with``, ``mean_without``,
        ``difference`` (= mean_with - mean_without), ``se_difference``
        (sqrt(s1^2/n1 + s2^2/n2)), ``t`` (Welch t = difference / se_difference) and
        ``p_value`` (two-sided Welch). With 40 attributes about 2 reach p < 0.05 by chance
        alone: trust gaps with |t| well above 3 (Bonferroni: p < 0.05 / 40).
    """
    if not isinstance(errors, pd.Series):
        errors = pd.Series(np.asarray(errors, dtype=np.float64))
    bool_columns = [c for c in attributes.columns if pd.api.types.is_bool_dtype(attributes[c])]
    if not bool_columns:
        raise ValueError(
            "`attributes` has no bool columns; got dtypes "
            f"{dict(attributes.dtypes.astype(str))}. Pass e.g. cache.attributes_of('test')."
        )
    default_index = isinstance(errors.index, pd.RangeIndex) and errors.index.start == 0
    if default_index and len(errors) == len(attributes):
        values = errors.to_numpy(dtype=np.float64)
    else:
        missing = attributes.index.difference(errors.index)
        if len(missing):
            raise ValueError(
                f"`errors` has no value for {len(missing)} images of `attributes` "
                f"(e.g. {list(missing[:3])}); pass errors indexed like `attributes`."
            )
        values = errors.reindex(attributes.index).to_numpy(dtype=np.float64)
    finite = np.isfinite(values)

    rows = []
    for column in bool_columns:
        has = attributes[column].to_numpy(dtype=bool)
        with_, without = values[has & finite], values[~has & finite]
        n1, n2 = len(with_), len(without)
        mean1 = float(with_.mean()) if n1 else np.nan
        mean2 = float(without.mean()) if n2 else np.nan
        test = welch(with_, without)
        se, t, p = test["se"], test["t"], test["p"]
        rows.append(
            {
                "attribute": column, "n_with": n1, "n_without": n2, "mean_with": mean1,
                "mean_without": mean2, "difference": mean1 - mean2, "se_difference": se,
                "t": t, "p_value": p,
            }
        )
    table = pd.DataFrame(rows).set_index("attribute")
    return table.sort_values("difference", ascending=False, na_position="last")


def strongest_attributes(breakdown: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` rows of ``per_attribute_breakdown`` with the largest |t| (finite t only),
    largest first."""
    tested = breakdown[np.isfinite(breakdown["t"].astype(float))]
    return tested.reindex(tested["t"].abs().sort_values(ascending=False).index[:k])


def significant_attributes(breakdown: pd.DataFrame, alpha: float = 0.05) -> dict:
    """The attributes of ``per_attribute_breakdown`` whose gap is significant after Bonferroni
    over the tested ones (finite p): ``n_tested``, ``threshold`` (alpha / n_tested),
    ``n_significant``, ``worse`` (error higher with the attribute) and ``better``, each list
    by the gap, largest first."""
    tested = breakdown[np.isfinite(breakdown["p_value"].astype(float))]
    threshold = alpha / max(1, len(tested))
    significant = tested[tested["p_value"] < threshold].sort_values("difference", ascending=False)
    return {"n_tested": len(tested), "threshold": threshold, "n_significant": len(significant),
            "worse": list(significant.index[significant["difference"] > 0]),
            "better": list(significant.index[significant["difference"] < 0])}


def best_and_worst(scores, k: int, higher_is_better: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the k best and k worst images; NaN scores are skipped.

    Args:
        scores: one number per image, shape (N,). By default an error (lower is better, e.g.
            mse); pass ``higher_is_better=True`` for psnr or ssim.
        k: how many of each (fewer when there are fewer scores).

    Returns:
        (best_idx, worst_idx): int arrays, best first and worst first respectively.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if k < 1:
        raise ValueError(f"`k` must be >= 1; got {k}.")
    valid = np.flatnonzero(np.isfinite(scores))
    key = -scores[valid] if higher_is_better else scores[valid]
    order = valid[np.argsort(key, kind="stable")]
    return order[:k], order[::-1][:k]
