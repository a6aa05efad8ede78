"""Codes of a trained VAE: encoding, samplers of new codes and interpolation paths.

Samplers share ``sample(n, seed=, temperature=) -> z (n, latent_dim)``. Outputs are numpy
float32, codes in prior standard deviations.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from resvae_keras.data.images import as_float_images
from resvae_keras.layers import Sampling
from resvae_keras.model import gaussian_nll, kl_divergence

SAMPLERS = ("prior", "two_stage", "gmm")


def to_numpy(x, dtype=np.float32) -> np.ndarray:
    """A numpy array from a numpy array, list or Keras/TF tensor."""
    if not isinstance(x, (np.ndarray, list, tuple, int, float, np.generic)):
        x = ops.convert_to_numpy(x)
    return np.asarray(x, dtype=dtype)


def check_count(n, argument: str = "n") -> int:
    if int(n) < 1:
        raise ValueError(f"{argument}={n!r}: ask for at least one sample")
    return int(n)


def check_temperature(temperature) -> float:
    """``temperature`` as a float; ``ValueError`` unless it is a finite number >= 0."""
    value = float(temperature)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"temperature={temperature!r} (--temperature): expected a finite "
                         "number >= 0 (1.0 is the sampler itself, 0.7 a common choice)")
    return value


def decode_grid(model, z, batch_size: int = 256) -> np.ndarray:
    """``model.decode`` of codes (..., d) in batches: the decoder's outputs (..., *out) as
    float32, images (..., H, W, 3) for a VAE, first-stage codes for the second stage."""
    z = to_numpy(z)
    flat = z.reshape(-1, z.shape[-1])
    outputs = np.concatenate([to_numpy(model.decode(flat[i : i + batch_size]))
                              for i in range(0, len(flat), batch_size)])
    return outputs.reshape(*z.shape[:-1], *outputs.shape[1:])


def image_batch(images) -> np.ndarray:
    """One image (H, W, 3) or a batch (N, H, W, 3) -> a float batch (N, H, W, 3)."""
    images = to_numpy(images, None)
    return as_float_images(images[None] if images.ndim == 3 else images)


def encode_dataset(model, images, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(z_mean, z_log_var)``, float32 (N, latent_dim), of images (N, H, W, 3), float in
    [0, 1] or uint8, or of an iterable of batches (or of ``(images, attributes)`` pairs)."""
    batches = images
    if hasattr(images, "shape") and hasattr(images, "__getitem__"):
        batches = (images[i : i + batch_size] for i in range(0, len(images), batch_size))
    means, log_vars = [], []
    for batch in batches:
        batch = batch[0] if isinstance(batch, (tuple, list)) else batch
        z_mean, z_log_var = model.encode(as_float_images(batch))
        means.append(to_numpy(z_mean))
        log_vars.append(to_numpy(z_log_var))
    return np.concatenate(means), np.concatenate(log_vars)


def encode_split(model, cache, split: str = "train", limit: int | None = None,
                 batch_size: int = 256):
    """``(z_mean, z_log_var, attributes)`` of the first ``limit`` images of a cache split."""
    images = cache.images_of(split, limit)
    z_mean, z_log_var = encode_dataset(model, images, batch_size)
    return z_mean, z_log_var, cache.attributes_of(split).iloc[: len(images)]


def prior_samples(n: int, latent_dim: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """Draws from the prior N(0, temperature^2 I): float32, shape (n, latent_dim)."""
    n = check_count(n)
    temperature = check_temperature(temperature)
    rng = np.random.default_rng(seed)
    return (temperature * rng.standard_normal((n, int(latent_dim)))).astype(np.float32)


class PriorSampler:
    """The prior N(0, I) with the same ``sample`` API as ``GaussianMixtureSampler``."""

    def __init__(self, latent_dim: int):
        self.latent_dim = int(latent_dim)

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """float32 codes, shape (n, latent_dim)."""
        return prior_samples(n, self.latent_dim, temperature=temperature, seed=seed)


class GaussianMixtureSampler:
    """Ex-post density estimate: a Gaussian mixture fitted to the encoder means.

    The aggregate posterior rarely fills the prior, so prior draws land partly in "holes";
    sampling the mixture instead lowers FID (Ghosh et al. 2020).
    """

    def __init__(self, n_components: int = 10, seed: int = 0):
        self.n_components = int(n_components)
        self.seed = seed
        self.mixture_ = None

    def fit(self, z_means) -> GaussianMixtureSampler:
        """Fit on encoder means, shape (N, latent_dim) with N >= n_components."""
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        z_means = to_numpy(z_means, np.float64)
        with threadpool_limits(1):  # many small matrix products: threads only contend
            self.mixture_ = GaussianMixture(
                n_components=self.n_components,
                random_state=self.seed,
                reg_covar=1e-5,
            ).fit(z_means)
        return self

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
        """float32 codes (n, latent_dim), shuffled; ``temperature`` scales each draw's
        distance to its component mean."""
        if self.mixture_ is None:
            raise RuntimeError("GaussianMixtureSampler is not fitted: call .fit(z_means) first")
        n = check_count(n)
        temperature = check_temperature(temperature)
        self.mixture_.set_params(random_state=seed)
        z, component = self.mixture_.sample(n)
        means = self.mixture_.means_[component]
        z = means + temperature * (z - means)
        order = np.random.default_rng(seed).permutation(n)
        return z[order].astype(np.float32)


def _dense_stack(h, width: int, depth: int, seed: int, prefix: str):
    """``depth`` ReLU layers of ``width`` units, then the input concatenated back on."""
    x = h
    for i in range(depth):
        h = layers.Dense(width, activation="relu", name=f"{prefix}_fc{i}", dtype="float32",
                         kernel_initializer=keras.initializers.GlorotUniform(seed + i))(h)
    return layers.Concatenate(name=f"{prefix}_skip", dtype="float32")([x, h])


@keras.saving.register_keras_serializable(package="resvae_keras")
class SecondStageVAE(keras.Model):
    """The second stage of a two-stage VAE (Dai & Wipf 2019): an MLP VAE on the codes z.

    encoder ``z -> [Dense(width, relu)] x depth -> concat(z, h) -> (u_mean, u_log_var)``;
    decoder ``u -> [Dense(width, relu)] x depth -> concat(u, h) -> z_hat``, u of z's size.
    ``p(z|u) = N(z_hat, gamma^2 I)`` with one learned ``gamma`` (gamma -> 0 lets it match the
    aggregate posterior q(z)), on codes standardized per dimension (``adapt``). The loss is
    ``-log p(z|u) + KL(q(u|z) || N(0, I))``, nats per code; each batch is ``(z_mean, z_std)``
    and the step draws a fresh ``z = z_mean + z_std * eps``. All float32.
    """

    def __init__(self, latent_dim=128, width=512, depth=2, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim, self.width, self.depth = int(latent_dim), int(width), int(depth)
        self.seed = int(seed)
        z_in = keras.Input((self.latent_dim,), name="z")
        h = _dense_stack(z_in, self.width, self.depth, self.seed, "encoder")
        u_mean = layers.Dense(self.latent_dim, name="u_mean", dtype="float32")(h)
        u_log_var = layers.Dense(self.latent_dim, kernel_initializer="zeros", name="u_log_var",
                                 dtype="float32")(h)
        self.encoder = keras.Model(z_in, [u_mean, u_log_var], name="encoder")
        u_in = keras.Input((self.latent_dim,), name="u")
        h = _dense_stack(u_in, self.width, self.depth, self.seed + 100, "decoder")
        z_hat = layers.Dense(self.latent_dim, name="z_hat", dtype="float32")(h)
        self.decoder = keras.Model(u_in, z_hat, name="decoder")
        self.sampling = Sampling(seed=self.seed, name="sampling", dtype="float32")
        self.code_noise = keras.random.SeedGenerator(self.seed + 1)
        self.log_gamma = self.add_weight(shape=(), initializer="zeros", trainable=True,
                                         dtype="float32", name="log_gamma")
        self.code_mean = self.add_weight(shape=(self.latent_dim,), initializer="zeros",
                                         trainable=False, dtype="float32", name="code_mean")
        self.code_std = self.add_weight(shape=(self.latent_dim,), initializer="ones",
                                        trainable=False, dtype="float32", name="code_std")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.build((None, self.latent_dim))

    def build(self, input_shape=None):
        self.built = True  # the encoder and decoder are functional models, built on creation

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    @property
    def gamma(self) -> float:
        """The learned standard deviation of p(z|u), in standard units of the codes."""
        return float(ops.convert_to_numpy(ops.exp(self.log_gamma)))

    def adapt(self, z_mean, z_std) -> None:
        """Standardize by the aggregate posterior's mean and standard deviation per dimension."""
        z_mean = np.asarray(z_mean, np.float64)
        variance = z_mean.var(axis=0) + np.mean(np.square(np.asarray(z_std, np.float64)), axis=0)
        self.code_mean.assign(z_mean.mean(axis=0).astype(np.float32))
        self.code_std.assign(np.sqrt(np.maximum(variance, 1e-12)).astype(np.float32))

    def decode(self, u):
        """``u (N, d) -> z (N, d)``: the mean of p(z|u), in the units of the codes."""
        return self.decoder(u) * self.code_std + self.code_mean

    def call(self, z, training=False):
        """The reconstruction of codes ``z`` (N, d) through u (its mean unless training)."""
        u_mean, u_log_var = self.encoder((z - self.code_mean) / self.code_std, training=training)
        u = self.sampling([u_mean, u_log_var]) if training else u_mean
        return self.decode(u)

    def _loss_terms(self, data, training):
        """``(loss, -log p(z|u), KL(q(u|z) || N(0, I)))``, batch means in nats per code."""
        z_mean, z_std = data
        eps = keras.random.normal(ops.shape(z_mean), seed=self.code_noise)
        z = (z_mean + z_std * eps - self.code_mean) / self.code_std  # standard units
        u_mean, u_log_var = self.encoder(z, training=training)
        z_hat = self.decoder(self.sampling([u_mean, u_log_var]), training=training)
        sse = ops.sum(ops.square(z - z_hat), axis=-1)
        reconstruction = ops.mean(gaussian_nll(sse, float(self.latent_dim), self.log_gamma))
        kl = ops.mean(kl_divergence(u_mean, u_log_var))
        return reconstruction + kl, reconstruction, kl

    def _logs(self, losses, data):
        batch = ops.cast(ops.shape(data[0])[0], "float32")
        for tracker, value in zip(self.metrics, losses, strict=True):
            tracker.update_state(value, sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        with tf.GradientTape() as tape:
            losses = self._loss_terms(data, training=True)
        gradients = tape.gradient(losses[0], self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return {**self._logs(losses, data), "gamma": ops.exp(self.log_gamma)}  # -> 0: q(z) fits

    def test_step(self, data):
        return self._logs(self._loss_terms(data, training=False), data)

    def get_config(self):
        config = super().get_config()
        config.update(latent_dim=self.latent_dim, width=self.width, depth=self.depth,
                      seed=self.seed)
        return config


class TwoStageSampler:
    """Codes from the two-stage VAE: u ~ N(0, T^2 I) -> second-stage decoder -> z.
    ``width``, ``depth``: the ``SecondStageVAE`` MLPs; the fit is Adam with cosine decay."""

    def __init__(self, width: int = 512, depth: int = 2, epochs: int = 50,
                 batch_size: int = 128, learning_rate: float = 3e-3, seed: int = 0):
        self.width, self.depth = int(width), int(depth)
        self.epochs, self.batch_size = int(epochs), int(batch_size)
        self.learning_rate = float(learning_rate)
        self.seed = int(seed)
        self.vae_: SecondStageVAE | None = None
        self.history_: pd.DataFrame | None = None

    def fit(self, z_mean, z_log_var=None, verbose=0) -> TwoStageSampler:
        """Fit the second stage on stage one's posteriors (N, latent_dim) of the training
        images; ``z_log_var=None`` fits the means themselves (an autoencoder's codes)."""
        import tensorflow as tf

        z_mean = to_numpy(z_mean)
        if z_mean.ndim != 2 or len(z_mean) < 2:
            raise ValueError(
                f"z_mean has shape {z_mean.shape}; need (N, latent_dim) with N >= 2 codes "
                "(encode the training images first)"
            )
        z_std = (np.zeros_like(z_mean) if z_log_var is None
                 else np.exp(0.5 * to_numpy(z_log_var)).astype(np.float32))
        batch_size = min(self.batch_size, len(z_mean))
        steps = max(1, self.epochs * (len(z_mean) // batch_size))
        schedule = keras.optimizers.schedules.CosineDecay(self.learning_rate, steps)
        self.vae_ = SecondStageVAE(z_mean.shape[1], self.width, self.depth, self.seed,
                                   name="second_stage_vae")
        self.vae_.adapt(z_mean, z_std)
        self.vae_.compile(optimizer=keras.optimizers.Adam(schedule))
        dataset = (tf.data.Dataset.from_tensor_slices((z_mean, z_std))
                   .shuffle(len(z_mean), seed=self.seed).batch(batch_size, drop_remainder=True))
        history = self.vae_.fit(dataset, epochs=self.epochs, verbose=verbose, shuffle=False)
        self.history_ = pd.DataFrame(history.history)
        return self

    @property
    def latent_dim(self) -> int:
        if self.vae_ is None:
            raise RuntimeError("TwoStageSampler is not fitted: call .fit(z_mean, z_log_var) or "
                               "TwoStageSampler.load(path) first")
        return self.vae_.latent_dim

    def sample(self, n: int, seed: int = 0, temperature: float = 1.0,
               batch_size: int = 1024) -> np.ndarray:
        """float32 codes (n, latent_dim): z ~ N(z_hat(u), T^2 gamma^2) at u ~ N(0, T^2 I)."""
        n = check_count(n)
        temperature = check_temperature(temperature)
        rng = np.random.default_rng(seed)
        u = (temperature * rng.standard_normal((n, self.latent_dim))).astype(np.float32)
        eps = rng.standard_normal((n, self.latent_dim))
        z_hat = self.decode(u, batch_size)
        noise_std = self.vae_.gamma * to_numpy(self.vae_.code_std)  # gamma in units of z
        return (z_hat + temperature * noise_std * eps).astype(np.float32)

    def decode(self, u, batch_size: int = 1024) -> np.ndarray:
        """Stage-one codes z_hat(u), (N, latent_dim), of second-stage codes ``u`` (N, d)."""
        return decode_grid(self.vae_, u, batch_size)

    @classmethod
    def load(cls, path) -> TwoStageSampler:
        """A fitted sampler from a saved ``SecondStageVAE``, checked by ``load_keras_file``."""
        from resvae_keras.model import load_keras_file

        vae = load_keras_file(path, SecondStageVAE, remedy=(
            "Delete it and run the command again: the second stage is fitted anew (seconds "
            "to minutes)."))
        sampler = cls(width=vae.width, depth=vae.depth, seed=vae.seed)
        sampler.vae_ = vae
        return sampler


def sample_images(
    model,
    sampler_or_z="prior",
    n: int = 16,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """Images float32 in [0, 1], (n, H, W, 3), decoded from ``sampler_or_z``: ``"prior"``, a
    sampler, or codes (N, latent_dim). ``ValueError`` when any image is not finite."""
    if isinstance(sampler_or_z, str):
        sampler_or_z = make_sampler(model, sampler_or_z)
    if hasattr(sampler_or_z, "sample"):
        sampler_or_z = sampler_or_z.sample(n, seed=seed, temperature=temperature)
    z = to_numpy(sampler_or_z)
    if z.ndim != 2:
        raise ValueError(f"z must have shape (N, latent_dim), got shape {z.shape}")
    images = decode_grid(model, z, batch_size)
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).any(axis=(1, 2, 3)).sum())
        raise ValueError(
            f"{bad} of {len(images)} decoded samples hold NaN or infinite pixels (their codes "
            f"did: {int((~np.isfinite(z)).any(axis=1).sum())}); nothing was saved. "
            "Check the temperature and the sampler (a diverged second stage gives such codes)."
        )
    return images


def make_sampler(model, sampler="prior", cache=None, n_components: int = 10,
                 max_fit_images: int = 20_000, seed: int = 0, config=None,
                 checkpoint: str = "model.keras"):
    """The sampler named ``sampler`` (a sampler object is returned as is). ``"two_stage"``
    is the run's, from ``train.two_stage_sampler`` given its ``config``; ``"gmm"`` is fitted
    on up to ``max_fit_images`` training codes of ``cache``."""
    if not isinstance(sampler, str):
        return sampler
    if sampler == "prior":
        return PriorSampler(model.latent_dim)
    if sampler == "two_stage":
        from resvae_keras.train import two_stage_sampler

        if config is None:
            raise ValueError("sampler='two_stage' needs config= (the run's, to load or save "
                             "two_stage.keras)")
        return two_stage_sampler(config, model, cache, checkpoint)
    if sampler == "gmm":
        if cache is None:
            raise ValueError("sampler='gmm' is fitted to training codes: pass cache=")
        z_mean, _ = encode_dataset(model, cache.images_of("train", max_fit_images))
        return GaussianMixtureSampler(n_components=n_components, seed=seed).fit(z_mean)
    raise ValueError(f"sampler={sampler!r} is not one of {list(SAMPLERS)}")


def sampler_name(sampler) -> str:
    """The name ``make_sampler`` knows ``sampler`` by (a class name for another object)."""
    if isinstance(sampler, str):
        return sampler
    names = {GaussianMixtureSampler: "gmm", PriorSampler: "prior", TwoStageSampler: "two_stage"}
    return names.get(type(sampler), type(sampler).__name__)


def _path(z0, z1, t, spherical: bool) -> np.ndarray:
    """``w0(t) z0 + w1(t) z1`` with the weights of ``slerp`` or ``lerp``; shapes as ``lerp``."""
    z0, z1 = to_numpy(z0, None), to_numpy(z1, None)
    dtype = np.result_type(z0, z1, np.float32)
    t = np.asarray(t, dtype=np.float64)
    if t.ndim > 1:
        raise ValueError(f"t must be a number or a 1-D array, got shape {t.shape}")
    a, b = z0.astype(np.float64)[..., None, :], z1.astype(np.float64)[..., None, :]
    weight1 = np.atleast_1d(t)[:, None]  # (T, 1): the steps axis comes before the last (d)
    weight0 = 1.0 - weight1
    if spherical:
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        cos = np.sum(a * b, axis=-1) / np.where(norms > 0, norms, 1.0)
        omega = np.arccos(np.clip(cos, -1.0, 1.0))[..., None]  # against the T values of t
        sin = np.sin(omega)
        parallel = np.abs(sin) < 1e-6  # z0 and z1 (anti)parallel: lerp
        safe_sin = np.where(parallel, 1.0, sin)
        weight0 = np.where(parallel, weight0, np.sin(weight0 * omega) / safe_sin)
        weight1 = np.where(parallel, weight1, np.sin(weight1 * omega) / safe_sin)
    path = (weight0 * a + weight1 * b).astype(dtype)
    return path if t.ndim == 1 else path[..., 0, :]


def lerp(z0, z1, t) -> np.ndarray:
    """Linear interpolation (1 - t) z0 + t z1 of codes (..., d): shape (..., d) for a number
    t, (..., T, d) for a 1-D array of T values."""
    return _path(z0, z1, t, spherical=False)


def slerp(z0, z1, t) -> np.ndarray:
    """Spherical interpolation from z0 to z1, shapes as ``lerp``: equal-norm endpoints keep
    their norm along the path; (anti)parallel or zero vectors fall back to ``lerp``."""
    return _path(z0, z1, t, spherical=True)


def interpolate(z0, z1, steps: int = 8, method: str = "slerp") -> np.ndarray:
    """A path of ``steps`` codes from z0 to z1 (both included): shape (..., steps, d)."""
    if method not in ("lerp", "slerp"):
        raise ValueError(f"method={method!r} is not one of ['lerp', 'slerp']")
    if int(steps) < 2:
        raise ValueError(f"steps={steps!r}: a path needs at least 2 points (start and end)")
    return _path(z0, z1, np.linspace(0.0, 1.0, int(steps)), spherical=method == "slerp")


def norm_along_path(z0, z1, steps: int = 21) -> pd.DataFrame:
    """Norm ||z|| along the lerp and slerp paths from z0 to z1 ((d,) or (n, d), averaged): a
    DataFrame indexed by ``t``, columns ``lerp`` and ``slerp``."""
    columns = {}
    for method in ("lerp", "slerp"):
        norms = np.linalg.norm(interpolate(z0, z1, steps, method), axis=-1)
        columns[method] = norms.reshape(-1, int(steps)).mean(axis=0)
    index = pd.Index(np.linspace(0.0, 1.0, int(steps)), name="t")
    return pd.DataFrame(columns, index=index)
