r"""The ResVAE: encoder and decoder builders and the ``ResVAE(keras.Model)`` class.

Architecture for an ``S x S`` image and ``widths = (w_1, ..., w_K)``::

    encoder  x (S,S,3) -> conv 3x3 stride 2 -> [ResidualBlock(w_k) x B -> conv stride 2] k=1..K
             -> norm, act, flatten -> Dense(latent) z_mean, Dense(latent) z_log_var
    decoder  z -> Dense -> (S/2^(K+1), S/2^(K+1), w_K)
             -> [Upsample(w_k) -> ResidualBlock(w_k) x B] k=K..1      (ends at S/2)
             -> norm, act, conv 3x3 to 3*4 channels -> DepthToSpace(2) -> logits (S,S,3)

No convolution runs at full resolution. ``architecture="conv"`` is the shallow textbook
VAE baseline (keras.io example; Foster, *Generative Deep Learning*): ``K+1`` stride-2 convs
with BatchNorm and LeakyReLU, channels ``(w_1, ..., w_K, 2 w_K)``, mirrored by transposed
convs; same latent, likelihood and loss.

Loss per image, in nats: ``-ELBO(x) = E_q(z|x)[-log p(x|z)] + beta KL(q(z|x) || N(0, I))``,
``KL = 0.5 * sum_j (exp(lv_j) + mu_j^2 - 1 - lv_j)``.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from resvae_keras.config import reject_setting
from resvae_keras.data._io import display_path
from resvae_keras.layers import (
    NORMALIZATIONS,
    DepthToSpace,
    ResidualBlock,
    Sampling,
    Upsample,
    make_normalization,
)

#: Reconstruction likelihoods p(x|z) and what each one means; the first, the default, gave
#: the highest PSNR and SSIM in the likelihood study (notebook 07).
RECONSTRUCTION_LIKELIHOODS = {
    "gaussian_learned": "Gaussian N(x; mu(z), sigma^2 I), one learned sigma for all pixels "
                        "(sigma-VAE, Rybkin et al. 2021); the ELBO is a likelihood bound.",
    "gaussian": "Gaussian with fixed sigma^2 = 1/2: -log p(x|z) = SSE + D/2 log(pi), the "
                "classic 'MSE' VAE.",
    "bernoulli": "Bernoulli per pixel channel: -log p(x|z) = binary cross-entropy; not a "
                 "density for continuous x, so its ELBO is not a likelihood bound.",
}
#: ``ResVAE`` arguments that are ``config.Config`` fields of the same name.
CONFIG_ARGUMENTS = (
    "image_size", "widths", "blocks_per_stage", "latent_dim", "residual", "kind",
    "likelihood", "beta", "norm", "seed", "sigma_min", "architecture",
)  # fmt: skip
_LOG_2PI = math.log(2.0 * math.pi)


def _check_architecture(image_size, widths, blocks_per_stage, latent_dim):
    if not widths or any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths={widths!r} must be a non-empty list of positive channel counts")
    if int(blocks_per_stage) < 0:
        raise ValueError(f"blocks_per_stage={blocks_per_stage!r} must be >= 0")
    if int(latent_dim) <= 0:
        raise ValueError(f"latent_dim={latent_dim!r} must be a positive integer")
    factor = 2 ** (len(widths) + 1)
    if int(image_size) <= 0 or int(image_size) % factor:
        raise ValueError(
            f"image_size={image_size!r} must be a positive multiple of 2**{len(widths) + 1}"
            f"={factor}: the stem and each of the {len(widths)} stages in widths={tuple(widths)} "
            "halve the resolution"
        )


def check_settings(settings, **choices) -> None:
    """Raise ``ValueError`` naming the first model setting of ``settings`` (a ``ResVAE``, or a
    ``config.Config`` with the ``choices`` of its other settings) that cannot work."""
    choices = {"architecture": ("resnet", "conv"), "kind": ("vae", "ae"), "norm": NORMALIZATIONS,
               "likelihood": tuple(RECONSTRUCTION_LIKELIHOODS), **choices}
    for name, allowed in choices.items():
        if getattr(settings, name) not in allowed:
            reject_setting(settings, name, f"one of {list(allowed)}")
    if not (math.isfinite(settings.beta) and settings.beta >= 0):
        reject_setting(settings, "beta", "a number >= 0")
    if not 0 <= settings.sigma_min < 1:
        reject_setting(settings, "sigma_min", "a number in [0, 1) (0: no floor)")
    if settings.sigma_min > 0 and settings.likelihood != "gaussian_learned":
        reject_setting(settings, "sigma_min", "0 (no floor) unless likelihood='gaussian_learned'")
    _check_architecture(settings.image_size, settings.widths, settings.blocks_per_stage,
                        settings.latent_dim)


def build_encoder(image_size, widths, blocks_per_stage, latent_dim, residual=True, norm="group"):
    """Encoder: images ``(N, S, S, 3)`` in [0, 1] -> ``(z_mean, z_log_var)``, each ``(N, d)``.

    ``S`` must be a multiple of ``2**(len(widths)+1)``; ``residual=False`` drops the shortcuts.
    """
    _check_architecture(image_size, widths, blocks_per_stage, latent_dim)
    x_in = keras.Input((image_size, image_size, 3), name="image")
    h = layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(x_in)
    h = layers.Conv2D(widths[0], 3, strides=2, padding="same", name="stem")(h)
    for k, width in enumerate(widths):
        for b in range(blocks_per_stage):
            h = ResidualBlock(width, norm=norm, residual=residual, name=f"stage{k}_block{b}")(h)
        out_width = widths[min(k + 1, len(widths) - 1)]
        h = layers.Conv2D(out_width, 3, strides=2, padding="same", name=f"stage{k}_down")(h)
    h = _norm_act(h, norm, "head")
    return keras.Model(x_in, _posterior_head(h, latent_dim), name="encoder")


def build_decoder(image_size, widths, blocks_per_stage, latent_dim, residual=True, norm="group"):
    """Decoder, the mirror of ``build_encoder``: ``z -> logits (N, S, S, 3)``, float32.

    ``sigmoid(logits)`` is the mean image in [0, 1].
    """
    _check_architecture(image_size, widths, blocks_per_stage, latent_dim)
    base = image_size // 2 ** (len(widths) + 1)
    z_in = keras.Input((latent_dim,), name="z")
    h = layers.Dense(base * base * widths[-1], name="project")(z_in)
    h = layers.Reshape((base, base, widths[-1]), name="reshape")(h)
    for k in reversed(range(len(widths))):
        h = Upsample(widths[k], name=f"stage{k}_up")(h)
        for b in range(blocks_per_stage):
            h = ResidualBlock(widths[k], norm=norm, residual=residual, name=f"stage{k}_block{b}")(h)
    h = _norm_act(h, norm, "head")
    h = layers.Conv2D(3 * 4, 3, padding="same", name="to_subpixels")(h)
    logits = DepthToSpace(2, dtype="float32", name="logits")(h)
    return keras.Model(z_in, logits, name="decoder")


def _batch_norm_leaky(h, name):
    h = layers.BatchNormalization(synchronized=True, name=f"{name}_norm")(h)
    return layers.LeakyReLU(0.2, name=f"{name}_act")(h)


def _posterior_head(h, latent_dim):
    """Flatten the features into ``(z_mean, z_log_var)``, float32; the log-variance starts at 0."""
    h = layers.Flatten(name="flatten")(h)
    z_mean = layers.Dense(latent_dim, dtype="float32", name="z_mean")(h)
    z_log_var = layers.Dense(
        latent_dim, dtype="float32", kernel_initializer="zeros", name="z_log_var"
    )(h)
    return z_mean, z_log_var


def build_conv_encoder(image_size, widths, latent_dim):
    """The textbook encoder (see the module docstring); input and outputs as ``build_encoder``."""
    _check_architecture(image_size, widths, 0, latent_dim)
    x_in = keras.Input((image_size, image_size, 3), name="image")
    h = layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(x_in)
    for k, width in enumerate((*widths, 2 * widths[-1])):  # strided convs' channels
        h = layers.Conv2D(width, 3, strides=2, padding="same", name=f"conv{k}")(h)
        h = _batch_norm_leaky(h, f"conv{k}")
    return keras.Model(x_in, _posterior_head(h, latent_dim), name="encoder")


def build_conv_decoder(image_size, widths, latent_dim):
    """The mirror of ``build_conv_encoder`` (transposed convs); output as ``build_decoder``."""
    _check_architecture(image_size, widths, 0, latent_dim)
    channels = (*widths, 2 * widths[-1])  # the encoder's strided convs
    base = image_size // 2 ** len(channels)
    z_in = keras.Input((latent_dim,), name="z")
    h = layers.Dense(base * base * channels[-1], name="project")(z_in)
    h = _batch_norm_leaky(h, "project")
    h = layers.Reshape((base, base, channels[-1]), name="reshape")(h)
    for k, width in enumerate((*channels[-2::-1], channels[0])):
        h = layers.Conv2DTranspose(width, 3, strides=2, padding="same", name=f"deconv{k}")(h)
        h = _batch_norm_leaky(h, f"deconv{k}")
    logits = layers.Conv2D(3, 3, padding="same", dtype="float32", name="logits")(h)
    return keras.Model(z_in, logits, name="decoder")


def _norm_act(h, norm, name):
    """Normalization (the blocks' own, ``layers.make_normalization``) and SiLU."""
    h = make_normalization(norm, 8, f"{name}_norm")(h)
    return layers.Activation("silu", name=f"{name}_act")(h)


def gaussian_nll(sse, num_dims, log_sigma):
    """``-log N(x; mean, sigma^2 I)`` in nats, from ``sse = ||x - mean||^2`` per row:
    ``sse / (2 sigma^2) + num_dims * (log sigma + log(2 pi) / 2)``."""
    return 0.5 * sse / ops.exp(2.0 * log_sigma) + num_dims * (log_sigma + 0.5 * _LOG_2PI)


def effective_beta(sigma, beta=1.0):
    """The KL weight of the equivalent MSE-VAE, ``2 sigma^2 beta``: the Gaussian loss
    ``SSE / (2 sigma^2) + beta KL`` times ``2 sigma^2`` is ``SSE + 2 sigma^2 beta KL``."""
    return 2.0 * float(sigma) ** 2 * float(beta)


def dequantized(x, seed=None):
    """8-bit images spread uniformly over their bins: ``k / 255 -> (k + u - 1/2) / 255``,
    u ~ U[0, 1) drawn with ``seed`` (int or ``SeedGenerator``); float32, ``x``'s shape."""
    x = ops.convert_to_tensor(x, "float32")
    u = keras.random.uniform(ops.shape(x), seed=seed)
    return (ops.round(x * 255.0) + u - 0.5) / 255.0


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per image, in nats, summed over latent dims."""
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)


@keras.saving.register_keras_serializable(package="resvae_keras")
class ResVAE(keras.Model):
    """Variational autoencoder of images float32 in [0, 1], ``(N, S, S, 3)``.

    Tracks ``loss``, ``reconstruction_loss``, ``kl_loss`` and ``neg_elbo`` (at beta = 1).
    ``kind="ae"``: deterministic, z = z_mean, no KL; ``beta_weight``: the current KL weight
    (``KLWarmup`` ramps it); ``sigma_min`` floors the learned decoder sigma.
    """

    def __init__(
        self,
        image_size=64,
        widths=(32, 64, 128),
        blocks_per_stage=2,
        latent_dim=128,
        residual=True,
        kind="vae",
        likelihood="gaussian_learned",
        beta=1.0,
        norm="group",
        seed=0,
        sigma_min=0.0,
        architecture="resnet",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.widths = tuple(int(w) for w in widths)
        self.blocks_per_stage = int(blocks_per_stage)
        self.latent_dim = int(latent_dim)
        self.residual = bool(residual)
        self.norm = norm
        self.kind = kind
        self.likelihood = likelihood
        self.beta = float(beta)
        self.seed = int(seed)
        self.sigma_min = float(sigma_min)
        self.architecture = architecture
        check_settings(self)
        shape = dict(image_size=self.image_size, widths=self.widths, latent_dim=self.latent_dim)
        if architecture == "conv":
            self.encoder = build_conv_encoder(**shape)
            self.decoder = build_conv_decoder(**shape)
        else:
            blocks = dict(blocks_per_stage=self.blocks_per_stage, residual=self.residual, norm=norm)
            self.encoder = build_encoder(**shape, **blocks)
            self.decoder = build_decoder(**shape, **blocks)
        self.sampling = Sampling(seed=self.seed, name="sampling")
        self.beta_weight = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(self.beta),
            trainable=False, dtype="float32", name="beta",
        )
        self.log_sigma = None
        if likelihood == "gaussian_learned":
            # log of the decoder's shared standard deviation; starts at sigma = 0.1.
            self.log_sigma = self.add_weight(
                shape=(), initializer=keras.initializers.Constant(math.log(0.1)),
                trainable=True, dtype="float32", name="log_sigma",
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")
        self.neg_elbo_tracker = keras.metrics.Mean(name="neg_elbo")
        self.build((None, self.image_size, self.image_size, 3))

    def build(self, input_shape=None):
        self.built = True  # the encoder and decoder are functional models, built on creation

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker,
                self.neg_elbo_tracker]

    def encode(self, x, training=False):
        """Images ``(N, S, S, 3)`` in [0, 1] -> ``(z_mean, z_log_var)``, each ``(N, d)``."""
        return tuple(self.encoder(x, training=training))

    def decode_logits(self, z, training=False):
        return self.decoder(z, training=training)

    def decode(self, z, training=False):
        """Latents ``(N, latent_dim)`` -> mean images float32 in [0, 1], ``(N, S, S, 3)``."""
        return ops.sigmoid(self.decode_logits(z, training=training))

    def call(self, x, training=False):
        """The reconstruction of ``x`` through a sampled z (z = z_mean when not training)."""
        z_mean, z_log_var = self.encode(x, training=training)
        sample = training and self.kind == "vae"
        z = self.sampling([z_mean, z_log_var]) if sample else z_mean
        return self.decode(z, training=training)

    def _batched(self, function, x, batch_size):
        """``function`` over batches of ``x``, concatenated as numpy float32."""
        out = [ops.convert_to_numpy(function(x[i : i + batch_size]))
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)

    def reconstruct(self, x, batch_size=256):
        """Decode the posterior means of ``x``; returns numpy float32 in [0, 1]."""
        return self._batched(lambda batch: self.decode(self.encode(batch)[0]), x, batch_size)

    def sample(self, n, temperature=1.0, seed=0, batch_size=256):
        """``n`` faces decoded from z ~ N(0, temperature^2 I); numpy float32 in [0, 1]."""
        rng = np.random.default_rng(seed)
        z = (temperature * rng.standard_normal((int(n), self.latent_dim))).astype("float32")
        return self._batched(self.decode, z, batch_size)

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, 3)

    def summary_rows(self) -> list[dict]:
        """One dict per layer of the encoder then the decoder: ``part``, ``name``, ``kind``,
        ``kernel``, ``strides`` (None but for a ``Conv2D``), ``output_shape``, ``params``."""
        return [
            {"part": part, "name": layer.name, "kind": type(layer).__name__,
             "kernel": layer.kernel_size[0] if isinstance(layer, layers.Conv2D) else None,
             "strides": layer.strides[0] if isinstance(layer, layers.Conv2D) else None,
             "output_shape": tuple(layer.output.shape[1:]), "params": int(layer.count_params())}
            for part, network in (("encoder", self.encoder), ("decoder", self.decoder))
            for layer in network.layers
        ]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the ``encoder``, ``decoder``, whole model (``total``), ``trainable``."""
        return {"encoder": int(self.encoder.count_params()),
                "decoder": int(self.decoder.count_params()), "total": int(self.count_params()),
                "trainable": int(sum(np.prod(w.shape) for w in self.trainable_weights))}

    @property
    def decoder_sigma(self):
        """Standard deviation of the Gaussian decoder (None for Bernoulli)."""
        if self.likelihood == "gaussian_learned":
            return float(ops.convert_to_numpy(ops.exp(self._log_sigma())))
        if self.likelihood == "gaussian":
            return math.sqrt(0.5)
        return None

    @property
    def effective_beta(self):
        """``2 sigma^2 beta`` (see ``effective_beta``); None for Bernoulli."""
        sigma = self.decoder_sigma
        return None if sigma is None else effective_beta(sigma, self.beta)

    def _log_sigma(self):
        """log of the learned decoder sigma, held at or above ``log(sigma_min)``."""
        log_sigma = ops.cast(self.log_sigma, "float32")
        return ops.maximum(log_sigma, math.log(self.sigma_min)) if self.sigma_min else log_sigma

    def reconstruction_nll(self, x, logits):
        """``-log p(x|z)`` per image, in nats, summed over the pixels and channels."""
        x = ops.cast(x, "float32")
        logits = ops.cast(logits, "float32")
        axes = (1, 2, 3)
        num_dims = float(np.prod(self.image_shape))
        if self.likelihood == "bernoulli":
            bce = ops.maximum(logits, 0.0) - logits * x + ops.log1p(ops.exp(-ops.abs(logits)))
            return ops.sum(bce, axis=axes)
        sse = ops.sum(ops.square(x - ops.sigmoid(logits)), axis=axes)
        if self.likelihood == "gaussian":  # sigma^2 = 1/2
            return sse + 0.5 * num_dims * math.log(math.pi)
        return gaussian_nll(sse, num_dims, self._log_sigma())

    def elbo_terms(self, x, training=False, seed=None):
        """The one pass behind every loss and ELBO: encode, draw z, decode, score.

        ``seed`` of the draw z ~ q(z|x): ``None`` uses the model's own generator (training),
        an int or ``SeedGenerator`` gives reproducible draws. Returns float32 tensors:
        ``z_mean``, ``z_log_var`` ``(N, d)``; per image ``(N,)``, in nats,
        ``reconstruction`` = -log p(x|z), ``kl`` (0 for ``kind="ae"``) and
        ``loss = reconstruction + beta_weight * kl``.
        """
        z_mean, z_log_var = self.encode(x, training=training)
        ae = self.kind == "ae"
        z = z_mean if ae else self.sampling([z_mean, z_log_var], seed=seed)
        reconstruction = self.reconstruction_nll(x, self.decode_logits(z, training=training))
        if ae:
            kl = ops.zeros_like(reconstruction)
        else:
            kl = kl_divergence(ops.cast(z_mean, "float32"), ops.cast(z_log_var, "float32"))
        return {
            "z_mean": z_mean,
            "z_log_var": z_log_var,
            "reconstruction": reconstruction,
            "kl": kl,
            "loss": reconstruction + ops.cast(self.beta_weight, "float32") * kl,
        }

    def elbo(self, x, batch_size=256, seed=0, dequantize=True):
        """Per-image ``neg_elbo`` (NaN for ``kind="ae"``), ``reconstruction`` and ``kl`` of
        8-bit images ``x``, in nats, one draw each: numpy float32 ``(N,)`` arrays.
        ``dequantize`` scores ``dequantized(x)`` (see ``metrics.bits_per_dim``)."""
        seed = keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed
        parts = {"reconstruction": [], "kl": []}
        for i in range(0, len(x), batch_size):
            batch = ops.convert_to_tensor(x[i : i + batch_size], "float32")
            terms = self.elbo_terms(dequantized(batch, seed) if dequantize else batch, seed=seed)
            for key, values in parts.items():
                values.append(ops.convert_to_numpy(terms[key]))
        out = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in parts.items()}
        out["neg_elbo"] = (np.full_like(out["kl"], np.nan) if self.kind == "ae"
                           else out["reconstruction"] + out["kl"])
        return out

    def _update_trackers(self, terms, loss):
        batch = ops.cast(ops.shape(terms["kl"])[0], "float32")
        values = (loss, ops.mean(terms["reconstruction"]), ops.mean(terms["kl"]),
                  ops.mean(terms["reconstruction"] + terms["kl"]))
        for tracker, value in zip(self.metrics, values, strict=True):
            tracker.update_state(value, sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        x = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            terms = self.elbo_terms(x, training=True)
            loss = ops.mean(terms["loss"])
            # Each replica holds a slice of the global batch; gradients are summed
            # across replicas, so each replica's mean is divided by their number.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._update_trackers(terms, loss)

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        terms = self.elbo_terms(x, training=False)
        return self._update_trackers(terms, ops.mean(terms["loss"]))

    def get_config(self):
        arguments = {name: getattr(self, name) for name in CONFIG_ARGUMENTS}
        return {**super().get_config(), **arguments, "widths": list(self.widths)}


def build_model(config):
    """A compiled-ready ``ResVAE`` from a ``config.Config`` (its ``CONFIG_ARGUMENTS``)."""
    return ResVAE(**{name: getattr(config, name) for name in CONFIG_ARGUMENTS})


class ModelFileError(ValueError):
    """A ``.keras`` file that cannot be used; the message names it and says what to do."""


class DamagedModelFileError(ModelFileError):
    """A ``.keras`` file that cannot be read at all (cut short, a CRC error)."""


def nonfinite_weights(model) -> list[str]:
    """Paths of the weights of ``model`` holding NaN or infinity (empty when all are finite)."""
    return [w.path for w in model.weights if not np.isfinite(ops.convert_to_numpy(w)).all()]


def load_model(path):
    """The ``ResVAE`` saved in the ``.keras`` file ``path``, checked by ``load_keras_file``."""
    return load_keras_file(path, ResVAE)


def load_keras_file(path, cls, remedy=None):
    """The model of class ``cls`` saved in ``path``; ``ModelFileError`` with ``remedy`` when
    it is damaged, holds another model or non-finite weights."""
    path = Path(path)
    shown = display_path(path)
    remedy = remedy or ("Restore it, or train the run again (README, section \"When things go "
                        "wrong\").")
    if not path.is_file():
        raise FileNotFoundError(
            f"{shown} does not exist: train the run first (python -m resvae_keras train)")
    damaged = (f"{shown} is damaged: not a complete .keras (zip) file ({path.stat().st_size:,} "
               "bytes), e.g. cut short by a full disk or an interrupted copy. ")
    if not zipfile.is_zipfile(path):
        raise DamagedModelFileError(damaged + remedy)
    try:
        model = keras.models.load_model(path)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:  # e.g. a CRC error
        raise DamagedModelFileError(damaged.replace("not a complete .keras (zip) file",
                                             f"{type(error).__name__}: {error}") + remedy) from None
    if not isinstance(model, cls):
        raise ModelFileError(
            f"{shown} holds a {type(model).__name__}, not a {cls.__name__}; give the model.keras "
            "of a run trained by resvae_keras"
        )
    bad = nonfinite_weights(model)
    if bad:
        raise ModelFileError(
            f"{shown} holds NaN or infinite weights ({len(bad)} of {len(model.weights)}, e.g. "
            f"{bad[0]}): its training diverged, so its samples and scores would be meaningless. "
            + ("Train the run again with a lower learning rate (README, section \"When things "
               "go wrong\")." if cls is ResVAE else remedy)
        )
    return model
