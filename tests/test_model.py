import keras
import numpy as np
import pytest

from resvae_keras.model import (
    CONFIG_ARGUMENTS,
    ResVAE,
    build_conv_decoder,
    build_conv_encoder,
    build_decoder,
    build_encoder,
    dequantized,
    kl_divergence,
)

TINY = dict(image_size=16, widths=(8, 16), blocks_per_stage=1, latent_dim=4)


def _images(n=8, size=16, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype("float32")


def _tiny_model(**kwargs):
    model = ResVAE(**{**TINY, **kwargs})
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.optimizer.build(model.trainable_variables)  # one trace of train_step, not two
    return model


@pytest.mark.parametrize("image_size,widths", [(32, (8, 16)), (64, (8, 16, 32)), (128, (8, 8, 16))])
def test_encoder_decoder_shapes(image_size, widths):
    enc = build_encoder(image_size, widths, 1, latent_dim=6)
    dec = build_decoder(image_size, widths, 1, latent_dim=6)
    z_mean, z_log_var = enc(np.zeros((2, image_size, image_size, 3), "float32"))
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (2, 6)
    assert tuple(dec(z_mean).shape) == (2, image_size, image_size, 3)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(image_size=60), "image_size=60"),
        (dict(widths=()), "widths=()"),
        (dict(beta=-1.0), "beta=-1.0"),
        (dict(latent_dim=0), "latent_dim=0"),
        (dict(likelihood="laplace"), "likelihood='laplace'"),
        (dict(kind="gan"), "kind='gan'"),
        (dict(sigma_min=-0.1), "sigma_min=-0.1"),
        (dict(sigma_min=0.1, likelihood="gaussian"), "sigma_min=0.1 (--sigma-min): expected 0"),
        (dict(architecture="vgg"), "architecture='vgg'"),
        (dict(architecture="conv", image_size=40), "image_size=40"),
    ],
)
def test_bad_configs_raise_value_error_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        ResVAE(**{**dict(image_size=64, widths=(8, 16, 32), latent_dim=4), **kwargs})


def test_resvae_and_config_share_one_default_architecture():
    import inspect

    from resvae_keras.config import Config

    defaults = Config()
    for name, parameter in inspect.signature(ResVAE.__init__).parameters.items():
        if hasattr(defaults, name):
            assert parameter.default == getattr(defaults, name), name
    # the builders take the architecture from ResVAE: no second set of defaults
    for builder in (build_encoder, build_decoder, build_conv_encoder, build_conv_decoder):
        assert inspect.signature(builder).parameters["widths"].default is inspect.Parameter.empty
    resvae_arguments = inspect.signature(ResVAE.__init__).parameters
    assert set(CONFIG_ARGUMENTS) <= set(resvae_arguments) and all(
        hasattr(defaults, name) for name in CONFIG_ARGUMENTS
    )


def test_the_head_uses_the_blocks_normalization():
    model = ResVAE(image_size=16, widths=(8,), blocks_per_stage=1, latent_dim=4)
    head, block = model.encoder.get_layer("head_norm"), model.encoder.get_layer("stage0_block0")
    assert type(head) is type(block.norm1) and head.epsilon == block.norm1.epsilon


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(1, 3)).astype("float32")
    log_var = rng.normal(scale=0.5, size=(1, 3)).astype("float32")
    analytic = float(kl_divergence(mu, log_var)[0])
    z = mu + np.exp(0.5 * log_var) * rng.standard_normal((400_000, 3))
    log_q = -0.5 * (((z - mu) ** 2) / np.exp(log_var) + log_var + np.log(2 * np.pi)).sum(1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(1)
    assert analytic == pytest.approx(np.mean(log_q - log_p), abs=0.01)


@pytest.mark.parametrize("likelihood", ["gaussian_learned", "gaussian", "bernoulli"])
def test_train_step_lowers_the_loss_on_a_tiny_batch(likelihood):
    keras.utils.set_random_seed(0)
    model = _tiny_model(likelihood=likelihood, widths=(8,), blocks_per_stage=0)  # the likelihood
    x = _images()

    def loss():  # the loss at beta = 1 with one fixed posterior draw, without tracing test_step
        return model.elbo(x, seed=0, dequantize=False)["neg_elbo"].mean()

    before = loss()
    history = model.fit(x, epochs=10, batch_size=8, verbose=0)
    assert set(history.history) >= {"loss", "reconstruction_loss", "kl_loss"}
    assert loss() < before - 2.0  # nats per image


def test_elbo_is_per_image_seeded_and_independent_of_the_batch_size():
    model = _tiny_model()
    x = _images(5)
    out = model.elbo(x, batch_size=5, seed=3)
    assert {k: v.shape for k, v in out.items()} == {k: (5,) for k in ("neg_elbo", "reconstruction", "kl")}
    assert np.all(out["kl"] >= 0)
    again = model.elbo(x, batch_size=5, seed=3)
    np.testing.assert_array_equal(out["neg_elbo"], again["neg_elbo"])
    other = model.elbo(x, batch_size=5, seed=4)
    assert not np.allclose(out["reconstruction"], other["reconstruction"])


def test_dequantized_draws_uniformly_inside_each_8_bit_bin():
    x8 = np.repeat(np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1), 40, axis=0)
    y = keras.ops.convert_to_numpy(dequantized(x8 / 255.0, seed=0))
    offset = y * 255.0 - x8  # in 8-bit steps
    assert offset.min() >= -0.5 - 1e-4 and offset.max() <= 0.5 + 1e-4
    assert abs(offset.mean()) < 0.01 and offset.std() == pytest.approx(np.sqrt(1 / 12), rel=0.02)
    np.testing.assert_array_equal(y, keras.ops.convert_to_numpy(dequantized(x8 / 255.0, seed=0)))
    assert not np.array_equal(y, keras.ops.convert_to_numpy(dequantized(x8 / 255.0, seed=1)))


def test_test_step_reports_the_mean_of_elbo_terms():
    # Keras' val_loss and the evaluation ELBO come from the same elbo_terms: with beta = 1
    # and the same posterior draw, test_step's loss is the mean negative ELBO of model.elbo.
    model = _tiny_model(seed=7)
    x = _images(6)
    logs = model.test_step(keras.ops.convert_to_tensor(x))  # the layer's first draw, seed 7
    out = model.elbo(x, batch_size=6, seed=7, dequantize=False)  # a fresh generator, same seed
    assert float(logs["loss"]) == pytest.approx(float(out["neg_elbo"].mean()), rel=1e-6)
    assert float(logs["kl_loss"]) == pytest.approx(float(out["kl"].mean()), rel=1e-6)


def test_gaussian_fixed_variance_is_sse_plus_constant():
    model = _tiny_model(likelihood="gaussian")
    x = _images(2)
    logits = np.zeros_like(x)  # mean 0.5 everywhere
    nll = keras.ops.convert_to_numpy(model.reconstruction_nll(x, logits))
    sse = ((x - 0.5) ** 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(nll, sse + 0.5 * x[0].size * np.log(np.pi), rtol=1e-5)


def test_learned_sigma_gaussian_nll_matches_the_closed_form():
    model = _tiny_model(likelihood="gaussian_learned")
    sigma = 0.2
    model.log_sigma.assign(np.log(sigma))
    x = np.full((1, 16, 16, 3), 0.25, "float32")
    x[0, :8] = 0.75  # half the pixels 0.25 above the mean, half 0.25 below
    logits = np.zeros_like(x)  # mean 0.5 everywhere
    nll = float(keras.ops.convert_to_numpy(model.reconstruction_nll(x, logits))[0])
    # D pixels, each -log N(x; 0.5, sigma^2) = (0.25 / sigma)^2 / 2 + log(sigma) + log(2 pi) / 2
    per_pixel = 0.5 * (0.25 / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)
    assert nll == pytest.approx(x.size * per_pixel, rel=1e-5)
    assert model.decoder_sigma == pytest.approx(sigma)


def test_bernoulli_nll_matches_the_closed_form():
    model = _tiny_model(likelihood="bernoulli")
    x = np.zeros((1, 16, 16, 3), "float32")
    x[0, :4] = 1.0  # a quarter of the values are 1, the rest 0
    logits = np.full_like(x, np.log(3.0))  # p = sigmoid(log 3) = 3/4 everywhere
    nll = float(keras.ops.convert_to_numpy(model.reconstruction_nll(x, logits))[0])
    # -log p for the ones, -log(1 - p) for the zeros
    expected = x.size * (0.25 * -np.log(0.75) + 0.75 * -np.log(0.25))
    assert nll == pytest.approx(expected, rel=1e-5)
    # A continuous x in (0, 1) is scored by the cross-entropy, not a density.
    half = np.full_like(x, 0.5)
    nll_half = float(keras.ops.convert_to_numpy(model.reconstruction_nll(half, logits))[0])
    assert nll_half == pytest.approx(x.size * -(0.5 * np.log(0.75) + 0.5 * np.log(0.25)), rel=1e-5)


def test_autoencoder_has_no_kl_no_noise_and_no_elbo():
    model = _tiny_model(kind="ae")
    x = _images(4)
    out = model.elbo(x)
    np.testing.assert_array_equal(out["kl"], 0.0)
    assert np.isnan(out["neg_elbo"]).all()  # no prior, so no bound to report
    assert np.isfinite(out["reconstruction"]).all()
    np.testing.assert_allclose(model(x, training=True), model(x, training=True), atol=1e-6)


def test_mixed_bfloat16_keeps_the_latent_draw_and_the_loss_in_float32():
    from resvae_keras.train import precision

    with precision("mixed_bfloat16"):
        model = _tiny_model()
        terms = model.elbo_terms(_images(2))
        z = model.sampling([terms["z_mean"], terms["z_log_var"]])
        assert model.encoder.get_layer("stem").compute_dtype == "bfloat16"
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored
    assert z.dtype == "float32"
    for key in ("z_mean", "z_log_var", "reconstruction", "kl", "loss"):
        assert terms[key].dtype == "float32", key


def test_sample_and_reconstruct_shapes_and_range():
    model = _tiny_model()
    samples = model.sample(3, temperature=0.5, seed=1)
    assert samples.shape == (3, 16, 16, 3) and samples.min() >= 0 and samples.max() <= 1
    np.testing.assert_array_equal(samples, model.sample(3, temperature=0.5, seed=1))
    assert model.reconstruct(_images(3)).shape == (3, 16, 16, 3)


def test_save_and_load_gives_identical_outputs(tmp_path):
    model = _tiny_model(residual=False, widths=(8,), likelihood="gaussian_learned")
    x = _images(4)
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "x.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    assert isinstance(loaded, ResVAE) and loaded.residual is False
    np.testing.assert_array_equal(loaded.reconstruct(x), model.reconstruct(x))
    np.testing.assert_array_equal(loaded.sample(2, seed=5), model.sample(2, seed=5))
    assert loaded.decoder_sigma == pytest.approx(model.decoder_sigma)
    # The optimizer state travels with the file: training resumes where it stopped.
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 1


def test_a_saved_model_loads_in_a_fresh_process_and_the_package_stays_light(tmp_path):
    import subprocess
    import sys

    _tiny_model(widths=(8,), blocks_per_stage=0).save(tmp_path / "model.keras")  # any ResVAE
    script = (
        "import sys, resvae_keras\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "print(type(resvae_keras.load_model(sys.argv[1])).__name__)\n"
        "import keras, resvae_keras.model\n"  # registers ResVAE and its layers
        "print(type(keras.models.load_model(sys.argv[1])).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ResVAE", "ResVAE"]


def test_sigma_floor_holds_the_decoder_sigma_and_the_nll():
    floored = _tiny_model(sigma_min=0.2)
    free = _tiny_model()
    for model in (floored, free):
        model.log_sigma.assign(np.log(0.05))  # below the floor
    assert floored.decoder_sigma == pytest.approx(0.2)
    assert free.decoder_sigma == pytest.approx(0.05)
    x = _images(2)
    logits = np.zeros((2, 16, 16, 3), "float32")  # mean image 0.5 everywhere
    sse = ((x - 0.5) ** 2).sum(axis=(1, 2, 3))
    d = 16 * 16 * 3
    expected = sse / (2 * 0.2**2) + d * np.log(0.2 * np.sqrt(2 * np.pi))
    got = keras.ops.convert_to_numpy(floored.reconstruction_nll(x, logits))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_sigma_floor_survives_save_and_load(tmp_path):
    model = _tiny_model(sigma_min=0.15)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert again.sigma_min == pytest.approx(0.15)


def test_conv_architecture_is_four_strided_convolutions_and_their_mirror():
    enc = build_conv_encoder(64, (32, 64, 128), latent_dim=6)
    dec = build_conv_decoder(64, (32, 64, 128), latent_dim=6)
    strided = [layer for layer in enc.layers if type(layer).__name__ == "Conv2D"]
    assert [(layer.filters, layer.strides) for layer in strided] == [
        (32, (2, 2)), (64, (2, 2)), (128, (2, 2)), (256, (2, 2))]
    transposed = [layer for layer in dec.layers if type(layer).__name__ == "Conv2DTranspose"]
    assert [layer.filters for layer in transposed] == [128, 64, 32, 32]
    kinds = {type(layer).__name__ for layer in [*enc.layers, *dec.layers]}
    assert {"BatchNormalization", "LeakyReLU"} <= kinds and "ResidualBlock" not in kinds
    z_mean, z_log_var = enc(np.zeros((2, 64, 64, 3), "float32"))
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (2, 6)
    assert tuple(dec(z_mean).shape) == (2, 64, 64, 3)


def test_conv_architecture_trains_and_round_trips_through_save_and_load(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_model(architecture="conv")
    x = _images(4)
    before = [w.numpy().copy() for w in model.encoder.trainable_weights]
    model.fit(x, epochs=1, batch_size=4, verbose=0)
    after = model.encoder.trainable_weights
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after, strict=True))
    model.save(tmp_path / "conv.keras")
    loaded = keras.models.load_model(tmp_path / "conv.keras", safe_mode=True)
    assert loaded.architecture == "conv" and loaded.encoder.get_layer("conv0")
    np.testing.assert_allclose(loaded.reconstruct(x), model.reconstruct(x), atol=1e-6)
    assert int(loaded.optimizer.iterations) == 1


def test_effective_beta_is_the_weight_of_the_kl_against_the_sse():
    model = _tiny_model(beta=0.5, sigma_min=0.2)
    model.log_sigma.assign(np.log(0.05))  # held at the floor
    assert model.effective_beta == pytest.approx(2 * 0.2**2 * 0.5)
    # 2 sigma^2 (-log p(x|z)) = SSE + a constant that does not depend on x: the MSE-VAE loss.
    x = _images(3)
    logits = np.random.default_rng(1).normal(size=x.shape).astype("float32")
    nll = keras.ops.convert_to_numpy(model.reconstruction_nll(x, logits))
    sse = ((x - 1 / (1 + np.exp(-logits))) ** 2).sum(axis=(1, 2, 3))
    offset = 2 * model.decoder_sigma**2 * nll - sse
    np.testing.assert_allclose(offset, offset[0], rtol=1e-4)
    assert _tiny_model(likelihood="gaussian", beta=3.0).effective_beta == pytest.approx(3.0)
    assert _tiny_model(likelihood="bernoulli").effective_beta is None


def test_summary_rows_list_every_layer_and_add_up_to_the_parameter_counts():
    model = ResVAE(**TINY)
    rows = model.summary_rows()
    layers = [*model.encoder.layers, *model.decoder.layers]
    assert [r["name"] for r in rows] == [layer.name for layer in layers]
    counts = model.parameter_counts()
    for part in ("encoder", "decoder"):
        assert sum(r["params"] for r in rows if r["part"] == part) == counts[part]
    assert counts["total"] == counts["encoder"] + counts["decoder"] + 2  # log sigma and beta
    assert counts["trainable"] == counts["total"] - 1  # beta is not trained
    first_conv = next(r for r in rows if r["kind"] == "Conv2D")
    assert (first_conv["kernel"], first_conv["strides"]) == (3, 2)
    assert first_conv["output_shape"] == (8, 8, 8)
    assert all(r["kernel"] is None for r in rows if r["kind"] != "Conv2D")


def test_a_model_file_with_a_crc_error_is_called_damaged(tmp_path):
    import zipfile

    from resvae_keras.model import DamagedModelFileError, load_model

    path = tmp_path / "model.keras"
    _tiny_model(widths=(8,)).save(path)
    with zipfile.ZipFile(path) as archive:  # flip one byte inside the weights' data
        info = archive.getinfo("model.weights.h5")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    content = bytearray(path.read_bytes())
    content[offset] ^= 0xFF
    path.write_bytes(bytes(content))
    assert zipfile.is_zipfile(path)  # the directory is intact: only the data is not
    with pytest.raises(DamagedModelFileError, match="model.keras is damaged"):
        load_model(path)
