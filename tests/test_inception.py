"""Tests for resvae_keras.inception: the weights are read from the Keras cache and fetched only
when asked, with no network in any test."""

from __future__ import annotations

import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from resvae_keras import inception


def test_download_failure_says_where_to_put_the_file(offline):
    target = inception.inception_weights_path()
    assert target.name == inception.INCEPTION_WEIGHTS_FILE
    assert target.parent.parent == Path(os.environ["KERAS_HOME"])  # set by `offline`
    with pytest.raises(inception.FeatureExtractorUnavailable) as info:
        inception.download_inception_weights(timeout=0.1)
    message = str(info.value)
    assert "timed out" in message and str(target) in message
    assert inception.INCEPTION_WEIGHTS_URL in message
    assert isinstance(info.value, RuntimeError)
    assert len(offline) == 1
    assert list(target.parent.iterdir()) == []  # no partial file left behind


def test_a_download_with_the_wrong_checksum_is_discarded(offline, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"not h5"))
    target = inception.inception_weights_path()
    with pytest.raises(inception.FeatureExtractorUnavailable, match="MD5"):
        inception.download_inception_weights()
    assert list(target.parent.iterdir()) == []


def test_missing_weights_never_touch_the_network(offline):
    with pytest.raises(inception.FeatureExtractorUnavailable, match="allow_download=True"):
        inception.InceptionFeatures().load()
    assert offline == []
    downloading = inception.InceptionFeatures(allow_download=True)
    with pytest.raises(inception.FeatureExtractorUnavailable, match="timed out"):
        downloading.load()
    assert len(offline) == 1


def test_weights_in_the_keras_cache_are_used_without_network(offline):
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    # legacy_h5_format writes the same .h5 layout as Keras' published weights file.
    model = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                           input_shape=(299, 299, 3))
    path = inception.inception_weights_path()
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    extractor = inception.InceptionFeatures(batch_size=2)
    features = extractor(np.random.default_rng(19).random((3, 64, 64, 3), dtype=np.float32))
    assert offline == []
    assert features.shape == (3, 2048) and np.isfinite(features).all()
    np.testing.assert_array_equal(extractor._model.get_weights()[0], model.get_weights()[0])
