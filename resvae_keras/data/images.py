"""8-bit images and the float images the model sees: every conversion in one place.

The cache stores uint8 values k in [0, 255]; the model, the metrics and the figures take
float32 ``k / 255`` in [0, 1]. ``as_float_images`` goes one way, ``to_uint8`` the other.
"""

from __future__ import annotations

import numpy as np

#: Half an 8-bit step: float images may stray this far outside [0, 1]
#: (``model.dequantized`` images do).
RANGE_TOLERANCE = 0.5 / 255


def as_float_images(images, name: str = "images") -> np.ndarray:
    """Images as float32 in [0, 1], shape (N, H, W, C).

    Args:
        images: uint8 in [0, 255] (the cache; divided by 255), or float in [0, 1] (kept,
            without a copy when already float32); a numpy array, a memmap or a tensor.
        name: the argument's name, for the error message.

    Raises:
        ValueError: not a batch of images, or float values outside [0, 1].
    """
    array = np.asarray(images)
    if array.ndim != 4:
        raise ValueError(
            f"`{name}` must be a batch of images of shape (N, H, W, C); got shape {array.shape}. "
            "Add a batch axis with images[None] for a single image."
        )
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    array = array.astype(np.float32, copy=False)
    if array.size:
        low, high = float(array.min()), float(array.max())
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
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
