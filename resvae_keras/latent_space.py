"""Reading the latent space of a trained VAE: which units are active, how far the codes'
aggregate posterior is from the prior, what an attribute vector, a traversal or an edit
does to a face, interpolation grids and a 2-D projection for figures.

Codes come from ``latent.encode_dataset`` (``z_mean``, ``z_log_var``, each (N, latent_dim),
in units of the prior's standard deviation); decoded images are float32 in [0, 1], shape
(..., H, W, 3). Notebook 05, ``evaluate.latent_report`` and ``plots`` call these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from resvae_keras.data.images import as_float_images
from resvae_keras.latent import decode_grid, image_batch, interpolate, to_numpy

# -- active units and the aggregate posterior ----------------------------------


def kl_per_dimension(z_mean, z_log_var) -> np.ndarray:
    """KL(q(z_j | x) || N(0, 1)) averaged over the images: nats, shape (d,).

    Per dimension: 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2). A dimension with a
    KL near 0 carries no information about x (posterior collapse).
    """
    z_mean, z_log_var = to_numpy(z_mean, np.float64), to_numpy(z_log_var, np.float64)
    kl = 0.5 * (np.square(z_mean) + np.exp(z_log_var) - 1.0 - z_log_var)
    return kl.reshape(-1, kl.shape[-1]).mean(axis=0)


def unit_activity(z_mean) -> np.ndarray:
    """Variance over the images of E[z_j | x] (Burda et al. 2016): shape (d,)."""
    z_mean = to_numpy(z_mean, np.float64)
    return z_mean.reshape(-1, z_mean.shape[-1]).var(axis=0)


def active_units(z_mean, threshold: float = 0.01, z_log_var=None) -> tuple[np.ndarray, np.ndarray]:
    """Which latent dimensions the model uses (Burda et al. 2016).

    A unit is active when ``unit_activity`` (the variance over the data of E[z_j | x])
    exceeds ``threshold`` (0.01).

    Args:
        z_mean: encoder means, shape (N, d).
        z_log_var: optional, shape (N, d); when given the ranking is by
            ``kl_per_dimension``, otherwise by activity.

    Returns:
        ``(mask, ranking)``: bool array (d,) of active units, and int array (d,) of the
        dimensions from most to least used.
    """
    activity = unit_activity(z_mean)
    score = activity if z_log_var is None else kl_per_dimension(z_mean, z_log_var)
    ranking = np.argsort(-score, kind="stable")
    return activity > threshold, ranking


def aggregate_posterior_std(z_mean, z_log_var) -> np.ndarray:
    """Standard deviation of the aggregate posterior q(z) = mean_n q(z | x_n), per dimension.

    By the law of total variance, ``Var_q(z_j) = Var_n(mu_nj) + mean_n(sigma_nj^2)``. The
    prior N(0, I) has 1 in every dimension; drawing it at temperature T gives T in every
    dimension, so no single T matches a q(z) whose dimensions have different scales.

    Args:
        z_mean, z_log_var: encoder outputs of N images, shape (N, d) each.

    Returns:
        float64, shape (d,), in prior standard deviations.
    """
    z_mean, z_log_var = to_numpy(z_mean, np.float64), to_numpy(z_log_var, np.float64)
    if z_mean.shape != z_log_var.shape or z_mean.ndim != 2:
        raise ValueError(
            f"z_mean {z_mean.shape} and z_log_var {z_log_var.shape} must both be (N, d)"
        )
    return np.sqrt(z_mean.var(axis=0) + np.exp(z_log_var).mean(axis=0))


def aggregate_kl_lower_bound(mean_kl: float, n_images: int) -> float:
    """How far q(z) is at least from the prior: a lower bound on KL(q(z) || N(0, I)), nats.

    ELBO surgery (Hoffman & Johnson 2016) with x uniform over N training images:
    ``E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z))`` and ``I(x; z) <= log N``, so
    ``KL(q(z) || p(z)) >= mean_kl - log N`` (0 when that is negative).

    Args:
        mean_kl: KL(q(z|x) || N(0, I)) averaged over those N images, nats (>= 0).
        n_images: N, the number of training images (>= 1).
    """
    if int(n_images) < 1:
        raise ValueError(f"n_images={n_images!r}: the bound needs at least one training image")
    return max(float(mean_kl) - math.log(int(n_images)), 0.0)


def latent_report(z_mean, z_log_var, threshold: float = 0.01, top: int = 10) -> dict:
    """Active units (Burda et al. 2016) and the KL per dimension, JSON-ready.

    ``active_units`` counts dimensions whose E[z_j | x] varies over the images by more
    than ``threshold``; ``top_units`` are the dimensions with the largest mean KL (nats).
    ELBO surgery says why decoding prior draws can fail: ``aggregate_kl_lower_bound_nats``
    bounds KL(q(z) || N(0, I)) from below, with q(z) the aggregate posterior of these images
    (``aggregate_kl_lower_bound``), and ``aggregate_std`` summarises q(z)'s standard
    deviation per dimension (the prior has 1 in each).
    """
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


# -- attribute vectors ---------------------------------------------------------


def attribute_vector(z_means, has_attribute) -> np.ndarray:
    """mean(z | attribute) - mean(z | no attribute): float32, shape (d,).

    Args:
        z_means: encoder means, shape (N, d).
        has_attribute: shape (N,), bool (or CelebA's -1/1, or 0/1).
    """
    z_means = to_numpy(z_means, np.float64)
    has = np.asarray(has_attribute)
    has = has if has.dtype == bool else has > 0
    if has.shape != (len(z_means),):
        raise ValueError(
            f"has_attribute has shape {has.shape} but z_means has {len(z_means)} rows; "
            "pass one flag per encoded image"
        )
    if has.all() or not has.any():
        raise ValueError(
            f"has_attribute is {'all True' if has.all() else 'all False'}: an attribute vector "
            "needs images with and without the attribute (encode more images)"
        )
    return (z_means[has].mean(axis=0) - z_means[~has].mean(axis=0)).astype(np.float32)


def attribute_vectors(z_means, attributes: pd.DataFrame, names: Sequence[str]) -> dict:
    """``{name: attribute_vector(z_means, attributes[name])}`` for each name.

    ``attributes`` has one row per row of ``z_means`` (e.g. ``Cache.attributes_of(split)``).
    """
    missing = [name for name in names if name not in attributes.columns]
    if missing:
        raise KeyError(f"attributes has no column(s) {missing}; known: {list(attributes.columns)}")
    return {name: attribute_vector(z_means, attributes[name].to_numpy()) for name in names}


def apply_attribute(z, vector, strengths) -> np.ndarray:
    """z + s * vector for each strength s: float32, shape (n, len(strengths), d).

    z has shape (n, d) or (d,) (then n = 1).
    """
    z = np.atleast_2d(to_numpy(z))
    vector = to_numpy(vector)
    strengths = np.atleast_1d(to_numpy(strengths))
    if vector.shape != z.shape[-1:]:
        raise ValueError(f"vector has shape {vector.shape}; expected ({z.shape[-1]},) to match z")
    return z[:, None, :] + strengths[None, :, None] * vector


def attribute_arithmetic(
    model, images, vector, strengths=(-2, -1, 0, 1, 2), batch_size: int = 256
) -> np.ndarray:
    """Add an attribute vector to the codes of images and decode.

    Args:
        images: float32 in [0, 1], shape (n, H, W, 3).
        vector: attribute vector, shape (d,) (see ``attribute_vector``).
        strengths: multiples of ``vector`` to add (0: the plain reconstruction).

    Returns:
        images float32 in [0, 1], shape (n, len(strengths), H, W, 3).
    """
    z_mean = to_numpy(model.encode(image_batch(images))[0])
    return decode_grid(model, apply_attribute(z_mean, vector, strengths), batch_size)


def attribute_strength_effect(model, images, vector, strengths, detector) -> pd.DataFrame:
    """What adding an attribute vector does, measured by a detector.

    Args:
        images: faces float32 in [0, 1], shape (n, S, S, 3).
        vector: attribute vector (d,), e.g. from ``attribute_vector``.
        strengths: multiples of ``vector`` to add to each face's ``z_mean``.
        detector: images (n, S, S, 3) -> bool (n,), e.g. ``data.detect_demo_eyeglasses``.

    Returns:
        DataFrame indexed by ``strength`` with ``rate`` (share of decoded faces the
        detector fires on, in [0, 1]) and ``n_images``.
    """
    grid = attribute_arithmetic(model, as_float_images(images), vector, strengths)
    rates = [float(np.mean(detector(grid[:, j]))) for j in range(grid.shape[1])]
    index = pd.Index(np.asarray(strengths, dtype=float), name="strength")
    return pd.DataFrame({"rate": rates, "n_images": len(grid)}, index=index)


# -- traversals, edits and interpolation grids ---------------------------------


def traverse(model, z, dims: Sequence[int], values, batch_size: int = 256) -> np.ndarray:
    """Vary one latent dimension at a time around a base code and decode.

    Args:
        z: base code, shape (d,) or (1, d) (e.g. the ``z_mean`` of one image).
        dims: dimensions to vary (e.g. the first few of ``active_units``' ranking).
        values: values (prior standard deviations) the dimension is set to.

    Returns:
        images float32 in [0, 1], shape (len(dims), len(values), H, W, 3).
    """
    z = to_numpy(z)
    if z.ndim == 2 and len(z) == 1:
        z = z[0]
    if z.ndim != 1:
        raise ValueError(f"z has shape {z.shape}; traverse takes one base code of shape (d,)")
    values = np.atleast_1d(to_numpy(values))
    dims = [int(dim) for dim in dims]
    out_of_range = [dim for dim in dims if not -len(z) <= dim < len(z)]
    if out_of_range:
        raise ValueError(f"dims {out_of_range} are outside the latent size {len(z)}")
    codes = np.repeat(np.repeat(z[None, None, :], len(dims), 0), len(values), 1)
    for row, dim in enumerate(dims):
        codes[row, :, dim] = values
    return decode_grid(model, codes, batch_size)


def edit_code(z, vectors=None, strengths=None, unit_offsets=None) -> np.ndarray:
    """``z + sum_a s_a v_a + sum_j delta_j e_j``: one edited code, float32 (d,).

    Args:
        z: base code, shape (d,) (e.g. the ``z_mean`` of one face).
        vectors: ``{name: attribute vector (d,)}`` (see ``attribute_vectors``).
        strengths: ``{name: s}`` multiples of those vectors (a missing name: 0).
        unit_offsets: ``{unit j: delta_j}``, shifts of single units in prior standard
            deviations.
    """
    z = to_numpy(z).copy()
    if z.ndim != 1:
        raise ValueError(f"z has shape {z.shape}; edit_code takes one code of shape (d,)")
    vectors = vectors or {}
    for name, strength in (strengths or {}).items():
        if name not in vectors:
            raise KeyError(f"no attribute vector {name!r}; known: {sorted(vectors)}")
        z += float(strength) * to_numpy(vectors[name])
    for unit, offset in (unit_offsets or {}).items():
        if not -len(z) <= int(unit) < len(z):
            raise ValueError(f"unit {unit} is outside the latent size {len(z)}")
        z[int(unit)] += float(offset)
    return z


def interpolation_paths(
    model, x_start, x_end, steps: int = 8, method: str = "slerp", batch_size: int = 256
) -> np.ndarray:
    """Decoded interpolations between the codes (``z_mean``) of image pairs.

    Args:
        x_start, x_end: images float32 in [0, 1], shape (n_pairs, H, W, 3) (or one
            image (H, W, 3) each).
        steps: images per path, endpoints included.
        method: ``"slerp"`` or ``"lerp"``.

    Returns:
        images float32 in [0, 1], shape (n_pairs, steps, H, W, 3); column 0 and column
        ``steps - 1`` are the reconstructions of x_start and x_end.
    """
    x_start, x_end = image_batch(x_start), image_batch(x_end)
    if x_start.shape != x_end.shape:
        raise ValueError(
            f"x_start has shape {x_start.shape} but x_end has {x_end.shape}: pass pairs of equal count"
        )
    z_start = to_numpy(model.encode(x_start)[0])
    z_end = to_numpy(model.encode(x_end)[0])
    return decode_grid(model, interpolate(z_start, z_end, steps, method), batch_size)


# -- projection ----------------------------------------------------------------


def pca_2d(z, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project codes on their two main principal axes.

    Args:
        z: codes, shape (N, d) with N >= 2 and d >= 2.

    Returns:
        ``(coords, explained_variance_ratio)``: float32 (N, 2) and float (2,), the
        share of the total variance along each axis.
    """
    from sklearn.decomposition import PCA

    z = to_numpy(z, np.float64)
    if z.ndim != 2 or min(z.shape) < 2:
        raise ValueError(f"z has shape {z.shape}; pca_2d needs (N, d) with N >= 2 and d >= 2")
    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(z).astype(np.float32)
    return coords, pca.explained_variance_ratio_
