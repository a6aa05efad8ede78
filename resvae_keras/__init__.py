"""resvae_keras: a residual Variational Autoencoder for 64x64 CelebA faces (Keras 3, TensorFlow).

Importing the package stays light (no TensorFlow); ``resvae_keras.load_model(path)`` loads
a saved run's model.
"""

import os

# keep TensorFlow's C++ start-up chatter out of notebooks and CLI output
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def __getattr__(name):
    if name == "load_model":  # imported on first use: it needs Keras and TensorFlow
        from resvae_keras.model import load_model

        return load_model
    raise AttributeError(f"module 'resvae_keras' has no attribute {name!r}")
