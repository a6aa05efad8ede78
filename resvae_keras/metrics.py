"""Per-image measures of reconstructions: MSE, PSNR, SSIM, MS-SSIM, sharpness, bits/dim.

Images are float32 in [0, 1], NHWC (uint8 in [0, 255] is accepted and divided by 255).
TensorFlow is imported only inside the SSIM functions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from resvae_keras.data.images import as_float_images
from resvae_keras.stats import welch

PSNR_CAP_DB = 100.0
"""PSNR of identical images, dB (finite, so means and stds survive)."""

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
    """Mean squared error per image over pixels and channels: float64 (N,), in [0, 1]."""
    x, x_hat = _as_pair(x, x_hat)
    diff = x.astype(np.float64) - x_hat.astype(np.float64)
    return np.mean(np.square(diff).reshape(len(x), -1), axis=1)


def psnr(x, x_hat) -> np.ndarray:
    """Peak signal-to-noise ratio per image, ``10 log10(1 / mse)`` dB (peak 1.0): float64 (N,),
    capped at ``PSNR_CAP_DB``."""
    floor = 10.0 ** (-PSNR_CAP_DB / 10.0)
    return np.minimum(10.0 * np.log10(1.0 / np.maximum(mse(x, x_hat), floor)), PSNR_CAP_DB)


def ms_ssim_power_factors(height: int, width: int) -> tuple[float, ...]:
    """The MS-SSIM scale weights that fit an image, renormalized to sum to 1: one per scale s
    <= 5 whose side ``ceil(side / 2 ** (s - 1))`` is >= 11 (64x64: 0.071, 0.453, 0.476;
    32x32: 2 scales; >= 176: 5); empty when fewer than 2 fit (side < 21)."""
    side = min(height, width)
    n = sum(math.ceil(side / 2**s) >= SSIM_FILTER_SIZE for s in range(len(MS_SSIM_POWER_FACTORS)))
    weights = np.asarray(MS_SSIM_POWER_FACTORS[:n], dtype=np.float64)
    return tuple(float(w) for w in weights / weights.sum()) if n >= 2 else ()


def _tf_batched(name: str, x: np.ndarray, x_hat: np.ndarray, batch_size: int,
                **kwargs) -> np.ndarray:
    """``tf.image.<name>`` (max_val 1, 11x11 window, sigma 1.5) per image, in batches."""
    import tensorflow as tf

    fn = getattr(tf.image, name)
    out = [
        fn(tf.constant(x[i : i + batch_size]), tf.constant(x_hat[i : i + batch_size]),
           max_val=1.0, filter_size=SSIM_FILTER_SIZE, filter_sigma=SSIM_FILTER_SIGMA,
           **kwargs).numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def ssim(x, x_hat, batch_size: int = 256) -> np.ndarray:
    """SSIM per image (``tf.image.ssim``, 11x11 Gaussian window, sigma 1.5, k1=0.01,
    k2=0.03): float64 (N,), in [-1, 1], 1 = identical; NaN below 11 px."""
    x, x_hat = _as_pair(x, x_hat)
    if min(x.shape[1:3]) < SSIM_FILTER_SIZE:
        return np.full(len(x), np.nan)
    return _tf_batched("ssim", x, x_hat, batch_size)


def ms_ssim(x, x_hat, batch_size: int = 256) -> np.ndarray:
    """Multi-scale SSIM per image (``tf.image.ssim_multiscale``, the scales of
    ``ms_ssim_power_factors``: compare one size only): float64 (N,), in [0, 1]; NaN below 21 px."""
    x, x_hat = _as_pair(x, x_hat)
    power_factors = ms_ssim_power_factors(*x.shape[1:3])
    if not power_factors:
        return np.full(len(x), np.nan)
    return _tf_batched("ssim_multiscale", x, x_hat, batch_size, power_factors=power_factors)


def reconstruction_metrics(x, x_hat, batch_size: int = 256) -> pd.DataFrame:
    """One row per image: ``mse``, ``psnr``, ``ssim`` and ``ms_ssim``; ``batch_size`` (images
    per SSIM call) affects memory only."""
    x, x_hat = _as_pair(x, x_hat)
    return pd.DataFrame({"mse": mse(x, x_hat), "psnr": psnr(x, x_hat),
                         "ssim": ssim(x, x_hat, batch_size),
                         "ms_ssim": ms_ssim(x, x_hat, batch_size)})


def laplacian_variance(images) -> np.ndarray:
    """Sharpness per image, float64 (N,) in squared intensity units (blur lowers it): variance
    over interior pixels of the 4-neighbour Laplacian of the channel mean."""
    grey = as_float_images(images, "images").astype(np.float64).mean(axis=-1)
    laplacian = (
        4.0 * grey[:, 1:-1, 1:-1]
        - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1] - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:]
    )
    return laplacian.reshape(len(laplacian), -1).var(axis=1)


def sharpness_ratio(laplacian_var, reference_laplacian_var) -> float:
    """Mean ``laplacian_variance`` of the images over that of a reference set (e.g. the real
    faces reconstructed): 1 = as sharp, below 1 blurrier, above 1 noisier."""
    reference = float(np.mean(reference_laplacian_var))
    if not reference > 0:
        raise ValueError("the reference images have no edges (Laplacian variance 0); "
                         "pass real images as the reference")
    return float(np.mean(laplacian_var)) / reference


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """``mean``, ``std`` (ddof=1) and ``count`` (non-NaN) of each numeric column of ``df``."""
    numeric = df.select_dtypes(include="number")
    return pd.DataFrame({"mean": numeric.mean(), "std": numeric.std(ddof=1),
                         "count": numeric.count()})


def bits_per_dim(nll_nats, num_dims: int):
    """Negative ELBO (nats) of dequantized 8-bit images as bits per dimension, shaped like
    ``nll_nats``: (nll + D log 255) / (D log 2), D = H * W * C, an upper bound on the 8-bit
    code length (Theis et al. 2016) for a true density (Gaussian likelihoods, not Bernoulli)."""
    if int(num_dims) < 1:
        raise ValueError(f"`num_dims` must be >= 1 (H * W * C); got {num_dims}.")
    nll = np.asarray(nll_nats, dtype=np.float64)
    result = (nll + num_dims * np.log(255.0)) / (num_dims * np.log(2.0))
    return float(result) if result.ndim == 0 else result


def per_attribute_breakdown(errors: pd.Series, attributes: pd.DataFrame) -> pd.DataFrame:
    """Mean error of images with and without each bool attribute column, with Welch's t-test:
    one row per attribute, largest ``difference`` (mean_with - mean_without) first, also
    ``n_with``, ``n_without``, ``se_difference``, ``t`` and two-sided ``p_value``. ``errors``
    (one per image) match ``attributes`` by position when indexed 0..N-1, else by label."""
    bool_columns = [c for c in attributes.columns if pd.api.types.is_bool_dtype(attributes[c])]
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
        mean1 = float(with_.mean()) if len(with_) else np.nan
        mean2 = float(without.mean()) if len(without) else np.nan
        test = welch(with_, without)
        rows.append({
            "attribute": column, "n_with": len(with_), "n_without": len(without),
            "mean_with": mean1, "mean_without": mean2, "difference": mean1 - mean2,
            "se_difference": test["se"], "t": test["t"], "p_value": test["p"],
        })
    table = pd.DataFrame(rows).set_index("attribute")
    return table.sort_values("difference", ascending=False, na_position="last")


def strongest_attributes(breakdown: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` rows of ``per_attribute_breakdown`` with the largest |t| (finite t only),
    largest first."""
    tested = breakdown[np.isfinite(breakdown["t"].astype(float))]
    return tested.reindex(tested["t"].abs().sort_values(ascending=False).index[:k])


def significant_attributes(breakdown: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Attributes of ``per_attribute_breakdown`` significant after Bonferroni over the tested
    ones: ``n_tested``, ``threshold``, ``n_significant``, ``worse`` and ``better`` (by gap)."""
    tested = breakdown[np.isfinite(breakdown["p_value"].astype(float))]
    threshold = alpha / max(1, len(tested))
    significant = tested[tested["p_value"] < threshold].sort_values("difference", ascending=False)
    return {"n_tested": len(tested), "threshold": threshold, "n_significant": len(significant),
            "worse": list(significant.index[significant["difference"] > 0]),
            "better": list(significant.index[significant["difference"] < 0])}


def best_and_worst(scores, k: int, higher_is_better: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(best_idx, worst_idx)``: positions of the k best and k worst scores (NaN skipped),
    best first and worst first; lower is better unless ``higher_is_better``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    valid = np.flatnonzero(np.isfinite(scores))
    key = -scores[valid] if higher_is_better else scores[valid]
    order = valid[np.argsort(key, kind="stable")]
    return order[:k], order[::-1][:k]
