"""8-bit images and the float images the model sees: every conversion in one place.

The cache stores uint8 values k in [0, 255]; the model, the metrics and the figures take
float32 ``k / 255`` in [0, 1]. ``as_float_images`` goes one way, ``to_uint8`` the other, and
``dequantize`` spreads each 8-bit value over its quantization bin (for bits/dim, see
``metrics.bits_per_dim``).
"""

from __future__ import annotations

import numpy as np

#: Half an 8-bit step: float images may stray this far outside [0, 1] (dequantized ones do).
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


def dequantize(images, seed=0) -> np.ndarray:
    """8-bit images spread uniformly over their quantization bins.

    The value ``k`` (``k / 255`` as a float) becomes ``(k + u - 1/2) / 255`` with
    ``u ~ U[0, 1)``, one draw per value: a point drawn uniformly from the bin of width
    1/255 centred on ``k / 255``. Float input is first rounded to 8 bits (``to_uint8``).

    Args:
        images: (N, H, W, 3) uint8, or float in [0, 1].
        seed: an int or a ``numpy.random.Generator`` (to continue one stream over chunks).

    Returns:
        float32 (N, H, W, 3), within half a step (1/510) of the 8-bit values.
    """
    x8 = to_uint8(images)
    rng = np.random.default_rng(seed)
    u = rng.random(x8.shape, dtype=np.float32)
    return (x8.astype(np.float32) + u - np.float32(0.5)) / np.float32(255.0)
