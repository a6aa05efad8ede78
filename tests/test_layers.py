import keras
import numpy as np
import pytest

from resvae_keras.layers import DepthToSpace, ResidualBlock, Sampling, Upsample


def _roundtrip(layer, x):
    clone = layer.__class__.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    return clone


@pytest.mark.parametrize("norm", ["group", "batch", "none"])
@pytest.mark.parametrize("cin,cout", [(8, 8), (8, 16)])
def test_residual_block_shape_and_config_roundtrip(norm, cin, cout):
    x = np.random.default_rng(0).normal(size=(2, 8, 8, cin)).astype("float32")
    block = ResidualBlock(cout, norm=norm)
    y = block(x)
    assert tuple(y.shape) == (2, 8, 8, cout)
    assert (block.projection is not None) == (cin != cout)
    clone = _roundtrip(block, x)
    assert clone.get_config() == block.get_config()
    np.testing.assert_allclose(clone(x), y, atol=1e-5)


def test_residual_and_plain_differ_only_by_the_shortcut():
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 8)).astype("float32")
    res = ResidualBlock(16, residual=True)
    plain = ResidualBlock(16, residual=False)
    res.build(x.shape)
    plain.build(x.shape)
    # Same layers except the 1x1 projection of the shortcut.
    res_weights = {w.path.split("/", 1)[1]: w for w in res.weights}
    plain_weights = {w.path.split("/", 1)[1]: w for w in plain.weights}
    assert set(res_weights) - set(plain_weights) == {
        "projection/kernel", "projection/bias"
    }
    for key, w in plain_weights.items():
        res_weights[key].assign(w)
    shortcut = res.projection(x)
    np.testing.assert_allclose(res(x), plain(x) + shortcut, atol=1e-5)


def test_residual_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="filters=0"):
        ResidualBlock(0)
    with pytest.raises(ValueError, match="norm='layer'"):
        ResidualBlock(8, norm="layer")
    with pytest.raises(ValueError, match="kernel_size=2"):
        ResidualBlock(8, kernel_size=2)


def test_upsample_and_depth_to_space_shapes():
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 12)).astype("float32")
    assert tuple(Upsample(5)(x).shape) == (2, 8, 8, 5)
    y = DepthToSpace(2)(x)
    assert tuple(y.shape) == (2, 8, 8, 3)
    # Each 2x2 output block is made of the 4 channel groups of one input pixel.
    np.testing.assert_allclose(y[0, 0:2, 0:2, :].numpy().reshape(-1), x[0, 0, 0, :])
    assert DepthToSpace.from_config(DepthToSpace(2).get_config()).block_size == 2


def test_sampling_statistics_and_seed():
    z_mean = np.full((20000, 2), [1.0, -2.0], "float32")
    z_log_var = np.full((20000, 2), [np.log(4.0), 0.0], "float32")
    z = keras.ops.convert_to_numpy(Sampling(seed=3)([z_mean, z_log_var]))
    np.testing.assert_allclose(z.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(z.std(0), [2.0, 1.0], atol=0.05)
    again = keras.ops.convert_to_numpy(Sampling(seed=3)([z_mean, z_log_var]))
    np.testing.assert_array_equal(z, again)
    assert Sampling.from_config(Sampling(seed=3).get_config()).seed == 3
