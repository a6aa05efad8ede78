"""Tests for resvae_keras.anomaly: corruptions, non-face images, anomaly scores and AUROC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from resvae_keras import anomaly


@pytest.fixture
def faces():
    """Smooth random images float32 in [0, 1], (6, 64, 64, 3)."""
    from scipy import ndimage

    x = np.random.default_rng(0).random((6, 64, 64, 3), dtype=np.float32)
    return ndimage.gaussian_filter(x, (0, 3, 3, 0)).astype(np.float32)


# -- corruptions and non-face images ------------------------------------------------------


@pytest.mark.parametrize("kind", anomaly.CORRUPTIONS)
def test_corruptions_keep_shape_and_range_and_are_seeded(faces, kind):
    out = anomaly.corrupt(faces, kind, seed=1)
    assert out.shape == faces.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(out - faces).mean() > 0.01
    np.testing.assert_array_equal(out, anomaly.corrupt(faces, kind, seed=1))
    assert not np.array_equal(out, anomaly.corrupt(faces, kind, seed=2))
    uint8 = np.round(faces * 255).astype(np.uint8)
    assert anomaly.corrupt(uint8, kind, seed=1).dtype == np.float32


def test_noise_has_the_requested_std():
    grey = np.full((4, 64, 64, 3), 0.5, np.float32)
    noisy = anomaly.corrupt(grey, "noise", strength=0.1)
    assert (noisy - grey).std() == pytest.approx(0.1, rel=0.03)
    assert abs((noisy - grey).mean()) < 0.005


def test_occlusion_paints_one_square_of_one_colour(faces):
    out = anomaly.corrupt(faces, "occlusion", seed=3, strength=0.25)
    side = 16
    for before, after in zip(faces, out, strict=True):
        rows, cols = np.nonzero(np.any(before != after, axis=-1))
        top, left = rows.min(), cols.min()
        assert rows.max() - top < side and cols.max() - left < side
        square = after[top : top + side, left : left + side]
        if square.shape[:2] == (side, side):
            assert np.ptp(square.reshape(-1, 3), axis=0).max() == 0.0
        outside = np.ones(before.shape[:2], bool)
        outside[top : top + side, left : left + side] = False
        np.testing.assert_array_equal(after[outside], before[outside])


def test_rotation_by_180_degrees_turns_the_image_upside_down(faces):
    out = anomaly.corrupt(faces, "rotation", strength=180)
    np.testing.assert_allclose(out, np.rot90(faces, 2, axes=(1, 2)), atol=1e-5)


def test_unknown_corruption_names_the_argument(faces):
    with pytest.raises(ValueError, match="kind='blur'"):
        anomaly.corrupt(faces, "blur")


def test_non_face_images_are_deterministic_and_varied():
    images = anomaly.non_face_images(12, size=32, seed=0)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    np.testing.assert_array_equal(images, anomaly.non_face_images(12, size=32, seed=0))
    np.testing.assert_array_equal(images[:4], anomaly.non_face_images(4, size=32, seed=0))
    assert not np.array_equal(images, anomaly.non_face_images(12, size=32, seed=1))
    spread = np.ptp(images.reshape(12, -1, 3), axis=1).max(axis=1)
    flat = anomaly.NON_FACE_KINDS.index("flat")
    assert spread[flat] == 0.0 and (np.delete(spread, [flat, flat + 6]) > 0.05).all()


def test_png_bits_rank_flat_below_noise():
    flat = np.full((1, 64, 64, 3), 0.3, np.float32)
    noise = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    bits = anomaly.png_bits(np.concatenate([flat, noise]))
    assert bits[0] < 0.05 * bits[1]
    assert bits[1] > 6 * 64 * 64 * 3  # random bytes do not compress


def test_the_autoencoder_has_no_elbo_score_but_a_reconstruction_score(faces):
    from resvae_keras.model import ResVAE

    model = ResVAE(image_size=64, widths=(8, 8, 8), blocks_per_stage=0, latent_dim=4, kind="ae")
    sets = anomaly.anomaly_sets(faces, seed=0)
    table = anomaly.anomaly_table(anomaly.score_sets(model, sets))
    assert table.xs("neg_elbo", level="score")["auroc"].isna().all()
    assert table.xs("complexity_corrected", level="score")["auroc"].isna().all()
    assert table.xs("reconstruction_mse", level="score")["auroc"].between(0, 1).all()


def test_anomaly_table_hand_example_and_ties():
    # clean scores 0.1 and 0.4; anomalies 0.35 and 0.8: of the 4 pairs, 3 are ranked right
    scores = {
        "clean": pd.DataFrame({"s": [0.1, 0.4]}),
        "odd": pd.DataFrame({"s": [0.35, 0.8]}),
        "tied": pd.DataFrame({"s": [0.4, 0.4]}),
    }
    table = anomaly.anomaly_table(scores, score_names=("s",))
    assert table.loc[("odd", "s"), "auroc"] == pytest.approx(0.75)
    # thresholds 0.8: P=1, R=.5; 0.4: P=.5, R=.5; 0.35: P=2/3, R=1 -> .5 * 1 + .5 * 2/3
    assert table.loc[("odd", "s"), "ap"] == pytest.approx(5 / 6)
    assert table.loc[("tied", "s"), "auroc"] == pytest.approx(0.75)  # 2 wins and 2 ties of 4 pairs
    fpr, tpr, auc = anomaly.roc_curves_of(scores, score="s")["odd"]
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and auc == pytest.approx(0.75)


# -- with a trained model ------------------------------------------------------------------


def test_anomaly_scores_are_higher_for_corrupted_and_noise_images(trained):
    _, model, cache = trained
    clean = cache.images_of("test")[:48]
    scores = anomaly.score_sets(model, anomaly.anomaly_sets(clean, seed=0))
    assert set(scores) == {"clean", *anomaly.CORRUPTIONS, "non_face"}
    for kind in ("noise", "occlusion"):
        assert scores[kind]["neg_elbo"].mean() > scores["clean"]["neg_elbo"].mean(), kind
        assert (scores[kind]["reconstruction_mse"].mean()
                > scores["clean"]["reconstruction_mse"].mean()), kind
    table = anomaly.anomaly_table(scores)
    assert table.loc[("noise", "neg_elbo"), "auroc"] > 0.9
    assert table.loc[("occlusion", "neg_elbo"), "auroc"] > 0.7
    assert ((table["auroc"] >= 0) & (table["auroc"] <= 1)).all()
    curves = anomaly.roc_curves_of(scores)
    assert curves["noise"][2] == pytest.approx(table.loc[("noise", "neg_elbo"), "auroc"])
