"""CelebA data: find it, crop and cache it once, feed it to Keras through tf.data.

One path from files to batches::

    CelebA folder or zip (official / Google Drive / Kaggle layout)   write_demo_dataset (same layout)
                     \\                                                 /
          find_celeba -> annotations -> crop + resize (crop.py) -> cache (uint8 memmap + table + manifest)
                                                 |
                                   make_dataset(cache, split, batch_size)

Typical use::

    from resvae_keras import data
    cache = data.load_cache(config)            # or data.prepare(celeba_dir, size=64)
    train = data.make_dataset(cache, "train", batch_size=64)

Modules: ``celeba`` (layouts, annotation files), ``crop`` (the crop rule, decoding),
``cache`` (the cache, splits), ``pipeline`` (tf.data), ``demo`` (synthetic faces),
``images`` (uint8 <-> float conversions). No plotting: every figure is drawn by ``plots``.
"""

import sys as _sys
import warnings as _warnings

from .cache import (
    Cache,
    assign_splits,
    cache_folder,
    load_cache,
    open_cache,
    prepare,
    split_changes,
    split_record,
)
from .celeba import (
    ATTRIBUTE_NAMES,
    README_SECTION,
    SPLITS,
    AnnotationError,
    CelebaDataWarning,
    CelebaNotFoundError,
    CelebaSource,
    find_celeba,
    read_attributes,
    read_identities,
    read_partition,
)
from .crop import CROP_RULE, crop_and_resize, crop_box, load_face
from .demo import demo_marker, detect_demo_eyeglasses, draw_demo_face, write_demo_dataset
from .images import as_float_images, to_uint8
from .pipeline import make_dataset

__all__ = [
    "ATTRIBUTE_NAMES",
    "CROP_RULE",
    "README_SECTION",
    "SPLITS",
    "AnnotationError",
    "Cache",
    "CelebaDataWarning",
    "CelebaNotFoundError",
    "CelebaSource",
    "as_float_images",
    "assign_splits",
    "cache_folder",
    "crop_and_resize",
    "crop_box",
    "demo_marker",
    "detect_demo_eyeglasses",
    "draw_demo_face",
    "find_celeba",
    "load_cache",
    "load_face",
    "make_dataset",
    "open_cache",
    "prepare",
    "read_attributes",
    "read_identities",
    "read_partition",
    "split_changes",
    "split_record",
    "to_uint8",
    "write_demo_dataset",
]


_default_formatwarning = _warnings.formatwarning


def _formatwarning(message, category, filename, lineno, line=None):
    """Data warnings print as ``CelebaDataWarning: ...``, without this file's absolute path
    (which would otherwise land in every notebook output)."""
    if issubclass(category, CelebaDataWarning):
        return f"{category.__name__}: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_showwarning = _warnings.showwarning


def _showwarning(message, category, filename, lineno, file=None, line=None):
    """In a Jupyter kernel, data warnings print to stdout as a plain note (stderr shows as an
    error box there); everywhere else, and for other warnings, as Python shows them."""
    if file is None and issubclass(category, CelebaDataWarning) and "ipykernel" in _sys.modules:
        print(_formatwarning(message, category, filename, lineno), end="", file=_sys.stdout)
        return
    _default_showwarning(message, category, filename, lineno, file, line)


_warnings.formatwarning = _formatwarning
_warnings.showwarning = _showwarning
