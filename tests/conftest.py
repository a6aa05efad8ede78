"""Shared fixtures: a small generated demo dataset, its cache, and the optional real data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # figures render without a display

DEMO_IMAGES = 60


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """60 synthetic faces (seed 0) in the official CelebA layout; shared, do not modify."""
    from resvae_keras import data

    return data.write_demo_dataset(
        tmp_path_factory.mktemp("demo") / "celeba", n=DEMO_IMAGES, seed=0
    )


@pytest.fixture(scope="session")
def demo_cache(demo_root, tmp_path_factory):
    """The 64x64 cache of ``demo_root``; shared, do not modify."""
    from resvae_keras import data

    return data.prepare(
        demo_root, size=64, cache_dir=tmp_path_factory.mktemp("cache"), progress=False
    )


@pytest.fixture
def demo_copy(demo_root, tmp_path) -> Path:
    """A private copy of ``demo_root`` that a test may damage."""
    return Path(shutil.copytree(demo_root, tmp_path / "celeba"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real CelebA samples beside the checkout (``RESVAE_SHARED_DATA`` overrides); skips when absent."""
    path = Path(
        os.environ.get("RESVAE_SHARED_DATA")
        or Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    if not path.is_dir():
        pytest.skip(f"no shared CelebA samples at {path}")
    return path


# A setting where the Eyeglasses vector clearly draws glasses (on 99 % of the faces, none
# without it) and noise scores an AUROC of 0.96: 800 demo faces (640 for training), the
# demo architecture without normalization, which learns the faces in fewer epochs (with
# group normalization 5 epochs reached 42 % glasses, 4 epochs 6 %), batch 16 for enough
# optimizer steps. The second stage only has to exist and sample: 1 epoch.
TINY_RUN = dict(demo_images=800, epochs=4, batch_size=16, learning_rate=2e-3, norm="none",
                grid_every=1000, two_stage_epochs=1)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """``(config, model, cache)`` of a ResVAE trained for a few seconds on demo faces."""
    from resvae_keras import data
    from resvae_keras.config import get_profile
    from resvae_keras.train import train

    root = tmp_path_factory.mktemp("tiny_run")
    config = get_profile(
        "demo", data_dir=str(root / "demo"), cache_dir=str(root / "cache"),
        run_dir=str(root / "run"), **TINY_RUN,
    )
    model, _ = train(config, verbose=0)
    return config, model, data.load_cache(config, progress=False)


@pytest.fixture
def pixel_means():
    """A cheap feature extractor for the realism and speed code: per-channel means and
    stds of each image (not a realism measure), ``name`` "pixel_moments"."""
    import numpy as np

    class PixelMeans:
        name = "pixel_moments"
        batch_size = 8

        def __call__(self, images):
            images = np.asarray(images, np.float64)
            return np.concatenate([images.mean(axis=(1, 2)), images.std(axis=(1, 2))], axis=1)

    return PixelMeans()


@pytest.fixture
def smooth_images():
    """``smooth_images(n, sigma, seed, size=64)``: random images blurred by ``sigma`` pixels,
    rescaled to [0, 1], float32 of shape (n, size, size, 3)."""
    import numpy as np
    from scipy import ndimage

    def make(n, sigma, seed, size=64):
        images = np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)
        images = ndimage.gaussian_filter(images, (0, sigma, sigma, 0))
        low, high = images.min(), images.max()
        return ((images - low) / (high - low)).astype(np.float32)

    return make


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in tmp_path and a network that always times out; the list of
    attempted downloads."""
    import urllib.error
    import urllib.request

    calls = []

    def urlopen(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError(TimeoutError("timed out"))

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls
