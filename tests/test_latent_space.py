"""Tests for resvae_keras.latent_space: active units, the aggregate posterior, attribute
vectors, traversals and edits, on a linear stand-in model (``test_latent.LinearModel``) and
on the small ResVAE trained on demo faces (the ``trained`` fixture of conftest.py)."""

import numpy as np
import pandas as pd
import pytest
from test_latent import LATENT_DIM, SIZE, LinearModel

from resvae_keras import data, latent, latent_space

IMAGES = np.random.default_rng(1).uniform(size=(5, SIZE, SIZE, 3)).astype(np.float32)


def test_interpolation_paths_shape_and_endpoints():
    model = LinearModel()
    images = IMAGES
    paths = latent_space.interpolation_paths(model, images[:3], images[2:], steps=4, method="lerp")
    assert paths.shape == (3, 4, SIZE, SIZE, 3)
    reconstruction = model.decode(model.encode(images[:3])[0])
    np.testing.assert_allclose(paths[:, 0], reconstruction, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        latent_space.interpolation_paths(model, images[:1], images[1:2], method="cubic")


def test_attribute_vector_points_along_the_planted_direction():
    rng = np.random.default_rng(0)
    direction = np.zeros(16)
    direction[3] = 1.0
    has = rng.uniform(size=2000) < 0.3
    z_means = rng.normal(size=(2000, 16)) + 2.0 * has[:, None] * direction
    vector = latent_space.attribute_vector(z_means, has)
    assert vector.shape == (16,)
    assert vector @ direction / np.linalg.norm(vector) > 0.95
    assert vector[3] == pytest.approx(2.0, abs=0.2)
    # CelebA's -1/1 coding gives the same vector
    np.testing.assert_allclose(latent_space.attribute_vector(z_means, np.where(has, 1, -1)), vector)


def test_attribute_vector_needs_both_groups():
    with pytest.raises(ValueError, match="all True"):
        latent_space.attribute_vector(np.zeros((4, 2)), np.ones(4, bool))


def test_attribute_vectors_by_name():
    z_means = np.arange(8.0).reshape(4, 2)
    table = pd.DataFrame({"Smiling": [True, True, False, False], "Male": [True, False] * 2})
    vectors = latent_space.attribute_vectors(z_means, table, ["Smiling", "Male"])
    np.testing.assert_allclose(vectors["Smiling"], [-4.0, -4.0])
    with pytest.raises(KeyError, match="Eyeglasses"):
        latent_space.attribute_vectors(z_means, table, ["Eyeglasses"])


def test_attribute_arithmetic_adds_each_multiple_of_the_vector():
    model = LinearModel()
    images = IMAGES
    vector = np.ones(LATENT_DIM)
    grid = latent_space.attribute_arithmetic(model, images[:2], vector, strengths=[-1, 0, 2])
    assert grid.shape == (2, 3, SIZE, SIZE, 3)
    z = model.encode(images[:2])[0]
    np.testing.assert_allclose(grid[:, 1], model.decode(z), atol=1e-6)
    np.testing.assert_allclose(grid[:, 2], model.decode(z + 2.0 * vector), atol=1e-6)
    with pytest.raises(ValueError, match="vector has shape"):
        latent_space.attribute_arithmetic(model, images[:2], np.ones(LATENT_DIM + 1))


def test_kl_per_dimension_matches_the_closed_form():
    z_mean = np.array([[1.0, 0.0], [3.0, 0.0]])
    z_log_var = np.array([[0.0, np.log(2.0)], [0.0, np.log(2.0)]])
    # dim 0: sigma = 1, KL = mu^2 / 2 -> mean(0.5, 4.5) = 2.5
    # dim 1: mu = 0, sigma^2 = 2, KL = 0.5 * (2 - 1 - log 2)
    expected = [2.5, 0.5 * (1.0 - np.log(2.0))]
    np.testing.assert_allclose(latent_space.kl_per_dimension(z_mean, z_log_var), expected)
    np.testing.assert_allclose(latent_space.kl_per_dimension(np.zeros((3, 4)), np.zeros((3, 4))), 0.0)


def test_active_units_mask_and_ranking():
    rng = np.random.default_rng(0)
    scales = np.array([0.0, 2.0, 0.05, 1.0])  # variances 0, 4, 0.0025, 1
    z_mean = rng.normal(size=(3000, 4)) * scales
    mask, ranking = latent_space.active_units(z_mean)
    np.testing.assert_array_equal(mask, [False, True, False, True])
    np.testing.assert_array_equal(ranking, [1, 3, 2, 0])
    # ranked by KL when z_log_var is given: dim 0 has the largest KL from a wide posterior
    z_log_var = np.zeros_like(z_mean)
    z_log_var[:, 0] = 3.0
    assert latent_space.active_units(z_mean, z_log_var=z_log_var)[1][0] == 0


def test_traverse_sets_one_dimension_per_row():
    model = LinearModel()
    base = np.zeros(LATENT_DIM, np.float32)
    images = latent_space.traverse(model, base, dims=[0, 4], values=[-2, 0, 2])
    assert images.shape == (2, 3, SIZE, SIZE, 3)
    np.testing.assert_allclose(images[0, 1], images[1, 1])  # value 0 is the base code
    expected = model.decode(np.eye(LATENT_DIM, dtype=np.float32)[[4]] * 2)
    np.testing.assert_allclose(images[1, 2], expected[0], atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        latent_space.traverse(model, base, dims=[LATENT_DIM], values=[0])


def test_pca_2d_shape_and_variance_ratio():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    coords, ratio = latent_space.pca_2d(z)
    assert coords.shape == (500, 2) and ratio.shape == (2,)
    assert ratio[0] > ratio[1] > 0 and ratio.sum() > 0.95
    assert coords[:, 0].std() == pytest.approx(5.0, rel=0.1)


def test_aggregate_posterior_std_is_the_law_of_total_variance():
    rng = np.random.default_rng(3)
    z_mean = rng.normal(scale=[0.5, 2.0, 1.0], size=(20_000, 3))
    z_log_var = np.log(np.full_like(z_mean, 0.25))
    std = latent_space.aggregate_posterior_std(z_mean, z_log_var)
    np.testing.assert_allclose(std, np.sqrt(np.array([0.25, 4.0, 1.0]) + 0.25), rtol=0.03)
    # Monte-Carlo draws from q(z) have the same spread.
    draws = z_mean + 0.5 * rng.standard_normal(z_mean.shape)
    np.testing.assert_allclose(draws.std(axis=0), std, rtol=0.03)


def test_aggregate_kl_lower_bound_subtracts_log_n():
    assert latent_space.aggregate_kl_lower_bound(390.0, 8000) == pytest.approx(390.0 - np.log(8000))
    assert latent_space.aggregate_kl_lower_bound(3.0, 8000) == 0.0  # log N exceeds the KL: no bound
    with pytest.raises(ValueError, match="n_images"):
        latent_space.aggregate_kl_lower_bound(10.0, 0)


def test_edit_code_adds_vectors_and_unit_offsets():
    z = np.zeros(LATENT_DIM, np.float32)
    vectors = {"Smiling": np.arange(LATENT_DIM, dtype=np.float32)}
    edited = latent_space.edit_code(z, vectors, {"Smiling": 2.0}, {0: 1.5, -1: -1.0})
    expected = 2.0 * vectors["Smiling"]
    expected[0] += 1.5
    expected[-1] -= 1.0
    np.testing.assert_allclose(edited, expected)
    np.testing.assert_array_equal(z, 0.0)  # the base code is left alone
    with pytest.raises(KeyError, match="Eyeglasses"):
        latent_space.edit_code(z, vectors, {"Eyeglasses": 1.0})
    with pytest.raises(ValueError, match="outside"):
        latent_space.edit_code(z, unit_offsets={LATENT_DIM: 1.0})


def test_latent_report_elbo_surgery_is_zero_at_the_prior_and_positive_for_spread_codes():
    n, d = 50, 4
    at_prior = latent_space.latent_report(np.zeros((n, d)), np.zeros((n, d)))
    assert at_prior["aggregate_kl_lower_bound_nats"] == 0.0
    assert at_prior["aggregate_std"]["median"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    spread = latent_space.latent_report(5 * rng.standard_normal((n, d)), np.full((n, d), -6.0))
    # mean KL about 4 * (25 + 6 - 1) / 2 = 60 nats, far above log 50 = 3.9
    assert spread["aggregate_kl_lower_bound_nats"] > 40
    assert spread["aggregate_std"]["median"] > 3


def test_eyeglasses_vector_draws_glasses_on_demo_faces(trained):
    """Attribute vectors on the demo data point towards the attribute: adding the
    Eyeglasses vector raises the fraction of decoded demo faces with glasses drawn,
    judged by data.detect_demo_eyeglasses."""
    _, model, cache = trained
    z_mean, _, attributes = latent.encode_split(model, cache, "train")
    vector = latent_space.attribute_vector(z_mean, attributes["Eyeglasses"].to_numpy())
    faces = np.concatenate([
        cache.images_of(split)[~cache.attributes_of(split)["Eyeglasses"].to_numpy()]
        for split in ("val", "test")
    ])
    assert not data.detect_demo_eyeglasses(faces).any()
    effect = latent_space.attribute_strength_effect(
        model, faces, vector, [0.0, 2.0], data.detect_demo_eyeglasses
    )
    assert effect.loc[0.0, "rate"] <= 0.05
    assert effect.loc[2.0, "rate"] >= effect.loc[0.0, "rate"] + 0.2
