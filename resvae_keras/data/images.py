"""uint8 images in [0, 255] (the cache) <-> float32 ``k / 255`` in [0, 1] (the model)."""

from __future__ import annotations

import numpy as np


def as_float_images(images, name: str = "images") -> np.ndarray:
    """Images as float32 in [0, 1], shape (N, H, W, C), from uint8 (divided by 255) or float
    in [0, 1] (no copy when float32); ``ValueError`` naming ``name`` otherwise."""
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(
            f"`{name}` must be a batch of images of shape (N, H, W, C); got shape {array.shape}. "
            "Add a batch axis with images[None] for a single image."
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    array = array.astype(np.float32, copy=False)
    tolerance = 0.5 / 255  # half an 8-bit step: ``model.dequantized`` images stray this far
    if array.size:
        low, high = float(array.min()), float(array.max())
        if low < -tolerance or high > 1 + tolerance:
            raise ValueError(
                f"`{name}` must hold values in [0, 1]; got range [{low:.3g}, {high:.3g}]. "
                "Divide 8-bit images by 255 (or pass them as uint8)."
            )
    return array


def to_uint8(images) -> np.ndarray:
    """Images as uint8 in [0, 255]: float in [0, 1] is rounded to the nearest 8-bit value
    (``round(255 x)``, clipped); uint8 is returned as is."""
    array = np.asarray(images)
    if array.dtype == np.uint8:
        return array
    return np.clip(array.astype(np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
