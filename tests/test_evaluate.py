"""Tests for resvae_keras.evaluate: reconstruction reports, loading runs and the
metrics.json of a run, on a small ResVAE trained on generated demo faces
(the ``trained`` fixture of conftest.py)."""

from __future__ import annotations

import json
import math
import urllib.request

import numpy as np
import pytest

from resvae_keras import data, evaluate, latent, record, sample_metrics, sample_quality


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty Keras cache in the home folder and no network: any download attempt fails
    the test."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def no_network(*args, **kwargs):
        raise AssertionError("evaluate reached for the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


# -- with a trained model ------------------------------------------------------------------


def test_reconstruction_report_rows_and_attribute_breakdown(trained):
    _, model, cache = trained
    images, attributes = cache.images_of("test")[:40], cache.attributes_of("test").iloc[:40]
    per_image, summary, breakdown = evaluate.reconstruction_report(model, images, attributes)
    assert list(per_image.index) == list(attributes.index)
    for column in ("mse", "psnr", "ssim", "ms_ssim", "neg_elbo", "kl", "bits_per_dim"):
        assert per_image[column].notna().all(), column
    # the evaluation ELBO is the model's own (ResVAE.elbo_terms), with the same seeded draw
    same_path = model.elbo(images.astype(np.float32) / 255.0, seed=0)
    np.testing.assert_allclose(per_image["neg_elbo"], same_path["neg_elbo"], rtol=1e-6)
    assert summary.loc["mse", "count"] == 40
    assert "Eyeglasses" in breakdown.index and breakdown.loc["Eyeglasses", "n_with"] > 0
    again, _, _ = evaluate.reconstruction_report(model, images, attributes)
    np.testing.assert_allclose(again["neg_elbo"], per_image["neg_elbo"])  # seeded ELBO


def test_evaluate_run_writes_metrics_json_offline(trained, offline, tmp_path):
    config, _, _ = trained
    result = evaluate.evaluate_run(
        config.run_path, n_test=40, n_samples=16, n_anomaly=16, memorization_queries=16,
        verbose=False, face_space=False,  # tests/test_facespace.py runs the dlib step
    )
    text = (config.run_path / "metrics.json").read_text()
    written = json.loads(text)
    assert written == result
    # the missing weights file (in the home folder) is named in every sampler's reason as
    # ~/..., never by this machine's absolute path
    assert "~/keras/models/" in text and str(tmp_path) not in text
    expected = {"version", "profile", "demo", "model", "data", "settings", "reconstruction",
                "per_attribute", "latent", "samples", "sample_references", "face_space",
                "anomaly", "timings_s"}
    assert expected <= set(written)
    assert written["demo"] is True and written["profile"] == "demo"
    assert "face_space=False" in written["face_space"]["skipped"]
    rec = written["reconstruction"]
    assert rec["n_images"] == 40 and rec["bits_per_dim"]["mean"] > 0
    assert {"mean", "std"} == set(rec["psnr"])
    assert set(written["samples"]) == {"prior_t1", "prior_t0.7", "two_stage_t1", "gmm_t1"}
    assert written["samples"]["two_stage_t1"]["sampler"] == "two_stage"
    assert (config.run_path / "two_stage.keras").exists()  # fitted by train, loaded here
    for report in written["samples"].values():
        realism = report["realism"]
        assert report["n_images"] == 16 and realism["swd"]["swd_mean"] > 0
        assert realism["available"] is False and "InceptionV3" in realism["reason"]
        assert "fid" not in realism
        assert report["memorization"]["n_queries"] == 16
    flat = record.run_record(written)
    assert flat["fid_available"] is False and math.isnan(flat["fid_prior_t1"])
    references = written["sample_references"]
    assert set(references) == set(sample_quality.REFERENCE_SETS) == {"real_test", "reconstructions"}
    rows = {**written["samples"], **references}
    for key, row in rows.items():
        swd = row["realism"]["swd"]
        for res in (16, 32, 64):
            assert flat[f"swd_{res}_{key}"] == swd[f"swd_{res}"]
        assert flat[f"swd_mean_{key}"] == swd["swd_mean"]
        assert 0.0 <= flat[f"face_rate_{key}"] <= 1.0
    # the floor: real test faces against real training faces, far below uniform noise
    real_test = references["real_test"]
    assert real_test["n_images"] == 40 and real_test["realism"]["face_rate"] >= 0.4
    noise = np.random.default_rng(0).random((40, 64, 64, 3), dtype=np.float32)
    test_faces = data.load_cache(config, progress=False).images_of("test")[:40]
    against_noise = sample_metrics.sliced_wasserstein(test_faces, noise)
    for level in ("swd_16", "swd_32", "swd_64"):
        assert real_test["realism"]["swd"][level] < 0.5 * against_noise[level], level
    table = evaluate.sample_table(rows.values())
    assert list(table.columns[:6]) == ["n_images", "face_rate", "swd_16", "swd_32", "swd_64",
                                       "swd_mean"]
    assert table.loc[("real_test", np.nan), "ms_ssim_between_samples"] == pytest.approx(
        written["samples"]["prior_t1"]["diversity"]["ms_ssim_real"])
    assert set(written["anomaly"]["results"]) == {"noise", "occlusion", "rotation", "non_face"}
    assert 0 < written["latent"]["active_units"] <= config.latent_dim


def test_evaluate_run_small_without_anomaly_at_the_last_checkpoint(trained, offline, tmp_path):
    config, _, _ = trained
    out = tmp_path / "small.json"
    result = evaluate.evaluate_run(
        config.run_path, n_samples=16, n_test=24, anomaly=False, checkpoint="last.keras",
        sampler="prior", memorization_queries=8, out=out, verbose=False, face_space=False,
    )
    assert json.loads(out.read_text()) == result
    assert result["reconstruction"]["n_images"] == result["settings"]["n_test"] == 24
    assert result["anomaly"] == {"skipped": True, "results": {}}
    assert 0 < result["reconstruction"]["sharpness_ratio"] < 2
    assert record.run_record(result)["sharpness_ratio"] == result["reconstruction"]["sharpness_ratio"]
    training = result["training"]
    assert training["epochs"] == config.epochs and training["steps"] == config.epochs * 40
    assert training["final_val_neg_elbo"] is not None
    assert result["model"]["architecture"] == "resnet"
    memorization = result["samples"]["prior_t1"]["memorization"]
    assert memorization["identity"]["available"] is False  # demo faces have no person ids
    assert memorization["median_ratio_to_same_identity"] is None


def test_evaluate_folder_scores_every_image_of_another_folder(trained, tmp_path):
    config, _, _ = trained
    other = data.write_demo_dataset(tmp_path / "other_faces", n=12, seed=5)
    path = evaluate.evaluate_folder(config.run_path, other, cache_dir=tmp_path / "cache")
    assert path.name == "metrics_other_faces.json"
    written = json.loads(path.read_text())
    assert written["data"]["n_images"] == written["reconstruction"]["n_images"] == 12
    assert written["reconstruction"]["psnr"]["mean"] > 0


def test_write_samples_writes_pngs(trained, tmp_path):
    from PIL import Image

    config, _, _ = trained
    paths = evaluate.write_samples(config.run_path, n=3, out_dir=tmp_path / "png", seed=1)
    assert [p.name for p in paths] == ["sample_00000.png", "sample_00001.png", "sample_00002.png"]
    with Image.open(paths[0]) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
    two_stage = evaluate.write_samples(config.run_path, n=2, out_dir=tmp_path / "two",
                                       sampler="two_stage", seed=1)
    with Image.open(two_stage[0]) as image, Image.open(paths[0]) as prior:
        assert np.asarray(image).shape == (64, 64, 3)
        assert not np.array_equal(np.asarray(image), np.asarray(prior))


def test_missing_run_dir_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="train it first"):
        evaluate.load_run(tmp_path / "nothing")


@pytest.fixture
def untrained_run(tmp_path):
    """A run dir holding ``config.json`` and the ``model.keras`` of an untrained tiny ResVAE."""
    import keras

    from resvae_keras.config import Config
    from resvae_keras.model import build_model

    config = Config(image_size=16, widths=(8,), blocks_per_stage=0, latent_dim=2,
                    run_dir=str(tmp_path / "run"))
    config.run_path.mkdir()
    config.save(config.run_path / "config.json")
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.Adam())
    return config.run_path, model


def test_a_model_with_nan_weights_is_refused_not_sampled(untrained_run, tmp_path):
    from resvae_keras.model import ModelFileError

    run, model = untrained_run
    model.log_sigma.assign(float("nan"))
    model.save(run / "model.keras")
    with pytest.raises(ModelFileError, match="NaN or infinite weights .*diverged"):
        evaluate.write_samples(run, n=2, out_dir=tmp_path / "png")
    assert not (tmp_path / "png").exists()  # no black PNGs
    with pytest.raises(ModelFileError, match="diverged"):
        evaluate.evaluate_run(run, verbose=False)


def test_a_truncated_model_file_is_called_damaged(untrained_run):
    from resvae_keras.model import ModelFileError

    run, model = untrained_run
    model.save(run / "model.keras")
    content = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(content[: len(content) // 2])
    with pytest.raises(ModelFileError, match="model.keras is damaged: not a complete .keras"):
        evaluate.load_run(run)


def test_a_nan_temperature_writes_nothing(untrained_run, tmp_path):
    run, model = untrained_run
    model.save(run / "model.keras")
    for bad in ("nan", "inf"):
        with pytest.raises(ValueError, match="--temperature"):
            evaluate.write_samples(run, n=2, out_dir=tmp_path / "png", temperature=float(bad))
    assert not (tmp_path / "png").exists()
    with pytest.raises(ValueError, match=r"seed=-1 \(--seed\)"):
        evaluate.write_samples(run, n=2, out_dir=tmp_path / "png", seed=-1)


def test_sample_streams_to_disk_in_batches(untrained_run, tmp_path, monkeypatch):
    run, model = untrained_run
    model.save(run / "model.keras")
    asked = []
    sample_images = latent.sample_images
    monkeypatch.setattr(latent, "sample_images",
                        lambda *args, n, **kwargs: asked.append(n) or sample_images(
                            *args, n=n, **kwargs))
    paths = evaluate.write_samples(run, n=5, out_dir=tmp_path / "png", batch_size=2)
    assert asked == [2, 2, 1] and [p.name for p in paths][-1] == "sample_00004.png"
    assert len(list((tmp_path / "png").iterdir())) == 5
    with pytest.raises(OSError, match=r"1,000,000,000 samples \(--n\) needs"):
        evaluate.write_samples(run, n=10**9, out_dir=tmp_path / "many")


def test_an_edited_image_size_in_config_json_is_named(untrained_run):
    run, model = untrained_run
    model.save(run / "model.keras")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "image_size": 32}))
    with pytest.raises(ValueError, match=r"image_size 32 in config.json, 16 in model.keras.*"
                                         r"edited after training"):
        evaluate.load_run(run)


def test_evaluate_refuses_a_split_other_than_the_runs(demo_root, demo_cache, tmp_path):
    from resvae_keras.config import Config
    from resvae_keras.model import build_model
    from resvae_keras.run_dir import SPLIT_FILE, RunDirError

    config = Config(profile="celeba-subset", data_dir=str(demo_root), image_size=64,
                    cache_dir=str(tmp_path / "cache"), max_images=50, widths=(8,),
                    blocks_per_stage=0, latent_dim=2, run_dir=str(tmp_path / "run"))
    config.run_path.mkdir()
    config.save(config.run_path / "config.json")
    build_model(config).save(config.run_path / "model.keras")
    (config.run_path / SPLIT_FILE).write_text(json.dumps(data.split_record(demo_cache)))
    with pytest.raises(RunDirError, match=r"the data changed since training: .*max_images None "
                                          r"then, 50 now.*To evaluate it, restore"):
        evaluate.evaluate_run(config.run_path, verbose=False)


def test_an_autoencoder_run_is_scored_on_its_reconstructions_only(trained, offline, tmp_path):
    """The deterministic autoencoder is the reconstruction reference: the same reconstruction
    numbers and PCA baselines, and no samples, posterior statistics or anomaly scores."""
    import keras

    from resvae_keras.model import build_model

    config, _, _ = trained
    ae = config.replace(kind="ae", run_dir=str(tmp_path / "ae"))
    ae.run_path.mkdir()
    ae.save(ae.run_path / "config.json")
    model = build_model(ae)
    model.compile(optimizer=keras.optimizers.Adam())
    model.save(ae.run_path / "model.keras")
    result = evaluate.evaluate_run(ae.run_path, n_test=24, verbose=False)
    assert result["model"]["kind"] == "ae"
    assert result["reconstruction"]["n_images"] == 24
    assert np.isfinite(result["reconstruction"]["psnr"]["mean"])
    assert {b["n_components"] for b in result["baselines"].values()} == {
        config.latent_dim // 2, config.latent_dim, 2 * config.latent_dim}
    assert result["samples"] == {} and result["settings"]["samplers"] == []
    assert "skipped" in result["latent"] and "skipped" in result["face_space"]
    assert result["anomaly"] == {"skipped": True, "results": {}}
