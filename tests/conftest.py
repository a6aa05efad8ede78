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
