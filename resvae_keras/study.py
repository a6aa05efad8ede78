"""The comparison study behind the report: residual vs. plain, autoencoder baseline,
reconstruction likelihoods and beta, all at one equal budget.

Every run uses the ``celeba-subset`` profile with ``STUDY_EPOCHS`` epochs, the same data,
widths, depth and latent size; runs differ only in what their name says. Each run trains
into ``runs/study/<name>`` and its compact results (config, history, metrics) are copied to
``report/results/study/<name>/``, which is committed and read by notebook 07.

    python -m resvae_keras study                 # every run not finished yet
    python -m resvae_keras study --only residual_s0 plain_s0
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from resvae_keras.config import Config, get_profile, project_root
from resvae_keras.data.images import as_float_images

STUDY_EPOCHS = 4
STUDY_WARMUP_STEPS = 250
SEEDS = (0, 1, 2)
BETAS = (0.25, 0.5, 1.0, 2.0, 4.0)
N_EVAL = 1000  # test images and prior samples per run

# The default-model sweep (which decoder setting makes prior samples faces without giving up
# reconstructions): every run at one equal budget, on the celeba-subset profile.
SWEEP_EPOCHS = 6
SWEEP_WARMUP_STEPS = 150  # 20 % of the budget, as in the profile (500 of 2,500 steps)


def sweep_runs() -> dict[str, dict]:
    """Sweep run name -> config overrides, in the order they are trained."""
    return {
        "sigma_free": {},  # sigma settles near 0.1 at this budget (0.075 after 20 epochs)
        "sigma_min_0.2": dict(sigma_min=0.2),
        "sigma_min_0.3": dict(sigma_min=0.3),
        "sigma_min_0.15": dict(sigma_min=0.15),
        "sigma_min_0.1": dict(sigma_min=0.1),
        "sigma_min_0.2_latent64": dict(sigma_min=0.2, latent_dim=64),
    }


def sweep_config(name: str, **extra) -> Config:
    return get_profile(
        "celeba-subset",
        epochs=SWEEP_EPOCHS,
        kl_warmup_steps=SWEEP_WARMUP_STEPS,
        run_dir=f"runs/sweep/{name}",
        **{**sweep_runs()[name], **extra},
    )


def train_sweep(only=None, verbose=2) -> None:
    """Train every sweep run (or those in ``only``) whose results are not committed yet.

    An interrupted run resumes from its last completed epoch; a finished one is skipped.
    """
    from resvae_keras.train import train

    for name in only or sweep_runs():
        if (results_dir() / "sweep" / name / "metrics.json").exists():
            print(f"{name}: results exist, skipped", flush=True)
            continue
        config = sweep_config(name)
        print(f"== sweep {name}: {config.epochs} epochs into {config.run_dir}", flush=True)
        train(config, verbose=verbose)


def study_runs() -> dict[str, dict]:
    """Run name -> config overrides, in the order they are trained."""
    runs = {"residual_s0": {}, "plain_s0": dict(residual=False)}
    runs["likelihood_gaussian_s0"] = dict(likelihood="gaussian")
    runs["likelihood_bernoulli_s0"] = dict(likelihood="bernoulli")
    for seed in SEEDS[1:]:
        runs[f"residual_s{seed}"] = dict(seed=seed)
        runs[f"plain_s{seed}"] = dict(seed=seed, residual=False)
    runs["autoencoder_s0"] = dict(kind="ae")
    for beta in BETAS:
        if beta != 1.0:  # beta = 1 is residual_s0
            runs[f"beta_{beta:g}_s0"] = dict(beta=beta)
    # bfloat16 on a CPU with AVX512-BF16: faster, but does the quality hold?
    runs["residual_bf16_s0"] = dict(mixed_precision="mixed_bfloat16")
    return runs


def study_config(name: str, **extra) -> Config:
    overrides = study_runs()[name]
    return get_profile(
        "celeba-subset",
        epochs=STUDY_EPOCHS,
        kl_warmup_steps=STUDY_WARMUP_STEPS,
        run_dir=f"runs/study/{name}",
        **{**overrides, **extra},
    )


def results_dir() -> Path:
    return project_root() / "report" / "results"


def sharpness(images) -> np.ndarray:
    """Per-image variance of the 3x3 Laplacian of the grey image (higher = sharper)."""
    grey = np.asarray(images, dtype="float64").mean(axis=-1)
    lap = (
        -4 * grey[:, 1:-1, 1:-1]
        + grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2] + grey[:, 1:-1, 2:]
    )
    return lap.reshape(len(lap), -1).var(axis=1)


def run_metrics(model, cache, history, n=N_EVAL, seed=0) -> dict:
    """Compact metrics of one run on the held-out test split (numbers only)."""
    from resvae_keras import metrics

    test = as_float_images(cache.images_of("test")[:n])
    recon = model.reconstruct(test)
    table = metrics.reconstruction_metrics(test, recon)
    elbo = model.elbo(test)
    num_dims = int(np.prod(test.shape[1:]))
    samples = model.sample(len(test), seed=seed)
    swd = metrics.sliced_wasserstein(test, samples, seed=seed)
    sharp_orig = sharpness(test)
    out = {
        "n_test_images": len(test),
        "n_samples": len(samples),
        "sampler": "prior N(0, I), temperature 1",
        "psnr": float(table["psnr"].mean()),
        "psnr_std": float(table["psnr"].std()),
        "ssim": float(table["ssim"].mean()),
        "ssim_std": float(table["ssim"].std()),
        "mse": float(table["mse"].mean()),
        "neg_elbo_nats": float(elbo["neg_elbo"].mean()),
        "neg_elbo_bits_per_dim": float(
            np.mean(metrics.bits_per_dim(elbo["neg_elbo"], num_dims))
        ),
        "reconstruction_nats": float(elbo["reconstruction"].mean()),
        "kl_nats": float(elbo["kl"].mean()),
        "recon_sharpness_ratio": float(sharpness(recon).mean() / sharp_orig.mean()),
        "sample_sharpness_ratio": float(sharpness(samples).mean() / sharp_orig.mean()),
        "sample_swd_mean_x1e3": float(swd["swd_mean"]),
        "sample_pixel_diversity": float(metrics.mean_pairwise_distance(
            samples.reshape(len(samples), -1), max_pairs=20_000, seed=seed)),
        "epochs": int(len(history)),
        "median_epoch_time_s": float(history["epoch_time_s"].median()),
        "wall_time_s": float(history["wall_time_s"].iloc[-1]),
        "best_val_loss": float(history["val_loss"].min()),
    }
    return out


def collect(config: Config, name: str, dest: Path) -> dict:
    """Evaluate a finished run and copy its compact results into ``dest``."""
    import keras

    from resvae_keras import data
    from resvae_keras.train import load_history

    run = config.run_path
    model = keras.models.load_model(run / "model.keras")
    history = load_history(run)
    values = run_metrics(model, data.load_cache(config, progress=False), history)
    values["name"] = name
    values["decoder_sigma"] = model.decoder_sigma
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "config.json", dest / "config.json")
    history.to_csv(dest / "history.csv", index=False)
    (dest / "metrics.json").write_text(json.dumps(values, indent=2) + "\n")
    return values


def run_study(only=None, verbose=2) -> None:
    """Train and collect every study run (or those in ``only``) that has no results yet."""
    from resvae_keras.train import train

    names = list(only or study_runs())
    for name in names:
        dest = results_dir() / "study" / name
        if (dest / "metrics.json").exists():
            print(f"{name}: results exist, skipped")
            continue
        config = study_config(name)
        start = time.perf_counter()
        print(f"== {name}: training {config.epochs} epochs into runs/study/{name}", flush=True)
        train(config, verbose=verbose)
        values = collect(config, name, dest)
        print(f"== {name}: done in {time.perf_counter() - start:.0f} s: "
              f"PSNR {values['psnr']:.2f} dB, SSIM {values['ssim']:.3f}, "
              f"-ELBO {values['neg_elbo_bits_per_dim']:.3f} bits/dim", flush=True)


# -- reading the committed results (notebook 07, the report) ----------------------------
ARMS = {"residual": "ResVAE (residual)", "plain": "plain VAE", "autoencoder": "autoencoder"}


def load_results(root: Path | None = None) -> dict[str, dict]:
    """``report/results/study/<name>/`` -> {name: {"metrics": dict, "history": DataFrame}}."""
    import pandas as pd

    root = Path(root or results_dir() / "study")
    out = {}
    for folder in sorted(root.glob("*/metrics.json")):
        name = folder.parent.name
        out[name] = {
            "metrics": json.loads(folder.read_text()),
            "history": pd.read_csv(folder.parent / "history.csv"),
        }
    return out


def arm_of(name: str) -> str:
    return name.split("_")[0]


ABLATION_COLUMNS = (
    "psnr", "ssim", "neg_elbo_bits_per_dim", "kl_nats", "recon_sharpness_ratio",
    "sample_swd_mean_x1e3", "sample_pixel_diversity", "median_epoch_time_s", "best_val_loss",
)


def ablation_table(results: dict[str, dict]):
    """Per-seed rows of the residual, plain and autoencoder runs (DataFrame, index = run)."""
    import pandas as pd

    rows = {
        name: {"arm": arm_of(name), "seed": r["metrics"].get("seed", int(name[-1])),
               **{c: r["metrics"][c] for c in ABLATION_COLUMNS}}
        for name, r in results.items()
        if arm_of(name) in ARMS and not name.startswith("residual_bf16")
    }
    columns = ["arm", "seed", *ABLATION_COLUMNS]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    return table.sort_values(["arm", "seed"])


def arm_summary(table):
    """Mean and sample standard deviation per arm, over seeds; ``n`` seeds per arm."""
    grouped = table.groupby("arm")[list(ABLATION_COLUMNS)]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=1).add_suffix("_std"))
    summary["n_seeds"] = table.groupby("arm").size()
    return summary


def welch_t(a, b) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value for mean(a) - mean(b)."""
    from scipy import stats

    result = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return float(result.statistic), float(result.pvalue)


def verdict(table, alpha=0.05) -> list[str]:
    """Plain-language comparison of residual vs. plain, one sentence per measure."""
    lines = []
    res, plain = table[table.arm == "residual"], table[table.arm == "plain"]
    if len(res) < 2 or len(plain) < 2:
        return ["not enough seeds per arm for a comparison yet"]
    better_high = {"psnr": True, "ssim": True, "neg_elbo_bits_per_dim": False,
                   "recon_sharpness_ratio": True, "sample_swd_mean_x1e3": False,
                   "median_epoch_time_s": False, "best_val_loss": False}
    for column, higher_is_better in better_high.items():
        t, p = welch_t(res[column], plain[column])
        diff = res[column].mean() - plain[column].mean()
        if p >= alpha:
            word = "no significant difference"
        else:
            word = "residual better" if (diff > 0) == higher_is_better else "plain better"
        lines.append(f"{column}: residual {res[column].mean():.4g} ± {res[column].std():.2g}, "
                     f"plain {plain[column].mean():.4g} ± {plain[column].std():.2g} "
                     f"(n={len(res)}/{len(plain)}, Welch t={t:.2f}, p={p:.3f}): {word}")
    return lines


def beta_table(results: dict[str, dict]):
    """Rate (KL), distortion and sample realism for each beta (beta = 1 is residual_s0)."""
    import pandas as pd

    rows = {}
    for name, r in results.items():
        if name.startswith("beta_") or name == "residual_s0":
            beta = 1.0 if name == "residual_s0" else float(name.split("_")[1])
            m = r["metrics"]
            rows[beta] = {"kl_nats": m["kl_nats"], "reconstruction_nats": m["reconstruction_nats"],
                          "mse": m["mse"], "psnr": m["psnr"],
                          "sample_swd_mean_x1e3": m["sample_swd_mean_x1e3"]}
    columns = ["kl_nats", "reconstruction_nats", "mse", "psnr", "sample_swd_mean_x1e3"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis(
        "beta").sort_index()


def likelihood_table(results: dict[str, dict]):
    """The three reconstruction likelihoods at beta = 1, seed 0."""
    import pandas as pd

    names = {"gaussian_learned": "residual_s0", "gaussian": "likelihood_gaussian_s0",
             "bernoulli": "likelihood_bernoulli_s0"}
    cols = ("psnr", "ssim", "recon_sharpness_ratio", "sample_sharpness_ratio",
            "sample_swd_mean_x1e3", "kl_nats")
    rows = {lik: {c: results[run]["metrics"][c] for c in cols}
            for lik, run in names.items() if run in results}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(cols)).rename_axis(
        "likelihood")
