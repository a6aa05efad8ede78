"""resvae_keras: a residual Variational Autoencoder for 64x64 CelebA faces (Keras 3, TensorFlow).

Modules, in the order data flows through them: ``config`` (one dataclass, named
profiles), ``data`` (CelebA layouts, crop, cache, tf.data, demo faces), ``layers``
and ``model`` (ResidualBlock, Sampling, ResVAE), ``train`` (callbacks, resume,
tf.distribute), ``metrics``, ``latent``, ``evaluate`` and ``plots``.

Loading a saved run: ``resvae_keras.load_model("runs/demo/model.keras")``, or plain
``keras.models.load_model`` after ``import resvae_keras``. Importing the package stays
light (no TensorFlow): ResVAE and its layers are registered with Keras as soon as
Keras itself is imported, before or after this package.
"""

import importlib.abc
import importlib.util
import os
import sys
import warnings

# Keep TensorFlow's C++ start-up chatter out of notebooks and CLI output; set before
# TensorFlow is imported. An explicit TF_CPP_MIN_LOG_LEVEL in the environment wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"


def __getattr__(name):
    if name == "load_model":  # imported on first use: it needs Keras and TensorFlow
        from resvae_keras.model import load_model

        return load_model
    raise AttributeError(f"module 'resvae_keras' has no attribute {name!r}")


def _register():
    import resvae_keras.model  # noqa: F401  (registers ResVAE and its layers)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs ``_register`` right after the ``keras`` package is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            try:
                _register()
            except Exception as error:  # never break the import of Keras itself
                warnings.warn(f"resvae_keras could not register its Keras classes: {error!r}",
                              stacklevel=2)

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    _register()
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
