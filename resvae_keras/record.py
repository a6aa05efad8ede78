"""One run's results under flat names: ``run_record`` of its ``metrics.json`` and
``history_summary`` of its ``history.csv``."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONFIG_KEYS = ("beta", "likelihood", "architecture", "residual", "sigma_min", "latent_dim")
"""The config settings a record carries (from the run's config, else the evaluated model's)."""


def lookup(mapping, dotted: str):
    """``mapping["a"]["b"]`` for ``"a.b"``; None when any key is missing."""
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def sampler_record(report: dict) -> dict:
    """The headline numbers of one sampler's report: ``face_rate``, ``swd_<res>`` per level and
    ``swd_mean`` (x 1e3), ``fid``, ``kid``, ``precision``, ``recall`` (None without Inception
    features) and ``ms_ssim`` between samples."""
    realism = report.get("realism") or {}
    swd = realism.get("swd") or {}
    levels = sorted((k for k in swd if k != "swd_mean"), key=lambda k: int(k.split("_")[1]))
    return {"face_rate": realism.get("face_rate"), **{k: swd[k] for k in levels},
            "swd_mean": swd.get("swd_mean"), "fid": realism.get("fid"),
            "kid": realism.get("kid_mean"), "precision": realism.get("precision"),
            "recall": realism.get("recall"), "ms_ssim": lookup(report, "diversity.ms_ssim_fake")}


def run_record(metrics: dict, config: dict | None = None) -> dict:
    """The numbers of one ``evaluate.evaluate_run`` result as one flat dict, None as NaN;
    per baseline, sampler or reference set ``<k>`` as ``<name>_<k>`` (``face_rate_prior_t1``)."""
    rec, settings = metrics.get("reconstruction") or {}, metrics.get("settings") or {}
    row = {"profile": metrics.get("profile"), "demo": metrics.get("demo"),
           "n_test": settings.get("n_test"), "n_samples": settings.get("n_samples")}
    for name in ("mse", "psnr", "ssim", "ms_ssim", "neg_elbo_nats", "neg_elbo_bpd", "kl_nats"):
        key = "bits_per_dim" if name == "neg_elbo_bpd" else name
        row[name] = lookup(rec, f"{key}.mean")
    row.update(sharpness_ratio=rec.get("sharpness_ratio"), decoder_sigma=rec.get("decoder_sigma"),
               active_units=lookup(metrics, "latent.active_units"))
    for key, baseline in (metrics.get("baselines") or {}).items():
        row[f"psnr_{key}"] = lookup(baseline, "psnr.mean")
        row[f"ssim_{key}"] = lookup(baseline, "ssim.mean")
        row[f"neg_elbo_bpd_{key}"] = baseline.get("ppca_bits_per_dim")
    samples = metrics.get("samples") or {}
    for key, report in {**samples, **(metrics.get("sample_references") or {})}.items():
        row.update({f"{name}_{key}": v for name, v in sampler_record(report).items()})
    row["fid_available"] = any(bool(lookup(r, "realism.available")) for r in samples.values())
    for kind, by_score in (lookup(metrics, "anomaly.results") or {}).items():
        row[f"auroc_{kind}"] = lookup(by_score, "neg_elbo.auroc")
    training = metrics.get("training") or {}
    row.update({k: training.get(k) for k in ("steps", "epochs", "wall_time_s")})
    model = metrics.get("model") or {}
    row.update({k: (config or model).get(k) for k in CONFIG_KEYS})
    return {k: (np.nan if v is None else v) for k, v in row.items()}


def validation_neg_elbo(history: pd.DataFrame) -> np.ndarray | None:
    """The validation negative ELBO at beta = 1 after each epoch (nats per image), the
    checkpoint criterion: ``val_neg_elbo``, else ``val_reconstruction_loss + val_kl_loss``; None
    without either. Not ``val_loss``, which is weighted by the run's beta and its warm-up."""
    if "val_neg_elbo" in history:
        return history["val_neg_elbo"].to_numpy(float)
    if {"val_reconstruction_loss", "val_kl_loss"} <= set(history.columns):
        return (history["val_reconstruction_loss"] + history["val_kl_loss"]).to_numpy(float)
    return None


def history_summary(history: pd.DataFrame, beta: float | None = None) -> dict:
    """Length and shape of a ``load_history`` (epochs from 1, losses in nats per image); None
    where the history lacks the column. ``best_epoch``: of the lowest ``validation_neg_elbo``
    (that of ``model.keras``); ``kl_peak``: the highest KL up to ``kl_min``, the lowest after
    the first epoch; ``beta_epoch``: the first epoch at ``beta``."""
    h = history
    if not len(h):
        return {"epochs": 0}
    curve = validation_neg_elbo(h)
    out = {"epochs": len(h),
           "wall_time_s": float(h["wall_time_s"].iloc[-1]) if "wall_time_s" in h else None,
           "median_epoch_time_s": (float(h["epoch_time_s"].median())
                                   if "epoch_time_s" in h else None),
           "best_val_loss": float(h["val_loss"].min()) if "val_loss" in h else None,
           "final_val_neg_elbo": None if curve is None else float(curve[-1]),
           "best_val_neg_elbo": None if curve is None else float(curve.min()),
           "best_epoch": None if curve is None else int(np.nanargmin(curve)) + 1}
    if {"val_reconstruction_loss", "val_kl_loss"} <= set(h.columns):
        kl = h["val_kl_loss"].to_numpy(float)
        low = int(kl[1:].argmin()) + 1 if len(kl) > 1 else 0
        peak = int(kl[: low + 1].argmax())
        out.update(reconstruction_first=float(h["val_reconstruction_loss"].iloc[0]),
                   reconstruction_last=float(h["val_reconstruction_loss"].iloc[-1]),
                   kl_first=float(kl[0]), kl_peak=float(kl[peak]), kl_peak_epoch=peak + 1,
                   kl_min=float(kl[low]), kl_min_epoch=low + 1, kl_last=float(kl[-1]))
    if "beta" in h.columns and beta is not None and beta > 0:
        reached = np.flatnonzero(h["beta"].to_numpy() >= 0.999 * beta)
        if len(reached):
            out["beta_epoch"] = int(reached[0]) + 1
    return out
