"""resvae_keras: a residual Variational Autoencoder for 64x64 CelebA faces (Keras 3, TensorFlow).

Modules, in the order data flows through them: ``config`` (one dataclass, named
profiles), ``data`` (CelebA layouts, crop, cache, tf.data, demo faces), ``layers``
and ``model`` (ResidualBlock, Sampling, ResVAE), ``train`` (the training loop, with
``callbacks`` and, for several workers, ``distribute``), ``latent``, ``metrics`` and
``sample_metrics``, ``evaluate`` (with ``sample_quality``), ``record`` (one flat record per
run), ``study`` and ``plan``, ``plots`` and ``report``.

Loading a saved run: ``resvae_keras.load_model("runs/demo/model.keras")``. Importing the
package stays light (no TensorFlow); ``import resvae_keras.model`` registers ResVAE and
its layers with Keras, after which plain ``keras.models.load_model`` works too.
"""

import os

# Keep TensorFlow's C++ start-up chatter out of notebooks and CLI output; set before
# TensorFlow is imported. An explicit TF_CPP_MIN_LOG_LEVEL in the environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def __getattr__(name):
    if name == "load_model":  # imported on first use: it needs Keras and TensorFlow
        from resvae_keras.model import load_model

        return load_model
    raise AttributeError(f"module 'resvae_keras' has no attribute {name!r}")
