"""Numbers that judge a VAE: reconstruction, realism and diversity of samples.

Conventions, for every function here:

- images are float32 in [0, 1], NHWC, shape (N, H, W, 3) (uint8 in [0, 255] is accepted and
  divided by 255);
- features are float arrays of shape (N, D), one row per image.

Two groups (anomaly scores and their AUROC live in ``anomaly``):

1. Reconstruction: ``mse``, ``psnr`` (capped at ``PSNR_CAP_DB``), ``ssim``, ``ms_ssim``,
   ``reconstruction_metrics`` (one row per image), ``laplacian_variance`` and
   ``sharpness_ratio`` (how sharp reconstructions are next to the real images),
   ``summarize``, ``bits_per_dim``, ``per_attribute_breakdown``, ``best_and_worst``.
2. Samples: ``fid``, ``kid``, ``precision_recall``, ``density_coverage`` on features of a
   ``FeatureExtractor``
   (``InceptionFeatures``, whose weights are fetched only when asked for);
   ``sliced_wasserstein`` (numpy only, works offline, per pyramid level);
   ``face_detection_rate`` (OpenCV's Haar cascade, offline: "is it a face?"); diversity
   (``mean_pairwise_distance``, ``mean_pairwise_ms_ssim``) and memorization
   (``nearest_neighbours``, ``nearest_by_identity``); ``realism_metrics`` runs them all and never raises when the
   feature network is missing.

TensorFlow, Keras and OpenCV are imported inside the functions that need them, so importing this
module is cheap.
"""

from __future__ import annotations

import hashlib
import math
import os
import urllib.request
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from resvae_keras.data.images import as_float_images, to_uint8
from resvae_keras.stats import welch

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

PSNR_CAP_DB = 100.0
"""PSNR of identical images, dB. MSE below ``10 ** (-PSNR_CAP_DB / 10)`` is clipped to it, so
a perfect reconstruction gives exactly 100 dB, a finite number that means and stds survive."""

SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
MS_SSIM_POWER_FACTORS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Scale weights of Wang, Simoncelli & Bovik (2003), finest scale first."""

FID_MIN_SAMPLES = 2048
FID_COMPARABLE_SAMPLES = 10_000

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + INCEPTION_WEIGHTS_FILE
)
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
"""File name, address and checksum exactly as ``keras.applications.InceptionV3`` uses them."""


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _as_pair(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    x = as_float_images(x, "x")
    x_hat = as_float_images(x_hat, "x_hat")
    if x.shape != x_hat.shape:
        raise ValueError(
            f"`x` and `x_hat` must have the same shape; got {x.shape} and {x_hat.shape}."
        )
    return x, x_hat


def _as_features(features, name: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be features of shape (N, D); got shape {array.shape}. "
            "Flatten images with x.reshape(len(x), -1), or run a FeatureExtractor first."
        )
    return array


def _flatten(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim < 2:
        raise ValueError(f"`{name}` must have a leading batch axis, shape (N, ...); got {array.shape}.")
    return array.reshape(len(array), -1)


# --------------------------------------------------------------------------------------
# 1. Reconstruction
# --------------------------------------------------------------------------------------


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


def reconstruction_metrics(x, x_hat, batch_size: int = 256, index=None) -> pd.DataFrame:
    """Per-image reconstruction quality.

    Args:
        x: original images float32 in [0, 1], shape (N, H, W, 3).
        x_hat: reconstructions, same shape and range.
        batch_size: images per SSIM call (memory only; the numbers do not depend on it).
        index: optional row labels (e.g. the image file names of the cache table).

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
        },
        index=index,
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


# --------------------------------------------------------------------------------------
# 2a. Feature extractors
# --------------------------------------------------------------------------------------


class FeatureExtractorUnavailable(RuntimeError):
    """The feature network cannot be used here (e.g. its weights are missing and offline)."""


@runtime_checkable
class FeatureExtractor(Protocol):
    """What FID, KID and precision/recall need: a name and images -> features.

    ``__call__`` takes images float32 in [0, 1], shape (N, H, W, 3), works through them in
    batches and returns float features of shape (N, D). It raises
    ``FeatureExtractorUnavailable`` when it cannot run.
    """

    name: str

    def __call__(self, images) -> np.ndarray: ...


def keras_cache_dir() -> Path:
    """Keras' cache folder: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` when the home
    folder is not writable), the same rule as Keras itself."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = Path.home()
    if not os.access(home, os.W_OK):
        home = Path("/tmp")
    return home / ".keras"


def inception_weights_path() -> Path:
    """Where Keras keeps the InceptionV3 (no top) weights: ``<keras cache>/models/<file>``."""
    return keras_cache_dir() / "models" / INCEPTION_WEIGHTS_FILE


def _what_to_do(path: Path) -> str:
    return (
        f"Download {INCEPTION_WEIGHTS_URL} (on a machine with internet if this one is offline) "
        f"and put it at {path} (the Keras cache; set KERAS_HOME to move it), or pass "
        "InceptionFeatures(weights=<path to the .h5 file>). Until then realism_metrics reports "
        "the sliced Wasserstein distance only."
    )


def download_inception_weights(
    path=None, *, timeout: float = 10.0, url: str = INCEPTION_WEIGHTS_URL,
    md5: str | None = INCEPTION_WEIGHTS_MD5,
) -> Path:
    """Fetch the InceptionV3 weights (87 MB) into the Keras cache, unless already there.

    The file is written to a temporary name in the same folder, checked against Keras' MD5
    and renamed, so an interrupted download never leaves a broken file behind.

    Args:
        path: destination; default ``inception_weights_path()``.
        timeout: seconds of network silence before giving up.
        url, md5: source and checksum (None skips the check).

    Returns:
        The path of the weights file.

    Raises:
        FeatureExtractorUnavailable: no network, a timeout or a bad file, with what to do.
    """
    path = Path(path) if path is not None else inception_weights_path()
    if path.is_file():
        return path
    from resvae_keras.data._io import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5()
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
            if md5 is not None and digest.hexdigest() != md5:
                raise FeatureExtractorUnavailable(
                    f"The file downloaded from {url} has MD5 {digest.hexdigest()}, expected "
                    f"{md5}; it was discarded. " + _what_to_do(path)
                )
    except FeatureExtractorUnavailable:
        raise
    except Exception as exc:  # URLError, timeouts, HTTP and disk errors all end the same way
        raise FeatureExtractorUnavailable(
            f"Could not download the InceptionV3 weights ({type(exc).__name__}: {exc}). "
            + _what_to_do(path)
        ) from exc
    return path


class InceptionFeatures:
    """2048-d pool features of Keras' ImageNet InceptionV3, the network behind FID.

    Each batch is resized bilinearly to 299x299, mapped from [0, 1] to [0, 255] and passed
    through ``keras.applications.inception_v3.preprocess_input`` (which scales [0, 255] to
    [-1, 1]), then through ``InceptionV3(include_top=False, pooling="avg")``.

    Keras' ImageNet weights are not the TF-1 graph of the original FID code, and the resize
    differs, so these FIDs are comparable with each other, not with published numbers.

    Weights (``weights="imagenet"``) are read from the Keras cache
    (``inception_weights_path()``). They are downloaded only with ``allow_download=True`` (or
    by ``download_inception_weights()``); otherwise a missing file raises
    ``FeatureExtractorUnavailable`` with what to do. Nothing is loaded before the first call
    or ``load()``.

    Args:
        weights: ``"imagenet"`` (the Keras cache), a path to an ``.h5`` weights file, or None
            for random weights (speed measurements only: such features mean nothing).
        allow_download: fetch missing ImageNet weights (timeout ``timeout`` seconds).
        batch_size: images per forward pass.
    """

    image_size = 299
    dim = 2048

    def __init__(self, weights="imagenet", *, allow_download: bool = False,
                 batch_size: int = 64, timeout: float = 10.0):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
        self.weights = weights
        self.allow_download = allow_download
        self.batch_size = batch_size
        self.timeout = timeout
        if weights is None:
            self.name = "inception_v3_random_weights"
        elif weights == "imagenet":
            self.name = "inception_v3"
        else:
            self.name = f"inception_v3[{Path(weights).name}]"
        self._forward = None

    def weights_file(self) -> Path | None:
        """The weights file this extractor will read (None for random weights)."""
        if self.weights is None:
            return None
        return inception_weights_path() if self.weights == "imagenet" else Path(self.weights)

    def load(self) -> InceptionFeatures:
        """Build the network now; raises ``FeatureExtractorUnavailable`` when it cannot."""
        if self._forward is not None:
            return self
        path = self.weights_file()
        if path is not None and not path.is_file():
            if self.weights == "imagenet" and self.allow_download:
                download_inception_weights(path, timeout=self.timeout)
            else:
                fetch = (
                    "Fetch them once with InceptionFeatures(allow_download=True) or "
                    "resvae_keras.metrics.download_inception_weights(). "
                    if self.weights == "imagenet" else ""
                )
                raise FeatureExtractorUnavailable(
                    f"No InceptionV3 weights at {path}. " + fetch + _what_to_do(path)
                )
        import keras
        import tensorflow as tf

        try:
            model = keras.applications.InceptionV3(
                include_top=False, pooling="avg", input_shape=(self.image_size, self.image_size, 3),
                weights=None if path is None else str(path),
            )
        except (OSError, ValueError) as exc:
            raise FeatureExtractorUnavailable(
                f"Could not read InceptionV3 weights from {path} ({exc}); delete the file and "
                "fetch it again. " + _what_to_do(path)
            ) from exc
        size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def forward(images):
            resized = tf.image.resize(images, (size, size), method="bilinear")
            scaled = keras.applications.inception_v3.preprocess_input(resized * 255.0)
            return model(scaled, training=False)

        self._model, self._forward = model, forward
        return self

    def __call__(self, images) -> np.ndarray:
        """Features float32, shape (N, 2048), of images float32 in [0, 1], shape (N, H, W, 3)."""
        images = as_float_images(images, "images")
        self.load()
        out = [
            self._forward(images[i : i + self.batch_size]).numpy()
            for i in range(0, len(images), self.batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


# --------------------------------------------------------------------------------------
# 2b. FID, KID, precision and recall (on features)
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
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature sizes differ: real {real.shape}, fake {fake.shape}.")
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
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature sizes differ: real {real.shape}, fake {fake.shape}.")
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
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature sizes differ: real {real.shape}, fake {fake.shape}.")
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
    real = _as_features(real_feats, "real_feats")
    fake = _as_features(fake_feats, "fake_feats")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"Feature sizes differ: real {real.shape}, fake {fake.shape}.")
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
# 2c. Diversity and memorization
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
    return float(np.mean(_ms_ssim(images[i], images[j], batch_size)))


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
# 2d. Sliced Wasserstein distance on Laplacian-pyramid patches (offline realism)
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
# 2e. Is it a face? (OpenCV's Haar frontal-face cascade, offline)
# --------------------------------------------------------------------------------------

FACE_CASCADE_FILE = "haarcascade_frontalface_default.xml"
FACE_UPSCALE = 2
FACE_SCALE_FACTOR = 1.1
FACE_MIN_NEIGHBORS = 5
FACE_MIN_SIZE_FRACTION = 1.0 / 3.0
"""Settings of ``face_detections``: every set is upscaled 2x (bicubic) before the cascade
(Viola & Jones 2001, trained on 24x24 windows) looks at it; ``scaleFactor`` 1.1 and
``minNeighbors`` 5 are OpenCV's usual values; a face must cover at least a third of the side."""

_face_cascade = None


def _opencv():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            "face_detection_rate needs OpenCV 4.x with its Haar cascades: "
            "pip install opencv-python-headless==4.14.0.94 (the pin in requirements.txt)."
        ) from exc
    return cv2


def face_cascade():
    """OpenCV's frontal-face Haar cascade, loaded on first use and kept."""
    global _face_cascade
    if _face_cascade is None:
        cv2 = _opencv()
        folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = Path(folder or "") / FACE_CASCADE_FILE
        cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if cascade is None or cascade.empty():
            raise FileNotFoundError(
                f"OpenCV {cv2.__version__} ships no {FACE_CASCADE_FILE} (5.x dropped the Haar "
                "cascades): pip install opencv-python-headless==4.14.0.94 (requirements.txt)."
            )
        _face_cascade = cascade
    return _face_cascade


def face_detections(images, *, upscale: int = FACE_UPSCALE,
                    scale_factor: float = FACE_SCALE_FACTOR,
                    min_neighbors: int = FACE_MIN_NEIGHBORS,
                    min_size_fraction: float = FACE_MIN_SIZE_FRACTION) -> np.ndarray:
    """Whether OpenCV's Haar frontal-face cascade finds at least one face in each image.

    Each image is rounded to 8 bits, turned to grey, upscaled ``upscale`` times (bicubic)
    and searched with ``scale_factor``, ``min_neighbors`` and a minimum face side of
    ``min_size_fraction`` of the upscaled side (64x64: 128 px searched, faces >= 42 px).
    Compare only rates measured with the same settings and image size.

    Args:
        images: float32 in [0, 1] (or uint8), shape (N, H, W, 3).

    Returns:
        bool array (N,).
    """
    x = as_float_images(images, "images")
    if x.shape[-1] != 3:
        raise ValueError(f"`images` must be RGB, shape (N, H, W, 3); got shape {x.shape}.")
    if int(upscale) < 1:
        raise ValueError(f"`upscale` must be >= 1; got {upscale}.")
    cv2 = _opencv()
    cascade = face_cascade()
    height, width = x.shape[1] * int(upscale), x.shape[2] * int(upscale)
    side = max(1, int(min(height, width) * min_size_fraction))
    found = np.zeros(len(x), dtype=bool)
    for i, image in enumerate(x):
        rgb = to_uint8(image)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if int(upscale) > 1:
            grey = cv2.resize(grey, (width, height), interpolation=cv2.INTER_CUBIC)
        faces = cascade.detectMultiScale(grey, scaleFactor=scale_factor,
                                         minNeighbors=int(min_neighbors), minSize=(side, side))
        found[i] = len(faces) > 0
    return found


def face_detection_rate(images, **settings) -> float:
    """Share of ``images`` in which the Haar cascade finds a face, in [0, 1].

    A coarse, offline "is it a face?" check (``face_detections`` with ``settings``). On
    965 held-out 64x64 CelebA crops: real faces 0.95, blurred with sigma 1 px 0.94 and
    sigma 2 px 0.91 (it does not rank blurry faces), uniform noise 0.00, and the mean face
    is found (it does not see diversity either). Keep SWD and the diversity measures beside it.
    """
    found = face_detections(images, **settings)
    return float(found.mean()) if len(found) else float("nan")


# --------------------------------------------------------------------------------------
# 2f. Everything about samples at once
# --------------------------------------------------------------------------------------


def realism_metrics(real_images, fake_images, extractor: FeatureExtractor | None = None, *,
                    k: int = 3, kid_subsets: int = 100, kid_subset_size: int = 1000,
                    seed: int = 0, swd: bool = True, face_rate: bool = True) -> dict:
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
        extractor: e.g. ``InceptionFeatures()``; None skips the feature measures.
    """
    real = as_float_images(real_images, "real_images")
    fake = as_float_images(fake_images, "fake_images")
    result: dict = {"n_real": len(real), "n_fake": len(fake)}
    if swd:
        result["swd"] = sliced_wasserstein(real, fake, seed=seed)
    if face_rate:
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
    precision, recall = precision_recall(real_feats, fake_feats, k=k)
    result.update(
        available=True, fid=fid(real_feats, fake_feats), kid_mean=kid_mean, kid_std=kid_std,
        precision=precision, recall=recall,
        feature_diversity_real=mean_pairwise_distance(real_feats, seed=seed),
        feature_diversity_fake=mean_pairwise_distance(fake_feats, seed=seed),
    )
    return result
