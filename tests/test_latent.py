import numpy as np
import pytest

from resvae_keras import latent

LATENT_DIM = 6
SIZE = 4  # image side of the fake model, pixels


class LinearModel:
    """A stand-in with the model API: a fixed linear map each way, no training."""

    latent_dim = LATENT_DIM

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.pixels = SIZE * SIZE * 3
        self.encoder = rng.normal(size=(self.pixels, LATENT_DIM)).astype(np.float32) / 10
        self.decoder = rng.normal(size=(LATENT_DIM, self.pixels)).astype(np.float32)

    def encode(self, x):
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        z_mean = x @ self.encoder
        return z_mean, np.full_like(z_mean, -1.0)

    def decode(self, z):
        logits = np.asarray(z, np.float32) @ self.decoder
        return (1 / (1 + np.exp(-logits))).reshape(len(z), SIZE, SIZE, 3)


@pytest.fixture
def model():
    return LinearModel()


@pytest.fixture
def images():
    return np.random.default_rng(1).uniform(size=(5, SIZE, SIZE, 3)).astype(np.float32)


# -- interpolation ----------------------------------------------------------------


def test_slerp_keeps_the_norm_of_equal_norm_endpoints():
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(2, 32))
    z1 *= np.linalg.norm(z0) / np.linalg.norm(z1)
    path = latent.slerp(z0, z1, np.linspace(0, 1, 9))
    assert path.shape == (9, 32)
    np.testing.assert_allclose(np.linalg.norm(path, axis=-1), np.linalg.norm(z0), rtol=1e-5)


@pytest.mark.parametrize("interpolate", [latent.lerp, latent.slerp])
def test_endpoints_are_exact(interpolate):
    rng = np.random.default_rng(0)
    z0, z1 = rng.normal(size=(2, 3, 16)).astype(np.float32)
    path = interpolate(z0, z1, np.linspace(0, 1, 5))
    assert path.shape == (3, 5, 16) and path.dtype == np.float32
    np.testing.assert_array_equal(path[:, 0], z0)
    np.testing.assert_array_equal(path[:, -1], z1)
    np.testing.assert_array_equal(interpolate(z0, z1, 0.0), z0)
    np.testing.assert_array_equal(interpolate(z0, z1, 1.0), z1)


def test_slerp_falls_back_to_lerp_for_parallel_vectors():
    z0 = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(latent.slerp(z0, 2 * z0, 0.5), latent.lerp(z0, 2 * z0, 0.5))
    assert np.isfinite(latent.slerp(z0, -z0, np.linspace(0, 1, 4))).all()


def test_lerp_midpoint_falls_inside_the_typical_shell():
    rng = np.random.default_rng(0)
    d = 512
    z0, z1 = rng.normal(size=(2, 200, d))
    norms = latent.norm_along_path(z0, z1, steps=5)
    assert list(norms.columns) == ["lerp", "slerp"] and norms.index.name == "t"
    middle = norms.iloc[2]
    assert middle["lerp"] == pytest.approx(np.sqrt(d / 2), rel=0.05)
    assert middle["slerp"] == pytest.approx(np.sqrt(d), rel=0.05)
    assert middle["lerp"] < 0.75 * middle["slerp"]


# -- samplers ---------------------------------------------------------------------


def test_prior_temperature_scales_the_std():
    cold = latent.prior_samples(4000, 8, temperature=0.5, seed=3)
    assert cold.shape == (4000, 8) and cold.dtype == np.float32
    assert cold.std() == pytest.approx(0.5, rel=0.05)
    assert latent.prior_samples(4000, 8, temperature=1.0, seed=3).std() == pytest.approx(
        1.0, rel=0.05
    )
    np.testing.assert_array_equal(cold, latent.prior_samples(4000, 8, temperature=0.5, seed=3))


def test_gaussian_mixture_sampler_follows_the_data():
    rng = np.random.default_rng(0)
    centers = np.array([[4.0, 0.0, 0.0], [-4.0, 2.0, 1.0]])
    z_means = np.concatenate([rng.normal(c, 0.3, size=(300, 3)) for c in centers])
    sampler = latent.GaussianMixtureSampler(n_components=2, seed=0).fit(z_means)
    z = sampler.sample(1000, seed=1)
    assert z.shape == (1000, 3) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), z_means.mean(axis=0), atol=0.4)
    # shuffled: both clusters appear among the first draws
    assert (z[:50, 0] > 0).any() and (z[:50, 0] < 0).any()
    np.testing.assert_array_equal(z, sampler.sample(1000, seed=1))


def test_gaussian_mixture_sampler_needs_fit():
    with pytest.raises(RuntimeError, match="fit"):
        latent.GaussianMixtureSampler().sample(3)


def _codes(n=400, d=LATENT_DIM, seed=0):
    """Posteriors whose aggregate q(z) is far from N(0, I): shifted to +3, scaled, and with
    dimension 1 a copy of dimension 0 / 2 (correlation 0.99, which no per-dimension
    standardization captures)."""
    rng = np.random.default_rng(seed)
    z_mean = 3.0 + rng.normal(size=(n, d)) * np.linspace(2.0, 0.5, d)
    z_mean[:, 1] = z_mean[:, 0] / 2 + 0.1 * rng.normal(size=n)
    z_mean = z_mean.astype(np.float32)
    return z_mean, np.full_like(z_mean, np.log(0.1**2))


def test_two_stage_sampler_follows_the_codes_not_the_prior(model):
    z_mean, z_log_var = _codes()
    sampler = latent.TwoStageSampler(width=32, depth=1, epochs=60, batch_size=32,
                                     learning_rate=1e-2).fit(z_mean, z_log_var)
    z = sampler.sample(2000, seed=1)
    assert z.shape == (2000, LATENT_DIM) and z.dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), z_mean.mean(axis=0), atol=0.4)
    np.testing.assert_allclose(z.std(axis=0), z_mean.std(axis=0), rtol=0.3)
    assert np.corrcoef(z[:, 0], z[:, 1])[0, 1] > 0.6  # learned, not a diagonal Gaussian (0)
    history = sampler.history_
    assert {"loss", "reconstruction_loss", "kl_loss", "gamma"} == set(history.columns)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert history["gamma"].iloc[-1] < 0.6  # p(z|u) narrows from gamma = 1
    images = latent.sample_images(model, sampler, n=3, seed=2)
    np.testing.assert_allclose(images, model.decode(sampler.sample(3, seed=2)), atol=1e-6)


def test_two_stage_sampler_save_load_round_trip(tmp_path):
    z_mean, z_log_var = _codes(n=128)
    sampler = latent.TwoStageSampler(width=16, depth=2, epochs=2, batch_size=32, seed=3)
    sampler.fit(z_mean, z_log_var)
    path = tmp_path / "two_stage.keras"
    sampler.vae_.save(path)
    loaded = latent.TwoStageSampler.load(path)
    assert isinstance(loaded.vae_, latent.SecondStageVAE)
    assert (loaded.width, loaded.depth, loaded.seed, loaded.latent_dim) == (16, 2, 3, LATENT_DIM)
    assert loaded.vae_.gamma == pytest.approx(sampler.vae_.gamma)
    np.testing.assert_array_equal(loaded.sample(10, seed=4), sampler.sample(10, seed=4))
    assert not np.allclose(loaded.sample(10, seed=5), sampler.sample(10, seed=4))
    cold = loaded.sample(10, seed=4, temperature=0.0)
    np.testing.assert_allclose(cold, np.repeat(cold[:1], 10, axis=0))  # every u = 0
    np.testing.assert_allclose(loaded.decode(np.zeros((2, LATENT_DIM))), cold[:2], atol=1e-6)
    path_codes = loaded.decode(latent.interpolate(np.zeros(LATENT_DIM), np.ones(LATENT_DIM), 5))
    assert path_codes.shape == (5, LATENT_DIM) and path_codes.dtype == np.float32


def test_two_stage_sampler_needs_fit_and_codes():
    with pytest.raises(RuntimeError, match="fit"):
        latent.TwoStageSampler().sample(3)
    with pytest.raises(ValueError, match="latent_dim"):
        latent.TwoStageSampler().fit(np.zeros(8, np.float32))


def test_sample_images_from_prior_sampler_and_codes(model):
    sampler = latent.PriorSampler(LATENT_DIM)
    assert latent.sample_images(model, "prior", n=3).shape == (3, SIZE, SIZE, 3)
    from_sampler = latent.sample_images(model, sampler, n=3, seed=2, batch_size=2)
    np.testing.assert_allclose(from_sampler, model.decode(sampler.sample(3, seed=2)), atol=1e-6)
    z = np.zeros((2, LATENT_DIM), np.float32)
    np.testing.assert_allclose(latent.sample_images(model, z), 0.5)


def test_encode_dataset_from_array_and_batches(model, images):
    z_mean, z_log_var = latent.encode_dataset(model, images, batch_size=2)
    assert z_mean.shape == z_log_var.shape == (5, LATENT_DIM)
    batches = [(images[:3], None), (images[3:], None)]
    np.testing.assert_allclose(latent.encode_dataset(model, batches)[0], z_mean, rtol=1e-6)
    uint8 = np.round(images * 255).astype(np.uint8)
    np.testing.assert_allclose(latent.encode_dataset(model, uint8)[0], z_mean, atol=1e-2)


# -- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match=r"\(--temperature\): expected a finite number >= 0"):
        latent.prior_samples(2, LATENT_DIM, temperature=temperature)


def test_codes_that_decode_to_nan_are_refused_not_returned_black():
    class Decoder:
        latent_dim = LATENT_DIM

        def decode(self, z):
            return np.where(np.isfinite(z).all(axis=1)[:, None, None, None], 0.5,
                            np.nan) * np.ones((len(z), 4, 4, 3), np.float32)

    z = np.zeros((3, LATENT_DIM), np.float32)
    assert latent.sample_images(Decoder(), z).shape == (3, 4, 4, 3)
    z[1] = np.nan
    with pytest.raises(ValueError, match="1 of 3 decoded samples hold NaN"):
        latent.sample_images(Decoder(), z)


def test_a_second_stage_with_nan_weights_is_refused(tmp_path):
    from resvae_keras.model import ModelFileError

    z_mean, z_log_var = _codes(n=64)
    sampler = latent.TwoStageSampler(width=8, depth=1, epochs=1, batch_size=32, seed=0)
    sampler.fit(z_mean, z_log_var)
    kernel = sampler.vae_.weights[0]
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    sampler.vae_.save(tmp_path / "two_stage.keras")
    with pytest.raises(ModelFileError, match="two_stage.keras holds NaN or infinite weights"):
        latent.TwoStageSampler.load(tmp_path / "two_stage.keras")
