"""The written report: fill ``report/laporan.md`` (and the README) from the committed results.

Prose lives in the markdown. The generator writes only tables, figures and numbers, in three
kinds of marked regions that ``build_report`` rewrites in place::

    <!-- BEGIN TABLE: rekonstruksi -->          a table from the function in ``REGIONS``
    <!-- BEGIN FIGURE: laporan_auroc "caption" -->   ``figures/<name>.png`` once drawn
    <!-- BEGIN TEXT: rq2
    Pada {{n_uji}} citra uji, PSNR rata-rata {{psnr}} dB ...
    -->                                          the template, kept in the marker, with every
    ...filled text...                            ``{{key}}`` replaced from ``values(results)``
    <!-- END TEXT: rq2 -->

``values`` is one flat ``{key: formatted number}`` dict; a value the results files lack reads
``belum diukur``. A ``{{key}}`` that ``values`` does not know is an error, so a typo in the
report fails ``make report``. Every number comes from a file under ``report/results/``:

    report/results/celeba-subset/   the main run: config.json, history.csv, metrics.json
    report/results/study/           runs.csv, benchmark.json, per run config/history/metrics

    python -m resvae_keras report      # or: make report
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras import study
from resvae_keras.config import project_root

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

MAIN_COMMAND = (
    "python -m resvae_keras train --profile celeba-subset && "
    "python -m resvae_keras evaluate --run-dir runs/celeba-subset"
)
STUDY_COMMAND = "python -m resvae_keras study"
MAIN_METRICS = f"`report/results/{MAIN_RUN}/metrics.json`"

# Labels of names in the results files (words, not sentences).
ARM_NAMES = {"residual": "ResVAE (residual)", "plain": "VAE polos", "conv": "VAE konvolusional"}
STUDY_MEASURES = {  # study measure -> (Indonesian label, decimals)
    "psnr": ("PSNR (dB)", 2),
    "ssim": ("SSIM", 4),
    "ms_ssim": ("MS-SSIM", 4),
    "neg_elbo_bpd": ("−ELBO (bit/dim)", 4),
    "kl_nats": ("KL (nats)", 1),
    "sharpness_ratio": ("Rasio ketajaman rekonstruksi", 3),
    "face_rate_prior_t1": ("Laju deteksi wajah, prior", 3),
    "swd_mean_prior_t1": ("SWD prior (×10³)", 2),
    "face_rate_gmm_t1": ("Laju deteksi wajah, GMM", 3),
    "swd_mean_gmm_t1": ("SWD GMM (×10³)", 2),
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
ALPHA = study.ALPHA
SAMPLER_NAMES = {"prior": "prior N(0, I)", "two_stage": "VAE dua tahap",
                 "gmm": "GMM ex-post 10 komponen"}
REFERENCE_NAMES = {"real_test": "wajah uji nyata terhadap wajah latih (batas bawah)",
                   "reconstructions": "rekonstruksi wajah uji"}
ANOMALY_NAMES = {
    "noise": "derau Gaussian", "occlusion": "oklusi kotak", "rotation": "rotasi terbalik",
    "non_face": "bukan wajah",
}
SCORE_NAMES = {
    "neg_elbo": "−ELBO", "reconstruction_mse": "MSE rekonstruksi",
    "complexity_corrected": "−ELBO terkoreksi kompleksitas",
}
LIKELIHOOD_NAMES = {
    "gaussian_learned": "Gaussian, σ dipelajari", "gaussian": "Gaussian, σ² = 1/2 tetap",
    "bernoulli": "Bernoulli",
}


# -- formatting -------------------------------------------------------------------------


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float, np.number)) and math.isfinite(value)


def num(value, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with a fixed number of decimals; a dash when missing or not finite."""
    if not _finite(value):
        return DASH
    return f"{float(value) * scale:.{decimals}f}"


def integer(value) -> str:
    """An integer with non-breaking spaces between thousands (``1 542 464``)."""
    if not _finite(value):
        return DASH
    return f"{int(round(float(value))):,}".replace(",", NBSP)


def plus_minus(mean, std, decimals: int, scale: float = 1.0) -> str:
    """``mean ± std``; the mean alone when the std is missing (a single run)."""
    if not _finite(std):
        return num(mean, decimals, scale)
    return f"{num(mean, decimals, scale)} ± {num(std, decimals, scale)}"


def p_value(p) -> str:
    """Three decimals, or scientific notation below 0.001 (``7.2e-06``)."""
    if not _finite(p):
        return DASH
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def shape(dims) -> str:
    """A tensor shape without the batch axis: ``32×32×64``."""
    return "×".join(str(d) for d in dims)


def markdown_table(columns, rows, numeric=None) -> str:
    """A pipe table; ``numeric`` columns (indices) are right-aligned."""
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
    value = mapping
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


# -- the results ------------------------------------------------------------------------


class Results:
    """The committed results under ``root`` (default ``report/results``), read lazily."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else study.results_dir()
        self.main_dir = self.root / MAIN_RUN
        self.study_dir = self.root / "study"

    def _json(self, path: Path):
        return json.loads(path.read_text()) if path.is_file() else None

    @cached_property
    def main_metrics(self) -> dict | None:
        return self._json(self.main_dir / "metrics.json")

    @cached_property
    def main_config(self) -> dict | None:
        return self._json(self.main_dir / "config.json")

    @cached_property
    def main_history(self) -> pd.DataFrame | None:
        path = self.main_dir / "history.csv"
        if not path.is_file():
            return None
        history = pd.read_csv(path)
        return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)

    @cached_property
    def other_metrics(self) -> dict[str, dict]:
        """``metrics_<data>.json`` of the main run: the model on other data, by name."""
        return {
            path.stem.removeprefix("metrics_"): json.loads(path.read_text())
            for path in sorted(self.main_dir.glob("metrics_*.json"))
        }

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


# -- the architecture (needs Keras, no results) -----------------------------------------


@cache
def architecture() -> dict:
    """Layers of the default architecture (``Config()``, also the ``celeba-subset`` one).

    Returns a dict: ``rows`` ``[(part, layer, kind, output shape tuple, params)]``,
    ``encoder``/``decoder``/``total``/``trainable`` parameter counts, ``plain_total`` (the
    same network without shortcuts, the ablation's plain arm) and ``config`` (widths, blocks,
    latent size, image size).
    """
    from resvae_keras.config import Config
    from resvae_keras.model import build_model

    config = Config()
    model = build_model(config)
    rows = []
    for part, network in (("enkoder", model.encoder), ("dekoder", model.decoder)):
        for layer in network.layers:
            rows.append((part, layer.name, _layer_kind(layer), tuple(layer.output.shape[1:]),
                         int(layer.count_params())))
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    plain = build_model(config.replace(residual=False))
    result = {
        "rows": rows,
        "encoder": int(model.encoder.count_params()),
        "decoder": int(model.decoder.count_params()),
        "total": int(model.count_params()),
        "trainable": trainable,
        "plain_total": int(plain.count_params()),
        "config": {"widths": list(config.widths), "blocks_per_stage": config.blocks_per_stage,
                   "latent_dim": config.latent_dim, "image_size": config.image_size},
    }
    return result


def _layer_kind(layer) -> str:
    kind = type(layer).__name__
    if kind == "Conv2D":
        k, s = layer.kernel_size[0], layer.strides[0]
        return f"konvolusi {k}×{k}" + (f", langkah {s}" if s > 1 else "")
    return {
        "InputLayer": "masukan",
        "Rescaling": "skala [0, 1] → [−1, 1]",
        "ResidualBlock": "blok residual pra-aktivasi",
        "GroupNormalization": "GroupNorm",
        "Activation": "SiLU",
        "Flatten": "perataan",
        "Dense": "lapisan padat",
        "Reshape": "ubah bentuk",
        "Upsample": "tetangga terdekat ×2 + konvolusi 3×3",
        "DepthToSpace": "sub-piksel (depth-to-space ×2)",
    }.get(kind, kind)


def table_arsitektur(results: Results) -> str:
    arch = architecture()
    rows = [(part, f"`{name}`", kind, shape(out), integer(params))
            for part, name, kind, out, params in arch["rows"]]
    rows += [
        ("total", "enkoder", "", "", integer(arch["encoder"])),
        ("total", "dekoder", "", "", integer(arch["decoder"])),
        ("total", "model (termasuk log σ dan β)", "", "", integer(arch["total"])),
        ("total", "dapat dilatih", "", "", integer(arch["trainable"])),
        ("total", "VAE polos (tanpa shortcut)", "", "", integer(arch["plain_total"])),
    ]
    return markdown_table(
        ["Bagian", "Lapisan", "Jenis", "Bentuk keluaran", "Parameter"], rows, numeric=[4])


def table_diagram(results: Results) -> str:
    """The encoder-decoder flow with the real output shapes, stages folded into one line."""
    arch = architecture()
    lines = ["```text"]
    for part, title in (("enkoder", "ENKODER  q(z | x)"), ("dekoder", "DEKODER  p(x | z)")):
        lines.append(title)
        layers = [row for row in arch["rows"] if row[0] == part]
        i = 0
        while i < len(layers):
            _, name, kind, out, _ = layers[i]
            j = i
            while (kind.startswith("blok residual") and j + 1 < len(layers)
                   and layers[j + 1][2] == kind and layers[j + 1][3] == out):
                j += 1
            label = f"{j - i + 1} × {kind}" if j > i else kind
            lines.append(f"  │ {label:<44} → {shape(out)}")
            i = j + 1
        if part == "enkoder":
            lines.append("  │ z = z_mean + exp(½ · z_log_var) ⊙ ε,  ε ~ N(0, I)   "
                         "(reparameterisasi)")
        else:
            lines.append("  │ sigmoid → citra rerata x̂ ∈ [0, 1]")
    lines.append("```")
    return "\n".join(lines)


# -- BAB III: data and training -----------------------------------------


def table_data(results: Results) -> str:
    m = results.main_metrics
    counts = _get(m, "data.split_counts") if m else None
    if not counts:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    names = {"train": "latih (train)", "val": "validasi (val)", "test": "uji (test)"}
    total = sum(counts.values())
    rows = [(names.get(k, k), integer(v), num(100 * v / total, 1)) for k, v in counts.items()]
    rows.append(("jumlah", integer(total), num(100.0, 1)))
    return markdown_table(["Split", "Jumlah citra", "Porsi (%)"], rows)


HYPERPARAMETERS = (  # config key -> Indonesian label
    ("image_size", "Ukuran citra (piksel)"),
    ("widths", "Lebar kanal per tahap"),
    ("blocks_per_stage", "Blok residual per tahap"),
    ("latent_dim", "Dimensi laten d"),
    ("likelihood", "*Likelihood* rekonstruksi"),
    ("beta", "β (bobot KL)"),
    ("kl_warmup_steps", "Pemanasan KL (langkah)"),
    ("batch_size", "Ukuran batch"),
    ("learning_rate", "Laju belajar Adam"),
    ("epochs", "Epoch"),
    ("seed", "*Seed*"),
    ("mixed_precision", "Presisi"),
)


def _config_value(key: str, value) -> str:
    if key == "widths":
        return "–".join(str(w) for w in value)
    if key == "likelihood":
        return LIKELIHOOD_NAMES.get(value, str(value))
    if key == "mixed_precision":
        return "float32" if value is None else str(value)
    if key == "seed" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if key == "learning_rate":
        return f"{value:g}"
    if key == "beta":
        return f"{value:g}"
    return str(value)


def table_hiperparameter(results: Results) -> str:
    main = results.main_config
    runs = results.study
    reference = runs.get("residual_s0", {}).get("config") or next(
        (r["config"] for r in runs.values() if r.get("config")), None)
    if main is None and reference is None:
        return not_available(
            f"`report/results/{MAIN_RUN}/config.json` dan `report/results/study/*/config.json`",
            f"{MAIN_COMMAND}` atau `{STUDY_COMMAND}")
    seeds = sorted({r["config"]["seed"] for r in runs.values() if "seed" in r.get("config", {})})
    rows = []
    for key, label in HYPERPARAMETERS:
        main_cell = _config_value(key, main[key]) if main and key in main else DASH
        if reference and key in reference:
            value = seeds if key == "seed" and seeds else reference[key]
            study_cell = _config_value(key, value)
        else:
            study_cell = DASH
        rows.append((label, main_cell, study_cell))
    return markdown_table(["Hiperparameter", "Percobaan utama", "Studi perbandingan (percobaan acuan)"], rows,
                          numeric=[])


def _time_row(label, history: pd.DataFrame, config: dict):
    return (
        label,
        integer(len(history)),
        _config_value("mixed_precision", config.get("mixed_precision")) if config else DASH,
        num(history["epoch_time_s"].median(), 1),
        num(history["wall_time_s"].iloc[-1] / 60.0, 1),
        num(history["val_loss"].min(), 1),
    )


def table_waktu(results: Results) -> str:
    rows = []
    if results.main_history is not None and len(results.main_history):
        rows.append(_time_row(f"`{MAIN_RUN}` (percobaan utama)", results.main_history,
                              results.main_config or {}))
    for name, r in results.study.items():
        if len(r["history"]):
            rows.append(_time_row(f"`{name}`", r["history"], r.get("config", {})))
    if not rows:
        return not_available("`history.csv` percobaan utama maupun percobaan studi",
                             f"{MAIN_COMMAND}` atau `{STUDY_COMMAND}")
    return markdown_table(
        ["Percobaan", "Epoch", "Presisi", "Median waktu/epoch (s)", "Total waktu latih (menit)",
         "Val loss terbaik (nats)"], rows, numeric=[1, 3, 4, 5])


# -- BAB IV: tables --------------------------------------------------------------------

RECONSTRUCTION_ROWS = (  # key in metrics.json "reconstruction" -> (label, decimals)
    ("mse", "MSE per piksel", 5),
    ("psnr", "PSNR (dB)", 2),
    ("ssim", "SSIM", 4),
    ("ms_ssim", "MS-SSIM", 4),
    ("neg_elbo_nats", "−ELBO (nats per citra)", 1),
    ("reconstruction_nll_nats", "−log p(x|z) (nats per citra)", 1),
    ("kl_nats", "KL (nats per citra)", 1),
    ("bits_per_dim", "−ELBO (bit per dimensi)", 4),
)


def table_rekonstruksi(results: Results) -> str:
    m = results.main_metrics
    rec = m and m.get("reconstruction")
    if not rec:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    rows = [(label, num(_get(rec, f"{key}.mean"), d), num(_get(rec, f"{key}.std"), d))
            for key, label, d in RECONSTRUCTION_ROWS]
    rows.append(("σ dekoder (satuan intensitas [0, 1])", num(rec.get("decoder_sigma"), 4), DASH))
    return markdown_table(["Metrik", "Rata-rata", "Simpangan baku"], rows)


def table_generalisasi(results: Results) -> str:
    m = results.main_metrics
    if not m or not m.get("reconstruction"):
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    sets = [("split uji (aturan cadangan)", m["reconstruction"])]
    for name, other in results.other_metrics.items():
        rec = other.get("reconstruction", other)
        sets.append((f"`{name}`", rec))
    rows = [(label, integer(rec.get("n_images")), num(_get(rec, "mse.mean"), 5),
             num(_get(rec, "psnr.mean"), 2), num(_get(rec, "ssim.mean"), 4),
             num(_get(rec, "ms_ssim.mean"), 4), num(_get(rec, "bits_per_dim.mean"), 4))
            for label, rec in sets]
    table = markdown_table(["Data", "n", "MSE", "PSNR (dB)", "SSIM", "MS-SSIM", "bit/dim"], rows)
    if len(sets) == 1:
        table += "\n\n" + not_available(
            f"evaluasi pada potongan wajah partisi uji resmi (`report/results/{MAIN_RUN}/metrics_*.json`)",
            "evaluate.evaluate_run('runs/celeba-subset', data_dir=<folder potongan wajah>, "
            "cache_dir=<folder cache>)")
    return table


def per_attribute_rows(results: Results, k: int = 10) -> pd.DataFrame | None:
    """The ``k`` attributes with the largest |t| of the MSE gap, largest gap first."""
    rows = _get(results.main_metrics or {}, "per_attribute.rows")
    if not rows:
        return None
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table[np.isfinite(table["t"].astype(float))]
    top = table.reindex(table["t"].abs().sort_values(ascending=False).index[:k])
    return top.sort_values("difference", ascending=False)


def table_per_atribut(results: Results) -> str:
    top = per_attribute_rows(results)
    if top is None:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    rows = [(f"`{name}`", integer(r.n_with), integer(r.n_without), num(r.mean_with, 3, 1e3),
             num(r.mean_without, 3, 1e3), num(r.difference, 3, 1e3), num(r.t, 2),
             p_value(r.p_value)) for name, r in top.iterrows()]
    return markdown_table(
        ["Atribut", "n dengan", "n tanpa", "MSE dengan (×10³)", "MSE tanpa (×10³)",
         "Selisih (×10³)", "t Welch", "p"], rows)


def _samples(results: Results) -> dict:
    return _get(results.main_metrics or {}, "samples") or {}


def _sampler_label(key: str, report: dict) -> str:
    sampler = report.get("sampler", key.split("_")[0])
    return f"{SAMPLER_NAMES.get(sampler, sampler)}, T = {report.get('temperature', 1.0):g}"


def table_sampel(results: Results) -> str:
    samples = _samples(results)
    if not samples:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    # metrics.json files written before the face-detection rate have neither the column
    # nor the reference rows; their table stays as it was
    references = _get(results.main_metrics, "sample_references") or {}
    with_faces = any("face_rate" in s.get("realism", {}) for s in samples.values())
    rows = []
    for key, s in [*samples.items(), *references.items()]:
        r = s.get("realism", {})
        swd = r.get("swd", {})
        label = REFERENCE_NAMES.get(key) if key in references else _sampler_label(key, s)
        faces = (num(r.get("face_rate"), 3),) if with_faces else ()
        rows.append((label, integer(s.get("n_images")), *faces,
                     num(swd.get("swd_64"), 1), num(swd.get("swd_32"), 1),
                     num(swd.get("swd_16"), 1), num(swd.get("swd_mean"), 1),
                     num(r.get("fid"), 2), num(r.get("kid_mean"), 2, 1e3),
                     num(r.get("precision"), 3), num(r.get("recall"), 3)))
    return markdown_table(
        ["Sampler", "n", *(("Laju deteksi wajah",) if with_faces else ()), "SWD 64 px",
         "SWD 32 px", "SWD 16 px", "SWD rata-rata", "FID", "KID (×10³)", "Presisi", "Recall"],
        rows)


def table_keragaman(results: Results) -> str:
    samples = _samples(results)
    if not samples:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    rows = []
    for key, s in samples.items():
        d, mem = s.get("diversity", {}), s.get("memorization", {})
        rows.append((_sampler_label(key, s), num(d.get("pixel_l2_fake"), 2),
                     num(d.get("ms_ssim_fake"), 4), num(_get(mem, "sample_to_train.median"), 2),
                     num(mem.get("median_ratio"), 3),
                     num(_pct(mem.get("share_closer_than_test_p01")), 1)))
    first = next(iter(samples.values()))
    d, mem = first.get("diversity", {}), first.get("memorization", {})
    rows.append(("wajah uji nyata (acuan)", num(d.get("pixel_l2_real"), 2),
                 num(d.get("ms_ssim_real"), 4), num(_get(mem, "test_to_train.median"), 2),
                 DASH, DASH))
    return markdown_table(
        ["Sampler", "Jarak L2 antar-pasangan", "MS-SSIM antar-pasangan",
         "Median jarak ke citra latih terdekat", "Rasio median terhadap wajah uji",
         "Sampel lebih dekat dari persentil 1% uji (%)"], rows)


def _pct(value):
    return None if value is None else 100.0 * value


def table_laten(results: Results) -> str:
    lat = _get(results.main_metrics or {}, "latent")
    if not lat:
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    top = ", ".join(f"z{u} ({num(kl, 2)})" for u, kl in
                    zip(lat.get("top_units", [])[:5], lat.get("top_units_kl_nats", [])[:5],
                        strict=False))
    rows = [
        ("Dimensi laten d", integer(lat.get("latent_dim"))),
        (f"Unit aktif (variansi E[z_j | x] > {lat.get('threshold', 0.01):g})",
         integer(lat.get("active_units"))),
        ("KL total rata-rata (nats per citra)", num(lat.get("kl_total_nats"), 1)),
        ("Lima dimensi dengan KL terbesar (nats)", top or DASH),
    ]
    return markdown_table(["Besaran", "Nilai"], rows)


def _anomaly_label(kind: str, strengths: dict) -> str:
    name = ANOMALY_NAMES.get(kind, kind)
    strength = strengths.get(kind)
    if kind == "noise" and _finite(strength):
        return f"{name} (σ = {strength:g})"
    if kind == "occlusion" and _finite(strength):
        return f"{name} (sisi {100 * strength:g}% citra)"
    return name


def table_anomali(results: Results) -> str:
    anomaly = _get(results.main_metrics or {}, "anomaly")
    if not anomaly or not anomaly.get("results"):
        return not_available(MAIN_METRICS, MAIN_COMMAND)
    strengths = anomaly.get("corruption_strengths", {})
    rows = []
    for kind, by_score in anomaly["results"].items():
        for score, r in by_score.items():
            rows.append((_anomaly_label(kind, strengths), SCORE_NAMES.get(score, score),
                         num(r.get("auroc"), 3), num(r.get("ap"), 3)))
    return markdown_table(["Anomali", "Skor", "AUROC", "AP"], rows, numeric=[2, 3])


def _label(measure: str) -> tuple[str, int]:
    return STUDY_MEASURES.get(measure, (measure, 3))


ABLATION_COLUMNS = ("psnr", "ssim", "ms_ssim", "neg_elbo_bpd", "sharpness_ratio",
                    "face_rate_prior_t1", "swd_mean_prior_t1", "steps_to_threshold")


def table_ablasi(results: Results) -> str:
    table = results.arms
    if table.empty:
        return not_available("percobaan kelompok studi (`report/results/study/*/metrics.json`)", STUDY_COMMAND)
    columns = [c for c in ABLATION_COLUMNS if c in table]
    rows = [(f"`{name}`", ARM_NAMES.get(r["arm"], r["arm"]), integer(r["seed"]),
             *(num(r[c], _label(c)[1]) for c in columns)) for name, r in table.iterrows()]
    return markdown_table(["Percobaan", "Kelompok", "Seed", *(_label(c)[0] for c in columns)], rows,
                          numeric=range(2, 3 + len(columns)))


def table_ablasi_ringkasan(results: Results) -> str:
    table = results.arms
    if table.empty:
        return not_available("percobaan kelompok studi (`report/results/study/*/metrics.json`)", STUDY_COMMAND)
    columns = [c for c in STUDY_MEASURES if c in table and table[c].notna().any()]
    summary = study.arm_summary(table, columns)
    arms = list(summary.index)
    rows = [(_label(c)[0], *(plus_minus(summary.loc[a, f"{c}_mean"], summary.loc[a, f"{c}_sd"],
                                        _label(c)[1]) for a in arms)) for c in columns]
    counts = results.seeds.loc["arms"]
    rows.append(("Jumlah seed", *(f"{integer(summary.loc[a, 'n'])} dari "
                                  f"{integer(counts.loc[a, 'planned'])}" for a in arms)))
    return markdown_table(["Ukuran", *(ARM_NAMES.get(a, a) for a in arms)], rows)


def _interval(value, low, high, decimals: int) -> str:
    if not _finite(value):
        return DASH
    if not (_finite(low) and _finite(high)):
        return num(value, decimals)
    return f"{num(value, decimals)} [{num(low, decimals)}, {num(high, decimals)}]"


def _testable(results: Results) -> bool:
    return bool((results.verdicts["verdict"] != "not testable").any()) if len(
        results.verdicts) else False


def table_uji_welch(results: Results) -> str:
    if not _testable(results):
        return not_available("sekurang-kurangnya dua seed per kelompok untuk uji Welch", STUDY_COMMAND)
    rows = []
    for r in results.verdicts.itertuples():
        label, decimals = _label(r.measure)
        rows.append((HYPOTHESIS_NAMES[r.hypothesis].split(" ")[0],
                     f"{ARM_NAMES.get(r.arm, r.arm)} − {ARM_NAMES.get(r.baseline, r.baseline)}",
                     label, f"{r.n_arm}/{r.n_baseline}",
                     _interval(r.diff, r.diff_ci_low, r.diff_ci_high, decimals),
                     _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2), p_value(r.p),
                     p_value(r.p_holm), VERDICT_WORDS[r.verdict]))
    return markdown_table(["Hipotesis", "Perbandingan", "Ukuran", "n", "Selisih [IK 95%]",
                           "g Hedges [IK 95%]", "p", "p Holm", "Kesimpulan"], rows,
                          numeric=[3, 4, 5, 6, 7])


def table_status(results: Results) -> str:
    """Which results files exist: the main run's, and the study runs per arm."""
    main = [f for f in ("config.json", "history.csv", "metrics.json")
            if (results.main_dir / f).is_file()]
    counts = results.seeds
    rows = [(f"percobaan utama (`report/results/{MAIN_RUN}/`)",
             ", ".join(f"`{f}`" for f in main) or DASH)]
    for group, arm in counts.index:
        r = counts.loc[(group, arm)]
        rows.append((f"studi: {ARM_NAMES.get(arm, arm)}" if group == "arms" else f"studi: {arm}",
                     f"{integer(r.finished)} dari {integer(r.planned)}"))
    rows.append(("studi: `benchmark.json`", "ada" if results.benchmark else DASH))
    return markdown_table(["Hasil", "Tersedia"], rows, numeric=[])


def table_klaim(results: Results) -> str:
    """One row per hypothesis and comparison (``study.claims``), its verdict as a word."""
    if not _testable(results):
        return not_available("sekurang-kurangnya dua seed per kelompok", STUDY_COMMAND)
    rows = [(HYPOTHESIS_NAMES[c.hypothesis], f"{ARM_NAMES.get(c.arm, c.arm)} − "
             f"{ARM_NAMES.get(c.baseline, c.baseline)}", VERDICT_WORDS[c.verdict],
             integer(c.n_supported), integer(c.n_contradicted),
             integer(c.n_no_significant_difference), integer(c.n_not_testable))
            for c in study.claims(results.verdicts).itertuples()]
    return markdown_table(["Hipotesis", "Perbandingan", "Kesimpulan", "Ukuran mendukung",
                           "Ukuran membantah", "Tidak berbeda nyata", "Belum dapat diuji"], rows,
                          numeric=[3, 4, 5, 6])


SWEEP_COLUMNS = ("psnr", "ssim", "sharpness_ratio", "kl_nats", "face_rate_prior_t1",
                 "swd_mean_prior_t1")


def _sweep_table(results: Results, group: str, x: str, header: str, show) -> str:
    table = results.study_table
    if table.empty or not (table["group"] == group).any():
        return not_available(f"percobaan `{group}_*` (`report/results/study/`)", STUDY_COMMAND)
    columns = [c for c in SWEEP_COLUMNS if c in table]
    trend = study.sweep_trend(table, group, x, columns)
    rows = []
    for r in trend.itertuples(index=False):
        values = r._asdict()
        cells = [plus_minus(values[c], values[f"{c}_seed_sd"], _label(c)[1]) if r.n_seeds > 1
                 else num(values[c], _label(c)[1]) for c in columns]
        rows.append((show(r.x), integer(r.n_seeds), *cells))
    return markdown_table([header, "n seed", *(_label(c)[0] for c in columns)], rows,
                          numeric=range(1, 2 + len(columns)))


def table_likelihood(results: Results) -> str:
    return _sweep_table(results, "likelihood", "likelihood", "Likelihood",
                        lambda x: LIKELIHOOD_NAMES.get(x, str(x)))


def table_beta(results: Results) -> str:
    return _sweep_table(results, "beta", "beta", "β", lambda x: f"{float(x):g}")


# -- the numbers of the prose ---------------------------------------------------------------


def _percent(value, decimals: int = 1) -> str:
    """``12.3 %``; a dash when missing."""
    text = num(value, decimals, 100.0)
    return text if text == DASH else f"{text} %"


def _sampler_values(samples: dict) -> dict[str, str]:
    """Per sampler key ``k`` (``prior_t1``, ``prior_t07``, ``gmm_t1``): realism, diversity and
    the nearest-training-face check; the face rate only where the evaluator measured it."""
    out = {}
    for key, s in samples.items():
        k = key.replace(".", "")
        d, mem = s.get("diversity", {}), s.get("memorization", {})
        out[f"swd_{k}"] = num(_get(s, "realism.swd.swd_mean"), 1)
        out[f"wajah_{k}"] = _percent(_get(s, "realism.face_rate"))
        out[f"l2_{k}"] = num(d.get("pixel_l2_fake"), 2)
        out[f"msssim_{k}"] = num(d.get("ms_ssim_fake"), 4)
        out[f"rasio_latih_{k}"] = num(mem.get("median_ratio"), 3)
        out[f"dekat_latih_{k}"] = _percent(mem.get("share_closer_than_test_p01"))
        if _finite(d.get("pixel_l2_fake")) and _finite(d.get("pixel_l2_real")):
            out[f"l2_persen_{k}"] = _percent(d["pixel_l2_fake"] / d["pixel_l2_real"])
        out["l2_nyata"] = num(d.get("pixel_l2_real"), 2)
        out["msssim_nyata"] = num(d.get("ms_ssim_real"), 4)
    return out


def _history_values(h: pd.DataFrame, beta) -> dict[str, str]:
    """Length and shape of the main run's training curves (the KL is U-shaped with warm-up:
    it rises while β is small, falls as β reaches its target, and may rise again)."""
    out = {"epoch": integer(len(h)), "menit_latih": num(h["wall_time_s"].iloc[-1] / 60.0, 1),
           "detik_per_epoch": num(h["epoch_time_s"].median(), 1),
           "epoch_terbaik": integer(int(h["val_loss"].to_numpy().argmin()) + 1)}
    if {"val_reconstruction_loss", "val_kl_loss"} <= set(h.columns):
        kl = h["val_kl_loss"].to_numpy(float)
        low = int(kl[1:].argmin()) + 1 if len(kl) > 1 else 0
        out.update(rek_awal=num(h["val_reconstruction_loss"].iloc[0], 1),
                   rek_akhir=num(h["val_reconstruction_loss"].iloc[-1], 1),
                   kl_awal=num(kl[0], 1), kl_puncak=num(kl[: low + 1].max(), 1),
                   kl_min=num(kl[low], 1), epoch_kl_min=integer(low + 1),
                   kl_akhir=num(kl[-1], 1))
    if "beta" in h.columns and _finite(beta) and beta > 0:
        reached = np.flatnonzero(h["beta"].to_numpy() >= 0.999 * beta)
        if len(reached):
            out["epoch_beta"] = integer(reached[0] + 1)
    return out


def _attribute_values(rows: dict) -> dict[str, str]:
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table[np.isfinite(table["p_value"].astype(float))]
    threshold = ALPHA / max(1, len(table))
    significant = table[table["p_value"] < threshold].sort_values("difference", ascending=False)
    names = significant.index.to_series()
    return {"n_atribut": integer(len(table)), "ambang_bonferroni": f"{threshold:.5f}",
            "n_atribut_nyata": integer(len(significant)),
            "atribut_lebih_buruk": ", ".join(f"`{a}`" for a in names[significant["difference"] > 0])
            or DASH,
            "atribut_lebih_baik": ", ".join(f"`{a}`" for a in names[significant["difference"] < 0])
            or DASH}


def _anomaly_values(anomaly: dict) -> dict[str, str]:
    out = {"n_bersih": integer(anomaly.get("n_clean")),
           "n_anomali_per_set": integer(anomaly.get("n_anomalous_per_set"))}
    elbo = {}
    for kind, by_score in anomaly.get("results", {}).items():
        for score, short in (("neg_elbo", "elbo"), ("reconstruction_mse", "mse"),
                             ("complexity_corrected", "kompleksitas")):
            out[f"auroc_{short}_{kind}"] = num(_get(by_score, f"{score}.auroc"), 3)
        if _finite(_get(by_score, "neg_elbo.auroc")):
            elbo[kind] = by_score["neg_elbo"]["auroc"]
    if elbo:
        out.update(auroc_min=num(min(elbo.values()), 3), auroc_maks=num(max(elbo.values()), 3),
                   n_jenis_anomali=integer(len(elbo)))
    return out


def _study_values(results: Results) -> dict[str, str]:
    counts = results.seeds
    out = {"n_run_studi": integer(counts["finished"].sum()),
           "n_run_rencana": integer(counts["planned"].sum()),
           "benchmark": "tersedia" if results.benchmark else "belum ada"}
    claims = study.claims(results.verdicts) if len(results.verdicts) else pd.DataFrame()
    for c in claims.itertuples():
        out[f"klaim_{c.hypothesis}_{c.baseline}"] = VERDICT_WORDS[c.verdict]
    return out


def values(results: Results) -> dict[str, str]:
    """Every number the report's prose quotes, formatted, under one flat key each.

    Keys whose results are missing are absent; ``fill_text`` shows them as ``belum diukur``.
    Decimals use a point, as in the tables and figures (the report says so once).
    """
    arch = architecture()
    c = arch["config"]
    out = {"n_param": integer(arch["total"]), "lebar": "–".join(map(str, c["widths"])),
           "blok": integer(c["blocks_per_stage"]), "d": integer(c["latent_dim"]),
           "alpha": f"{ALPHA:g}"}
    m = results.main_metrics or {}
    rec = m.get("reconstruction") or {}
    counts = _get(m, "data.split_counts") or {}
    out.update(n_latih=integer(counts.get("train")), n_val=integer(counts.get("val")))
    if rec:
        out.update(n_uji=integer(rec.get("n_images")), psnr=num(_get(rec, "psnr.mean"), 2),
                   ssim=num(_get(rec, "ssim.mean"), 3), ms_ssim=num(_get(rec, "ms_ssim.mean"), 3),
                   bpd=num(_get(rec, "bits_per_dim.mean"), 3), kl=num(_get(rec, "kl_nats.mean"), 1),
                   sigma=num(rec.get("decoder_sigma"), 4))
        mse, sigma = _get(rec, "mse.mean"), rec.get("decoder_sigma")
        if _finite(mse) and _finite(sigma):
            out.update(rmse=num(math.sqrt(mse), 4), rasio_sigma=num(sigma / math.sqrt(mse), 2))
    for name, other in results.other_metrics.items():
        o = other.get("reconstruction", other)
        out.update({f"{name}_n": integer(o.get("n_images")),
                    f"{name}_psnr": num(_get(o, "psnr.mean"), 2),
                    f"{name}_ssim": num(_get(o, "ssim.mean"), 3)})
    if results.main_history is not None and len(results.main_history):
        out.update(_history_values(results.main_history, (results.main_config or {}).get("beta")))
    if _get(m, "per_attribute.rows"):
        out.update(_attribute_values(m["per_attribute"]["rows"]))
    out.update(_sampler_values(_samples(results)))
    if m.get("latent"):
        out.update(unit_aktif=integer(m["latent"].get("active_units")),
                   d_laten=integer(m["latent"].get("latent_dim")))
    if _get(m, "anomaly.results"):
        out.update(_anomaly_values(m["anomaly"]))
    out.update(_study_values(results))
    return {k: v for k, v in out.items() if v != DASH}


KEYS = (  # the keys values() can make (regular expressions): any other {{key}} is a typo
    "n_param|lebar|blok|d|alpha|n_latih|n_val|n_uji|psnr|ssim|ms_ssim|bpd|kl|sigma|rmse|rasio_sigma",
    r"[a-z0-9_]+_(?:n|psnr|ssim)",
    "epoch|menit_latih|detik_per_epoch|epoch_terbaik|epoch_beta|epoch_kl_min",
    "rek_awal|rek_akhir|kl_awal|kl_puncak|kl_min|kl_akhir",
    "n_atribut|ambang_bonferroni|n_atribut_nyata|atribut_lebih_buruk|atribut_lebih_baik",
    r"(?:swd|wajah|l2|msssim|rasio_latih|dekat_latih|l2_persen)_[a-z_]+_t\d+",
    "l2_nyata|msssim_nyata|unit_aktif|d_laten",
    r"n_bersih|n_anomali_per_set|auroc_(?:elbo|mse|kompleksitas)_[a-z_]+|auroc_min|auroc_maks",
    "n_jenis_anomali|n_run_studi|n_run_rencana|benchmark",
    r"klaim_[a-d]_[a-z]+",
)

REGIONS: dict[str, Callable[[Results], str]] = {
    "arsitektur": table_arsitektur,
    "diagram": table_diagram,
    "data": table_data,
    "hiperparameter": table_hiperparameter,
    "waktu": table_waktu,
    "rekonstruksi": table_rekonstruksi,
    "generalisasi": table_generalisasi,
    "per_atribut": table_per_atribut,
    "sampel": table_sampel,
    "keragaman": table_keragaman,
    "laten": table_laten,
    "anomali": table_anomali,
    "status": table_status,
    "ablasi": table_ablasi,
    "ablasi_ringkasan": table_ablasi_ringkasan,
    "uji_welch": table_uji_welch,
    "klaim": table_klaim,
    "likelihood": table_likelihood,
    "beta": table_beta,
}

# -- figures with Indonesian labels -----------------------------------------------------


def figure_kurva_loss(results: Results):
    from resvae_keras import plots

    history = results.main_history
    if history is None or not len(history):
        return None
    return plots.loss_curves(
        history.assign(epoch=history["epoch"] + 1), ylabel="nats per citra",
        panel_titles={"loss": "loss total (−ELBO dengan β)", "kl_loss": "divergensi KL",
                      "reconstruction_loss": "rekonstruksi −log p(x|z)"},
        series_labels=("latih", "validasi"),
        title="Kurva pelatihan percobaan utama (CelebA 64×64)")


def _validation_curves(results: Results, seconds: bool):
    """``({run: (x, y)}, {run: arm label})`` of the arms' validation −ELBO; x in steps, or in
    benchmarked seconds (steps × the arm's seconds per step)."""
    cost = study.seconds_per_step(results.benchmark)
    curves, groups = {}, {}
    for name, r in results.study.items():
        if r["group"] != "arms" or not len(r["history"]):
            continue
        x, y = study.validation_curve(r["history"], r["metrics"]["training"]["steps"])
        if seconds:
            if r["arm"] not in cost:
                return {}, {}
            x = x * cost[r["arm"]] / 60.0
        curves[name], groups[name] = (x, y), ARM_NAMES.get(r["arm"], r["arm"])
    return curves, groups


def figure_val_loss_epoch(results: Results):
    from resvae_keras import plots

    curves, groups = _validation_curves(results, seconds=False)
    if not curves:
        return None
    threshold = results.arms["threshold"].iloc[0]
    return plots.grouped_curves(curves, groups, "langkah optimasi",
                                "−ELBO validasi (β = 1, nats per citra)",
                                hlines={"ambang loss": threshold},
                                title="−ELBO validasi per langkah, setiap seed setiap kelompok")


def figure_val_loss_waktu(results: Results):
    from resvae_keras import plots

    curves, groups = _validation_curves(results, seconds=True)
    if not curves:
        return None
    equal = results.arms["equal_time_s"].iloc[0] / 60.0
    return plots.grouped_curves(curves, groups, "waktu latih terukur (menit, biaya per langkah "
                                "dari satu benchmark)", "−ELBO validasi (β = 1, nats per citra)",
                                vlines={"waktu yang sama": equal},
                                title="−ELBO validasi terhadap waktu")


def _arm_points(results: Results, columns, title: str):
    from resvae_keras import plots

    table = results.arms
    columns = [c for c in columns if c in table and table[c].notna().any()]
    if table.empty or not columns:
        return None
    arms = {a: ARM_NAMES.get(a, a) for a in table["arm"].unique()}
    return plots.arm_points(table, {c: _label(c)[0] for c in columns}, arms, xlabel="kelompok",
                            title=title)


def figure_ablasi_psnr(results: Results):
    return _arm_points(results, ("psnr", "ssim", "sharpness_ratio"),
                       "Rekonstruksi per kelompok: setiap seed dan rata-rata dengan IK 95%")


def figure_ablasi_swd(results: Results):
    columns = [f"{kind}_{key}" for key in study.sampler_keys(results.arms)
               for kind in ("face_rate", "swd_mean")] if len(results.arms) else []
    return _arm_points(results, columns, "Sampel per kelompok: setiap seed dan rata-rata dengan IK 95%")


def figure_ablasi_waktu(results: Results):
    return _arm_points(results, ("steps_to_threshold", "seconds_to_threshold",
                                 "val_neg_elbo_at_equal_time"),
                       "Kecepatan pelatihan per kelompok")


def _beta_trend(results: Results, columns, title: str):
    from resvae_keras import plots

    table = results.study_table
    if table.empty or not (table["group"] == "beta").any():
        return None
    trend = study.sweep_trend(table, "beta", "beta", list(columns))
    return plots.trend_with_spread(trend, {c: _label(c)[0] for c in columns}, "β (skala log)",
                                   logx=True, spread_label="±1 SD antar-seed (kelompok residual)",
                                   point_label="satu seed per titik",
                                   mean_label="rata-rata {n} seed", title=title)


def figure_rate_distorsi(results: Results):
    return _beta_trend(results, ("kl_nats", "psnr"),
                       "Laju (KL) dan distorsi (PSNR) terhadap β, satu seed per titik")


def figure_swd_beta(results: Results):
    return _beta_trend(results, ("swd_mean_prior_t1", "face_rate_prior_t1"),
                       "Realisme sampel prior terhadap β, satu seed per titik")


def figure_per_atribut(results: Results):
    from resvae_keras import plots

    top = per_attribute_rows(results)
    if top is None or top.empty:
        return None
    bars = pd.DataFrame({"selisih": 1e3 * top["difference"].astype(float),
                         "galat": 1e3 * top["se_difference"].astype(float)})
    bars.index.name = "atribut"
    return plots.metric_bars(bars, value="selisih", error="galat", xlabel="atribut",
                             ylabel="selisih MSE ×10³ (dengan − tanpa)",
                             title="Atribut dan galat rekonstruksi (± galat baku)")


def figure_auroc(results: Results):
    from resvae_keras import plots

    anomaly = _get(results.main_metrics or {}, "anomaly")
    if not anomaly or not anomaly.get("results"):
        return None
    strengths = anomaly.get("corruption_strengths", {})
    auroc = pd.Series({_anomaly_label(k, strengths): _get(v, "neg_elbo.auroc")
                       for k, v in anomaly["results"].items()}, dtype=float, name="AUROC")
    return plots.metric_bars(auroc, xlabel="jenis anomali", ylabel="AUROC skor −ELBO",
                             hlines={"tebakan acak (0.5)": 0.5}, limits=(0, 1.05),
                             title="Deteksi anomali dengan −ELBO")


def figure_norma_interpolasi(results: Results):
    """Norm of z along lerp and slerp paths between prior samples: needs only the latent size."""
    from resvae_keras import latent, plots
    from resvae_keras.config import Config

    d = int((results.main_config or {}).get("latent_dim") or Config().latent_dim)
    z0, z1 = latent.prior_samples(200, d, seed=1), latent.prior_samples(200, d, seed=2)
    return plots.norm_plot(latent.norm_along_path(z0, z1, steps=21), d,
                           xlabel="t (posisi sepanjang lintasan)",
                           ylabel="norma ‖z‖ (rata-rata 200 pasang)",
                           hline_labels=("√d: norma khas sampel N(0, I)", "√(d/2)"),
                           title=f"Norma z sepanjang lintasan antara dua sampel prior (d = {d})")


FIGURES: dict[str, Callable[[Results], object]] = {
    "laporan_kurva_loss": figure_kurva_loss,
    "laporan_val_loss_epoch": figure_val_loss_epoch,
    "laporan_val_loss_waktu": figure_val_loss_waktu,
    "laporan_ablasi_psnr": figure_ablasi_psnr,
    "laporan_ablasi_swd": figure_ablasi_swd,
    "laporan_ablasi_waktu": figure_ablasi_waktu,
    "laporan_rate_distorsi": figure_rate_distorsi,
    "laporan_swd_beta": figure_swd_beta,
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
    """Draw every ``FIGURES`` entry whose results exist into ``figures_dir/<name>.png``.

    Returns the paths whose bytes changed. Figures whose results are missing are skipped
    (the report then says so in their region).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from resvae_keras import plots

    updated = []
    for name, draw in FIGURES.items():
        fig = draw(results)
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI, bbox_inches="tight",
                    metadata={"Software": None})
        plt.close(fig)
        path = figures_dir / f"{name}.png"
        if _write_if_changed(path, buffer.getvalue()):
            updated.append(path)
    return updated


# -- filling the report -----------------------------------------------------------------


def _figure_body(name: str, caption: str | None, figures_dir: Path) -> str:
    if (figures_dir / f"{name}.png").is_file():
        return f"![{caption or name}](../figures/{name}.png)"
    return not_available(f"`figures/{name}.png`", f"{MAIN_COMMAND}` atau `{STUDY_COMMAND}")


def fill_text(template: str, known: dict[str, str], missing: str = MISSING) -> str:
    """``template`` with every ``{{key}}`` replaced by ``known[key]`` (``belum diukur`` for a
    key of ``KEYS`` the results lack). Raises KeyError for a key ``values`` never makes."""
    def replace(match: re.Match) -> str:
        key = match[1]
        if key in known:
            return known[key]
        if not any(re.fullmatch(pattern, key) for pattern in KEYS):
            raise KeyError(f"{{{{{key}}}}} in the report is no key of report.values(); "
                           f"fix the name or add it to report.values and report.KEYS")
        return missing

    return PLACEHOLDER.sub(replace, template)


def fill_regions(text: str, results: Results, figures_dir: Path, missing: str = MISSING) -> str:
    """``text`` with every marked region rewritten from ``results``.

    Raises ValueError for a TABLE region without a generator, or a ``{{key}}`` outside a TEXT
    marker (it would be lost when filled); KeyError for an unknown ``{{key}}``.
    """
    known = {}
    if any(m["kind"] == "TEXT" for m in REGION.finditer(text)):
        known = values(results)

    def replace(match: re.Match) -> str:
        kind, name = match["kind"], match["name"]
        if kind == "FIGURE":
            body = _figure_body(name, match["caption"], figures_dir)
        elif kind == "TEXT":
            body = fill_text(match["template"] or "", known, missing)
        elif name in REGIONS:
            body = REGIONS[name](results)
        else:
            raise ValueError(
                f"a region TABLE: {name} has no generator in report.REGIONS; "
                f"known: {sorted(REGIONS)}")
        return f"{match['begin']}\n{body.strip()}\n\n{match['end']}"

    filled = REGION.sub(replace, text)
    outside = REGION.sub("", filled)
    stray = PLACEHOLDER.search(outside)
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

def report_dir() -> Path:
    return project_root() / "report"


def collect_run(run_dir, name: str = MAIN_RUN, results_root=None) -> list[Path]:
    """Copy an evaluated run's ``config.json``, ``history.csv``, ``metrics*.json`` and its last
    per-epoch grid (originals / reconstructions / samples, as ``grid_last_epoch.png``) into
    ``report/results/<name>/`` (the files the report reads); returns the paths written."""
    run = Path(run_dir)
    run = run if run.is_absolute() else project_root() / run
    if not (run / "metrics.json").is_file():
        raise FileNotFoundError(
            f"run_dir={str(run_dir)!r} has no metrics.json: evaluate it first with "
            f"python -m resvae_keras evaluate --run-dir {run_dir}")
    dest = Path(results_root or study.results_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in [run / "config.json", run / "history.csv", *sorted(run.glob("metrics*.json"))]:
        if path.is_file():
            shutil.copy(path, dest / path.name)
            written.append(dest / path.name)
    grids = sorted((run / "grids").glob("epoch_*.png"))
    if grids:
        shutil.copy(grids[-1], dest / "grid_last_epoch.png")
        written.append(dest / "grid_last_epoch.png")
    return written


def render_html(report_path: Path | None = None) -> Path | None:
    """Render ``laporan.md`` to ``laporan.html`` beside it with pandoc; None without pandoc."""
    report_path = Path(report_path or report_dir() / "laporan.md")
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        print("pandoc not found: report/laporan.md is up to date but was not rendered to HTML. "
              "Install it with `sudo apt-get install pandoc` (Debian/Ubuntu) and run "
              "`make report` again.")
        return None
    out = report_path.with_suffix(".html")
    root = report_path.resolve().parent.parent
    subprocess.run(
        [pandoc, report_path.name, "--standalone", "--toc", "--mathml",
         "-V", "maxwidth=60em", f"--resource-path=.:{root}",
         "-o", out.name],
        cwd=report_path.parent, check=True)
    return out


def build_report(results_root: Path | str | None = None, report_path: Path | str | None = None,
                 figures_dir: Path | str | None = None, figures: bool = True,
                 html: bool = True, readme_path: Path | str | None = None) -> list[Path]:
    """Redraw the figures, refill every generated region of ``laporan.md``, render HTML.

    Args:
        results_root: folder with ``celeba-subset/`` and ``study/`` (default ``report/results``).
        report_path: the report to fill in place (default ``report/laporan.md``).
        figures_dir: where ``laporan_*.png`` go and where figure references are checked
            (default ``figures/``).
        figures: redraw the ``laporan_*`` figures first.
        html: render ``laporan.html`` with pandoc when it is installed.
        readme_path: a README whose marked regions (e.g. ``findings``) are filled too; by
            default the project's ``README.md`` when ``report_path`` is the default one.

    Returns:
        the paths whose contents changed (figures, the report, the HTML).
    """
    if readme_path is None and report_path is None:
        readme_path = project_root() / "README.md"
    report_path = Path(report_path or report_dir() / "laporan.md")
    if not report_path.is_file():
        raise FileNotFoundError(
            f"report_path={str(report_path)!r} does not exist: the report with its marked regions "
            "is report/laporan.md in the project root")
    figures_dir = Path(figures_dir or project_root() / "figures")
    results = Results(results_root)
    updated = draw_figures(results, figures_dir) if figures else []
    text = report_path.read_text()
    filled = fill_regions(text, results, figures_dir)
    if _write_if_changed(report_path, filled.encode()):
        updated.append(report_path)
    if readme_path is not None and Path(readme_path).is_file():
        readme = Path(readme_path)
        filled = fill_regions(readme.read_text(), results, figures_dir, "not measured yet")
        if _write_if_changed(readme, filled.encode()):
            updated.append(readme)
    if html:
        out = render_html(report_path)
        if out is not None:
            updated.append(out)
    return updated
