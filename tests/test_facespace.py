"""The dlib face-space measures, on a handful of demo faces and noise images.

The descriptor network costs about 0.1 s per image, so the faces are described once per
module, every set stays tiny, and only one test runs the whole table on real descriptors.
Tests that need dlib skip when it is not installed.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from resvae_keras import facespace, sample_quality
from resvae_keras.data.images import as_float_images

INSTALL_REASON = ("dlib is not installed: pip install dlib-bin face-recognition-models "
                  "(pinned in requirements.txt) to run the face-space tests")


@pytest.fixture(scope="module")
def face_models():
    pytest.importorskip("dlib", reason=INSTALL_REASON)
    reason = facespace.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return facespace.face_models()


@pytest.fixture(scope="module")
def demo_faces() -> np.ndarray:
    """14 demo faces cropped like the cache, uint8 (14, 64, 64, 3)."""
    from resvae_keras.data import crop_and_resize
    from resvae_keras.data.demo import draw_demo_face

    return np.stack([np.asarray(crop_and_resize(draw_demo_face(0, i)[0], 64))
                     for i in range(14)])


@pytest.fixture(scope="module")
def face_descriptors(face_models, demo_faces) -> np.ndarray:
    return facespace.descriptors(demo_faces[:8], batch_size=5)


def test_descriptors_are_128_d_float32_and_deterministic(face_descriptors, demo_faces):
    assert face_descriptors.shape == (8, 128) and face_descriptors.dtype == np.float32
    norms = np.linalg.norm(face_descriptors, axis=1)
    assert np.all((norms > 0.5) & (norms < 3.0))
    again = facespace.descriptors(demo_faces[:2].astype(np.float32) / 255.0, batch_size=1)
    np.testing.assert_allclose(again, face_descriptors[:2], atol=1e-5)
    # different faces get different descriptors
    distances = np.linalg.norm(face_descriptors[:, None] - face_descriptors[None], axis=2)
    assert distances[np.triu_indices(8, 1)].min() > 0.05
    assert facespace.descriptors(demo_faces[:0]).shape == (0, 128)


def test_identical_sets_are_a_perfect_match(face_descriptors):
    measures = facespace.descriptor_measures(face_descriptors, face_descriptors,
                                             face_descriptors)
    assert measures["frechet"] == pytest.approx(0.0, abs=1e-4)
    assert measures["precision"] == measures["recall"] == measures["coverage"] == 1.0
    assert measures["nn_train_median"] == pytest.approx(0.0, abs=1e-6)  # every face is in train
    shifted = facespace.descriptor_measures(face_descriptors, face_descriptors + 1.0,
                                            face_descriptors)
    assert shifted["frechet"] == pytest.approx(128.0, rel=1e-3)  # ||mean shift||^2 = 128 x 1
    assert shifted["precision"] == shifted["recall"] == shifted["density"] == 0.0


def test_noise_is_detected_less_often_than_faces(face_models, demo_faces):
    faces_rate = facespace.detection_rate(demo_faces[:12])
    noise_rate = facespace.detection_rate(facespace.uniform_noise(12, seed=1))
    assert faces_rate >= 0.5 and noise_rate < faces_rate
    assert np.isnan(facespace.detection_rate(demo_faces[:0]))
    with pytest.raises(ValueError, match="`images`"):
        facespace.detection_rate(np.zeros((2, 64, 32, 3), np.float32))


def test_face_space_table_has_the_calibration_rows(face_models, demo_faces):
    test, train = demo_faces[:12], demo_faces[12:]
    sets = {"reconstructions": facespace.gaussian_blur(test, 0.5)}
    table = facespace.face_space_table(test, train, sets, seed=0, batch_size=8)
    rows, settings = table["rows"], table["settings"]
    assert set(rows) == {"real_test", "blur_1px", "blur_2px", "noise", "reconstructions"}
    keys = {"n", "frechet", "precision", "recall", "density", "coverage", "detection_rate",
            "nn_train_median"}
    for name, row in rows.items():
        assert set(row) == keys, name
        assert row["n"] == 6 and row["frechet"] >= 0.0, name
        assert 0.0 <= row["precision"] <= 1.0 and 0.0 <= row["coverage"] <= 1.0, name
    # the floor (other real faces) sits below the ceiling (noise), even with six faces
    assert rows["real_test"]["frechet"] < rows["noise"]["frechet"]
    assert rows["noise"]["detection_rate"] < rows["real_test"]["detection_rate"]
    assert rows["noise"]["recall"] <= rows["real_test"]["recall"]
    assert settings["n_reference"] == 6 and settings["n_train"] == 2
    assert settings["precision_recall_k"] == 3 and settings["density_coverage_k"] == 5
    assert settings["timings_s_per_1000_images"]["descriptors"] > 0


def test_face_space_table_refuses_bad_sets(demo_faces):
    test = demo_faces[:12]
    with pytest.raises(ValueError, match="calibration row name 'noise'"):
        facespace.face_space_table(test, test, {"noise": test})
    with pytest.raises(ValueError, match="paired set 'reconstructions' has 3 images"):
        facespace.face_space_table(test, test, {"reconstructions": test[:3]})
    with pytest.raises(ValueError, match="at least 12 faces"):
        facespace.face_space_table(test[:6], test, {})


def pixel_descriptors(images, batch_size=64, progress=None):
    """A cheap stand-in for the ResNet: 128 pixel values of an 8x8 grid."""
    x = as_float_images(images)
    return x[:, ::8, ::8].reshape(len(x), -1)[:, :128].astype(np.float32)


def test_evaluate_step_adds_reconstructions_or_says_why_it_skipped(face_models, demo_faces,
                                                                   monkeypatch):

    class Identity:  # a "model" whose reconstructions are its inputs
        def reconstruct(self, images):
            return np.asarray(images, np.float32)

    monkeypatch.setattr(facespace, "descriptors", pixel_descriptors)
    references = sample_quality.SampleReferences(demo_faces[:12], demo_faces[12:])
    report = sample_quality.face_space_report(Identity(), references,
                                              {"prior_t1": demo_faces[6:12]}, seed=0)
    assert {"real_test", "reconstructions", "prior_t1", "noise"} <= set(report["rows"])
    # identical reconstructions are the real query half itself
    assert report["rows"]["reconstructions"] == report["rows"]["real_test"]
    monkeypatch.setattr(facespace, "unavailable_reason", lambda: "no dlib here")
    assert sample_quality.face_space_report(Identity(), references, {}) == {"skipped": "no dlib here"}


def test_missing_dlib_names_the_packages_to_install(monkeypatch):
    facespace.face_models.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    with pytest.raises(facespace.FaceModelsUnavailable, match="dlib-bin.*face-recognition-models"):
        facespace.face_models()
    assert "pip install dlib-bin" in facespace.unavailable_reason()


def test_gaussian_blur_keeps_the_mean_and_removes_detail():
    images = facespace.uniform_noise(2, size=16, seed=3)
    assert np.array_equal(facespace.gaussian_blur(images, 0.0), images)
    blurred = facespace.gaussian_blur(images, 2.0)
    assert blurred.shape == images.shape and blurred.dtype == np.float32
    assert blurred.std() < 0.5 * images.std()
    assert blurred.mean() == pytest.approx(images.mean(), abs=0.01)
    with pytest.raises(ValueError, match="`sigma_px`"):
        facespace.gaussian_blur(images, -1.0)
