"""The tables of ``report/laporan.md``: each ``table_<name>`` is one markdown table of the
committed results (``Results``), or None while they are missing; ``TABLE_FUNCTIONS`` is the
template's ``tables.<name>``. Their words come from ``report/laporan.toml``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from functools import cached_property, partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from resvae_keras import metrics, plan, study, study_results
from resvae_keras.config import Config, checkout_file, get_profile
from resvae_keras.levers import LEVERS, load_table
from resvae_keras.record import history_summary, lookup

MAIN_RUN = "celeba-subset"
NBSP = "\u00a0"  # thousands separator of integers: unambiguous with a decimal point

# The report is built in a checkout: its words, template and results are not in the wheel.
WORDS = tomllib.loads(checkout_file("report/laporan.toml").read_text(encoding="utf-8"))
DASH, TABLES, NAMES = WORDS["dash"], WORDS["tables"], WORDS["names"]
VERDICT_WORDS = NAMES["verdict"]
STUDY_MEASURES = {key: tuple(spec) for key, spec in WORDS["measures"].items()}  # (label, decimals)


# -- formatting -------------------------------------------------------------------------


def finite(value) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def num(value, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with a fixed number of decimals; a dash when missing or not finite."""
    return f"{float(value) * scale:.{decimals}f}" if finite(value) else DASH


def integer(value) -> str:
    """An integer with non-breaking spaces between thousands (``1 542 464``)."""
    return f"{int(round(float(value))):,}".replace(",", NBSP) if finite(value) else DASH


def plus_minus(mean, std, decimals: int) -> str:
    """``mean ± std``; the mean alone when the std is missing (a single run)."""
    return f"{num(mean, decimals)} ± {num(std, decimals)}" if finite(std) else num(mean, decimals)


def p_value(p) -> str:
    """Three decimals, or scientific notation below 0.001 (``7.2e-06``)."""
    return DASH if not finite(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def percent(value) -> str:
    """A share in [0, 1] as a percent with one decimal (``93.6 %``)."""
    return f"{num(value, 1, 100.0)} %" if finite(value) else DASH


def _interval(value, low, high, decimals: int) -> str:
    """``value [low, high]``; the value alone without both bounds."""
    if not (finite(value) and finite(low) and finite(high)):
        return num(value, decimals)
    return f"{num(value, decimals)} [{num(low, decimals)}, {num(high, decimals)}]"


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
    """A column of laporan.toml: ``key`` a dotted path into a row's record, ``decimals`` or
    ``"int"``, ``"p"``, ``"text"``; an ``optional`` column is left out when no row has a value."""

    key: str
    label: str
    decimals: int | str = 2
    scale: float = 1.0
    optional: bool = False

    def cell(self, record) -> str:
        value = lookup(record, self.key)
        if self.decimals == "text":
            return str(value) if value not in (None, "") else DASH
        if self.decimals in ("int", "p"):
            return (integer if self.decimals == "int" else p_value)(value)
        return num(value, self.decimals, self.scale)


def _table(name: str, rows, columns=None) -> str | None:
    """Table ``name`` of ``rows``, ``(label cell(s), record)``: its ``headers`` hold the labels,
    then one ``Col`` (default its ``columns``) per column; None without rows."""
    if not rows:
        return None
    headers = TABLES[name]["headers"]
    rows = [((labels,) if isinstance(labels, str) else tuple(labels), r) for labels, r in rows]
    columns = [c for c in columns or [Col(*spec) for spec in TABLES[name]["columns"]]
               if not c.optional or any(c.cell(r) != DASH for _, r in rows)]
    return markdown_table([*headers, *(c.label for c in columns)],
                          [(*labels, *(c.cell(r) for c in columns)) for labels, r in rows],
                          numeric=[len(headers) + i for i, c in enumerate(columns)
                                   if c.decimals != "text"])


def measure_column(key: str) -> Col:
    return Col(key, *STUDY_MEASURES.get(key, (key, 3)), optional=True)


def arm_name(arm) -> str:
    return NAMES["arm"].get(arm, arm)


def slug(name) -> str:
    """A name or a swept value as a template key, dots dropped: ``prior_t0.7`` -> ``prior_t07``,
    ``0.25`` -> ``025``."""
    return (name if isinstance(name, str) else f"{float(name):g}").replace(".", "")


# -- the results ------------------------------------------------------------------------


class Results(study_results.Study):
    """The committed results under ``root`` (default ``report/results``), read lazily: the
    study (``root/study``), the main run, the runs beside it, the sweep, the levers, the plan."""

    def __init__(self, root: Path | str | None = None):
        root = Path(root) if root is not None else study.results_dir()
        super().__init__(root / "study")
        self.main_dir, self.sweep_dir = root / MAIN_RUN, root / "sweep"

    @cached_property
    def main_run(self) -> dict:
        return study_results.load_run(self.main_dir)

    @property
    def main(self) -> dict:
        return self.main_run["metrics"] or {}

    @cached_property
    def other_metrics(self) -> dict[str, dict]:
        """The main run's ``metrics_<data>.json``: the model on other data, by name."""
        return {path.stem.removeprefix("metrics_"): json.loads(path.read_text())
                for path in sorted(self.main_dir.glob("metrics_*.json"))}

    @property
    def samples(self) -> dict:
        return lookup(self.main, "samples") or {}

    @cached_property
    def sweep(self) -> pd.DataFrame:
        table = study_results.load_sweep(self.sweep_dir)
        return table.sort_values("sigma_min") if len(table) else table

    @cached_property
    def beside(self) -> dict[str, dict]:
        """The runs ``celeba-subset-<key>``: ``adam``, the previous default (Adam); ``ae``, the
        autoencoder at the same architecture and budget."""
        return {key: study_results.load_run(self.main_dir.parent / f"{MAIN_RUN}-{key}")
                for key in ("adam", "ae")}

    @cached_property
    def levers(self) -> pd.DataFrame:
        return load_table(self.main_dir.parent / "levers" / "levers.csv")

    @cached_property
    def planned(self) -> plan.PlannedStudy:
        """The pre-registered study (``root/study/plan.toml``, else the committed plan)."""
        local = self.root / "plan.toml"
        spec = plan.load_plan(local if local.is_file() else None)
        return plan.PlannedStudy(spec, self.root / spec["study"]["name"])

    @cached_property
    def trends(self) -> dict[str, pd.DataFrame]:
        """``study_results.sweep_trend`` of each sweep with a finished run."""
        table = self.table
        columns = [c for c in STUDY_MEASURES if c in table]
        found = set(table["group"]) if len(table) else set()
        return {group: study_results.sweep_trend(table, group, columns)
                for group in ("beta", "likelihood") if group in found}

    @property
    def per_attribute(self) -> pd.DataFrame:
        """``metrics.strongest_attributes`` of the main run, largest MSE gap first."""
        rows = lookup(self.main, "per_attribute.rows")
        if not rows:
            return pd.DataFrame()
        top = metrics.strongest_attributes(pd.DataFrame.from_dict(rows, orient="index"))
        return top.sort_values("difference", ascending=False)

    @property
    def anomaly(self) -> dict[str, dict]:
        """``{label: {score: result}}`` of the main run's anomaly kinds."""
        anomaly = lookup(self.main, "anomaly") or {}
        strengths, found = anomaly.get("corruption_strengths", {}), {}
        for kind, by_score in (anomaly.get("results") or {}).items():
            label, strength = NAMES["anomaly"].get(kind, kind), strengths.get(kind)
            if kind in ("noise", "occlusion") and finite(strength):
                label = TABLES["anomali"][kind].format(name=label, strength=f"{strength:g}",
                                                       percent=f"{100 * strength:g}")
            found[label] = by_score
        return found

    @cached_property
    def architecture(self) -> tuple:
        """``(config, summary_rows, parameter_counts)`` of the main run's model (the profile
        while it has no ``config.json``); the counts add ``plain_total``, without shortcuts."""
        from resvae_keras.model import build_model

        known = {f.name for f in dataclasses.fields(Config)}
        saved = {k: v for k, v in (self.main_run["config"] or {}).items() if k in known}
        config = get_profile("celeba-subset").replace(**saved)
        model = build_model(config)
        counts = {**model.parameter_counts(),
                  "plain_total": int(build_model(config.replace(residual=False)).count_params())}
        return config, model.summary_rows(), counts


# -- tables: the architecture --------------------------------------------------------------


def _layer_kind(row: dict) -> str:
    if row["kind"] == "Conv2D":
        return NAMES["conv"][row["strides"] > 1].format(k=row["kernel"], s=row["strides"])
    return NAMES["layer"].get(row["kind"], row["kind"])


def table_arsitektur(results: Results) -> str:
    _, layers, counts = results.architecture
    rows = [((NAMES["part"][r["part"]], f"`{r['name']}`", _layer_kind(r),
              _shape(r["output_shape"])), r) for r in layers]
    rows += [(("total", label, "", ""), {"params": counts[key]})
             for key, label in TABLES["arsitektur"]["counts"]]
    return _table("arsitektur", rows)


def table_diagram(results: Results) -> str:
    """The encoder-decoder flow with the output shapes, a stage's blocks on one line."""
    _, layers, _ = results.architecture
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
    # a config.json written before a field existed had that field's default
    value = config.get(key, getattr(Config, key, DASH)) if config else DASH
    if key in ("likelihood", "optimizer"):
        return NAMES[key].get(value, str(value))
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
        **history_summary(r["history"]),
        "precision": _config_value("mixed_precision", r["config"]) if r["config"] else None})
        for label, r in runs if len(r["history"])])


# -- tables: the main run ----------------------------------------------------------------


def table_generalisasi(results: Results) -> str | None:
    rec = lookup(results.main, "reconstruction")
    if not rec:
        return None
    return _table("generalisasi", [(TABLES["generalisasi"]["test_split"], rec), *(
        (f"`{name}`", other.get("reconstruction", other))
        for name, other in results.other_metrics.items())])


def table_per_atribut(results: Results) -> str | None:
    return _table("per_atribut", [(f"`{name}`", r.to_dict())
                                  for name, r in results.per_attribute.iterrows()])


def _samplers(results: Results) -> list[tuple[str, dict]]:
    return [(f"{NAMES['sampler'].get(s['sampler'], s['sampler'])}, T = {s['temperature']:g}", s)
            for s in results.samples.values()]


def table_sampel(results: Results) -> str | None:
    if not results.samples:
        return None
    references = lookup(results.main, "sample_references") or {}
    return _table("sampel", [*_samplers(results), *(
        (NAMES["reference"].get(k, k), s) for k, s in references.items())])


def table_keragaman(results: Results) -> str | None:
    if not results.samples:
        return None
    first = next(iter(results.samples.values()))
    real = {  # the real test faces, read through the samples' columns
        "diversity": {"pixel_l2_fake": lookup(first, "diversity.pixel_l2_real"),
                      "ms_ssim_fake": lookup(first, "diversity.ms_ssim_real")},
        "memorization": {"sample_to_train": lookup(first, "memorization.test_to_train")}}
    return _table("keragaman", [*_samplers(results), (TABLES["keragaman"]["real"], real)])


def table_anomali(results: Results) -> str | None:
    return _table("anomali", [((label, NAMES["score"].get(score, score)), r)
                              for label, by_score in results.anomaly.items()
                              for score, r in by_score.items()])


def table_ruang_wajah(results: Results) -> str | None:
    words = TABLES["ruang_wajah"]["names"]
    return _table("ruang_wajah", [(words.get(name, name), row) for name, row in
                                  (lookup(results.main, "face_space.rows") or {}).items()])


def table_pembanding(results: Results) -> str | None:
    """The model beside PCA at several k and the autoencoder, on the same test split."""
    m, words = results.main, TABLES["pembanding"]
    if not lookup(m, "reconstruction.psnr"):
        return None
    runs = {"model": results.main_run, **results.beside}
    rows = [(words[name].format(latent=lookup(run["metrics"], "model.latent_dim"),
                                optimizer=_config_value("optimizer", run["config"] or {}),
                                epochs=lookup(run["metrics"], "training.epochs")),
             {**run["metrics"]["reconstruction"],
              "bpd": lookup(run["metrics"], "reconstruction.bits_per_dim.mean")})
            for name, run in runs.items() if run["metrics"]]
    rows += [(words["pca"].format(b["n_components"]), {**b, "bpd": b["ppca_bits_per_dim"]})
             for b in (m.get("baselines") or {}).values()]
    return _table("pembanding", rows)


# -- tables: the study -------------------------------------------------------------------


def table_status(results: Results) -> str:
    spec = TABLES["status"]
    main = [f for f in ("config.json", "history.csv", "metrics.json")
            if (results.main_dir / f).is_file()]
    rows = [(spec["main"], ", ".join(f"`{f}`" for f in main) or DASH)]
    rows += [(spec["study"].format(arm_name(arm) if group == "arms" else arm),
              spec["counts"].format(integer(r.finished), integer(r.planned)))
             for (group, arm), r in results.seeds.iterrows()]
    rows.append((spec["benchmark"], spec["present"] if results.benchmark else DASH))
    return markdown_table(spec["headers"], rows, numeric=[])


def table_ablasi(results: Results) -> str | None:
    spec = TABLES["ablasi"]
    return _table("ablasi", [((f"`{name}`", arm_name(r["arm"])), r.to_dict())
                             for name, r in results.arms.iterrows()],
                  [Col("seed", spec["seed"], "int"), *map(measure_column, spec["measures"])])


def table_ablasi_ringkasan(results: Results) -> str | None:
    table = results.arms
    if table.empty:
        return None
    columns = [measure_column(c) for c in STUDY_MEASURES if c in table and table[c].notna().any()]
    summary = study_results.arm_summary(table, [c.key for c in columns])
    arms, counts = list(summary.index), results.seeds.loc["arms"]
    rows = [(c.label, *(plus_minus(summary.loc[a, f"{c.key}_mean"], summary.loc[a, f"{c.key}_sd"],
                                   c.decimals) for a in arms)) for c in columns]
    rows.append((TABLES["ablasi_ringkasan"]["seeds"], *(TABLES["status"]["counts"].format(
        integer(summary.loc[a, "n"]), integer(counts.loc[a, "planned"])) for a in arms)))
    return markdown_table([*TABLES["ablasi_ringkasan"]["headers"], *map(arm_name, arms)], rows)


def _planned(results: Results, part: str, decided: bool = True):
    """``(row, label, decimals, comparison)`` per row of the plan's ``verdicts`` or
    ``secondary``; None before a seed run (for a verdict: a finished one)."""
    found, measures = results.planned, {**STUDY_MEASURES, **WORDS["planned_measures"]}
    if (decided and not found.finished[0]) or not len(found.runs):
        return None
    return [(r, *measures.get(r.measure, (r.measure, 3)),
             f"{arm_name(r.arm)} − {arm_name(r.baseline)}")
            for r in getattr(found, part).itertuples()]


def table_uji_primer(results: Results) -> str | None:
    """Per claim and baseline, the primary test of ``plan.verdicts``."""
    rows = _planned(results, "verdicts")
    return None if rows is None else markdown_table(TABLES["uji_primer"]["headers"], [(
        NAMES["hypothesis"][r.claim].split(" ")[0], versus, label,
        f"{r.n_arm}/{r.n_baseline} ({r.n_planned})",
        _interval(r.diff, r.diff_ci_low, r.diff_ci_high, decimals),
        _interval(r.diff, r.timing_low, r.timing_high, decimals) if finite(r.timing_low) else DASH,
        _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2), p_value(r.p), p_value(r.p_welch),
        p_value(r.p_holm), num(r.margin, decimals), p_value(r.p_tost_holm),
        VERDICT_WORDS[r.verdict]) for r, label, decimals, versus in rows], numeric=range(3, 12))


def table_klaim(results: Results) -> str | None:
    """Per claim and baseline, its primary measure and its verdict."""
    rows = _planned(results, "verdicts")
    return None if rows is None else markdown_table(TABLES["klaim"]["headers"], [
        (NAMES["hypothesis"][r.claim], versus, label, VERDICT_WORDS[r.verdict])
        for r, label, _, versus in rows], numeric=[])


def table_sekunder(results: Results) -> str | None:
    """The secondary measures (``plan.secondary``): differences and Hedges' g, no p-value."""
    rows = _planned(results, "secondary", decided=False)
    return None if rows is None else markdown_table(TABLES["sekunder"]["headers"], [(
        label, versus, f"{r.n_arm}/{r.n_baseline}", num(r.mean_arm, decimals),
        num(r.mean_baseline, decimals), _interval(r.diff, r.diff_ci_low, r.diff_ci_high, decimals),
        _interval(r.hedges_g, r.g_ci_low, r.g_ci_high, 2)) for r, label, decimals, versus in rows],
        numeric=range(2, 7))


def _sweep_table(results: Results, group: str) -> str | None:
    """The ``beta`` or ``likelihood`` sweep: per value, each measure's mean ± SD over seeds."""
    trend = results.trends.get(group)
    if trend is None:
        return None
    columns = [measure_column(c) for c in WORDS["sweep"]["measures"] if c in trend]
    rows = [(_config_value(group, {group: r["x"]}), integer(r["n_seeds"]), *(
        plus_minus(r[c.key], r[f"{c.key}_seed_sd"], c.decimals) if r["n_seeds"] > 1
        else num(r[c.key], c.decimals) for c in columns)) for r in trend.to_dict("records")]
    return markdown_table([*WORDS["sweep"]["headers"][group], *(c.label for c in columns)], rows)


def floor_label(sigma_min) -> str:
    return WORDS["sweep"]["floor"].format(f"{float(sigma_min):g}") if float(sigma_min) > 0 \
        else WORDS["sweep"]["no_floor"]


def table_model_bawaan(results: Results) -> str | None:
    return _table("model_bawaan", [(floor_label(r["sigma_min"]), {slug(k): v for k, v in r.items()})
                                   for _, r in results.sweep.iterrows()])


def table_tuas(results: Results) -> str | None:
    """The lever sweep (``levers.LEVERS``): whether each lever raises the validation PSNR over
    the base row, and whether the main run's config has it."""
    table, words = results.levers, TABLES["tuas"]
    base = table.set_index("lever")["val_psnr_db"].get("base", math.nan)
    config, rows = results.main_run["config"] or {}, []
    for r in table.to_dict("records"):
        has = r["lever"] in LEVERS and all(
            config.get(k) == v for k, v in LEVERS[r["lever"]][0].items())
        marks = [words["kept"][int(r["val_psnr_db"] > base)], words["kept"][int(has)]]
        better, in_default = [words["base"]] * 2 if r["lever"] == "base" else marks
        rows.append(((r["lever"], words["what"].get(r["lever"], r["what"])),
                     {**r, "better": better, "in_default": in_default}))
    return _table("tuas", rows)


TABLE_FUNCTIONS = {  # the template's tables.<name>: every table_<name> of this module
    **{name.removeprefix("table_"): f for name, f in globals().items()
       if name.startswith("table_")},
    **{group: partial(_sweep_table, group=group) for group in ("likelihood", "beta")}}
