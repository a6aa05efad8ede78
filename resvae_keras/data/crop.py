"""The crop rule and fast JPEG decoding: any CelebA-like image -> a uint8 square.

The rule scales the common 148x148 crop of the 178x218 aligned images (rows 40-188,
columns 15-163, Larsen et al. 2016) to any size, in sub-pixel coordinates; the box is
resized with PIL's Lanczos filter. JPEGs are first decoded at 1/2, 1/4 or 1/8 scale
(``Image.draft``) while the box keeps at least ``size`` pixels.
"""

from __future__ import annotations

import functools
import io
import math
import os
import zipfile

import numpy as np
from PIL import Image

CROP_SIDE, CROP_CENTRE_Y = 148 / 178, 114 / 218
CROP_RULE = (
    "side = 148/178*width (at most height); left = (width - side)/2; "
    "top = 114/218*height - side/2 clamped to [0, height - side]; sub-pixel box "
    "(178x218 -> (15, 40, 163, 188)); JPEG draft decoding, then PIL Lanczos resize"
)


def crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The sub-pixel square crop (left, top, right, bottom) of a width x height image."""
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height}: both sides must be at least 1 pixel")
    side = min(CROP_SIDE * width, float(height))
    left = (width - side) / 2
    top = min(max(CROP_CENTRE_Y * height - side / 2, 0.0), height - side)
    return (left, top, left + side, top + side)


def crop_and_resize(
    image: Image.Image, size: int = 64, source_size: tuple[int, int] | None = None
) -> Image.Image:
    """The crop rule on ``image``, resized to ``size`` x ``size`` RGB; ``source_size``: the
    (width, height) before any ``draft`` reduction. 16-bit grayscale (PIL modes ``I;16*`` and
    ``I``, values in [0, 65535]) is scaled by 255/65535; PIL would clip it to white."""
    width, height = source_size or image.size
    left, top, right, bottom = crop_box(width, height)
    sx, sy = image.size[0] / width, image.size[1] / height
    if image.mode.startswith("I"):
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(wide * (255 / 65535) + 0.5, 0, 255).astype(np.uint8))
    image = image if image.mode == "RGB" else image.convert("RGB")
    box = (left * sx, top * sy, right * sx, bottom * sy)
    return image.resize((size, size), Image.Resampling.LANCZOS, box=box)


def load_face(file, size: int = 64) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode and crop one image file: the face, uint8 (size, size, 3), and (width, height)."""
    with Image.open(file) as image:
        source_size = image.size
        side = min(CROP_SIDE * source_size[0], source_size[1])
        scale = size / side
        if scale < 1:  # decode JPEGs at the smallest DCT scale that keeps >= size pixels in the box
            image.draft(
                "RGB", (math.ceil(source_size[0] * scale), math.ceil(source_size[1] * scale))
            )
        face = crop_and_resize(image, size, source_size)
    return np.asarray(face, dtype=np.uint8), source_size


@functools.cache
def _open_zip(path: str, pid: int) -> zipfile.ZipFile:
    """One ZipFile per process ``pid``: a handle shared across fork would share the offset."""
    return zipfile.ZipFile(path)


def decode_chunk(job) -> list[tuple[np.ndarray | None, str | None, tuple[int, int] | None]]:
    """``(face, error, source_size)`` per member of ``job = (images, is_zip, members, size)``."""
    images, is_zip, members, size = job
    results = []
    for member in members:
        try:
            if is_zip:
                file = io.BytesIO(_open_zip(images, os.getpid()).read(member))
            else:
                file = os.path.join(images, member)
            face, source_size = load_face(file, size)
            results.append((face, None, source_size))
        except Exception as error:  # a corrupt file is skipped and reported, never fatal
            results.append((None, f"{type(error).__name__}: {error}", None))
    return results
