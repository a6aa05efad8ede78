"""Reading the latent space of a trained VAE: active units, the aggregate posterior,
attribute vectors, traversals, edits, interpolation grids and a 2-D projection of the
codes (N, d) that ``latent.encode_dataset`` returns."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from resvae_keras.latent import decode_grid, image_batch, interpolate, to_numpy


def kl_per_dimension(z_mean, z_log_var) -> np.ndarray:
    """KL(q(z_j | x) || N(0, 1)) = 0.5 (mu^2 + sigma^2 - 1 - log sigma^2) averaged over the
    images: nats, shape (d,). Near 0: the dimension carries no information (collapse)."""
    z_mean, z_log_var = to_numpy(z_mean, np.float64), to_numpy(z_log_var, np.float64)
    kl = 0.5 * (np.square(z_mean) + np.exp(z_log_var) - 1.0 - z_log_var)
    return kl.reshape(-1, kl.shape[-1]).mean(axis=0)


def active_units(z_mean, threshold: float = 0.01, z_log_var=None) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, ranking)``: the active units, whose E[z_j | x] varies over the images by more
    than ``threshold`` (Burda et al. 2016), and the dimensions from most to least used (by
    ``kl_per_dimension`` when ``z_log_var`` is given, else by that variance)."""
    z_mean = to_numpy(z_mean, np.float64)
    activity = z_mean.reshape(-1, z_mean.shape[-1]).var(axis=0)
    score = activity if z_log_var is None else kl_per_dimension(z_mean, z_log_var)
    ranking = np.argsort(-score, kind="stable")
    return activity > threshold, ranking


def aggregate_posterior_std(z_mean, z_log_var) -> np.ndarray:
    """Standard deviation of the aggregate posterior q(z) = mean_n q(z | x_n) per dimension,
    float64 (d,): ``Var_q(z_j) = Var_n(mu_nj) + mean_n(sigma_nj^2)`` (the prior has 1)."""
    z_mean, z_log_var = to_numpy(z_mean, np.float64), to_numpy(z_log_var, np.float64)
    return np.sqrt(z_mean.var(axis=0) + np.exp(z_log_var).mean(axis=0))


def aggregate_kl_lower_bound(mean_kl: float, n_images: int) -> float:
    """A lower bound on KL(q(z) || N(0, I)), nats, from the mean KL(q(z|x) || p(z)) of N images.

    ELBO surgery (Hoffman & Johnson 2016): ``E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) ||
    p(z))`` and ``I(x; z) <= log N``, so ``KL(q(z) || p(z)) >= max(mean_kl - log N, 0)``.
    """
    if int(n_images) < 1:
        raise ValueError(f"n_images={n_images!r}: the bound needs at least one training image")
    return max(float(mean_kl) - math.log(int(n_images)), 0.0)


def latent_report(z_mean, z_log_var, threshold: float = 0.01, top: int = 10) -> dict:
    """Active units, the KL per dimension (``top_units``: the largest) and the aggregate
    posterior's distance from the prior and spread, JSON-ready."""
    mask, ranking = active_units(z_mean, threshold, z_log_var)
    kl = kl_per_dimension(z_mean, z_log_var)
    spread = aggregate_posterior_std(z_mean, z_log_var)
    return {
        "n_images": len(z_mean),
        "latent_dim": int(np.shape(z_mean)[1]),
        "threshold": threshold,
        "active_units": int(mask.sum()),
        "kl_total_nats": float(kl.sum()),
        "aggregate_kl_lower_bound_nats": aggregate_kl_lower_bound(kl.sum(), len(z_mean)),
        "aggregate_std": {"min": float(spread.min()), "median": float(np.median(spread)),
                          "max": float(spread.max())},
        "top_units": ranking[:top].tolist(),
        "top_units_kl_nats": kl[ranking[:top]].tolist(),
    }


def attribute_vector(z_means, has_attribute) -> np.ndarray:
    """mean(z | attribute) - mean(z | no attribute): float32 (d,); ``has_attribute`` (N,)
    is bool, CelebA's -1/1 or 0/1."""
    z_means = to_numpy(z_means, np.float64)
    has = np.asarray(has_attribute)
    has = has if has.dtype == bool else has > 0
    if has.all() or not has.any():
        raise ValueError(
            f"has_attribute is {'all True' if has.all() else 'all False'}: an attribute vector "
            "needs images with and without the attribute (encode more images)"
        )
    return (z_means[has].mean(axis=0) - z_means[~has].mean(axis=0)).astype(np.float32)


def attribute_vectors(z_means, attributes: pd.DataFrame, names: Sequence[str]) -> dict:
    """``{name: attribute_vector(z_means, attributes[name])}``; one attribute row per code."""
    return {name: attribute_vector(z_means, attributes[name].to_numpy()) for name in names}


def attribute_arithmetic(
    model, images, vector, strengths=(-2, -1, 0, 1, 2), batch_size: int = 256
) -> np.ndarray:
    """Decode the codes z of ``images`` (n, H, W, 3) plus ``s * vector`` for each strength s:
    images float32 in [0, 1], shape (n, len(strengths), H, W, 3)."""
    z = to_numpy(model.encode(image_batch(images))[0])
    vector, strengths = to_numpy(vector), np.atleast_1d(to_numpy(strengths))
    if vector.shape != z.shape[-1:]:
        raise ValueError(f"vector has shape {vector.shape}; expected ({z.shape[-1]},) to match z")
    return decode_grid(model, z[:, None, :] + strengths[None, :, None] * vector, batch_size)


def attribute_strength_effect(model, images, vector, strengths, detector) -> pd.DataFrame:
    """What adding an attribute vector does, by a ``detector`` (images -> bool (n,)): a
    DataFrame indexed by ``strength`` with ``rate`` (share of faces it fires on), ``n_images``."""
    grid = attribute_arithmetic(model, images, vector, strengths)
    rates = [float(np.mean(detector(grid[:, j]))) for j in range(grid.shape[1])]
    index = pd.Index(np.asarray(strengths, dtype=float), name="strength")
    return pd.DataFrame({"rate": rates, "n_images": len(grid)}, index=index)


def traverse(model, z, dims: Sequence[int], values, batch_size: int = 256) -> np.ndarray:
    """Set each of ``dims`` of a base code z (d,) to each of ``values`` in turn and decode:
    images float32 in [0, 1], shape (len(dims), len(values), H, W, 3)."""
    z = to_numpy(z)
    if z.ndim != 1:
        raise ValueError(f"z has shape {z.shape}; traverse takes one base code of shape (d,)")
    values = np.atleast_1d(to_numpy(values))
    dims = [int(dim) for dim in dims]
    out_of_range = [dim for dim in dims if not -len(z) <= dim < len(z)]
    if out_of_range:
        raise ValueError(f"dims {out_of_range} are outside the latent size {len(z)}")
    codes = np.tile(z, (len(dims), len(values), 1))
    for row, dim in enumerate(dims):
        codes[row, :, dim] = values
    return decode_grid(model, codes, batch_size)


def edit_code(z, vectors=None, strengths=None, unit_offsets=None) -> np.ndarray:
    """``z + sum_a s_a v_a + sum_j delta_j e_j``: one edited code, float32 (d,), from
    ``vectors`` ``{a: v_a}``, ``strengths`` ``{a: s_a}`` and ``unit_offsets`` ``{j: delta_j}``."""
    z = to_numpy(z).copy()
    if z.ndim != 1:
        raise ValueError(f"z has shape {z.shape}; edit_code takes one code of shape (d,)")
    vectors = vectors or {}
    for name, strength in (strengths or {}).items():
        z += float(strength) * to_numpy(vectors[name])
    for unit, offset in (unit_offsets or {}).items():
        if not -len(z) <= int(unit) < len(z):
            raise ValueError(f"unit {unit} is outside the latent size {len(z)}")
        z[int(unit)] += float(offset)
    return z


def interpolation_paths(
    model, x_start, x_end, steps: int = 8, method: str = "slerp", batch_size: int = 256
) -> np.ndarray:
    """Decoded interpolations (``"slerp"`` or ``"lerp"``) between the ``z_mean`` of image
    pairs (n_pairs, H, W, 3): images float32 in [0, 1], (n_pairs, steps, H, W, 3)."""
    z_start = to_numpy(model.encode(image_batch(x_start))[0])
    z_end = to_numpy(model.encode(image_batch(x_end))[0])
    return decode_grid(model, interpolate(z_start, z_end, steps, method), batch_size)


def pca_2d(z, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Codes (N, d) on their two main principal axes: ``(coords, explained_variance_ratio)``,
    float32 (N, 2) and the share of the variance along each axis."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(to_numpy(z, np.float64)).astype(np.float32)
    return coords, pca.explained_variance_ratio_
