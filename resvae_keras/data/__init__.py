"""CelebA data: find it, crop and cache it once, feed it to Keras through tf.data.

    cache = data.load_cache(config)            # or data.prepare(celeba_dir, size=64)
    train = data.make_dataset(cache, "train", batch_size=64)
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
    SPLITS,
    AnnotationError,
    CelebaDataWarning,
    CelebaNotFoundError,
    find_celeba,
    read_attributes,
    read_identities,
)
from .crop import CROP_RULE, crop_and_resize, crop_box, load_face
from .demo import demo_marker, detect_demo_eyeglasses, draw_demo_face, write_demo_dataset
from .images import as_float_images, to_uint8
from .pipeline import make_dataset

_default_formatwarning = _warnings.formatwarning


def _formatwarning(message, category, filename, lineno, line=None):
    """Data warnings print as ``CelebaDataWarning: ...``, without an absolute path."""
    if issubclass(category, CelebaDataWarning):
        return f"{category.__name__}: {message}\n"
    return _default_formatwarning(message, category, filename, lineno, line)


_default_showwarning = _warnings.showwarning


def _showwarning(message, category, filename, lineno, file=None, line=None):
    """In Jupyter, data warnings print to stdout (stderr shows as an error box there)."""
    if file is None and issubclass(category, CelebaDataWarning) and "ipykernel" in _sys.modules:
        print(_formatwarning(message, category, filename, lineno), end="", file=_sys.stdout)
        return
    _default_showwarning(message, category, filename, lineno, file, line)


_warnings.formatwarning = _formatwarning
_warnings.showwarning = _showwarning
