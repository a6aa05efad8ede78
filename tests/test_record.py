"""record: one run's results as one flat dict, and the one summary of a training history."""

import math

import pandas as pd

from resvae_keras import record


def ms(value):
    return {"mean": value, "std": 0.1}


def test_run_record_gives_every_number_one_flat_name():
    swd = {"swd_64": 3.0, "swd_32": 2.0, "swd_16": 1.0, "swd_mean": 2.0}
    metrics = {
        "profile": "demo", "settings": {"n_test": 40, "n_samples": 16},
        "model": {"latent_dim": 8, "beta": 1.0},
        "reconstruction": {"psnr": ms(21.5), "ssim": ms(0.6), "ms_ssim": ms(0.7), "mse": ms(0.01),
                           "bits_per_dim": ms(5.9), "neg_elbo_nats": ms(7e4),
                           "kl_nats": ms(300.0), "sharpness_ratio": 0.4},
        "latent": {"active_units": 7},
        "baselines": {"pca_128": {"psnr": ms(19.0), "ssim": ms(0.5), "ppca_bits_per_dim": 6.5}},
        "samples": {"prior_t1": {"realism": {"face_rate": 0.8, "swd": swd, "available": False},
                                 "diversity": {"ms_ssim_fake": 0.2}}},
        "sample_references": {"real_test": {"realism": {"face_rate": 0.95, "swd": swd}}},
        "anomaly": {"results": {"noise": {"neg_elbo": {"auroc": 0.99}}}},
        "training": {"epochs": 4, "steps": 100, "wall_time_s": 40.0},
    }
    flat = record.run_record(metrics, {"beta": 2.0, "likelihood": "gaussian_learned"})
    assert (flat["psnr"], flat["neg_elbo_bpd"], flat["kl_nats"], flat["mse"]) == (21.5, 5.9, 300.0, 0.01)
    assert (flat["psnr_pca_128"], flat["ssim_pca_128"], flat["neg_elbo_bpd_pca_128"]) == (19.0, 0.5, 6.5)
    assert [k for k in flat if k.startswith("swd_") and k.endswith("_prior_t1")] == [
        "swd_16_prior_t1", "swd_32_prior_t1", "swd_64_prior_t1", "swd_mean_prior_t1"]
    assert (flat["face_rate_prior_t1"], flat["ms_ssim_prior_t1"]) == (0.8, 0.2)
    assert flat["face_rate_real_test"] == 0.95 and math.isnan(flat["ms_ssim_real_test"])
    assert flat["fid_available"] is False and math.isnan(flat["fid_prior_t1"])
    assert (flat["auroc_noise"], flat["active_units"], flat["steps"]) == (0.99, 7, 100)
    # the config wins over the evaluated model's block; a setting neither has is NaN
    assert flat["beta"] == 2.0 and math.isnan(flat["latent_dim"])
    assert record.run_record(metrics)["latent_dim"] == 8


def test_validation_neg_elbo_falls_back_to_its_two_terms():
    h = pd.DataFrame({"val_reconstruction_loss": [10.0, 8.0], "val_kl_loss": [1.0, 2.0]})
    assert list(record.validation_neg_elbo(h)) == [11.0, 10.0]
    assert list(record.validation_neg_elbo(h.assign(val_neg_elbo=[5.0, 4.0]))) == [5.0, 4.0]
    assert record.validation_neg_elbo(h[[]]) is None
    assert record.history_summary(h.iloc[:0]) == {"epochs": 0}


def test_history_summary_reads_the_u_shaped_kl_the_warm_up_and_the_checkpoint_epoch():
    history = pd.DataFrame({
        "epoch": range(5), "beta": [0.25, 0.5, 1.0, 1.0, 1.0],
        "val_loss": [9.0, 7.0, 5.0, 6.0, 5.5], "val_kl_loss": [40.0, 55.0, 30.0, 25.0, 28.0],
        "val_reconstruction_loss": [900.0, 800.0, 700.0, 650.0, 640.0],
        "val_neg_elbo": [940.0, 855.0, 730.0, 675.0, 668.0],
        "epoch_time_s": [10.0, 12.0, 11.0, 30.0, 11.0], "wall_time_s": [10, 22, 33, 63, 74]})
    s = record.history_summary(history, beta=1.0)
    # the epoch of model.keras: the lowest -ELBO at beta = 1, not the lowest beta-weighted
    # val_loss (epoch 3)
    assert (s["epochs"], s["best_epoch"], s["beta_epoch"]) == (5, 5, 3)
    assert (s["wall_time_s"], s["median_epoch_time_s"]) == (74.0, 11.0)
    # the peak before the lowest KL after the first epoch (epoch 4), not the first value
    assert (s["kl_first"], s["kl_peak"], s["kl_peak_epoch"], s["kl_min"], s["kl_min_epoch"],
            s["kl_last"]) == (40.0, 55.0, 2, 25.0, 4, 28.0)
    assert (s["reconstruction_first"], s["reconstruction_last"]) == (900.0, 640.0)
    assert "beta_epoch" not in record.history_summary(history, beta=2.0)  # never reached
    assert "kl_min" not in record.history_summary(history.drop(columns="val_kl_loss"))
