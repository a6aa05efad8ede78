"""resvae_keras: a residual Variational Autoencoder for 64x64 CelebA faces (Keras 3, TensorFlow).

Modules, in the order data flows through them: ``config`` (one dataclass, named
profiles), ``data`` (CelebA layouts, crop, cache, tf.data, demo faces), ``layers``
and ``model`` (ResidualBlock, Sampling, ResVAE), ``train`` (callbacks, resume,
tf.distribute), ``metrics``, ``latent``, ``evaluate`` and ``plots``.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of notebooks and CLI output; set before
# TensorFlow is imported. An explicit TF_CPP_MIN_LOG_LEVEL in the environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
