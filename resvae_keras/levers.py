"""The lever sweep that chose the ``celeba-subset`` default: short equal-budget runs, each
adding one lever to the same base, scored on the validation split (never the test split) into
``report/results/levers/levers.csv`` (``python -m resvae_keras levers``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras.config import get_profile
from resvae_keras.study import results_dir

LEVER_EPOCHS = 2
#: The base every lever starts from: the ``celeba-subset`` architecture with a learned decoder
#: sigma and no floor on it, Adam at a constant rate, the KL warm-up at 20 % of the budget.
BASE = dict(sigma_min=0.0, kl_warmup_steps=50, lr_schedule="constant", optimizer="adam",
            weight_decay=0.0, flip=False, latent_dim=128, learning_rate=1e-3)
#: Row name -> (overrides on ``BASE``, what the lever is). Trained in this order.
LEVERS = {
    "base": ({}, "learned sigma, no floor; Adam 1e-3 constant; latent 128"),
    "latent_256": (dict(latent_dim=256), "latent size 256"),
    "cosine": (dict(lr_schedule="cosine", lr_warmup_steps=25),
               "cosine learning-rate decay after a 10 % linear warm-up"),
    "flip": (dict(flip=True), "horizontal-flip augmentation"),
    "adamw": (dict(optimizer="adamw", weight_decay=0.01),
              "AdamW, decoupled weight decay 0.01 on the kernels"),
    "ae": (dict(kind="ae"), "deterministic autoencoder (no KL): the reconstruction reference"),
}
COLUMNS = ["lever", "what", "val_psnr_db", "val_neg_elbo_bpd", "val_kl_nats", "decoder_sigma",
           "epochs", "train_s"]


def results_path() -> Path:
    return results_dir() / "levers" / "levers.csv"


def load_table(path=None) -> pd.DataFrame:
    """The committed sweep table (empty with ``COLUMNS`` when there is none yet)."""
    path = Path(path or results_path())
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


def run_levers(only=None, path=None, verbose=2) -> pd.DataFrame:
    """Train and score each lever (or those in ``only``) not in the table yet, writing each
    row at once; returns the table."""
    from resvae_keras import data
    from resvae_keras.data._io import atomic_write
    from resvae_keras.evaluate import evaluate_reconstruction_on
    from resvae_keras.model import load_model
    from resvae_keras.train import load_history, train

    path = Path(path or results_path())
    table = load_table(path)
    for name in only or LEVERS:
        if name in set(table["lever"]):
            print(f"{name}: in {path.name}, skipped", flush=True)
            continue
        overrides, what = LEVERS[name]
        config = get_profile("celeba-subset", **{**BASE, **overrides}, epochs=LEVER_EPOCHS,
                             two_stage_epochs=0, run_dir=f"runs/levers/{name}")
        print(f"== lever {name}: {what}", flush=True)
        train(config, verbose=verbose, second_stage=False)
        model = load_model(config.run_path / "last.keras")
        result = evaluate_reconstruction_on(model, data.load_cache(config).images_of("val"),
                                            seed=0)
        vae = model.kind == "vae"
        history = load_history(config.run_path)
        row = {"lever": name, "what": what, "val_psnr_db": result["psnr"]["mean"],
               "val_neg_elbo_bpd": result["bits_per_dim"]["mean"] if vae else np.nan,
               "val_kl_nats": result["kl_nats"]["mean"] if vae else np.nan,
               "decoder_sigma": model.decoder_sigma,
               "epochs": len(history), "train_s": float(history["wall_time_s"].iloc[-1])}
        table = pd.DataFrame([*table.to_dict("records"), row], columns=COLUMNS)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:  # never a half-written table
            table.to_csv(tmp, index=False, float_format="%.4f")
        print(pd.DataFrame([row]).round(3).to_string(index=False), flush=True)
    return table
