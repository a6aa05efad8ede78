"""The written report: fill ``report/laporan.md`` (and the README) from the committed results.

Prose lives in the markdown; ``build_report`` rewrites only marked regions in place:
``<!-- BEGIN TABLE: name -->`` (a table from ``REGIONS``), ``<!-- BEGIN FIGURE: name "caption"
-->`` (``figures/<name>.png`` from ``FIGURES``) and ``<!-- BEGIN TEXT: name``, a template and
``-->``, whose ``{{key}}`` placeholders are filled from ``values(results)``, one flat
``{key: formatted number}`` dict (a missing value reads ``belum diukur``; an unknown key fails).
Every number comes from ``report/results/``: ``celeba-subset/`` (the main run) and ``study/``.

    python -m resvae_keras report      # or: make report
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
from functools import cache, cached_property, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from resvae_keras import metrics, plots, study
from resvae_keras.config import Config, project_root

MAIN_RUN = "celeba-subset"
REGION = re.compile(
    r"(?P<begin><!-- BEGIN (?P<kind>TABLE|TEXT|FIGURE): (?P<name>[A-Za-z0-9_]+)"
    r'(?: "(?P<caption>[^"]*)")?(?:\n(?P<template>(?:(?!-->).)*?)\n| )-->\n)'
    r"(?P<body>.*?)(?P<end><!-- END (?P=kind): (?P=name) -->)",
    re.S,
)
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
DASH = "—"  # a table cell with no value (not measured, or not applicable)
MISSING = "belum diukur"  # a {{key}} whose value the results files lack
NBSP = "\u00a0"  # thousands separator of integers: unambiguous with a decimal point
ALPHA = study.ALPHA

MAIN_COMMAND = ("python -m resvae_keras train --profile celeba-subset && "
                "python -m resvae_keras evaluate --run-dir runs/celeba-subset")
STUDY_COMMAND = "python -m resvae_keras study"
EITHER_COMMAND = f"{MAIN_COMMAND}` atau `{STUDY_COMMAND}"
MAIN_METRICS = f"`report/results/{MAIN_RUN}/metrics.json`"

# Labels of names in the results files (words, not sentences).
ARM_NAMES = {"residual": "ResVAE (residual)", "plain": "VAE polos", "conv": "VAE konvolusional"}
STUDY_MEASURES = {  # study measure -> (Indonesian label, decimals)
    "psnr": ("PSNR (dB)", 2), "ssim": ("SSIM", 4), "ms_ssim": ("MS-SSIM", 4),
    "neg_elbo_bpd": ("−ELBO (bit/dim)", 4), "kl_nats": ("KL (nats)", 1),
    "sharpness_ratio": ("Rasio ketajaman rekonstruksi", 3),
    "face_rate_prior_t1": ("Laju deteksi wajah, prior", 3),
    "swd_mean_prior_t1": ("SWD prior (×10³)", 2),
    "face_rate_two_stage_t1": ("Laju deteksi wajah, dua tahap", 3),
    "swd_mean_two_stage_t1": ("SWD dua tahap (×10³)", 2),
    "face_rate_gmm_t1": ("Laju deteksi wajah, GMM", 3), "swd_mean_gmm_t1": ("SWD GMM (×10³)", 2),
    "steps_to_threshold": ("Langkah sampai ambang loss", 0),
    "seconds_to_threshold": ("Detik sampai ambang loss", 1),
    "val_neg_elbo_at_equal_time": ("−ELBO validasi pada waktu sama (nats)", 1),
}
VERDICT_WORDS = {  # study.verdict / study.claims verdict -> the word the report shows
    "supported": "didukung", "contradicted": "dibantah", "mixed": "campuran",
    "no significant difference": "tidak berbeda nyata", "not testable": "belum dapat diuji",
}
HYPOTHESIS_NAMES = {
    "a": "(a) rekonstruksi lebih akurat", "b": "(b) rekonstruksi lebih tajam",
    "c": "(c) sampel lebih realistis", "d": "(d) pelatihan lebih cepat per langkah dan per detik",
}
SAMPLER_NAMES = {"prior": "*prior* N(0, I)", "two_stage": "VAE dua tahap",
                 "gmm": "GMM ex-post 10 komponen"}
REFERENCE_NAMES = {"real_test": "wajah uji nyata terhadap wajah latih (batas bawah)",
                   "reconstructions": "rekonstruksi wajah uji"}
ANOMALY_NAMES = {"noise": "derau Gaussian", "occlusion": "oklusi kotak",
                 "rotation": "rotasi terbalik", "non_face": "bukan wajah"}
SCORE_NAMES = {"neg_elbo": "−ELBO", "reconstruction_mse": "MSE rekonstruksi",
               "complexity_corrected": "−ELBO terkoreksi kompleksitas"}
LIKELIHOOD_NAMES = {"gaussian_learned": "Gaussian, σ dipelajari",
                    "gaussian": "Gaussian, σ² = 1/2 tetap", "bernoulli": "Bernoulli"}
LAYER_KINDS = {  # Keras class -> the architecture table's word (a Conv2D: its kernel and stride)
    "InputLayer": "masukan", "Rescaling": "skala [0, 1] → [−1, 1]",
    "ResidualBlock": "blok residual pra-aktivasi", "GroupNormalization": "GroupNorm",
    "Activation": "SiLU", "Flatten": "perataan", "Dense": "lapisan padat", "Reshape": "ubah bentuk",
    "Upsample": "tetangga terdekat ×2 + konvolusi 3×3",
    "DepthToSpace": "sub-piksel (depth-to-space ×2)",
}


# -- formatting -------------------------------------------------------------------------


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def num(value, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with a fixed number of decimals; a dash when missing or not finite."""
    return f"{float(value) * scale:.{decimals}f}" if _finite(value) else DASH


def integer(value) -> str:
    """An integer with non-breaking spaces between thousands (``1 542 464``)."""
    return f"{int(round(float(value))):,}".replace(",", NBSP) if _finite(value) else DASH


def plus_minus(mean, std, decimals: int) -> str:
    """``mean ± std``; the mean alone when the std is missing (a single run)."""
    return f"{num(mean, decimals)} ± {num(std, decimals)}" if _finite(std) else num(mean, decimals)


def p_value(p) -> str:
    """Three decimals, or scientific notation below 0.001 (``7.2e-06``)."""
    return DASH if not _finite(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _shape(dims) -> str:
    """A tensor shape without the batch axis: ``32×32×64``."""
    return "×".join(str(d) for d in dims)


def markdown_table(columns, rows, numeric=None) -> str:
    """A pipe table; ``numeric`` columns (indices, default all but the first) right-aligned."""
    numeric = set(range(1, len(columns))) if numeric is None else set(numeric)
    align = ["---:" if i in numeric else ":---" for i in range(len(columns))]

    def line(cells):  # a "|" inside a cell (p(x|z)) must not end the cell
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(columns), "| " + " | ".join(align) + " |", *map(line, rows)])


def not_available(what: str, command: str) -> str:
    """The one honest line a region holds while its results are missing."""
    return (f"*Hasil ini belum tersedia: {what} belum ada. Hasil ini dibuat oleh "
            f"`{command}`, lalu `make report`.*")


def _get(mapping, dotted: str):
    """``mapping["a"]["b"]`` for ``"a.b"``; None when any key is missing."""
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


class Col(NamedTuple):
    """One formatted value: ``key`` (dotted path into a record), ``label`` (a table header or a
    ``values`` key), ``decimals`` (None: an integer; ``"p"``: a p-value; ``"%"``: a percent;
    ``"g"``: shortest; ``"text"``: as it is), ``scale`` applied first; an ``optional`` column
    is left out of a table when no record has a value for it."""

    key: str
    label: str
    decimals: int | str | None = 2
    scale: float = 1.0
    optional: bool = False

    def cell(self, record) -> str:
        value, kind = _get(record, self.key), self.decimals
        if kind == "text":
            return str(value) if value not in (None, "") else DASH
        if not _finite(value):
            return DASH
        if kind is None or kind == "p":
            return integer(value) if kind is None else p_value(value)
        if kind in ("%", "g"):
            return f"{num(value, 1, 100.0)} %" if kind == "%" else f"{float(value):g}"
        return num(value, kind, self.scale)


def _table(headers, rows, columns) -> str | None:
    """A pipe table: ``rows`` are ``(label cell(s), record)``; the ``headers`` columns hold the
    labels (left-aligned), then one right-aligned column per ``Col`` read from each record.
    None without rows (their results are missing)."""
    if not rows:
        return None
    rows = [((labels,) if isinstance(labels, str) else tuple(labels), r) for labels, r in rows]
    columns = [c for c in columns
               if not c.optional or any(_get(r, c.key) is not None for _, r in rows)]
    return markdown_table([*headers, *(c.label for c in columns)],
                          [(*labels, *(c.cell(r) for c in columns)) for labels, r in rows],
                          numeric=range(len(headers), len(headers) + len(columns)))


def _measure(key: str) -> Col:
    """The column of a study measure, labelled and rounded as ``STUDY_MEASURES`` says."""
    return Col(key, *STUDY_MEASURES.get(key, (key, 3)), optional=True)


def _arm(arm) -> str:
    return ARM_NAMES.get(arm, arm)


# -- the results ------------------------------------------------------------------------


class Results:
    """The committed results under ``root`` (default ``report/results``), read lazily."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else study.results_dir()
        self.main_dir, self.study_dir = self.root / MAIN_RUN, self.root / "study"

    def _json(self, name: str):
        path = self.main_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def main_metrics(self) -> dict | None:
        return self._json("metrics.json")

    @cached_property
    def main_config(self) -> dict | None:
        return self._json("config.json")

    @cached_property
    def main_history(self) -> pd.DataFrame:
        """One row per epoch (empty when the main run has no history)."""
        from resvae_keras.train import load_history

        return load_history(self.main_dir)

    @cached_property
    def other_metrics(self) -> dict[str, dict]:
        """``metrics_<data>.json`` of the main run: the model on other data, by name."""
        return {path.stem.removeprefix("metrics_"): json.loads(path.read_text())
                for path in sorted(self.main_dir.glob("metrics_*.json"))}

    @property
    def samples(self) -> dict:
        return _get(self.main_metrics or {}, "samples") or {}

    @cached_property
    def sweep(self) -> pd.DataFrame:
        """The default-model sweep (``root/sweep``), one row per run, by the floor on sigma."""
        table = study.load_sweep(self.root / "sweep")
        return table.sort_values("sigma_min") if len(table) else table

    @cached_property
    def study_runs(self) -> pd.DataFrame:
        """The runs table (``study/runs.csv``; the study's design when it is missing)."""
        return study.load_runs(self.study_dir / "runs.csv")

    @cached_property
    def study(self) -> dict[str, dict]:
        """``study.load_results`` of ``root/study``, in the order of the runs table."""
        return study.load_results(self.study_dir, self.study_runs) if self.study_dir.is_dir() else {}

    @cached_property
    def benchmark(self) -> dict | None:
        return study.load_benchmark(self.study_dir)

    @cached_property
    def study_table(self) -> pd.DataFrame:
        return study.study_table(self.study, self.benchmark)

    @cached_property
    def arms(self) -> pd.DataFrame:
        """``study_table`` rows of the arms (residual, plain, conv)."""
        table = self.study_table
        return table[table["group"] == "arms"] if len(table) else table

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        return study.verdict(self.study_table)

    @cached_property
    def seeds(self) -> pd.DataFrame:
        return study.seeds_per_arm(self.study_dir, self.study_runs)


# -- tables: the architecture (the Keras model, no results) ------------------------------


@cache
def architecture() -> tuple:
    """``(config, ResVAE.summary_rows, ResVAE.parameter_counts)`` of the default architecture
    (``Config()``, the ``celeba-subset`` one); the counts add ``plain_total``, the same
    network without shortcuts (the ablation's plain arm)."""
    from resvae_keras.model import build_model

    config = Config()
    model = build_model(config)
    counts = model.parameter_counts()
    counts["plain_total"] = int(build_model(config.replace(residual=False)).count_params())
    return config, model.summary_rows(), counts


def _layer_kind(row: dict) -> str:
    if row["kind"] == "Conv2D":
        k, s = row["kernel"], row["strides"]
        return f"konvolusi {k}×{k}" + (f", langkah {s}" if s > 1 else "")
    return LAYER_KINDS.get(row["kind"], row["kind"])


def table_arsitektur(results: Results) -> str:
    _, layers, counts = architecture()
    parts = {"encoder": "enkoder", "decoder": "dekoder"}
    rows = [(parts[r["part"]], f"`{r['name']}`", _layer_kind(r), _shape(r["output_shape"]),
             integer(r["params"])) for r in layers]
    rows += [("total", label, "", "", integer(counts[key])) for key, label in (
        ("encoder", "enkoder"), ("decoder", "dekoder"), ("total", "model (termasuk log σ dan β)"),
        ("trainable", "dapat dilatih"), ("plain_total", "VAE polos (tanpa shortcut)"))]
    return markdown_table(
        ["Bagian", "Lapisan", "Jenis", "Bentuk keluaran", "Parameter"], rows, numeric=[4])


def table_diagram(results: Results) -> str:
    """The encoder-decoder flow with the real output shapes, a stage's blocks on one line."""
    _, layers, _ = architecture()
    lines = ["```text"]
    for part, title, last in (
            ("encoder", "ENKODER  q(z | x)",
             "z = z_mean + exp(½ · z_log_var) ⊙ ε,  ε ~ N(0, I)   (reparameterisasi)"),
            ("decoder", "DEKODER  p(x | z)", "sigmoid → citra rerata x̂ ∈ [0, 1]")):
        folded: list[list] = []  # [kind, output shape, how many in a row]
        for r in (r for r in layers if r["part"] == part):
            step = [_layer_kind(r), r["output_shape"]]
            if r["kind"] == "ResidualBlock" and folded and folded[-1][:2] == step:
                folded[-1][2] += 1
            else:
                folded.append([*step, 1])
        lines += [title, *(f"  │ {(f'{n} × {kind}' if n > 1 else kind):<44} → {_shape(out)}"
                           for kind, out, n in folded), f"  │ {last}"]
    return "\n".join([*lines, "```"])


# -- tables: data and training ----------------------------------------------------------

HYPERPARAMETERS = (  # config key -> Indonesian label
    ("image_size", "Ukuran citra (piksel)"), ("widths", "Lebar kanal per tahap"),
    ("blocks_per_stage", "Blok residual per tahap"), ("latent_dim", "Dimensi laten d"),
    ("likelihood", "*Likelihood* rekonstruksi"), ("beta", "β (bobot KL)"),
    ("sigma_min", "Lantai σ dekoder"),
    ("kl_warmup_steps", "Pemanasan KL (langkah)"), ("batch_size", "Ukuran batch"),
    ("learning_rate", "Laju belajar Adam"), ("epochs", "Epoch"), ("seed", "*Seed*"),
    ("mixed_precision", "Presisi"),
)


def table_data(results: Results) -> str | None:
    counts = _get(results.main_metrics or {}, "data.split_counts") or {}
    names = {"train": "latih (train)", "val": "validasi (val)", "test": "uji (test)", "": "jumlah"}
    counts = {**counts, "": sum(counts.values())} if counts else {}
    return _table(["Split"], [(names.get(k, k), {"n": v, "share": 100 * v / counts[""]})
                              for k, v in counts.items()],
                  (Col("n", "Jumlah citra", None), Col("share", "Porsi (%)", 1)))


def _config_value(key: str, config: dict | None) -> str:
    """``config[key]`` as the tables show it; a dash when missing."""
    value = (config or {}).get(key, DASH)
    if key == "likelihood":
        return LIKELIHOOD_NAMES.get(value, str(value))
    if key == "mixed_precision":
        return "float32" if value is None else str(value)
    if isinstance(value, list):  # the widths per stage, or the study's seeds
        return ("–" if key == "widths" else ", ").join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def table_hiperparameter(results: Results) -> str | None:
    main, runs = results.main_config, results.study
    reference = runs.get("residual_s0", {}).get("config") or next(
        (r["config"] for r in runs.values() if r.get("config")), None)
    if main is None and reference is None:
        return None
    seeds = sorted({r["config"]["seed"] for r in runs.values() if "seed" in r.get("config", {})})
    if reference and seeds and "seed" in reference:
        reference = {**reference, "seed": seeds}
    rows = [(label, _config_value(key, main), _config_value(key, reference))
            for key, label in HYPERPARAMETERS]
    return markdown_table(["Hiperparameter", "Percobaan utama",
                           "Studi perbandingan (percobaan acuan)"], rows, numeric=[])


def table_waktu(results: Results) -> str | None:
    runs = [(f"`{MAIN_RUN}` (percobaan utama)", results.main_history, results.main_config or {})]
    runs += [(f"`{name}`", r["history"], r.get("config", {})) for name, r in results.study.items()]
    rows = [(label, integer(len(h)),
             _config_value("mixed_precision", config) if config else DASH,
             num(h["epoch_time_s"].median(), 1), num(h["wall_time_s"].iloc[-1] / 60.0, 1),
             num(h["val_loss"].min(), 1)) for label, h, config in runs if len(h)]
    return markdown_table(
        ["Percobaan", "Epoch", "Presisi", "Median waktu/epoch (s)", "Total waktu latih (menit)",
         "Val loss terbaik (nats)"], rows, numeric=[1, 3, 4, 5]) if rows else None


# -- tables: the main run ----------------------------------------------------------------

RECONSTRUCTION_ROWS = (  # key in metrics.json "reconstruction" -> (label, decimals)
    ("mse", "MSE per piksel", 5), ("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4),
    ("ms_ssim", "MS-SSIM", 4), ("neg_elbo_nats", "−ELBO (nats per citra)", 1),
    ("reconstruction_nll_nats", "−log p(x|z) (nats per citra)", 1),
    ("kl_nats", "KL (nats per citra)", 1), ("bits_per_dim", "−ELBO (bit per dimensi)", 4),
)
GENERALISATION_COLUMNS = (
    Col("n_images", "n", None), Col("mse.mean", "MSE", 5), Col("psnr.mean", "PSNR (dB)", 2),
    Col("ssim.mean", "SSIM", 4), Col("ms_ssim.mean", "MS-SSIM", 4),
    Col("bits_per_dim.mean", "bit/dim", 4),
)
ATTRIBUTE_COLUMNS = (
    Col("n_with", "n dengan", None), Col("n_without", "n tanpa", None),
    Col("mean_with", "MSE dengan (×10³)", 3, 1e3), Col("mean_without", "MSE tanpa (×10³)", 3, 1e3),
    Col("difference", "Selisih (×10³)", 3, 1e3), Col("t", "t Welch", 2), Col("p_value", "p", "p"),
)
SAMPLE_COLUMNS = (
    Col("n_images", "n", None),
    # metrics.json files from before the face-detection rate have no such column
    Col("realism.face_rate", "Laju deteksi wajah", 3, optional=True),
    *(Col(f"realism.swd.swd_{r}", f"SWD {r} px", 1) for r in (64, 32, 16)),
    Col("realism.swd.swd_mean", "SWD rata-rata", 1), Col("realism.fid", "FID", 2),
    Col("realism.kid_mean", "KID (×10³)", 2, 1e3), Col("realism.precision", "Presisi", 3),
    Col("realism.recall", "Recall", 3),
)
DIVERSITY_COLUMNS = (
    Col("diversity.pixel_l2_fake", "Jarak L2 antar-pasangan", 2),
    Col("diversity.ms_ssim_fake", "MS-SSIM antar-pasangan", 4),
    Col("memorization.sample_to_train.median", "Median jarak ke citra latih terdekat", 2),
    Col("memorization.median_ratio", "Rasio median terhadap wajah uji", 3),
    Col("memorization.share_closer_than_test_p01",
        "Sampel lebih dekat dari persentil 1% uji (%)", 1, 100.0),
)


def table_rekonstruksi(results: Results) -> str | None:
    rec = _get(results.main_metrics or {}, "reconstruction")
    if not rec:
        return None
    rows = [(label, num(_get(rec, f"{key}.mean"), d), num(_get(rec, f"{key}.std"), d))
            for key, label, d in RECONSTRUCTION_ROWS]
    rows.append(("σ dekoder (satuan intensitas [0, 1])", num(rec.get("decoder_sigma"), 4), DASH))
    return markdown_table(["Metrik", "Rata-rata", "Simpangan baku"], rows)


def table_generalisasi(results: Results) -> str | None:
    rec = _get(results.main_metrics or {}, "reconstruction")
    if not rec:
        return None
    sets = [("split uji (aturan cadangan)", rec)]
    sets += [(f"`{name}`", other.get("reconstruction", other))
             for name, other in results.other_metrics.items()]
    table = _table(["Data"], sets, GENERALISATION_COLUMNS)
    if len(sets) == 1:
        table += "\n\n" + not_available(
            f"evaluasi pada potongan wajah partisi uji resmi (`report/results/{MAIN_RUN}/metrics_*.json`)",
            "evaluate.evaluate_run('runs/celeba-subset', data_dir=<folder potongan wajah>, "
            "cache_dir=<folder cache>)")
    return table


def per_attribute_rows(results: Results, k: int = 10) -> pd.DataFrame:
    """``metrics.strongest_attributes`` of the main run, largest MSE gap first (empty when
    missing)."""
    rows = _get(results.main_metrics or {}, "per_attribute.rows")
    if not rows:
        return pd.DataFrame()
    breakdown = pd.DataFrame.from_dict(rows, orient="index")
    return metrics.strongest_attributes(breakdown, k).sort_values("difference", ascending=False)


def table_per_atribut(results: Results) -> str | None:
    return _table(["Atribut"], [(f"`{name}`", r.to_dict())
                                for name, r in per_attribute_rows(results).iterrows()],
                  ATTRIBUTE_COLUMNS)


def _samplers(results: Results) -> list[tuple[str, dict]]:
    """``(label, sampler report)`` of every sampler of the main run."""
    names = {k: s.get("sampler", k.split("_")[0]) for k, s in results.samples.items()}
    return [(f"{SAMPLER_NAMES.get(names[k], names[k])}, T = {s.get('temperature', 1.0):g}", s)
            for k, s in results.samples.items()]


def table_sampel(results: Results) -> str | None:
    if not results.samples:
        return None
    references = _get(results.main_metrics, "sample_references") or {}
    return _table(["Sampler"], [*_samplers(results), *(
        (REFERENCE_NAMES.get(k, k), s) for k, s in references.items())], SAMPLE_COLUMNS)


def table_keragaman(results: Results) -> str | None:
    if not results.samples:
        return None
    first = next(iter(results.samples.values()))
    real = {  # the real test faces, read through the samples' columns
        "diversity": {"pixel_l2_fake": _get(first, "diversity.pixel_l2_real"),
                      "ms_ssim_fake": _get(first, "diversity.ms_ssim_real")},
        "memorization": {"sample_to_train": _get(first, "memorization.test_to_train")}}
    return _table(["Sampler"], [*_samplers(results), ("wajah uji nyata (acuan)", real)],
                  DIVERSITY_COLUMNS)


def table_laten(results: Results) -> str | None:
    lat = _get(results.main_metrics or {}, "latent")
    if not lat:
        return None
    top = ", ".join(f"z{u} ({num(kl, 2)})" for u, kl in zip(
        lat.get("top_units", [])[:5], lat.get("top_units_kl_nats", [])[:5], strict=False))
    return markdown_table(["Besaran", "Nilai"], [
        ("Dimensi laten d", integer(lat.get("latent_dim"))),
        (f"Unit aktif (variansi E[z_j | x] > {lat.get('threshold', 0.01):g})",
         integer(lat.get("active_units"))),
        ("KL total rata-rata (nats per citra)", num(lat.get("kl_total_nats"), 1)),
        ("Lima dimensi dengan KL terbesar (nats)", top or DASH)])


def _anomaly_label(kind: str, strengths: dict) -> str:
    name, strength = ANOMALY_NAMES.get(kind, kind), strengths.get(kind)
    if kind == "noise" and _finite(strength):
        return f"{name} (σ = {strength:g})"
    if kind == "occlusion" and _finite(strength):
        return f"{name} (sisi {100 * strength:g}% citra)"
    return name


def _anomaly(results: Results) -> tuple[dict, dict]:
    """``({kind: {score: result}}, corruption strengths)`` of the main run; empty when missing."""
    anomaly = _get(results.main_metrics or {}, "anomaly") or {}
    return anomaly.get("results") or {}, anomaly.get("corruption_strengths", {})


def table_anomali(results: Results) -> str | None:
    by_kind, strengths = _anomaly(results)
    rows = [((_anomaly_label(kind, strengths), SCORE_NAMES.get(score, score)), r)
            for kind, by_score in by_kind.items() for score, r in by_score.items()]
    return _table(["Anomali", "Skor"], rows, (Col("auroc", "AUROC", 3), Col("ap", "AP", 3)))


# -- tables: the study -------------------------------------------------------------------

ABLATION_COLUMNS = ("psnr", "ssim", "ms_ssim", "neg_elbo_bpd", "sharpness_ratio",
                    "face_rate_prior_t1", "swd_mean_prior_t1", "steps_to_threshold")
SWEEP_COLUMNS = ("psnr", "ssim", "sharpness_ratio", "kl_nats", "face_rate_prior_t1",
                 "swd_mean_prior_t1")
CLAIM_COLUMNS = (
    Col("n_supported", "Ukuran mendukung", None), Col("n_contradicted", "Ukuran membantah", None),
    Col("n_no_significant_difference", "Tidak berbeda nyata", None),
    Col("n_not_testable", "Belum dapat diuji", None),
)


def table_status(results: Results) -> str:
    """Which results files exist: the main run's, and the study runs per arm."""
    main = [f for f in ("config.json", "history.csv", "metrics.json")
            if (results.main_dir / f).is_file()]
    rows = [(f"percobaan utama (`report/results/{MAIN_RUN}/`)",
             ", ".join(f"`{f}`" for f in main) or DASH)]
    rows += [(f"studi: {_arm(arm) if group == 'arms' else arm}",
              f"{integer(r.finished)} dari {integer(r.planned)}")
             for (group, arm), r in results.seeds.iterrows()]
    rows.append(("studi: `benchmark.json`", "ada" if results.benchmark else DASH))
    return markdown_table(["Hasil", "Tersedia"], rows, numeric=[])


def table_ablasi(results: Results) -> str | None:
    rows = [((f"`{name}`", _arm(r["arm"])), r.to_dict()) for name, r in results.arms.iterrows()]
    return _table(["Percobaan", "Kelompok"], rows, (
        Col("seed", "Seed", None), *map(_measure, ABLATION_COLUMNS)))


def table_ablasi_ringkasan(results: Results) -> str | None:
    table = results.arms
    if table.empty:
        return None
    columns = [_measure(c) for c in STUDY_MEASURES if c in table and table[c].notna().any()]
    summary = study.arm_summary(table, [c.key for c in columns])
    arms, counts = list(summary.index), results.seeds.loc["arms"]
    rows = [(c.label, *(plus_minus(summary.loc[a, f"{c.key}_mean"], summary.loc[a, f"{c.key}_sd"],
                                   c.decimals) for a in arms)) for c in columns]
    rows.append(("Jumlah seed", *(f"{integer(summary.loc[a, 'n'])} dari "
                                  f"{integer(counts.loc[a, 'planned'])}" for a in arms)))
    return markdown_table(["Ukuran", *map(_arm, arms)], rows)


def _interval(value, low, high, decimals: int) -> str:
    if not (_finite(value) and _finite(low) and _finite(high)):
        return num(value, decimals)
    return f"{num(value, decimals)} [{num(low, decimals)}, {num(high, decimals)}]"


def _testable(results: Results) -> bool:
    verdicts = results.verdicts
    return bool(len(verdicts)) and bool((verdicts["verdict"] != "not testable").any())


def table_uji_welch(results: Results) -> str | None:
    if not _testable(results):
        return None
    rows = [(HYPOTHESIS_NAMES[r.hypothesis].split(" ")[0], f"{_arm(r.arm)} − {_arm(r.baseline)}",
             _measure(r.measure).label, f"{r.n_arm}/{r.n_baseline}",
             _interval(r.diff, r.diff_ci_low, r.diff_ci_high, _measure(r.measure).decimals),
             _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2), p_value(r.p),
             p_value(r.p_holm), VERDICT_WORDS[r.verdict]) for r in results.verdicts.itertuples()]
    return markdown_table(["Hipotesis", "Perbandingan", "Ukuran", "n", "Selisih [IK 95%]",
                           "g Hedges [IK 95%]", "p", "p Holm", "Kesimpulan"], rows,
                          numeric=[3, 4, 5, 6, 7])


def table_klaim(results: Results) -> str | None:
    """One row per hypothesis and comparison (``study.claims``), its verdict as a word."""
    if not _testable(results):
        return None
    rows = [((HYPOTHESIS_NAMES[c.hypothesis], f"{_arm(c.arm)} − {_arm(c.baseline)}",
              VERDICT_WORDS[c.verdict]), c._asdict())
            for c in study.claims(results.verdicts).itertuples()]
    return _table(["Hipotesis", "Perbandingan", "Kesimpulan"], rows, CLAIM_COLUMNS)


def table_sweep(results: Results, group: str, header: str, show) -> str | None:
    """One row per value of the swept setting: the mean ± SD over seeds, or the one run."""
    table = results.study_table
    if table.empty or not (table["group"] == group).any():
        return None
    columns = [_measure(c) for c in SWEEP_COLUMNS if c in table]
    rows = [(show(r["x"]), integer(r["n_seeds"]), *(
        plus_minus(r[c.key], r[f"{c.key}_seed_sd"], c.decimals) if r["n_seeds"] > 1
        else num(r[c.key], c.decimals) for c in columns))
        for r in study.sweep_trend(table, group, group, [c.key for c in columns]).to_dict("records")]
    return markdown_table([header, "n seed", *(c.label for c in columns)], rows)


SWEEP_DEFAULT_COLUMNS = (  # the default-model sweep: rate, distortion, realism per sampler
    Col("kl_nats", "KL (nats)", 0), Col("psnr", "PSNR (dB)", 2), Col("ssim", "SSIM", 3),
    Col("face_rate_prior_t1", "Wajah, *prior* T = 1", 3),
    Col("face_rate_prior_t07", "Wajah, *prior* T = 0.7", 3),
    Col("swd_16_prior_t1", "SWD 16 px, *prior*", 1), Col("ms_ssim_prior_t1", "MS-SSIM, *prior*", 3),
    Col("face_rate_two_stage_t1", "Wajah, dua tahap", 3),
    Col("swd_16_two_stage_t1", "SWD 16 px, dua tahap", 1),
    Col("face_rate_gmm_t1", "Wajah, GMM", 3), Col("swd_16_gmm_t1", "SWD 16 px, GMM", 1),
)


def _floor(sigma_min) -> str:
    return f"σ ≥ {float(sigma_min):g}" if float(sigma_min) > 0 else "tanpa lantai"


def table_model_bawaan(results: Results) -> str | None:
    rows = [(_floor(r["sigma_min"]), {k.replace(".", ""): v for k, v in r.items()})
            for _, r in results.sweep.iterrows()]  # prior_t0.7 -> prior_t07: keys are dotted paths
    return _table(["Lantai σ"], rows, SWEEP_DEFAULT_COLUMNS)


SWD_RULE = "≤ 1.1 × SWD rekonstruksi uji"
TARGETS = (  # (label, key in the main metrics.json "summary", the target as the table shows it)
    ("laju deteksi wajah, *prior* T = 1", "face_rate_prior_t1", "≥ 0.85"),
    ("laju deteksi wajah, VAE dua tahap", "face_rate_two_stage_t1", "≥ 0.90"),
    ("SWD 16 px ×10³, *prior*", "swd_16_prior_t1", "≤ 25"),
    ("SWD 16 px ×10³, dua tahap", "swd_16_two_stage_t1", "≤ 25"),
    ("SWD rata-rata ×10³, *prior*", "swd_prior_t1", SWD_RULE),
    ("SWD rata-rata ×10³, dua tahap", "swd_two_stage_t1", SWD_RULE),
    # the one target not in the summary: a sampler's diversity against the real faces'
    ("|MS-SSIM antar-sampel − wajah nyata|, *prior*", "prior_t1", "≤ 0.1"),
    ("|MS-SSIM antar-sampel − wajah nyata|, dua tahap", "two_stage_t1", "≤ 0.1"),
    ("PSNR uji (dB)", "psnr_db", "≥ 22.0"),
)


def table_target(results: Results) -> str | None:
    m = results.main_metrics
    if not m:
        return None
    summary, rows = m.get("summary") or {}, []
    for label, key, rule in TARGETS:
        value, bound = summary.get(key), float(rule[2:]) if rule != SWD_RULE else None
        if label.startswith("|MS-SSIM"):
            fake, real = (_get(m, f"samples.{key}.diversity.ms_ssim_{k}") for k in ("fake", "real"))
            value = abs(fake - real) if _finite(fake) and _finite(real) else None
        if rule == SWD_RULE and _finite(summary.get("swd_reconstructions")):
            bound = 1.1 * summary["swd_reconstructions"]
        if not (_finite(value) and _finite(bound)):  # a sampler this run was not evaluated with
            rows.append((label, rule, DASH, DASH, "belum diukur"))
            continue
        met = value >= bound if rule.startswith("≥") else value <= bound
        rows.append((label, rule, num(bound, 3 if bound < 1 else 1),
                     num(value, 3 if abs(value) < 1 else 2), "ya" if met else "tidak"))
    return markdown_table(["Ukuran", "Target", "Batas", "Terukur", "Tercapai"], rows,
                          numeric=[2, 3])


_ARMS_LACKING = ("percobaan kelompok studi (`report/results/study/*/metrics.json`)", STUDY_COMMAND)
_MAIN_LACKING = (MAIN_METRICS, MAIN_COMMAND)
REGIONS = {  # region -> (its table, or None while its results are missing; what they are, how made)
    "arsitektur": (table_arsitektur, None),
    "diagram": (table_diagram, None),
    "data": (table_data, _MAIN_LACKING),
    "hiperparameter": (table_hiperparameter, (
        f"`report/results/{MAIN_RUN}/config.json` dan `report/results/study/*/config.json`",
        EITHER_COMMAND)),
    "waktu": (table_waktu, ("`history.csv` percobaan utama maupun percobaan studi",
                            EITHER_COMMAND)),
    "rekonstruksi": (table_rekonstruksi, _MAIN_LACKING),
    "generalisasi": (table_generalisasi, _MAIN_LACKING),
    "per_atribut": (table_per_atribut, _MAIN_LACKING),
    "sampel": (table_sampel, _MAIN_LACKING),
    "keragaman": (table_keragaman, _MAIN_LACKING),
    "laten": (table_laten, _MAIN_LACKING),
    "anomali": (table_anomali, _MAIN_LACKING),
    "status": (table_status, None),
    "ablasi": (table_ablasi, _ARMS_LACKING),
    "ablasi_ringkasan": (table_ablasi_ringkasan, _ARMS_LACKING),
    "uji_welch": (table_uji_welch, ("sekurang-kurangnya dua *seed* per kelompok untuk uji Welch",
                                    STUDY_COMMAND)),
    "klaim": (table_klaim, ("sekurang-kurangnya dua *seed* per kelompok", STUDY_COMMAND)),
    "target": (table_target, _MAIN_LACKING),
    "model_bawaan": (table_model_bawaan, ("percobaan *sweep* (`report/results/sweep/`)",
                                          f"{STUDY_COMMAND} --sweep")),
    "likelihood": (partial(table_sweep, group="likelihood", header="Likelihood",
                           show=lambda x: LIKELIHOOD_NAMES.get(x, str(x))),
                   ("percobaan `likelihood_*` (`report/results/study/`)", STUDY_COMMAND)),
    "beta": (partial(table_sweep, group="beta", header="β", show=lambda x: f"{float(x):g}"),
             ("percobaan `beta_*` (`report/results/study/`)", STUDY_COMMAND)),
}


# -- the numbers of the prose ---------------------------------------------------------------

VALUES = (  # Col(dotted path into _prose_record, values key, decimals); a "{}" in both stands
    # for every key at that place of the record (a sampler, another data set, a sweep floor ...)
    Col("arch.total", "n_param", None), Col("arch.widths", "lebar", "text"),
    Col("arch.blocks", "blok", None), Col("arch.latent_dim", "d", None),
    Col("config.sigma_min", "lantai_sigma", "g"),
    Col("main.data.split_counts.train", "n_latih", None),
    Col("main.data.split_counts.val", "n_val", None),
    Col("rec.n_images", "n_uji", None), Col("rec.psnr.mean", "psnr", 2),
    Col("rec.ssim.mean", "ssim", 3), Col("rec.ms_ssim.mean", "ms_ssim", 3),
    Col("rec.bits_per_dim.mean", "bpd", 3), Col("rec.decoder_sigma", "sigma", 4),
    Col("rec.rmse", "rmse", 4), Col("rec.sigma_ratio", "rasio_sigma", 2),
    Col("other.{}.psnr.mean", "{}_psnr", 2),
    # the samplers, and the reference rows (real test faces, reconstructions) read like them
    Col("samples.{}.realism.swd.swd_mean", "swd_{}", 1),
    Col("samples.{}.realism.swd.swd_16", "swd16_{}", 1),
    Col("samples.{}.realism.face_rate", "wajah_{}", "%"),
    Col("samples.{}.diversity.pixel_l2_fake", "l2_{}", 2),
    Col("samples.{}.l2_share", "l2_persen_{}", "%"),
    Col("samples.{}.diversity.ms_ssim_fake", "msssim_{}", 4),
    Col("samples.{}.memorization.median_ratio", "rasio_latih_{}", 3),
    Col("samples.{}.memorization.share_closer_than_test_p01", "dekat_latih_{}", "%"),
    Col("real.pixel_l2_real", "l2_nyata", 2), Col("real.ms_ssim_real", "msssim_nyata", 4),
    Col("history.epochs", "epoch", None), Col("history.minutes", "menit_latih", 1),
    Col("history.seconds_per_epoch", "detik_per_epoch", 1),
    Col("history.best_epoch", "epoch_terbaik", None),
    Col("history.reconstruction_first", "rek_awal", 1),
    Col("history.reconstruction_last", "rek_akhir", 1),
    Col("history.kl_peak", "kl_puncak", 1), Col("history.kl_min", "kl_min", 1),
    Col("history.kl_min_epoch", "epoch_kl_min", None), Col("history.kl_last", "kl_akhir", 1),
    Col("history.beta_epoch", "epoch_beta", None),
    Col("attributes.n_tested", "n_atribut", None),
    Col("attributes.n_significant", "n_atribut_nyata", None),
    Col("attributes.threshold", "ambang_bonferroni", 5),
    Col("attributes.worse", "atribut_lebih_buruk", "text"),
    Col("attributes.better", "atribut_lebih_baik", "text"),
    Col("anomaly.n_clean", "n_bersih", None),
    Col("anomaly.n_anomalous_per_set", "n_anomali_per_set", None),
    Col("anomaly.results.{}.neg_elbo.auroc", "auroc_elbo_{}", 3),
    Col("anomaly.results.{}.complexity_corrected.auroc", "auroc_kompleksitas_{}", 3),
    Col("anomaly.elbo_min", "auroc_min", 3), Col("anomaly.elbo_max", "auroc_maks", 3),
    Col("anomaly.n_kinds", "n_jenis_anomali", None),
    Col("sweep.{}.kl_nats", "sweep_kl_{}", 0), Col("sweep.{}.psnr", "sweep_psnr_{}", 2),
    Col("sweep.{}.face_rate_prior_t1", "sweep_wajah_prior_{}", "%"),
    Col("sweep.{}.face_rate_two_stage_t1", "sweep_wajah_dua_tahap_{}", "%"),
    Col("sweep.{}.swd_16_two_stage_t1", "sweep_swd16_dua_tahap_{}", 1),
    Col("sweep.{}.epochs", "sweep_epoch_{}", None),
    Col("study.finished", "n_run_studi", None), Col("study.planned", "n_run_rencana", None),
    Col("study.claims_id.{}", "klaim_{}", "text"), Col("study.claims.{}", "verdict_{}", "text"),
)
# the keys values() can make: any other {{key}} in the report is a typo
KEYS = re.compile("|".join(c.label.replace("{}", "[a-z0-9_]+") for c in VALUES))


def _prose_record(results: Results) -> dict:
    """The results the prose quotes, nested as ``VALUES`` reads them (keys without dots)."""
    config, _, counts = architecture()
    m = results.main_metrics or {}
    rec = dict(m.get("reconstruction") or {})
    mse, sigma = _get(rec, "mse.mean"), rec.get("decoder_sigma")
    if _finite(mse) and _finite(sigma) and mse > 0:
        rec.update(rmse=math.sqrt(mse), sigma_ratio=sigma / math.sqrt(mse))
    samples = {k.replace(".", ""): dict(s) for k, s in {
        **results.samples, **(m.get("sample_references") or {})}.items()}
    for s in samples.values():
        fake, real = _get(s, "diversity.pixel_l2_fake"), _get(s, "diversity.pixel_l2_real")
        s["l2_share"] = fake / real if _finite(fake) and _finite(real) else None
    record = {
        "arch": {"total": counts["total"], "widths": "–".join(map(str, config.widths)),
                 "blocks": config.blocks_per_stage, "latent_dim": config.latent_dim},
        "main": m, "config": results.main_config, "rec": rec,
        "samples": samples, "real": _get(next(iter(samples.values()), {}), "diversity"),
        "other": {k: v.get("reconstruction", v) for k, v in results.other_metrics.items()},
        "sweep": {"s" + f"{float(r['sigma_min']):g}".replace(".", ""): r.to_dict()
                  for _, r in results.sweep.iterrows()},
        "study": {"finished": results.seeds["finished"].sum(),
                  "planned": results.seeds["planned"].sum(),
                  "claims": {f"{c.hypothesis}_{c.baseline}": c.verdict  # English, for the README
                             for c in study.claims(results.verdicts).itertuples()}
                  if len(results.verdicts) else {}}}
    record["study"]["claims_id"] = {k: VERDICT_WORDS[v] for k, v in record["study"]["claims"].items()}
    if len(results.main_history):
        from resvae_keras.train import history_summary

        record["history"] = history_summary(results.main_history, _get(record, "config.beta"))
    if _get(m, "per_attribute.rows"):
        found = metrics.significant_attributes(
            pd.DataFrame.from_dict(m["per_attribute"]["rows"], orient="index"), ALPHA)
        record["attributes"] = {**found, **{k: ", ".join(f"`{a}`" for a in found[k])
                                            for k in ("worse", "better")}}
    by_kind, _ = _anomaly(results)
    elbo = [a for a in (_get(s, "neg_elbo.auroc") for s in by_kind.values()) if _finite(a)]
    if by_kind:
        record["anomaly"] = {**m["anomaly"], "n_kinds": len(elbo) or None,
                             "elbo_min": min(elbo, default=None),
                             "elbo_max": max(elbo, default=None)}
    return record


def _expand(columns, record: dict) -> list[Col]:
    """``columns`` with each one holding ``{}`` repeated for every key at its place in
    ``record`` (``samples.{}.x`` -> ``samples.prior_t1.x``, ``samples.gmm_t1.x``, ...)."""
    out = []
    for c in columns:
        head, brace, tail = c.key.partition(".{}")
        if not brace:
            out.append(c)
            continue
        out += [c._replace(key=f"{head}.{k}{tail}", label=c.label.replace("{}", k))
                for k in _get(record, head) or {}]
    return out


def values(results: Results) -> dict[str, str]:
    """Every number the report's prose quotes, formatted, under one flat key each.

    Keys whose results are missing are absent; ``fill_regions`` shows them as ``belum diukur``.
    """
    record = _prose_record(results)
    return {c.label: text for c in _expand(VALUES, record) if (text := c.cell(record)) != DASH}


# -- figures: plots.py with Indonesian labels; None while their results are missing ---------


def figure_kurva_loss(results: Results):
    history = results.main_history
    if not len(history):
        return None
    return plots.loss_curves(
        history.assign(epoch=history["epoch"] + 1), ylabel="nats per citra",
        panel_titles={"loss": "loss total (−ELBO dengan β)", "kl_loss": "divergensi KL",
                      "reconstruction_loss": "rekonstruksi −log p(x|z)"},
        series_labels=("latih", "validasi"),
        title="Kurva pelatihan percobaan utama (CelebA 64×64)")


def figure_validation(results: Results, minutes: bool):
    """The arms' validation −ELBO per optimizer step, or per benchmarked minute."""
    curves, timed = study.arm_curves(results.study, results.benchmark)
    if minutes:  # every arm on the time axis, or no figure
        curves = timed if len(timed) == len(curves) else {}
    if not curves:
        return None
    groups = {name: _arm(results.study[name]["arm"]) for name in curves}
    ylabel, arms = "−ELBO validasi (β = 1, nats per citra)", results.arms
    if minutes:
        return plots.grouped_curves(
            curves, groups, "waktu latih terukur (menit, biaya per langkah dari satu benchmark)",
            ylabel, vlines={"waktu yang sama": arms["equal_time_s"].iloc[0] / 60.0},
            title="−ELBO validasi terhadap waktu")
    return plots.grouped_curves(curves, groups, "langkah optimasi", ylabel,
                                hlines={"ambang loss": arms["threshold"].iloc[0]},
                                title="−ELBO validasi per langkah, setiap seed setiap kelompok")


def figure_arm_points(results: Results, columns, title: str):
    """Every seed and each arm's mean of the study measures ``columns`` (or ``columns(arms)``)."""
    table = results.arms
    columns = columns(table) if callable(columns) else columns
    columns = [c for c in columns if c in table and table[c].notna().any()]
    if table.empty or not columns:
        return None
    return plots.arm_points(table, {c: _measure(c).label for c in columns},
                            {a: _arm(a) for a in table["arm"].unique()}, xlabel="kelompok",
                            title=title)


def _sample_measures(arms: pd.DataFrame) -> list[str]:
    return [f"{kind}_{key}" for key in study.sampler_keys(arms)
            for kind in ("face_rate", "swd_mean")] if len(arms) else []


def figure_beta_trend(results: Results, columns, title: str):
    table = results.study_table
    if table.empty or not (table["group"] == "beta").any():
        return None
    return plots.trend_with_spread(
        study.sweep_trend(table, "beta", "beta", list(columns)),
        {c: _measure(c).label for c in columns}, "β (skala log)", logx=True,
        spread_label="±1 SD antar-seed (kelompok residual)", point_label="satu seed per titik",
        mean_label="rata-rata {n} seed", title=title)


def figure_per_atribut(results: Results):
    top = per_attribute_rows(results)
    if top.empty:
        return None
    bars = pd.DataFrame({"selisih": 1e3 * top["difference"].astype(float),
                         "galat": 1e3 * top["se_difference"].astype(float)})
    bars.index.name = "atribut"
    return plots.metric_bars(bars, value="selisih", error="galat", xlabel="atribut",
                             ylabel="selisih MSE ×10³ (dengan − tanpa)",
                             title="Atribut dan galat rekonstruksi (± galat baku)")


def figure_auroc(results: Results):
    by_kind, strengths = _anomaly(results)
    if not by_kind:
        return None
    auroc = pd.Series({_anomaly_label(k, strengths): _get(v, "neg_elbo.auroc")
                       for k, v in by_kind.items()}, dtype=float, name="AUROC")
    return plots.metric_bars(auroc, xlabel="jenis anomali", ylabel="AUROC skor −ELBO",
                             hlines={"tebakan acak (0.5)": 0.5}, limits=(0, 1.05),
                             title="Deteksi anomali dengan −ELBO")


def figure_norma_interpolasi(results: Results):
    """Norm of z along lerp and slerp paths between prior samples: needs only the latent size."""
    from resvae_keras import latent

    d = int((results.main_config or {}).get("latent_dim") or Config().latent_dim)
    z0, z1 = latent.prior_samples(200, d, seed=1), latent.prior_samples(200, d, seed=2)
    return plots.norm_plot(latent.norm_along_path(z0, z1, steps=21), d,
                           xlabel="t (posisi sepanjang lintasan)",
                           ylabel="norma ‖z‖ (rata-rata 200 pasang)",
                           hline_labels=("√d: norma khas sampel N(0, I)", "√(d/2)"),
                           title=f"Norma z sepanjang lintasan antara dua sampel prior (d = {d})")


def figure_model_bawaan(results: Results):
    sweep = results.sweep
    if not len(sweep):
        return None
    columns = {"psnr": "distorsi: PSNR uji (dB)", "face_rate_prior_t1": "laju wajah, prior T = 1",
               "swd_16_prior_t1": "SWD 16 px ×10³, prior", "face_rate_two_stage_t1":
               "laju wajah, dua tahap"}
    return plots.tradeoff(sweep.set_index(sweep["sigma_min"].map(_floor)), "kl_nats",
                          {c: label for c, label in columns.items() if c in sweep},
                          "laju: KL (nats per citra)",
                          title="Laju, distorsi dan realisme per lantai σ (satu percobaan per titik)")


FIGURES = {  # figures/<name>.png -> its drawing function of the results
    "laporan_kurva_loss": figure_kurva_loss,
    "laporan_val_loss_epoch": partial(figure_validation, minutes=False),
    "laporan_val_loss_waktu": partial(figure_validation, minutes=True),
    "laporan_ablasi_psnr": partial(
        figure_arm_points, columns=("psnr", "ssim", "sharpness_ratio"),
        title="Rekonstruksi per kelompok: setiap seed dan rata-rata dengan IK 95%"),
    "laporan_ablasi_swd": partial(
        figure_arm_points, columns=_sample_measures,
        title="Sampel per kelompok: setiap seed dan rata-rata dengan IK 95%"),
    "laporan_ablasi_waktu": partial(
        figure_arm_points, title="Kecepatan pelatihan per kelompok",
        columns=("steps_to_threshold", "seconds_to_threshold", "val_neg_elbo_at_equal_time")),
    "laporan_rate_distorsi": partial(
        figure_beta_trend, columns=("kl_nats", "psnr"),
        title="Laju (KL) dan distorsi (PSNR) terhadap β, satu seed per titik"),
    "laporan_swd_beta": partial(
        figure_beta_trend, columns=("swd_mean_prior_t1", "face_rate_prior_t1"),
        title="Realisme sampel prior terhadap β, satu seed per titik"),
    "laporan_model_bawaan": figure_model_bawaan,
    "laporan_per_atribut": figure_per_atribut,
    "laporan_auroc": figure_auroc,
    "laporan_norma_interpolasi": figure_norma_interpolasi,
}


def _write_if_changed(path: Path, content: bytes) -> bool:
    if path.is_file() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return True


def draw_figures(results: Results, figures_dir: Path) -> list[Path]:
    """Draw every ``FIGURES`` entry whose results exist into ``figures_dir/<name>.png``;
    returns the paths whose bytes changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updated = []
    for name, draw in FIGURES.items():
        fig = draw(results)
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI, bbox_inches="tight",
                    metadata={"Software": None})
        plt.close(fig)
        if _write_if_changed(figures_dir / f"{name}.png", buffer.getvalue()):
            updated.append(figures_dir / f"{name}.png")
    return updated


# -- filling the report -----------------------------------------------------------------


def fill_regions(text: str, results: Results, figures_dir: Path, missing: str = MISSING) -> str:
    """``text`` with every marked region rewritten from ``results``.

    A TEXT region's ``{{key}}`` becomes ``values(results)[key]``, or ``missing`` for a key of
    ``VALUES`` the results lack. Raises ValueError for a TABLE region without a generator, or a
    ``{{key}}`` outside a TEXT marker (it would be lost when filled); KeyError for a key
    ``VALUES`` never makes.
    """
    known = values(results) if any(m["kind"] == "TEXT" for m in REGION.finditer(text)) else {}

    def value(match: re.Match) -> str:  # a {{key}}: its value, or ``missing`` while unmeasured
        if match[1] not in known and not KEYS.fullmatch(match[1]):
            raise KeyError(f"{match[0]} in the report is no key of report.values(); fix the "
                           "name or add it to report.VALUES")
        return known.get(match[1], missing)

    def body(match: re.Match) -> str:
        kind, name = match["kind"], match["name"]
        if kind == "TEXT":
            return PLACEHOLDER.sub(value, match["template"] or "")
        if kind == "FIGURE":
            if (figures_dir / f"{name}.png").is_file():
                return f"![{match['caption'] or name}](../figures/{name}.png)"
            return not_available(f"`figures/{name}.png`", EITHER_COMMAND)
        if name not in REGIONS:
            raise ValueError(f"a region TABLE: {name} has no generator in report.REGIONS; "
                             f"known: {sorted(REGIONS)}")
        table, lacking = REGIONS[name]
        filled = table(results)
        return not_available(*lacking) if filled is None else filled

    filled = REGION.sub(lambda m: f"{m['begin']}\n{body(m).strip()}\n\n{m['end']}", text)
    stray = PLACEHOLDER.search(REGION.sub("", filled))
    if stray:
        raise ValueError(f"{stray[0]} stands outside a TEXT marker and would be lost: move it "
                         "into the template of a <!-- BEGIN TEXT: name ... --> region")
    return filled


def regions(text: str) -> dict[str, str]:
    """``{name: body}`` of every generated region of ``text`` (bodies without the markers)."""
    return {m["name"]: m["body"] for m in REGION.finditer(text)}


def figure_references(text: str) -> list[str]:
    """File names of the figures a report references as ``../figures/NAME.png``."""
    return re.findall(r"!\[[^\]]*\]\(\.\./figures/([^)\s]+\.png)\)", text)


def collect_run(run_dir, name: str = MAIN_RUN, results_root=None) -> list[Path]:
    """Copy an evaluated run's ``config.json``, ``history.csv``, ``metrics*.json`` and its last
    per-epoch grid (as ``grid_last_epoch.png``) into ``report/results/<name>/`` (the files the
    report reads); returns the paths written."""
    run = Path(run_dir)
    run = run if run.is_absolute() else project_root() / run
    if not (run / "metrics.json").is_file():
        raise FileNotFoundError(
            f"run_dir={str(run_dir)!r} has no metrics.json: evaluate it first with "
            f"python -m resvae_keras evaluate --run-dir {run_dir}")
    dest = Path(results_root or study.results_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    copies = [(p, p.name) for p in [run / "config.json", run / "history.csv",
                                    *sorted(run.glob("metrics*.json"))] if p.is_file()]
    grids = sorted((run / "grids").glob("epoch_*.png"))
    copies += [(grids[-1], "grid_last_epoch.png")] if grids else []
    for source, target in copies:
        shutil.copy(source, dest / target)
    return [dest / target for _, target in copies]


def render_html(report_path: Path | None = None) -> Path | None:
    """Render ``laporan.md`` to ``laporan.html`` beside it with pandoc; None without pandoc."""
    report_path = Path(report_path or project_root() / "report" / "laporan.md")
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        print("pandoc not found: report/laporan.md is up to date but was not rendered to HTML. "
              "Install it with `sudo apt-get install pandoc` (Debian/Ubuntu) and run "
              "`make report` again.")
        return None
    out, root = report_path.with_suffix(".html"), report_path.resolve().parent.parent
    subprocess.run([pandoc, report_path.name, "--standalone", "--toc", "--mathml", "-V",
                    "maxwidth=60em", f"--resource-path=.:{root}", "-o", out.name],
                   cwd=report_path.parent, check=True)
    return out


def build_report(results_root: Path | str | None = None, report_path: Path | str | None = None,
                 figures_dir: Path | str | None = None, figures: bool = True,
                 html: bool = True, readme_path: Path | str | None = None) -> list[Path]:
    """Redraw the figures, refill every generated region of ``laporan.md``, render HTML.

    Args:
        results_root: folder with ``celeba-subset/`` and ``study/`` (default ``report/results``).
        report_path: the report to fill in place (default ``report/laporan.md``).
        figures_dir: where ``laporan_*.png`` go and figure references are checked (``figures/``).
        figures: redraw the ``laporan_*`` figures first.
        html: render ``laporan.html`` with pandoc when it is installed.
        readme_path: a README whose marked regions (e.g. ``findings``) are filled too; by
            default the project's ``README.md`` when ``report_path`` is the default one.

    Returns the paths whose contents changed (figures, the report, the README, the HTML).
    """
    if readme_path is None and report_path is None:
        readme_path = project_root() / "README.md"
    report_path = Path(report_path or project_root() / "report" / "laporan.md")
    if not report_path.is_file():
        raise FileNotFoundError(
            f"report_path={str(report_path)!r} does not exist: the report with its marked regions "
            "is report/laporan.md in the project root")
    figures_dir = Path(figures_dir or project_root() / "figures")
    results = Results(results_root)
    updated = draw_figures(results, figures_dir) if figures else []
    targets = [(report_path, MISSING)]
    if readme_path is not None and Path(readme_path).is_file():
        targets.append((Path(readme_path), "not measured yet"))
    for path, missing in targets:
        if _write_if_changed(path, fill_regions(path.read_text(), results, figures_dir,
                                                missing).encode()):
            updated.append(path)
    if html and (out := render_html(report_path)) is not None:
        updated.append(out)
    return updated
