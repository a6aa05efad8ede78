"""InceptionV3 features for FID, KID and precision/recall.

The ImageNet weights (87 MB) are read from the Keras cache and downloaded only when asked
(``allow_download=True`` or ``download_inception_weights()``); otherwise a missing file raises
``FeatureExtractorUnavailable``, saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import numpy as np

from resvae_keras.data._io import atomic_write
from resvae_keras.data.images import as_float_images

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + INCEPTION_WEIGHTS_FILE
)
INCEPTION_WEIGHTS_MD5 = "bcbd6486424b2319ff4ef7d526e38f63"
"""File name, address and checksum exactly as ``keras.applications.InceptionV3`` uses them."""


class FeatureExtractorUnavailable(RuntimeError):
    """The feature network cannot be used here (e.g. its weights are missing and offline)."""


def inception_weights_path() -> Path:
    """``<keras cache>/models/<file>``, where Keras keeps the InceptionV3 (no top) weights; the
    cache, by Keras' rule, is ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` when home is
    not writable)."""
    if os.environ.get("KERAS_HOME"):
        cache = Path(os.environ["KERAS_HOME"]).expanduser()
    else:
        cache = (Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")) / ".keras"
    return cache / "models" / INCEPTION_WEIGHTS_FILE


def _what_to_do(path: Path) -> str:
    return (
        f"Download {INCEPTION_WEIGHTS_URL} (on a machine with internet if this one is offline) "
        f"and put it at {path} (the Keras cache; set KERAS_HOME to move it), or pass "
        "InceptionFeatures(weights=<path to the .h5 file>). Until then realism_metrics reports "
        "the sliced Wasserstein distance only."
    )


def download_inception_weights(path=None, *, timeout: float = 10.0) -> Path:
    """Fetch the InceptionV3 weights to ``path`` (default ``inception_weights_path()``) unless
    there, atomically and checked against Keras' MD5; return the path. No network, a
    ``timeout`` (seconds) or a bad file raise ``FeatureExtractorUnavailable``."""
    path = Path(path) if path is not None else inception_weights_path()
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.md5()
        with atomic_write(path) as tmp:
            with (open(tmp, "wb") as out,
                  urllib.request.urlopen(INCEPTION_WEIGHTS_URL, timeout=timeout) as response):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
            if digest.hexdigest() != INCEPTION_WEIGHTS_MD5:
                raise ValueError(f"the file has MD5 {digest.hexdigest()}, expected "
                                 f"{INCEPTION_WEIGHTS_MD5}; it was discarded")
    except Exception as exc:  # URLError, timeouts, HTTP, disk and checksum errors end the same way
        raise FeatureExtractorUnavailable(
            f"Could not download the InceptionV3 weights ({type(exc).__name__}: {exc}). "
            + _what_to_do(path)
        ) from exc
    return path


class InceptionFeatures:
    """2048-d average-pool features of Keras' ImageNet InceptionV3, the network behind FID, of
    images resized bilinearly to 299x299 and scaled to [-1, 1]. Keras' weights and resize
    differ from the original FID code: these FIDs compare with each other, not with papers.
    ``weights``: ``"imagenet"`` (the Keras cache; fetched only with ``allow_download``), an
    ``.h5`` path, or None for random weights (speed tests). Nothing loads before use."""

    image_size = 299
    dim = 2048

    def __init__(self, weights="imagenet", *, allow_download: bool = False,
                 batch_size: int = 64, timeout: float = 10.0):
        self.weights = weights
        self.allow_download = allow_download
        self.batch_size = batch_size
        self.timeout = timeout
        if weights is None:
            self.name = "inception_v3_random_weights"
        elif weights == "imagenet":
            self.name = "inception_v3"
        else:
            self.name = f"inception_v3[{Path(weights).name}]"
        self._forward = None

    def weights_file(self) -> Path | None:
        """The weights file this extractor will read (None for random weights)."""
        if self.weights is None:
            return None
        return inception_weights_path() if self.weights == "imagenet" else Path(self.weights)

    def load(self) -> InceptionFeatures:
        """Build the network now; raises ``FeatureExtractorUnavailable`` when it cannot."""
        if self._forward is not None:
            return self
        path = self.weights_file()
        if path is not None and not path.is_file():
            if self.weights == "imagenet" and self.allow_download:
                download_inception_weights(path, timeout=self.timeout)
            else:
                fetch = (
                    "Fetch them once with InceptionFeatures(allow_download=True) or "
                    "resvae_keras.inception.download_inception_weights(). "
                    if self.weights == "imagenet" else ""
                )
                raise FeatureExtractorUnavailable(
                    f"No InceptionV3 weights at {path}. " + fetch + _what_to_do(path)
                )
        import keras
        import tensorflow as tf

        try:
            model = keras.applications.InceptionV3(
                include_top=False, pooling="avg", input_shape=(self.image_size, self.image_size, 3),
                weights=None if path is None else str(path),
            )
        except (OSError, ValueError) as exc:
            raise FeatureExtractorUnavailable(
                f"Could not read InceptionV3 weights from {path} ({exc}); delete the file and "
                "fetch it again. " + _what_to_do(path)
            ) from exc

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def forward(images):
            resized = tf.image.resize(images, (self.image_size, self.image_size), method="bilinear")
            scaled = keras.applications.inception_v3.preprocess_input(resized * 255.0)
            return model(scaled, training=False)

        self._model, self._forward = model, forward
        return self

    def __call__(self, images) -> np.ndarray:
        """Features float32, shape (N, 2048), of images float32 in [0, 1], shape (N, H, W, 3)."""
        images = as_float_images(images, "images")
        self.load()
        out = [self._forward(images[i : i + self.batch_size]).numpy()
               for i in range(0, len(images), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
