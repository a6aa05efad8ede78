r"""The ResVAE: encoder and decoder builders and the ``ResVAE(keras.Model)`` class.

Architecture for an ``S x S`` image and ``widths = (w_1, ..., w_K)``::

    encoder  x (S,S,3) -> conv 3x3 stride 2 -> [ResidualBlock(w_k) x B -> conv stride 2] k=1..K
             -> norm, act, flatten -> Dense(latent) z_mean, Dense(latent) z_log_var
    decoder  z -> Dense -> (S/2^(K+1), S/2^(K+1), w_K)
             -> [Upsample(w_k) -> ResidualBlock(w_k) x B] k=K..1      (ends at S/2)
             -> norm, act, conv 3x3 to 3*4 channels -> DepthToSpace(2) -> logits (S,S,3)

The first convolution halves the resolution and the last layer is a sub-pixel
shuffle, so no convolution runs at full resolution: most of the work is done at
``S/2`` (32x32 for 64x64 faces) and below, which buys quality per FLOP.

``architecture="conv"`` swaps both networks for the conventional shallow convolutional VAE
of the keras.io example and the textbooks (e.g. Foster, *Generative Deep Learning*, the
CelebA VAE), the study's baseline::

    encoder  x -> [conv 3x3 stride 2 -> BatchNorm -> LeakyReLU] x (K+1), channels
             (w_1, ..., w_K, 2 w_K) -> flatten -> Dense z_mean, Dense z_log_var
    decoder  z -> Dense -> BatchNorm -> LeakyReLU -> (S/2^(K+1), S/2^(K+1), 2 w_K)
             -> [transposed conv 3x3 stride 2 -> BatchNorm -> LeakyReLU] x (K+1),
             channels (w_K, ..., w_1, w_1) -> conv 3x3 to 3 channels -> logits (S,S,3)

With the default ``widths=(32, 64, 128)`` that is four strided convolutions of 32, 64, 128
and 256 channels and their mirror: no residual blocks, no normalization choice, the same
latent size, likelihood and loss (``train_step`` is shared).

The loss per image, in nats, is the negative ELBO

.. math::  -\mathrm{ELBO}(x) = \mathbb{E}_{q(z|x)}[-\log p(x|z)]
           + \beta\,\mathrm{KL}(q(z|x)\,\|\,\mathcal N(0, I))

with the KL in closed form for a diagonal Gaussian posterior:
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

from resvae_keras.layers import (
    NORMALIZATIONS,
    DepthToSpace,
    ResidualBlock,
    Sampling,
    Upsample,
    make_normalization,
)

#: Reconstruction likelihoods p(x|z) and what each one means.
RECONSTRUCTION_LIKELIHOODS = {
    "gaussian_learned": (
        "Gaussian N(x; mu(z), sigma^2 I) with ONE learned sigma shared by all pixels "
        "(the calibrated decoder / sigma-VAE, Rybkin et al. 2021). sigma settles near the "
        "RMS reconstruction error, which balances reconstruction against KL without "
        "hand-tuning beta. A proper density on pixel values: the ELBO is a likelihood bound."
    ),
    "gaussian": (
        "Gaussian with fixed variance sigma^2 = 1/2, so -log p(x|z) = sum of squared errors "
        "+ D/2 log(pi): the classic 'MSE' VAE. With pixels in [0, 1] the SSE is small "
        "against the KL, so faces come out blurry unless beta is lowered."
    ),
    "bernoulli": (
        "Bernoulli per pixel channel with mean mu(z): -log p(x|z) = binary cross-entropy. "
        "Common in tutorials, but it is not a normalized density for continuous x in "
        "[0, 1], so its ELBO is not a likelihood bound and bits/dim are not comparable."
    ),
}
#: Why ``gaussian_learned`` is the default: in the likelihood study at an equal budget
#: (``report/results/study/likelihood_*`` against ``residual_s0``, notebook 07) it gave the
#: highest PSNR and SSIM and the sharpest reconstructions and samples (Laplacian variance).
#: Its prior samples scored worse on the offline SWD, because a sharp decoder spends more nats
#: on the KL and leaves holes in the prior; the ex-post Gaussian-mixture sampler
#: (``latent.GaussianMixtureSampler``) closes most of that gap.
DEFAULT_LIKELIHOOD = "gaussian_learned"
KINDS = ("vae", "ae")
#: ``ResVAE`` arguments that are ``config.Config`` fields of the same name and meaning:
#: ``build_model`` passes them on and ``get_config`` saves them.
CONFIG_ARGUMENTS = (
    "image_size", "widths", "blocks_per_stage", "latent_dim", "residual", "kind",
    "likelihood", "beta", "norm", "seed", "sigma_min", "architecture",
)  # fmt: skip
#: ``"resnet"``: the residual encoder and decoder above (``residual=False`` drops the
#: shortcuts); ``"conv"``: the shallow textbook convolutional VAE (``build_conv_encoder``).
ARCHITECTURES = ("resnet", "conv")
_LOG_2PI = math.log(2.0 * math.pi)


def _check_architecture(image_size, widths, blocks_per_stage, latent_dim):
    if not widths:
        raise ValueError(f"widths={widths!r} must be a non-empty list of channel counts")
    if any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths={widths!r} must hold positive channel counts")
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


def build_encoder(
    image_size,
    widths,
    blocks_per_stage,
    latent_dim,
    residual=True,
    norm="group",
    name="encoder",
):
    """Encoder ``x -> (z_mean, z_log_var)``.

    Args:
        image_size: side S of the square input, a multiple of ``2**(len(widths)+1)``.
        widths: channels per stage; stage k works at ``S / 2**k``.
        blocks_per_stage: residual blocks per stage (>= 0).
        latent_dim: size of z.
        residual: keep the residual shortcuts (``False``: plain CNN of equal depth).
        norm: normalization inside the blocks (see ``layers.ResidualBlock``).

    Input: images float32 in [0, 1], shape ``(N, S, S, 3)``.
    Outputs: ``z_mean``, ``z_log_var``, each ``(N, latent_dim)`` float32.
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
    return keras.Model(x_in, _posterior_head(h, latent_dim), name=name)


def build_decoder(
    image_size,
    widths,
    blocks_per_stage,
    latent_dim,
    residual=True,
    norm="group",
    name="decoder",
):
    """Decoder ``z -> logits`` of the pixel means; the mirror of ``build_encoder``.

    Output: logits float32 ``(N, S, S, 3)``; ``sigmoid(logits)`` is the mean image in [0, 1].
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
    return keras.Model(z_in, logits, name=name)


def _conv_widths(widths):
    """Channels of the conv architecture's strided layers: ``widths`` and twice the last."""
    return (*(int(w) for w in widths), 2 * int(widths[-1]))


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


def build_conv_encoder(image_size, widths, latent_dim, name="encoder"):
    """The textbook convolutional encoder ``x -> (z_mean, z_log_var)``: no residual blocks.

    ``len(widths) + 1`` stride-2 3x3 convolutions with ``widths`` and ``2 * widths[-1]``
    channels, each followed by BatchNormalization and LeakyReLU(0.2); then flatten and two
    Dense heads. Input and outputs as ``build_encoder``.
    """
    _check_architecture(image_size, widths, 0, latent_dim)
    x_in = keras.Input((image_size, image_size, 3), name="image")
    h = layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(x_in)
    for k, width in enumerate(_conv_widths(widths)):
        h = layers.Conv2D(width, 3, strides=2, padding="same", name=f"conv{k}")(h)
        h = _batch_norm_leaky(h, f"conv{k}")
    return keras.Model(x_in, _posterior_head(h, latent_dim), name=name)


def build_conv_decoder(image_size, widths, latent_dim, name="decoder"):
    """The mirror of ``build_conv_encoder``: ``z -> logits`` through transposed convolutions.

    Dense to ``(S / 2**(K+1))^2 x 2 w_K``, then ``len(widths) + 1`` stride-2 3x3 transposed
    convolutions (channels ``w_K, ..., w_1, w_1``), each with BatchNormalization and
    LeakyReLU(0.2), and a 3x3 convolution to the 3 logit channels at full resolution.
    Output as ``build_decoder``.
    """
    _check_architecture(image_size, widths, 0, latent_dim)
    channels = _conv_widths(widths)
    base = image_size // 2 ** len(channels)
    z_in = keras.Input((latent_dim,), name="z")
    h = layers.Dense(base * base * channels[-1], name="project")(z_in)
    h = _batch_norm_leaky(h, "project")
    h = layers.Reshape((base, base, channels[-1]), name="reshape")(h)
    for k, width in enumerate((*channels[-2::-1], channels[0])):
        h = layers.Conv2DTranspose(width, 3, strides=2, padding="same", name=f"deconv{k}")(h)
        h = _batch_norm_leaky(h, f"deconv{k}")
    logits = layers.Conv2D(3, 3, padding="same", dtype="float32", name="logits")(h)
    return keras.Model(z_in, logits, name=name)


def _norm_act(h, norm, name):
    """Normalization (the blocks' own, ``layers.make_normalization``) and SiLU."""
    h = make_normalization(norm, 8, f"{name}_norm")(h)
    return layers.Activation("silu", name=f"{name}_act")(h)


def gaussian_nll(sse, num_dims, log_sigma):
    """``-log N(x; mean, sigma^2 I)`` in nats, summed over the ``num_dims`` values of x.

    ``sse`` is ``||x - mean||^2`` per row, ``log_sigma`` the log of the shared standard
    deviation: ``sse / (2 sigma^2) + num_dims * (log sigma + log(2 pi) / 2)``.
    """
    return 0.5 * sse / ops.exp(2.0 * log_sigma) + num_dims * (log_sigma + 0.5 * _LOG_2PI)


def effective_beta(sigma, beta=1.0):
    """The KL weight of the equivalent MSE-VAE: ``2 sigma^2 beta`` (dimensionless, >= 0).

    A Gaussian decoder's loss ``SSE / (2 sigma^2) + D log sigma + beta KL``, multiplied by
    ``2 sigma^2``, reads ``SSE + 2 sigma^2 beta KL`` plus a term free of the weights: at a
    given sigma (pixel units, in (0, 1)) it trains like a sum-of-squares VAE with this beta.
    """
    return 2.0 * float(sigma) ** 2 * float(beta)


def dequantized(x, seed=None):
    """8-bit images spread uniformly over their bins: ``k / 255 -> (k + u - 1/2) / 255``.

    Args:
        x: images float32 k/255 in [0, 1] (other values are first rounded to 8 bits).
        seed: int or ``keras.random.SeedGenerator`` of u ~ U[0, 1), one draw per value.

    Returns:
        float32 tensor of ``x``'s shape, within half a step (1/510) of the 8-bit values.
    """
    x = ops.convert_to_tensor(x, "float32")
    u = keras.random.uniform(ops.shape(x), seed=seed)
    return (ops.round(x * 255.0) + u - 0.5) / 255.0


def kl_divergence(z_mean, z_log_var):
    """KL(N(z_mean, exp(z_log_var)) || N(0, I)) per image, in nats, summed over latent dims."""
    return 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)


def _check_model_settings(architecture, kind, likelihood, beta, norm, sigma_min):
    """Raise ``ValueError`` naming the first of ``ResVAE``'s settings that cannot work."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture={architecture!r} is not one of {list(ARCHITECTURES)}")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {list(KINDS)}")
    if likelihood not in RECONSTRUCTION_LIKELIHOODS:
        raise ValueError(
            f"likelihood={likelihood!r} is not one of {list(RECONSTRUCTION_LIKELIHOODS)}"
        )
    if not float(beta) >= 0.0:
        raise ValueError(f"beta={beta!r} must be >= 0")
    if norm not in NORMALIZATIONS:
        raise ValueError(f"norm={norm!r} is not one of {list(NORMALIZATIONS)}")
    if not 0.0 <= float(sigma_min) < 1.0:
        raise ValueError(f"sigma_min={sigma_min!r} must be in [0, 1) (0: no floor)")
    if float(sigma_min) > 0 and likelihood != "gaussian_learned":
        raise ValueError(
            f"sigma_min={sigma_min!r} needs likelihood='gaussian_learned', got "
            f"{likelihood!r}: pass sigma_min=0 (--sigma-min 0) with this likelihood"
        )


@keras.saving.register_keras_serializable(package="resvae_keras")
class ResVAE(keras.Model):
    """Variational autoencoder with residual encoder and decoder.

    ``train_step`` minimizes ``reconstruction + beta * KL`` (both per image, in nats,
    averaged over the batch); ``test_step`` reports the same terms without an update.
    Four ``keras.metrics.Mean`` trackers (``loss``, ``reconstruction_loss``,
    ``kl_loss`` and ``neg_elbo`` = reconstruction + KL, the negative ELBO at beta = 1,
    comparable across a KL warm-up) are exposed through ``metrics``, so History holds
    epoch means.

    The defaults are the default architecture, the same as ``config.Config``'s (the
    ``celeba-subset`` profile trains it).

    Args:
        image_size: side of the square images (64; 32 and 128 also work).
        widths: channels per stage (non-empty).
        blocks_per_stage: residual blocks per stage (``architecture="resnet"`` only).
        latent_dim: size of z.
        residual: ``False`` drops every shortcut (plain-VAE ablation; ``"resnet"`` only).
        architecture: ``"resnet"`` (``build_encoder``/``build_decoder``) or ``"conv"``, the
            shallow textbook convolutional VAE (``build_conv_encoder``/``build_conv_decoder``)
            with the same latent size, likelihood and loss.
        kind: ``"vae"``, or ``"ae"``: a deterministic autoencoder, z = z_mean, no KL
            and no sampling noise (the reconstruction baseline).
        likelihood: a key of ``RECONSTRUCTION_LIKELIHOODS``.
        beta: KL weight (>= 0); ``beta_weight`` holds the current value, which the
            ``callbacks.KLWarmup`` callback ramps.
        sigma_min: floor on the learned decoder sigma (``gaussian_learned`` only; 0: none,
            the default of every profile). The loss of a Gaussian decoder times ``2 sigma^2``
            is ``SSE + 2 sigma^2 KL``, so a floor on sigma is a floor on the effective beta: a
            hidden beta > 1 once sigma sits on it. The former ``celeba-subset`` default held
            sigma at 0.5 (beta_eff = 0.5, against about 0.01 for the sigma of about 0.07 that
            is learned without it): prior samples looked like faces, but it reconstructed worse
            than linear PCA and its bound was worse than a uniform model's.
        norm: normalization inside the blocks and before the heads (``"group"``,
            ``"batch"`` or ``"none"``; ``"resnet"`` only).
        seed: seed of the sampling noise.

    Inputs: images float32 in [0, 1], ``(N, S, S, 3)``.
    """

    def __init__(
        self,
        image_size=64,
        widths=(32, 64, 128),
        blocks_per_stage=2,
        latent_dim=128,
        residual=True,
        kind="vae",
        likelihood=DEFAULT_LIKELIHOOD,
        beta=1.0,
        norm="group",
        seed=0,
        sigma_min=0.0,
        architecture="resnet",
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_model_settings(architecture, kind, likelihood, beta, norm, sigma_min)
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
        shape = dict(image_size=self.image_size, widths=self.widths, latent_dim=self.latent_dim)
        if architecture == "conv":
            self.encoder = build_conv_encoder(**shape)
            self.decoder = build_conv_decoder(**shape)
        else:
            blocks = dict(blocks_per_stage=self.blocks_per_stage, residual=self.residual, norm=norm)
            self.encoder = build_encoder(**shape, **blocks)
            self.decoder = build_decoder(**shape, **blocks)
        self.sampling = Sampling(seed=self.seed, name="sampling")  # float32 under any policy
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

    # -- building blocks -----------------------------------------------------
    def build(self, input_shape=None):
        # The encoder and decoder are functional models, built on creation.
        self.built = True

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.reconstruction_loss_tracker,
            self.kl_loss_tracker,
            self.neg_elbo_tracker,
        ]

    def encode(self, x, training=False):
        """Images ``(N, S, S, 3)`` in [0, 1] -> ``(z_mean, z_log_var)``, each ``(N, latent_dim)``.

        For ``kind="ae"`` the log-variance is ignored (the code is deterministic).
        """
        z_mean, z_log_var = self.encoder(x, training=training)
        return z_mean, z_log_var

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

    def reconstruct(self, x, batch_size=256):
        """Decode the posterior means of ``x``; returns numpy float32 in [0, 1]."""
        out = [
            ops.convert_to_numpy(self.decode(self.encode(x[i : i + batch_size])[0]))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)

    def sample(self, n, temperature=1.0, seed=0, batch_size=256):
        """``n`` faces decoded from z ~ N(0, temperature^2 I); numpy float32 in [0, 1]."""
        rng = np.random.default_rng(seed)
        z = (temperature * rng.standard_normal((int(n), self.latent_dim))).astype("float32")
        out = [
            ops.convert_to_numpy(self.decode(z[i : i + batch_size]))
            for i in range(0, int(n), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, *self.image_shape), np.float32)

    @property
    def image_shape(self):
        return (self.image_size, self.image_size, 3)

    def summary_rows(self) -> list[dict]:
        """One dict per layer, encoder then decoder: ``part`` (``"encoder"``/``"decoder"``),
        ``name``, ``kind`` (class name), ``kernel`` and ``strides`` (a ``Conv2D``'s, else None),
        ``output_shape`` (without the batch axis) and ``params``."""
        return [
            {"part": part, "name": layer.name, "kind": type(layer).__name__,
             "kernel": layer.kernel_size[0] if isinstance(layer, layers.Conv2D) else None,
             "strides": layer.strides[0] if isinstance(layer, layers.Conv2D) else None,
             "output_shape": tuple(layer.output.shape[1:]), "params": int(layer.count_params())}
            for part, network in (("encoder", self.encoder), ("decoder", self.decoder))
            for layer in network.layers
        ]

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the ``encoder``, the ``decoder``, the whole model (``total``: both plus
        the decoder's log sigma and beta) and the ``trainable`` ones."""
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
        """``2 sigma^2 beta`` of the Gaussian decoders (see ``effective_beta``); None for Bernoulli.

        The fixed-sigma ``gaussian`` likelihood has ``2 sigma^2 = 1``, so there it is ``beta``.
        """
        sigma = self.decoder_sigma
        return None if sigma is None else effective_beta(sigma, self.beta)

    # -- the loss --------------------------------------------------------------
    def _log_sigma(self):
        """log of the learned decoder sigma, held at or above ``log(sigma_min)``."""
        log_sigma = ops.cast(self.log_sigma, "float32")
        if self.sigma_min > 0:
            log_sigma = ops.maximum(log_sigma, math.log(self.sigma_min))
        return log_sigma

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

        ``train_step``, ``test_step``, ``elbo``, ``evaluate`` and ``bench.flops_per_image``
        all call this, so they cannot disagree.

        Args:
            x: images float32 in [0, 1], shape ``(N, S, S, 3)``.
            training: passed to the layers (normalization statistics).
            seed: the noise of the posterior draw z ~ q(z|x): ``None`` uses the model's
                own seed generator (training), an int or a ``keras.random.SeedGenerator``
                gives reproducible draws (evaluation). Ignored for ``kind="ae"`` (z = z_mean).

        Returns:
            dict of float32 tensors: ``z_mean``, ``z_log_var`` ``(N, latent_dim)``;
            ``reconstruction`` = -log p(x|z) and ``kl`` = KL(q(z|x) || N(0, I)) per image,
            ``(N,)``, in nats (``kl`` is 0 for ``kind="ae"``); ``loss`` =
            ``reconstruction + beta_weight * kl``, the training objective per image.
        """
        z_mean, z_log_var = self.encode(x, training=training)
        if self.kind == "ae":
            z = z_mean
        else:
            z = self.sampling([z_mean, z_log_var], seed=seed)
        reconstruction = self.reconstruction_nll(x, self.decode_logits(z, training=training))
        if self.kind == "ae":
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
        """Per-image negative ELBO of 8-bit images ``x`` (one draw per image), in nats.

        With ``dequantize`` (the default) each value ``k / 255`` is replaced by a point drawn
        uniformly from its 8-bit bin, ``(k + u - 1/2) / 255`` with u ~ U[0, 1): the expected
        negative ELBO of those points, plus ``D log 255``, bounds the code length of the 8-bit
        image from above (``metrics.bits_per_dim`` explains why). One draw per image is an
        unbiased estimate of that expectation. ``dequantize=False`` scores ``x`` as given,
        like ``test_step``.

        Args:
            x: images float32 in [0, 1], shape ``(N, S, S, 3)``.
            seed: int or ``keras.random.SeedGenerator`` of the dequantization and posterior
                draws (pass one generator to continue a stream over chunks).

        Returns:
            dict of numpy float32 arrays of shape ``(N,)``: ``neg_elbo`` (=
            ``reconstruction + kl``, beta = 1), ``reconstruction`` and ``kl``. The
            autoencoder (``kind="ae"``) has no prior, so no ELBO: its ``neg_elbo`` is NaN.
        """
        seed = keras.random.SeedGenerator(seed) if isinstance(seed, int) else seed
        parts = {"reconstruction": [], "kl": []}
        for i in range(0, len(x), batch_size):
            batch = ops.convert_to_tensor(x[i : i + batch_size], "float32")
            terms = self.elbo_terms(dequantized(batch, seed) if dequantize else batch, seed=seed)
            for key, values in parts.items():
                values.append(ops.convert_to_numpy(terms[key]))
        out = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in parts.items()}
        not_a_bound = self.kind == "ae"
        out["neg_elbo"] = np.full_like(out["kl"], np.nan) if not_a_bound else (
            out["reconstruction"] + out["kl"]
        )
        return out

    def _update_trackers(self, terms, loss, batch):
        self.loss_tracker.update_state(loss, sample_weight=batch)
        self.reconstruction_loss_tracker.update_state(
            ops.mean(terms["reconstruction"]), sample_weight=batch
        )
        self.kl_loss_tracker.update_state(ops.mean(terms["kl"]), sample_weight=batch)
        self.neg_elbo_tracker.update_state(
            ops.mean(terms["reconstruction"] + terms["kl"]), sample_weight=batch
        )
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        import tensorflow as tf

        x = data[0] if isinstance(data, (tuple, list)) else data
        batch = ops.cast(ops.shape(x)[0], "float32")
        with tf.GradientTape() as tape:
            terms = self.elbo_terms(x, training=True)
            loss = ops.mean(terms["loss"])
            # Each replica holds a slice of the global batch; gradients are summed
            # across replicas, so each replica's mean is divided by their number.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._update_trackers(terms, loss, batch)

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        batch = ops.cast(ops.shape(x)[0], "float32")
        terms = self.elbo_terms(x, training=False)
        return self._update_trackers(terms, ops.mean(terms["loss"]), batch)

    # -- serialisation -----------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in CONFIG_ARGUMENTS})
        config["widths"] = list(self.widths)
        return config


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


def load_model(path, check_finite=True):
    """The ``ResVAE`` saved in the ``.keras`` file ``path``, checked.

    Works in a fresh process (``resvae_keras.load_model``). Raises
    ``FileNotFoundError`` when the file is missing, and ``ModelFileError`` (a
    ``ValueError``) when it is damaged (e.g. truncated), holds another kind of model,
    or, with ``check_finite``, holds NaN or infinite weights (a diverged run).
    """
    return load_keras_file(path, ResVAE, check_finite=check_finite)


def load_keras_file(path, cls, check_finite=True, remedy=None):
    """The Keras model of class ``cls`` saved in ``path``, checked as ``load_model`` says.

    ``remedy``: what the messages of a damaged or non-finite file tell the user to do
    (default: restore the file or train the run again).
    """
    from resvae_keras.data._io import display_path

    path = Path(path)
    shown = display_path(path)
    remedy = remedy or ("Restore it, or train the run again (README, section \"When things go "
                        "wrong\").")
    if not path.is_file():
        raise FileNotFoundError(f"{shown} does not exist: train the run first (python -m resvae_keras train)")
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
            f"{shown} holds a {type(model).__name__}, not a {cls.__name__}; give the model.keras of a "
            "run trained by resvae_keras"
        )
    bad = nonfinite_weights(model) if check_finite else []
    if bad:
        raise ModelFileError(
            f"{shown} holds NaN or infinite weights ({len(bad)} of {len(model.weights)}, e.g. "
            f"{bad[0]}): its training diverged, so its samples and scores would be meaningless. "
            + ("Train the run again with a lower learning rate (README, section \"When things "
               "go wrong\")." if cls is ResVAE else remedy)
        )
    return model
