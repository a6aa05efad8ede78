"""Linear baselines scored like the model: PCA and its density reading, probabilistic PCA.

A VAE with a k-dimensional code must reconstruct better than PCA with k components fitted on
the same training faces. Probabilistic PCA (Tipping & Bishop 1999), x = W z + mu + eps with
z ~ N(0, I_k) and eps ~ N(0, s^2 I), has an exact log-likelihood: the linear reference for
the VAE's bits/dim bound.
"""

from __future__ import annotations

import numpy as np

from resvae_keras import metrics
from resvae_keras.data.images import as_float_images


def pca_baseline(train_images, test_images, n_components: int, seed: int = 0) -> dict:
    """PCA with k = ``n_components`` fitted on ``train_images``, scored on ``test_images``:
    ``ppca_bits_per_dim`` is the exact PPCA NLL of the dequantized test images, ``ppca_sigma``
    in pixel units. ``seed``: of the randomized SVD and dequantization."""
    from sklearn.decomposition import PCA

    x_train = as_float_images(train_images).reshape(len(train_images), -1)
    x_test = as_float_images(test_images).reshape(len(test_images), -1)
    k = int(n_components)
    if not 1 <= k < len(x_train):
        raise ValueError(f"n_components={n_components!r}: expected 1 <= k < {len(x_train)} "
                         "(the number of training images)")
    pca = PCA(k, svd_solver="randomized", iterated_power=7, random_state=seed).fit(x_train)
    shape = (len(x_test), *np.shape(test_images)[1:])
    reconstructions = np.clip(pca.inverse_transform(pca.transform(x_test)), 0.0, 1.0)
    x, x_hat = x_test.reshape(shape), reconstructions.reshape(shape).astype(np.float32)
    psnr, ssim = metrics.psnr(x, x_hat), metrics.ssim(x, x_hat)
    rng = np.random.default_rng(seed)
    dequantized = (np.round(x_test * 255.0) + rng.random(x_test.shape) - 0.5) / 255.0
    nll = -pca.score_samples(dequantized)
    bpd = metrics.bits_per_dim(nll, x_test.shape[1])
    return {
        "n_components": k,
        "psnr": {"mean": float(np.mean(psnr)), "std": float(np.std(psnr))},
        "ssim": {"mean": float(np.mean(ssim)), "std": float(np.std(ssim))},
        "ppca_bits_per_dim": float(np.mean(bpd)),
        "ppca_sigma": float(np.sqrt(pca.noise_variance_)),
        "explained_variance": float(np.sum(pca.explained_variance_ratio_)),
    }


def pca_baselines(train_images, test_images, latent_dim: int, seed: int = 0) -> dict:
    """``pca_baseline`` at k = ``latent_dim`` / 2, ``latent_dim`` and 2 x ``latent_dim`` (capped
    below the number of training images), keyed ``pca_<k>``."""
    limit = len(train_images) - 1
    ks = sorted({min(max(k, 1), limit) for k in (int(latent_dim) // 2, int(latent_dim),
                                                 2 * int(latent_dim))})
    return {f"pca_{k}": pca_baseline(train_images, test_images, k, seed) for k in ks}
