import numpy as np
import pytest

from resvae_keras import baselines


def _low_rank_images(n, rank, seed=0):
    """n images 8x8x3 in [0.2, 0.8] that lie in a rank-``rank`` affine subspace."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((rank, 8 * 8 * 3))
    codes = rng.uniform(-1, 1, (n, rank))
    flat = 0.5 + 0.3 * (codes @ basis) / np.abs(codes @ basis).max()
    return flat.reshape(n, 8, 8, 3).astype(np.float32)


def test_pca_with_the_data_rank_reconstructs_exactly_and_fewer_components_do_worse():
    images = _low_rank_images(200, rank=6)
    train, test = images[:150], images[150:]
    exact = baselines.pca_baseline(train, test, 6)
    short = baselines.pca_baseline(train, test, 2)
    assert exact["psnr"]["mean"] > 60  # up to float32 rounding
    assert exact["explained_variance"] == pytest.approx(1.0, abs=1e-4)
    assert short["psnr"]["mean"] < exact["psnr"]["mean"] - 10
    assert np.isfinite(short["ppca_bits_per_dim"]) and short["ppca_sigma"] > 0


def test_pca_baselines_at_half_the_latent_size_it_and_twice_it():
    images = _low_rank_images(60, rank=10)
    result = baselines.pca_baselines(images[:40], images[40:], latent_dim=4)
    assert sorted(result) == ["pca_2", "pca_4", "pca_8"]
    psnr = [result[k]["psnr"]["mean"] for k in ("pca_2", "pca_4", "pca_8")]
    assert psnr[0] < psnr[1] < psnr[2]
    with pytest.raises(ValueError, match="n_components=40"):
        baselines.pca_baseline(images[:40], images[40:], 40)
