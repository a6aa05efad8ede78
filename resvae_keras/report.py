"""The written report: render ``report/laporan.md`` and ``README.md`` from their Jinja2 templates.

``report/laporan.md.j2`` and ``README.md.j2`` are the sources the authors edit; ``build_report``
renders them with the committed results under ``report/results/`` (``celeba-subset/``, the main
run, and ``study/``): ``tables.<name>`` is the markdown of ``TABLES[name]`` (None while its results
are missing), every other name is a part of ``prose_record`` formatted by a filter (``num``,
``integer``, ``pct``, ``g``). An unknown name stops the build (``StrictUndefined``). The words of
the tables and figures come from ``report/laporan.toml``; the prose is the templates'.

    python -m resvae_keras report      # or: make report
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import tomllib
from functools import cache, cached_property
from pathlib import Path
from typing import NamedTuple

import jinja2
import numpy as np
import pandas as pd

from resvae_keras import metrics, plan, plots, study
from resvae_keras.config import Config, checkout_file, get_profile, project_root
from resvae_keras.study import lookup

MAIN_RUN = "celeba-subset"
NBSP = "\u00a0"  # thousands separator of integers: unambiguous with a decimal point
ALPHA = study.ALPHA

# The report is built in a checkout: its words, template and results are not in the wheel.
WORDS_FILE = checkout_file("report/laporan.toml")
WORDS = tomllib.loads(WORDS_FILE.read_text(encoding="utf-8"))
DASH, TABLES, NAMES = WORDS["dash"], WORDS["tables"], WORDS["names"]
ARM_NAMES, VERDICT_WORDS, REFERENCE_NAMES = NAMES["arm"], NAMES["verdict"], NAMES["reference"]
STUDY_MEASURES = {key: tuple(spec) for key, spec in WORDS["measures"].items()}  # (label, decimals)


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


class Col(NamedTuple):
    """One formatted value: ``key`` (dotted path into a record), ``label`` (a table header or a
    ``values`` key), ``decimals`` (``"int"``: an integer; ``"p"``: a p-value; ``"%"``: a
    percent; ``"g"``: shortest; ``"text"``: as it is), ``scale`` applied first; an ``optional``
    column is left out of a table when no record has a value for it (every cell a dash)."""

    key: str
    label: str
    decimals: int | str = 2
    scale: float = 1.0
    optional: bool = False

    def cell(self, record) -> str:
        value, kind = lookup(record, self.key), self.decimals
        if kind == "text":
            return str(value) if value not in (None, "") else DASH
        if not _finite(value):
            return DASH
        if kind in ("int", "p"):
            return integer(value) if kind == "int" else p_value(value)
        if kind in ("%", "g"):
            return f"{num(value, 1, 100.0)} %" if kind == "%" else f"{float(value):g}"
        return num(value, kind, self.scale)


def _columns(name: str) -> list[Col]:
    """The ``columns`` of table ``name`` in laporan.toml."""
    return [Col(*spec) for spec in TABLES[name]["columns"]]


def _table(name: str, rows, columns=None, headers=None) -> str | None:
    """Table ``name``: ``rows`` are ``(label cell(s), record)``; its ``headers`` columns hold
    the labels (left-aligned), then one column per ``Col`` (default: its laporan.toml
    ``columns``) read from each record, right-aligned unless text. None without rows (their
    results are missing)."""
    if not rows:
        return None
    headers = TABLES[name]["headers"] if headers is None else headers
    rows = [((labels,) if isinstance(labels, str) else tuple(labels), r) for labels, r in rows]
    columns = [c for c in (_columns(name) if columns is None else columns)
               if not c.optional or any(c.cell(r) != DASH for _, r in rows)]
    return markdown_table([*headers, *(c.label for c in columns)],
                          [(*labels, *(c.cell(r) for c in columns)) for labels, r in rows],
                          numeric=[len(headers) + i for i, c in enumerate(columns)
                                   if c.decimals != "text"])


def _measure(key: str) -> Col:
    """The column of a study measure, labelled and rounded as ``STUDY_MEASURES`` says."""
    return Col(key, *STUDY_MEASURES.get(key, (key, 3)), optional=True)


def _arm(arm) -> str:
    return ARM_NAMES.get(arm, arm)


# -- the results ------------------------------------------------------------------------


class Results(study.Study):
    """The committed results under ``root`` (default ``report/results``), read lazily: the
    study (``root/study``, a ``study.Study``), the main run and the default-model sweep."""

    def __init__(self, root: Path | str | None = None):
        root = Path(root) if root is not None else study.results_dir()
        super().__init__(root / "study")
        self.main_dir, self.sweep_dir = root / MAIN_RUN, root / "sweep"

    @cached_property
    def main_run(self) -> dict:
        """The main run's ``study.load_run``: ``config``, ``history`` and ``metrics``."""
        return study.load_run(self.main_dir)

    @property
    def main(self) -> dict:
        """The main run's ``metrics.json`` (empty when missing)."""
        return self.main_run["metrics"] or {}

    @cached_property
    def other_metrics(self) -> dict[str, dict]:
        """``metrics_<data>.json`` of the main run: the model on other data, by name."""
        return {path.stem.removeprefix("metrics_"): json.loads(path.read_text())
                for path in sorted(self.main_dir.glob("metrics_*.json"))}

    @property
    def samples(self) -> dict:
        return lookup(self.main, "samples") or {}

    @cached_property
    def sweep(self) -> pd.DataFrame:
        """The default-model sweep, one row per run, by the floor on sigma."""
        table = study.load_sweep(self.sweep_dir)
        return table.sort_values("sigma_min") if len(table) else table

    @cached_property
    def levers(self) -> pd.DataFrame:
        """The lever sweep's table (``levers.load_table``), one row per lever tried."""
        from resvae_keras.levers import load_table

        return load_table(self.main_dir.parent / "levers" / "levers.csv")

    @cached_property
    def planned(self) -> plan.PlannedStudy:
        """The pre-registered study (``root/study/plan.toml`` when there, else the committed
        plan), its runs under ``root/study/<plan name>``: the verdicts are computed from it."""
        local = self.root / "plan.toml"
        spec = plan.load_plan(local if local.is_file() else None)
        return plan.PlannedStudy(spec, self.root / spec["study"]["name"])

    @cached_property
    def trends(self) -> dict[str, pd.DataFrame]:
        """``study.sweep_trend`` of each sweep with a finished run (``beta``, ``likelihood``),
        over every study measure."""
        table = self.table
        return {group: study.sweep_trend(table, group, [c for c in STUDY_MEASURES if c in table])
                for group in ("beta", "likelihood") if len(table) and (table["group"] == group).any()}


# -- tables: the architecture (the Keras model, no results) ------------------------------


def architecture(results: Results | None = None) -> tuple:
    """``(config, ResVAE.summary_rows, ResVAE.parameter_counts)`` of the main run's model, built
    from its ``config.json`` (the ``celeba-subset`` profile while there is none); the counts add
    ``plain_total``, the same network without shortcuts (the ablation's plain arm)."""
    saved = (results.main_run.get("config") or {}) if results is not None else {}
    config = get_profile("celeba-subset")
    known = {f.name for f in dataclasses.fields(Config)}
    config = config.replace(**{k: v for k, v in saved.items() if k in known})
    return _architecture(json.dumps(config.to_dict(), sort_keys=True))


@cache
def _architecture(config_json: str) -> tuple:
    from resvae_keras.model import build_model

    config = Config(**json.loads(config_json))
    model = build_model(config)
    counts = model.parameter_counts()
    counts["plain_total"] = int(build_model(config.replace(residual=False)).count_params())
    return config, model.summary_rows(), counts


def _layer_kind(row: dict) -> str:
    if row["kind"] == "Conv2D":
        k, s = row["kernel"], row["strides"]
        return NAMES["conv"][s > 1].format(k=k, s=s)
    return NAMES["layer"].get(row["kind"], row["kind"])


def table_arsitektur(results: Results) -> str:
    _, layers, counts = architecture(results)
    rows = [(NAMES["part"][r["part"]], f"`{r['name']}`", _layer_kind(r), _shape(r["output_shape"]),
             integer(r["params"])) for r in layers]
    rows += [("total", label, "", "", integer(counts[key]))
             for key, label in TABLES["arsitektur"]["counts"]]
    return markdown_table(TABLES["arsitektur"]["headers"], rows, numeric=[4])


def table_diagram(results: Results) -> str:
    """The encoder-decoder flow with the real output shapes, a stage's blocks on one line."""
    _, layers, _ = architecture(results)
    lines = ["```text"]
    for part in ("encoder", "decoder"):
        title, last = TABLES["diagram"][part]
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


def table_data(results: Results) -> str | None:
    counts = lookup(results.main, "data.split_counts") or {}
    total = sum(counts.values())
    rows = [(NAMES["split"].get(k, k), {"n": v, "share": 100 * v / total})
            for k, v in [*counts.items(), ("total", total)]] if counts else []
    return _table("data", rows)


def _config_value(key: str, config: dict | None) -> str:
    """``config[key]`` as the tables show it; a dash when missing."""
    value = (config or {}).get(key, DASH)
    if key == "likelihood":
        return NAMES["likelihood"].get(value, str(value))
    if key == "mixed_precision":
        return "float32" if value is None else str(value)
    if isinstance(value, list):  # the widths per stage, or the study's seeds
        return ("–" if key == "widths" else ", ").join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def table_hiperparameter(results: Results) -> str | None:
    """The main run's config beside the study's (``residual_s0``'s, with every seed)."""
    main, runs = results.main_run["config"], results.runs
    reference = (runs.get("residual_s0") or next(iter(runs.values()), {})).get("config")
    if main is None and reference is None:
        return None
    if reference and "seed" in reference:
        reference = {**reference, "seed": sorted({r["seed"] for r in runs.values()})}
    rows = [(label, _config_value(key, main), _config_value(key, reference))
            for key, label in TABLES["hiperparameter"]["rows"]]
    return markdown_table(TABLES["hiperparameter"]["headers"], rows, numeric=[])


def table_waktu(results: Results) -> str | None:
    runs = [(TABLES["waktu"]["main"], results.main_run),
            *((f"`{name}`", r) for name, r in results.runs.items())]
    return _table("waktu", [(label, {
        "epochs": len(h), "seconds_per_epoch": h["epoch_time_s"].median(),
        "precision": _config_value("mixed_precision", r["config"]) if r["config"] else None,
        "minutes": h["wall_time_s"].iloc[-1] / 60.0,
        "best_val_neg_elbo": study.validation_neg_elbo(h).min()})
        for label, r in runs if len(h := r["history"])])


# -- tables: the main run ----------------------------------------------------------------


def table_generalisasi(results: Results) -> str | None:
    rec = lookup(results.main, "reconstruction")
    if not rec:
        return None
    sets = [(TABLES["generalisasi"]["test_split"], rec)]
    sets += [(f"`{name}`", other.get("reconstruction", other))
             for name, other in results.other_metrics.items()]
    return _table("generalisasi", sets)


def per_attribute_rows(results: Results, k: int = 10) -> pd.DataFrame:
    """``metrics.strongest_attributes`` of the main run, largest MSE gap first (empty when
    missing)."""
    rows = lookup(results.main, "per_attribute.rows")
    if not rows:
        return pd.DataFrame()
    breakdown = pd.DataFrame.from_dict(rows, orient="index")
    return metrics.strongest_attributes(breakdown, k).sort_values("difference", ascending=False)


def table_per_atribut(results: Results) -> str | None:
    return _table("per_atribut", [(f"`{name}`", r.to_dict())
                                  for name, r in per_attribute_rows(results).iterrows()])


def _samplers(results: Results) -> list[tuple[str, dict]]:
    """``(label, sampler report)`` of every sampler of the main run."""
    return [(f"{NAMES['sampler'].get(s['sampler'], s['sampler'])}, T = {s['temperature']:g}", s)
            for s in results.samples.values()]


def table_sampel(results: Results) -> str | None:
    if not results.samples:
        return None
    references = lookup(results.main, "sample_references") or {}
    return _table("sampel", [*_samplers(results), *(
        (REFERENCE_NAMES.get(k, k), s) for k, s in references.items())])


def table_keragaman(results: Results) -> str | None:
    if not results.samples:
        return None
    first = next(iter(results.samples.values()))
    real = {  # the real test faces, read through the samples' columns
        "diversity": {"pixel_l2_fake": lookup(first, "diversity.pixel_l2_real"),
                      "ms_ssim_fake": lookup(first, "diversity.ms_ssim_real")},
        "memorization": {"sample_to_train": lookup(first, "memorization.test_to_train")}}
    return _table("keragaman", [*_samplers(results), (TABLES["keragaman"]["real"], real)])


def table_laten(results: Results) -> str | None:
    lat, spec = lookup(results.main, "latent"), TABLES["laten"]
    if not lat:
        return None
    top = ", ".join(f"z{u} ({num(kl, 2)})" for u, kl in zip(
        lat.get("top_units", [])[:5], lat.get("top_units_kl_nats", [])[:5], strict=False))
    return markdown_table(spec["headers"], [
        (spec["latent_dim"], integer(lat.get("latent_dim"))),
        (spec["active_units"].format(threshold=f"{lat.get('threshold', 0.01):g}"),
         integer(lat.get("active_units"))),
        (spec["kl_total_nats"], num(lat.get("kl_total_nats"), 1)), (spec["top_units"], top or DASH)])


def _anomaly_label(kind: str, strengths: dict) -> str:
    name, strength = NAMES["anomaly"].get(kind, kind), strengths.get(kind)
    if kind in ("noise", "occlusion") and _finite(strength):
        return TABLES["anomali"][kind].format(name=name, strength=f"{strength:g}",
                                              percent=f"{100 * strength:g}")
    return name


def _anomaly(results: Results) -> tuple[dict, dict]:
    """``({kind: {score: result}}, corruption strengths)`` of the main run; empty when missing."""
    anomaly = lookup(results.main, "anomaly") or {}
    return anomaly.get("results") or {}, anomaly.get("corruption_strengths", {})


def table_anomali(results: Results) -> str | None:
    by_kind, strengths = _anomaly(results)
    return _table("anomali", [((_anomaly_label(kind, strengths), NAMES["score"].get(score, score)), r)
                              for kind, by_score in by_kind.items() for score, r in by_score.items()])


# -- tables: the study -------------------------------------------------------------------


def table_status(results: Results) -> str:
    """Which results files exist: the main run's, and the study runs per arm."""
    spec = TABLES["status"]
    main = [f for f in ("config.json", "history.csv", "metrics.json")
            if (results.main_dir / f).is_file()]
    rows = [(spec["main"], ", ".join(f"`{f}`" for f in main) or DASH)]
    rows += [(spec["study"].format(_arm(arm) if group == "arms" else arm),
              spec["counts"].format(integer(r.finished), integer(r.planned)))
             for (group, arm), r in results.seeds.iterrows()]
    rows.append((spec["benchmark"], spec["present"] if results.benchmark else DASH))
    return markdown_table(spec["headers"], rows, numeric=[])


def table_ablasi(results: Results) -> str | None:
    spec = TABLES["ablasi"]
    return _table("ablasi", [((f"`{name}`", _arm(r["arm"])), r.to_dict())
                             for name, r in results.arms.iterrows()],
                  [Col("seed", spec["seed"], "int"), *map(_measure, spec["measures"])])


def table_ablasi_ringkasan(results: Results) -> str | None:
    table = results.arms
    if table.empty:
        return None
    columns = [_measure(c) for c in STUDY_MEASURES if c in table and table[c].notna().any()]
    summary = study.arm_summary(table, [c.key for c in columns])
    arms, counts = list(summary.index), results.seeds.loc["arms"]
    rows = [(c.label, *(plus_minus(summary.loc[a, f"{c.key}_mean"], summary.loc[a, f"{c.key}_sd"],
                                   c.decimals) for a in arms)) for c in columns]
    rows.append((TABLES["ablasi_ringkasan"]["seeds"], *(TABLES["status"]["counts"].format(
        integer(summary.loc[a, "n"]), integer(counts.loc[a, "planned"])) for a in arms)))
    return markdown_table([*TABLES["ablasi_ringkasan"]["headers"], *map(_arm, arms)], rows)


def _interval(value, low, high, decimals: int) -> str:
    if not (_finite(value) and _finite(low) and _finite(high)):
        return num(value, decimals)
    return f"{num(value, decimals)} [{num(low, decimals)}, {num(high, decimals)}]"


def _comparison(arm: str, baseline: str) -> str:
    return f"{_arm(arm)} − {_arm(baseline)}"


def _planned_measure(key: str) -> tuple[str, int]:
    """(label, decimals) of a measure of the pre-registered study."""
    return tuple(WORDS["planned_measures"].get(key, STUDY_MEASURES.get(key, (key, 3))))


def table_uji_primer(results: Results) -> str | None:
    """The primary test of each claim against each baseline (``plan.verdicts``), with the
    difference, its timing interval, Hedges' g, the permutation and Welch p, Holm, the margin,
    the TOST and the verdict. None until a seed run of the plan has finished."""
    found = results.planned
    if not found.finished[0] or not len(found.runs):
        return None
    rows = []
    for r in found.verdicts.itertuples():
        label, decimals = _planned_measure(r.measure)
        rows.append((NAMES["hypothesis"][r.claim].split(" ")[0], _comparison(r.arm, r.baseline),
                     label, f"{r.n_arm}/{r.n_baseline} ({r.n_planned})",
                     _interval(r.diff, r.diff_ci_low, r.diff_ci_high, decimals),
                     _interval(r.diff, r.timing_low, r.timing_high, decimals)
                     if _finite(r.timing_low) else DASH,
                     _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2), p_value(r.p),
                     p_value(r.p_welch), p_value(r.p_holm), num(r.margin, decimals),
                     p_value(r.p_tost_holm), VERDICT_WORDS[r.verdict]))
    return markdown_table(TABLES["uji_primer"]["headers"], rows, numeric=range(3, 12))


def table_klaim(results: Results) -> str | None:
    """One row per claim and baseline: its primary measure and its verdict (``plan.verdicts``).
    None until a seed run of the plan has finished."""
    found = results.planned
    if not found.finished[0] or not len(found.runs):
        return None
    return markdown_table(TABLES["klaim"]["headers"], [
        (NAMES["hypothesis"][r.claim], _comparison(r.arm, r.baseline),
         _planned_measure(r.measure)[0], VERDICT_WORDS[r.verdict])
        for r in found.verdicts.itertuples()], numeric=[])


def table_sekunder(results: Results) -> str | None:
    """The secondary measures (``plan.secondary``): difference and Hedges' g with their 95 %
    intervals, no p-value. None until a seed run of the plan has finished."""
    found = results.planned
    if not len(found.runs):
        return None
    rows = []
    for r in found.secondary.itertuples():
        label, decimals = _planned_measure(r.measure)
        rows.append((label, _comparison(r.arm, r.baseline), f"{r.n_arm}/{r.n_baseline}",
                     num(r.mean_arm, decimals), num(r.mean_baseline, decimals),
                     _interval(r.diff, r.diff_ci_low, r.diff_ci_high, decimals),
                     _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2)))
    return markdown_table(TABLES["sekunder"]["headers"], rows, numeric=range(2, 7))


def _sweep_table(results: Results, group: str, show) -> str | None:
    """One row per value of the swept setting: the mean ± SD over seeds, or the one run."""
    trend = results.trends.get(group)
    if trend is None:
        return None
    columns = [_measure(c) for c in WORDS["sweep"]["measures"] if c in trend]
    rows = [(show(r["x"]), integer(r["n_seeds"]), *(
        plus_minus(r[c.key], r[f"{c.key}_seed_sd"], c.decimals) if r["n_seeds"] > 1
        else num(r[c.key], c.decimals) for c in columns)) for r in trend.to_dict("records")]
    return markdown_table([*TABLES[group]["headers"], *(c.label for c in columns)], rows)


def table_likelihood(results: Results) -> str | None:
    return _sweep_table(results, "likelihood", lambda x: NAMES["likelihood"].get(x, str(x)))


def table_beta(results: Results) -> str | None:
    return _sweep_table(results, "beta", lambda x: f"{float(x):g}")


def _floor(sigma_min) -> str:
    return WORDS["sweep"]["floor"].format(f"{float(sigma_min):g}") if float(sigma_min) > 0 \
        else WORDS["sweep"]["no_floor"]


def table_model_bawaan(results: Results) -> str | None:
    return _table("model_bawaan", [(_floor(r["sigma_min"]), {k.replace(".", ""): v for k, v in r.items()})
                                   for _, r in results.sweep.iterrows()])  # prior_t0.7 -> prior_t07


def table_pembanding(results: Results) -> str | None:
    """RQ2 against its baselines: the model and PCA at several k, scored on the same test split
    by the same code (``baselines.pca_baselines``); PCA's bits/dim is probabilistic PCA's exact
    negative log-likelihood, the model's its bound."""
    m, words = results.main, TABLES["pembanding"]
    if not lookup(m, "reconstruction.psnr"):
        return None
    rec = m["reconstruction"]
    rows = [(words["model"].format(lookup(m, "model.latent_dim")),
             {"psnr": rec["psnr"], "ssim": rec["ssim"], "bpd": lookup(rec, "bits_per_dim.mean")})]
    rows += [(words["pca"].format(b["n_components"]),
              {"psnr": b["psnr"], "ssim": b["ssim"], "bpd": b["ppca_bits_per_dim"]})
             for b in (m.get("baselines") or {}).values()]
    return _table("pembanding", rows)


def table_tuas(results: Results) -> str | None:
    """The lever sweep that chose the default (``levers.LEVERS``, validation split), one row
    per lever tried; a lever is kept when it raises the validation PSNR over the base row."""
    table, words = results.levers, TABLES["tuas"]
    if not len(table):
        return None
    base = float(table.loc[table["lever"] == "base", "val_psnr_db"].iloc[0]) \
        if (table["lever"] == "base").any() else math.nan
    rows = [((r["lever"], words["what"].get(r["lever"], r["what"])),
             {**r, "kept": words["base"] if r["lever"] == "base"
              else words["kept"][int(r["val_psnr_db"] > base)]})
            for r in table.to_dict("records")]
    return _table("tuas", rows)


def table_ruang_wajah(results: Results) -> str | None:
    """RQ3 in dlib's face-descriptor space (``facespace.face_space_table``): each sampler's
    row beside the calibration rows measured in the same run."""
    rows = lookup(results.main, "face_space.rows")
    if not rows:
        return None
    words = TABLES["ruang_wajah"]["names"]
    return _table("ruang_wajah", [(words.get(name, name), row) for name, row in rows.items()])


TABLE_FUNCTIONS = {  # the template's tables.<name> -> its function of the results (None: missing)
    "data": table_data, "diagram": table_diagram, "arsitektur": table_arsitektur,
    "hiperparameter": table_hiperparameter, "waktu": table_waktu, "tuas": table_tuas,
    "status": table_status, "pembanding": table_pembanding,
    "generalisasi": table_generalisasi, "per_atribut": table_per_atribut,
    "ruang_wajah": table_ruang_wajah, "sampel": table_sampel, "keragaman": table_keragaman,
    "model_bawaan": table_model_bawaan, "laten": table_laten, "ablasi": table_ablasi,
    "ablasi_ringkasan": table_ablasi_ringkasan, "uji_primer": table_uji_primer,
    "klaim": table_klaim, "sekunder": table_sekunder, "likelihood": table_likelihood,
    "beta": table_beta, "anomali": table_anomali,
}


# -- the numbers of the prose ---------------------------------------------------------------


def prose_record(results: Results) -> dict:
    """The results the prose quotes, by name; a sampler, sweep floor or swept value is a key
    without dots (``prior_t07``, ``s05``, ``025``), so the templates can name it."""
    config, _, counts = architecture(results)
    m = results.main
    rec = dict(m.get("reconstruction") or {})
    mse, sigma = lookup(rec, "mse.mean"), rec.get("decoder_sigma")
    if _finite(mse) and _finite(sigma) and mse > 0:
        rec.update(rmse=math.sqrt(mse), sigma_ratio=sigma / math.sqrt(mse))
    samples = {k.replace(".", ""): dict(s) for k, s in {
        **results.samples, **(m.get("sample_references") or {})}.items()}
    for s in samples.values():
        fake, real = lookup(s, "diversity.pixel_l2_fake"), lookup(s, "diversity.pixel_l2_real")
        s["l2_share"] = fake / real if _finite(fake) and _finite(real) else None
    planned = results.planned
    verdicts = {f"{claim}_{baseline}": None  # None until a seed run of the plan has finished
                for claim in plan.CLAIMS for _, baseline in plan.comparisons(planned.spec)}
    if len(planned.runs):  # plan.verdict_word's English word (laporan.toml's names.verdict: Indonesian)
        verdicts.update({f"{c.claim}_{c.baseline}": c.verdict for c in planned.verdicts.itertuples()})
    record = {
        "arch": {"total": counts["total"], "widths": "–".join(map(str, config.widths)),
                 "blocks": config.blocks_per_stage, "latent_dim": config.latent_dim},
        "main": m, "config": results.main_run["config"], "rec": rec,
        "samples": samples, "real": lookup(next(iter(samples.values()), {}), "diversity"),
        "fs": {k.replace(".", ""): v for k, v in (lookup(m, "face_space.rows") or {}).items()},
        "other": {k: v.get("reconstruction", v) for k, v in results.other_metrics.items()},
        "sweep": {"s" + f"{float(r['sigma_min']):g}".replace(".", ""): r.to_dict()
                  for _, r in results.sweep.iterrows()},
        "study": {"finished": planned.finished[0], "planned": planned.finished[1]},
        "verdicts": verdicts}
    for group, trend in results.trends.items():  # one run per value, the reference arm beside
        record[group] = {_slug(r["x"]): r for r in trend.to_dict("records")}
    if len(history := results.main_run["history"]):
        record["history"] = study.history_summary(history, lookup(record, "config.beta"))
    if lookup(m, "per_attribute.rows"):
        found = metrics.significant_attributes(
            pd.DataFrame.from_dict(m["per_attribute"]["rows"], orient="index"), ALPHA)
        record["attributes"] = {**found, **{k: ", ".join(f"`{a}`" for a in found[k])
                                            for k in ("worse", "better")}}
    by_kind, _ = _anomaly(results)
    elbo = [a for a in (lookup(s, "neg_elbo.auroc") for s in by_kind.values()) if _finite(a)]
    if by_kind:
        record["anomaly"] = {**m["anomaly"], "n_kinds": len(elbo) or None,
                             "elbo_min": min(elbo, default=None),
                             "elbo_max": max(elbo, default=None)}
    return record


def _slug(x) -> str:
    """A swept value as part of a ``{{key}}``: ``0.25`` -> ``025``, ``"gaussian"`` as it is."""
    return f"{float(x):g}".replace(".", "") if isinstance(x, (int, float)) else str(x)


# -- figures: plots.py with the words of laporan.toml; None while their results are missing --
# ``w`` are a figure's [figures.<name>] entries: keyword arguments of its plots.py function,
# besides ``measures`` (the study measures it shows) and ``line`` (its reference line's label).


def figure_kurva_loss(results: Results, **w):
    history = results.main_run["history"]
    return plots.loss_curves(history.assign(epoch=history["epoch"] + 1), **w) if len(history) else None


def figure_validation(results: Results, line: str, minutes: bool = False, **w):
    """The arms' validation −ELBO per optimizer step, or per benchmarked minute."""
    curves, timed = study.arm_curves(results.runs, results.benchmark)
    if minutes:  # every arm on the time axis, or no figure
        curves = timed if len(timed) == len(curves) else {}
    if not curves:
        return None
    groups, arms = {name: _arm(results.runs[name]["arm"]) for name in curves}, results.arms
    lines = ({"vlines": {line: arms["equal_time_s"].iloc[0] / 60.0}} if minutes
             else {"hlines": {line: arms["threshold"].iloc[0]}})
    return plots.grouped_curves(curves, groups, **lines, **w)


def figure_arm_points(results: Results, measures, **w):
    """Every seed and each arm's mean of the study ``measures``."""
    table = results.arms
    if measures == "samplers":  # face rate and SWD of every sampler the arms were evaluated with
        measures = [f"{kind}_{key}" for key in study.sampler_keys(table)
                    for kind in ("face_rate", "swd_mean")] if len(table) else []
    measures = [c for c in measures if c in table and table[c].notna().any()]
    if table.empty or not measures:
        return None
    return plots.arm_points(table, {c: _measure(c).label for c in measures},
                            {a: _arm(a) for a in table["arm"].unique()}, **w)


def figure_beta_trend(results: Results, measures, **w):
    trend = results.trends.get("beta")
    if trend is None:
        return None
    return plots.trend_with_spread(trend, {c: _measure(c).label for c in measures if c in trend},
                                   logx=True, **w)


def figure_per_atribut(results: Results, **w):
    top = per_attribute_rows(results)
    if top.empty:
        return None
    bars = pd.DataFrame({w["value"]: 1e3 * top["difference"].astype(float),
                         w["error"]: 1e3 * top["se_difference"].astype(float)})
    bars.index.name = w["xlabel"]
    return plots.metric_bars(bars, **w)


def figure_auroc(results: Results, line: str, **w):
    by_kind, strengths = _anomaly(results)
    if not by_kind:
        return None
    auroc = pd.Series({_anomaly_label(k, strengths): lookup(v, "neg_elbo.auroc")
                       for k, v in by_kind.items()}, dtype=float, name="AUROC")
    return plots.metric_bars(auroc, hlines={line: 0.5}, limits=(0, 1.05), **w)


def figure_norma_interpolasi(results: Results, title: str, **w):
    """Norm of z along lerp and slerp paths between prior samples: needs only the latent size."""
    from resvae_keras import latent

    d = int((results.main_run["config"] or {}).get("latent_dim") or Config().latent_dim)
    z0, z1 = latent.prior_samples(200, d, seed=1), latent.prior_samples(200, d, seed=2)
    return plots.norm_plot(latent.norm_along_path(z0, z1, steps=21), d, title=title.format(d=d), **w)


def figure_model_bawaan(results: Results, measures: dict, **w):
    sweep = results.sweep
    if not len(sweep):
        return None
    return plots.tradeoff(sweep.set_index(sweep["sigma_min"].map(_floor)), "kl_nats",
                          {c: label for c, label in measures.items() if c in sweep}, **w)


FIGURES = {  # figures/<name>.png -> its drawing function of the results (and its words)
    "laporan_kurva_loss": figure_kurva_loss,
    "laporan_val_loss_epoch": figure_validation,
    "laporan_val_loss_waktu": lambda results, **w: figure_validation(results, minutes=True, **w),
    "laporan_ablasi_psnr": figure_arm_points,
    "laporan_ablasi_swd": figure_arm_points,
    "laporan_ablasi_waktu": figure_arm_points,
    "laporan_rate_distorsi": figure_beta_trend,
    "laporan_swd_beta": figure_beta_trend,
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
        fig = draw(results, **WORDS["figures"][name])
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI, bbox_inches="tight",
                    metadata={"Software": None})
        plt.close(fig)
        if _write_if_changed(figures_dir / f"{name}.png", buffer.getvalue()):
            updated.append(figures_dir / f"{name}.png")
    return updated


# -- rendering ------------------------------------------------------------------------------


def _defined(value):
    """``value``, or the UndefinedError of a name the results do not have (a typo)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # StrictUndefined raises here, naming what is missing
    return value


def _filter(format_value):
    return lambda value, *args: format_value(_defined(value), *args)


FILTERS = {"num": _filter(num), "integer": _filter(integer), "g": _filter(
    lambda v: f"{float(v):g}" if _finite(v) else DASH), "pct": _filter(
    lambda v: f"{num(v, 1, 100.0)} %" if _finite(v) else DASH)}


def _present(value):
    if value is None:  # a table or a value the template quotes without its fallback
        raise ValueError("the template shows None: give a missing table its fallback, "
                         "`tables.<name> or belum(...)`")
    return value


def render(template: Path, results: Results, figures_dir: Path) -> str:
    """``template`` (a Jinja2 file) rendered with ``results``: its tables, the
    ``prose_record`` names, ``figures`` (the ``figures_dir`` PNG names) and ``verdict_words``."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template.parent),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, autoescape=False, finalize=_present)
    env.filters.update(FILTERS)
    context = {**prose_record(results), "verdict_words": VERDICT_WORDS,
               "tables": {name: table(results) for name, table in TABLE_FUNCTIONS.items()},
               "figures": {path.stem for path in figures_dir.glob("*.png")}}
    try:
        return env.get_template(template.name).render(context)
    except jinja2.UndefinedError as error:
        raise ValueError(f"{template.name}: {error.message}; a typo in the template, or a "
                         "result report/results/ lacks (see report/README.md)") from error


def build_report(results_root: Path | str | None = None, root: Path | str | None = None,
                 figures: bool = True) -> list[Path]:
    """Redraw the figures, then render ``report/laporan.md.j2`` and ``README.md.j2``.

    Args:
        results_root: folder with ``celeba-subset/`` and ``study/`` (default ``report/results``).
        root: the project folder holding both templates and ``figures/`` (default the checkout).
        figures: redraw the ``laporan_*`` figures first.

    Returns the paths whose contents changed (figures, the report, the README).
    """
    root = Path(root or project_root())
    results = Results(results_root)
    updated = draw_figures(results, root / "figures") if figures else []
    for path in (root / "report" / "laporan.md", root / "README.md"):
        text = render(path.with_name(path.name + ".j2"), results, root / "figures")
        if _write_if_changed(path, text.encode()):
            updated.append(path)
    return updated
