"""Tests for resvae_keras.sample_quality: the references samples are judged against, and the
feature extractor's messages; the whole sample step runs in test_evaluate's end-to-end
evaluation."""

import numpy as np
import pytest

from resvae_keras import inception, sample_quality


def test_sample_references_report_same_and_different_person_distances():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
    train[1] = np.clip(train[0].astype(int) + 3, 0, 255)  # a second photo of person 0
    train_ids = np.array([0, 0, 1, 1, 2, 2])
    real = rng.random((3, 4, 4, 3), dtype=np.float32)
    references = sample_quality.SampleReferences(real, train, memorization_queries=6, seed=0,
                                                 real_ids=np.array([5, 6, 7]),
                                                 train_ids=train_ids)
    identity = references.identity
    assert identity["available"] is True
    assert identity["test_to_train_same_identity"] == {"n": 0}  # no test person in train
    assert identity["test_to_train_different_identity"]["n"] == 3
    same = identity["train_to_train_same_identity"]
    assert same["n"] == 6 and same["min"] < 0.3 < identity["train_to_train_different_identity"]["min"]
    memorization = references.memorization(real)
    assert memorization["identity"] is identity
    assert memorization["median_ratio_to_same_identity"] > 0


def test_a_missing_weights_file_is_named_without_the_machine_path(tmp_path, monkeypatch):
    """The reason reaches notebooks and metrics.json: the home folder shows as ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    weights = tmp_path / ".keras" / "models" / "inception.h5"
    features = sample_quality.feature_extractor(
        extractor=inception.InceptionFeatures(weights=weights))
    for _ in range(2):  # the failure is remembered, with the same message
        with pytest.raises(inception.FeatureExtractorUnavailable) as error:
            features(np.zeros((2, 8, 8, 3), np.float32))
        assert "No InceptionV3 weights at ~/.keras/models/inception.h5" in str(error.value)
        assert str(tmp_path) not in str(error.value)
