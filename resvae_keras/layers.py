"""Serializable Keras layers of the ResVAE: the residual block, the resampling layers and
the reparameterization ``Sampling`` layer, registered under the ``resvae_keras`` package."""

from __future__ import annotations

import keras
from keras import layers, ops

NORMALIZATIONS = ("group", "batch", "none")


def make_normalization(norm, groups, name):
    """The layer ``norm`` names: ``"group"`` (``groups`` groups), ``"batch"`` (synchronized:
    every replica uses the global batch's statistics) or ``"none"``."""
    if norm == "group":
        return layers.GroupNormalization(groups=groups, epsilon=1e-5, name=name)
    if norm == "batch":
        return layers.BatchNormalization(synchronized=True, name=name)
    if norm == "none":
        return layers.Identity(name=name)
    raise ValueError(f"norm={norm!r} is not one of {list(NORMALIZATIONS)}")


@keras.saving.register_keras_serializable(package="resvae_keras")
class ResidualBlock(layers.Layer):
    """Pre-activation residual block (He et al., 2016, "Identity Mappings").

    ``y = shortcut(x) + conv(act(norm(conv(act(norm(x))))))``, ``(N, H, W, C) -> (N, H, W,
    filters)``. The shortcut is the identity, or a 1x1 convolution when the channel count
    changes; ``residual=False`` drops it (the plain ablation of equal depth). ``groups``
    must divide the channel counts.
    """

    def __init__(
        self,
        filters,
        kernel_size=3,
        norm="group",
        groups=8,
        activation="silu",
        residual=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(kernel_size) % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size!r} must be odd")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.norm = norm
        self.groups = int(groups)
        self.activation = activation
        self.residual = bool(residual)
        self.norm1 = make_normalization(norm, self.groups, "norm1")
        self.norm2 = make_normalization(norm, self.groups, "norm2")
        self.act = layers.Activation(activation, name="act")
        self.conv1 = layers.Conv2D(self.filters, self.kernel_size, padding="same", name="conv1")
        self.conv2 = layers.Conv2D(self.filters, self.kernel_size, padding="same", name="conv2")
        self.projection = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.norm1.build(input_shape)
        self.conv1.build(input_shape)
        inner_shape = (*input_shape[:-1], self.filters)
        self.norm2.build(inner_shape)
        self.conv2.build(inner_shape)
        if self.residual and channels != self.filters:
            self.projection = layers.Conv2D(self.filters, 1, name="projection")
            self.projection.build(input_shape)

    def call(self, x, training=None):
        h = self.conv1(self.act(self.norm1(x, training=training)))
        h = self.conv2(self.act(self.norm2(h, training=training)))
        if not self.residual:
            return h
        shortcut = x if self.projection is None else self.projection(x)
        return shortcut + h

    def get_config(self):
        names = ("filters", "kernel_size", "norm", "groups", "activation", "residual")
        return {**super().get_config(), **{name: getattr(self, name) for name in names}}


@keras.saving.register_keras_serializable(package="resvae_keras")
class Upsample(layers.Layer):
    """Nearest-neighbour 2x resize then a 3x3 convolution: ``(N, H, W, C) -> (N, 2H, 2W,
    filters)``, free of the checkerboard of transposed convolutions (Odena et al., 2016)."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.resize = layers.UpSampling2D(2, interpolation="nearest", name="resize")
        self.conv = layers.Conv2D(self.filters, 3, padding="same", name="conv")

    def build(self, input_shape):
        self.conv.build((input_shape[0], None, None, input_shape[-1]))

    def call(self, x):
        return self.conv(self.resize(x))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


@keras.saving.register_keras_serializable(package="resvae_keras")
class DepthToSpace(layers.Layer):
    """Sub-pixel shuffle (Shi et al., 2016): ``(H, W, C*r*r) -> (rH, rW, C)``, r = block_size."""

    def __init__(self, block_size=2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, x):
        r = self.block_size
        _, h, w, c = ops.shape(x)
        x = ops.reshape(x, (-1, h, w, r, r, c // (r * r)))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h * r, w * r, c // (r * r)))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


@keras.saving.register_keras_serializable(package="resvae_keras")
class Sampling(layers.Layer):
    """Reparameterization trick: ``z = z_mean + exp(0.5 * z_log_var) * eps``, eps ~ N(0, I).

    Computes in float32 under any policy. With several replicas the replica id is folded
    into the seed, so their draws differ. A ``seed`` passed to ``call`` (int or
    ``SeedGenerator``) replaces the layer's own generator for that call.
    """

    def __init__(self, seed=0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.seed = int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, inputs, seed=None):
        import tensorflow as tf

        z_mean, z_log_var = inputs
        seed = self.seed_generator if seed is None else seed
        replica = tf.distribute.get_replica_context()
        if replica is None or replica.num_replicas_in_sync == 1:
            eps = keras.random.normal(ops.shape(z_mean), dtype=z_mean.dtype, seed=seed)
        else:  # one draw of the generator, made distinct per replica
            drawn = seed.next() if isinstance(seed, keras.random.SeedGenerator) else [seed, 0]
            eps = tf.random.stateless_normal(
                tf.shape(z_mean), dtype=z_mean.dtype,
                seed=tf.random.experimental.stateless_fold_in(
                    tf.cast(drawn, "int64"), replica.replica_id_in_sync_group))
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}
