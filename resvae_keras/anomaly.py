"""Anomaly detection with a trained VAE: corrupted faces and non-face images, per-image
scores ("higher = more anomalous"), AUROC and average precision. Labels: 1 = anomaly.

Images are float32 in [0, 1], (N, H, W, 3) (uint8 accepted).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from resvae_keras import metrics
from resvae_keras.data.images import as_float_images, to_uint8

CORRUPTIONS = ("noise", "occlusion", "rotation")
CORRUPTION_STRENGTHS = {"noise": 0.1, "occlusion": 0.35, "rotation": None}
"""Default ``strength`` per corruption: noise std, square side over image side, rotation in
degrees (None: uniform in [90, 270] per image)."""
NON_FACE_KINDS = ("gradient", "stripes", "checkerboard", "texture", "shapes", "flat")
ANOMALY_SCORES = {
    "neg_elbo": "negative ELBO, nats per image (the likelihood bound; higher = less likely)",
    "reconstruction_mse": "mean squared error of the reconstruction from z_mean",
    "complexity_corrected": "bits/dim of the negative ELBO minus the PNG bits/dim of the image "
    "(Serra et al. 2020: discounts how simple an image is)",
}


def corrupt(images, kind: str, seed: int = 0, strength: float | None = None) -> np.ndarray:
    """Corrupted copies of ``images``, float32 in [0, 1]. ``kind``: ``"noise"`` (Gaussian, std
    ``strength``, clipped), ``"occlusion"`` (a square of side ``strength`` x H in one random
    colour) or ``"rotation"`` (``strength`` degrees about the centre, reflected border).
    ``strength`` None: ``CORRUPTION_STRENGTHS``."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"kind={kind!r} is not one of {list(CORRUPTIONS)}")
    x = as_float_images(images).copy()
    strength = CORRUPTION_STRENGTHS[kind] if strength is None else strength
    rng = np.random.default_rng([seed, CORRUPTIONS.index(kind)])
    n, height, width, _ = x.shape
    if kind == "noise":
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(strength)
        return np.clip(x + noise, 0.0, 1.0)
    if kind == "occlusion":
        side = max(1, round(strength * min(height, width)))
        tops = rng.integers(0, height - side + 1, size=n)
        lefts = rng.integers(0, width - side + 1, size=n)
        colours = rng.random((n, 3), dtype=np.float32)
        for i in range(n):
            x[i, tops[i] : tops[i] + side, lefts[i] : lefts[i] + side] = colours[i]
        return x
    angles = rng.uniform(90.0, 270.0, size=n) if strength is None else np.full(n, float(strength))
    for i in range(n):
        x[i] = ndimage.rotate(x[i], angles[i], axes=(1, 0), reshape=False, order=1, mode="reflect")
    return np.clip(x, 0.0, 1.0)


def non_face_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` procedural images with no face, float32 (n, size, size, 3); image i is of kind
    ``NON_FACE_KINDS[i % 6]`` and depends only on ``(seed, i)``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kind = NON_FACE_KINDS[i % len(NON_FACE_KINDS)]
        c0, c1 = rng.random(3, dtype=np.float32), rng.random(3, dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        along = xx * np.cos(angle) + yy * np.sin(angle)
        t = np.zeros((size, size), np.float32)  # "flat" stays c0
        if kind == "gradient":
            t = (along - along.min()) / (along.max() - along.min())
        elif kind == "stripes":
            frequency, phase = rng.uniform(2, 8), rng.uniform(0, 2 * np.pi)
            t = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * along + phase)
        elif kind == "checkerboard":
            cell = int(rng.integers(4, 17))
            rows, cols = np.mgrid[0:size, 0:size]
            t = ((rows // cell + cols // cell) % 2).astype(np.float32)
        elif kind == "texture":
            noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), rng.uniform(1, 4))
            t = (noise - noise.min()) / (noise.max() - noise.min())
        elif kind == "shapes":
            image = np.broadcast_to(c0, (size, size, 3)).copy()
            for _ in range(int(rng.integers(3, 9))):
                colour = rng.random(3, dtype=np.float32)
                cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
                if rng.random() < 0.5:
                    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
                else:
                    mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < rng.uniform(0.05, 0.3))
                image[mask] = colour
            out[i] = image
            continue
        out[i] = c0 * (1 - t[..., None]) + c1 * t[..., None]
    return np.clip(out, 0.0, 1.0)


def non_face_labels(n: int) -> np.ndarray:
    """The kind of each image of ``non_face_images(n)``: str array of shape (n,)."""
    return np.resize(np.array(NON_FACE_KINDS), n)


def png_bits(images) -> np.ndarray:
    """PNG size of each image as 8-bit RGB, in bits (float64 (N,)): how complex it is."""
    x = to_uint8(as_float_images(images))
    sizes = np.empty(len(x))
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", compress_level=9)
        sizes[i] = 8 * buffer.tell()
    return sizes


def anomaly_scores(model, images, seed: int = 0, batch_size: int = 256) -> pd.DataFrame:
    """Scores per image: ``neg_elbo`` (nats), ``bits_per_dim``, ``reconstruction_mse`` (from
    z_mean), ``png_bits`` and ``complexity_corrected`` (bits_per_dim - png_bits / D, Serra et
    al. 2020)."""
    x = as_float_images(images)
    neg_elbo = model.elbo(x, batch_size, seed=seed)["neg_elbo"]
    num_dims = int(np.prod(x.shape[1:]))
    bpd = metrics.bits_per_dim(neg_elbo, num_dims)
    png = png_bits(x)
    return pd.DataFrame({
        "neg_elbo": neg_elbo.astype(np.float64),
        "bits_per_dim": bpd,
        "reconstruction_mse": metrics.mse(x, np.clip(model.reconstruct(x, batch_size), 0.0, 1.0)),
        "png_bits": png,
        "complexity_corrected": bpd - png / num_dims,
    })


def anomaly_sets(clean_images, seed: int = 0) -> dict:
    """``{"clean", <each of CORRUPTIONS>, "non_face"}`` -> images, as many of each."""
    clean = as_float_images(clean_images)
    return {"clean": clean, **{kind: corrupt(clean, kind, seed=seed) for kind in CORRUPTIONS},
            "non_face": non_face_images(len(clean), clean.shape[1], seed=seed)}


def score_sets(model, sets: dict, seed: int = 0) -> dict:
    """``anomaly_scores`` of each set of ``anomaly_sets``: ``{name: DataFrame}``."""
    return {name: anomaly_scores(model, images, seed=seed) for name, images in sets.items()}


def _labelled(scores: dict, anomaly: str, score: str, clean: str):
    normal, abnormal = scores[clean][score].to_numpy(), scores[anomaly][score].to_numpy()
    return np.r_[np.zeros(len(normal)), np.ones(len(abnormal))], np.r_[normal, abnormal]


def anomaly_table(scores: dict, score_names=tuple(ANOMALY_SCORES), clean: str = "clean"):
    """AUROC and average precision (scikit-learn) of each score, clean against each set of
    ``scores`` (``{name: anomaly_scores}``), indexed by (``anomaly``, ``score``); NaN where a
    score does not apply (the autoencoder's ELBO)."""
    rows = []
    for anomaly in [name for name in scores if name != clean]:
        for score in score_names:
            labels, values = _labelled(scores, anomaly, score, clean)
            applicable = bool(np.isfinite(values).all())  # the autoencoder has no ELBO
            rows.append({
                "anomaly": anomaly, "score": score,
                "auroc": roc_auc_score(labels, values) if applicable else np.nan,
                "ap": average_precision_score(labels, values) if applicable else np.nan,
                "n_clean": len(scores[clean]), "n_anomalous": len(scores[anomaly]),
                "mean_clean": float(scores[clean][score].mean()),
                "mean_anomalous": float(scores[anomaly][score].mean()),
            })
    return pd.DataFrame(rows).set_index(["anomaly", "score"])


def roc_curves_of(scores: dict, score: str = "neg_elbo", clean: str = "clean") -> dict:
    """``{anomaly: (fpr, tpr, auroc)}`` for ``plots.roc_curves``; skips NaN scores."""
    curves = {}
    for anomaly in [name for name in scores if name != clean]:
        labels, values = _labelled(scores, anomaly, score, clean)
        if np.isfinite(values).all():
            fpr, tpr, _ = roc_curve(labels, values)
            curves[anomaly] = (fpr, tpr, roc_auc_score(labels, values))
    return curves
