"""The template's ``tables.<name>`` (``TABLE_FUNCTIONS``: a markdown table, or the rows a table of
the template loops over) of the committed results (``Results``); shared words: laporan.toml."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras import metrics, plan, study, study_results
from resvae_keras.config import Config, checkout_file, get_profile
from resvae_keras.levers import LEVERS, load_table
from resvae_keras.record import history_summary, lookup

MAIN_RUN = "celeba-subset"

# The report is built in a checkout: its words, template and results are not in the wheel.
WORDS = tomllib.loads(checkout_file("report/laporan.toml").read_text(encoding="utf-8"))
DASH, NAMES, VERDICT_WORDS = WORDS["dash"], WORDS["names"], WORDS["names"]["verdict"]
STUDY_MEASURES = {key: tuple(spec) for key, spec in WORDS["measures"].items()}  # (label, decimals)


# -- formatting -------------------------------------------------------------------------


def finite(value) -> bool:
    return isinstance(value, (int, float, np.number)) and math.isfinite(value)


def num(value, decimals: int, scale: float = 1.0) -> str:
    """``value * scale`` with a fixed number of decimals; a dash when missing or not finite."""
    return f"{float(value) * scale:.{decimals}f}" if finite(value) else DASH


def integer(value) -> str:
    """An integer with non-breaking spaces between thousands (``1 542 464``)."""
    return f"{int(round(float(value))):,}".replace(",", "\u00a0") if finite(value) else DASH


def plus_minus(mean, std, decimals: int) -> str:
    """``mean ± std``; the mean alone when the std is missing (a single run)."""
    return f"{num(mean, decimals)} ± {num(std, decimals)}" if finite(std) else num(mean, decimals)


def p_value(p) -> str:
    """Three decimals, or scientific notation below 0.001 (``7.2e-06``)."""
    return DASH if not finite(p) else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def percent(value) -> str:
    """A share in [0, 1] as a percent with one decimal (``93.6 %``)."""
    return f"{num(value, 1, 100.0)} %" if finite(value) else DASH


def interval(value, low, high, decimals: int) -> str:
    """``value [low, high]``; the value alone without both bounds."""
    if not (finite(value) and finite(low) and finite(high)):
        return num(value, decimals)
    return f"{num(value, decimals)} [{num(low, decimals)}, {num(high, decimals)}]"


def markdown_table(columns, rows, numeric=None) -> str:
    """A pipe table; ``numeric`` columns (indices, default all but the first) right-aligned."""
    numeric = set(range(1, len(columns))) if numeric is None else set(numeric)
    align = ["---:" if i in numeric else ":---" for i in range(len(columns))]

    def line(cells):  # a "|" inside a cell (p(x|z)) must not end the cell
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(columns), "| " + " | ".join(align) + " |", *map(line, rows)])


def setting(config: dict | None, key: str) -> str:
    """A config's ``key`` as the report writes it; a dash without a config."""
    # a config.json written before a field existed had that field's default
    value = config.get(key, getattr(Config, key, DASH)) if config else DASH
    if key in ("likelihood", "optimizer"):
        return NAMES[key].get(value, str(value))
    if key == "mixed_precision":
        return "float32" if value is None else str(value)
    if isinstance(value, list):  # the widths per stage, or the study's seeds
        return ("–" if key == "widths" else ", ").join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def measure(key: str) -> tuple[str, int]:
    """A study measure's ``(label, decimals)``."""
    return STUDY_MEASURES.get(key, (key, 3))


def arm_name(arm) -> str:
    return NAMES["arm"].get(arm, arm)


def floor_label(sigma_min) -> str:
    """A decoder sigma floor as a row label: ``σ ≥ 0.5``, or none."""
    return f"σ ≥ {float(sigma_min):g}" if float(sigma_min) > 0 else "tanpa lantai"


def slug(name) -> str:
    """A name or a swept value as a template key, dots dropped: ``prior_t0.7`` -> ``prior_t07``."""
    return (name if isinstance(name, str) else f"{float(name):g}").replace(".", "")


# -- the results ------------------------------------------------------------------------


class Results(study_results.Study):
    """The committed results under ``root`` (default ``report/results``), read lazily."""

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
    def sweep(self) -> pd.DataFrame:
        table = study_results.load_sweep(self.sweep_dir)
        return table.sort_values("sigma_min") if len(table) else table

    @cached_property
    def beside(self) -> dict[str, dict]:
        """The runs ``celeba-subset-adam`` (the previous default) and ``-ae`` (an autoencoder)."""
        return {key: study_results.load_run(self.main_dir.parent / f"{MAIN_RUN}-{key}")
                for key in ("adam", "ae")}

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
        return {group: study_results.sweep_trend(table, group, columns)
                for group in ("beta", "likelihood") if group in set(table.get("group", []))}

    @property
    def anomaly(self) -> dict[str, dict]:
        """``{label: {score: result}}`` of the main run's anomaly kinds."""
        anomaly = lookup(self.main, "anomaly") or {}
        strengths, found = anomaly.get("corruption_strengths", {}), {}
        for kind, by_score in (anomaly.get("results") or {}).items():
            label, strength = NAMES["anomaly"].get(kind, kind), strengths.get(kind)
            if kind in NAMES["corruption"] and finite(strength):
                label = NAMES["corruption"][kind].format(name=label, strength=f"{strength:g}",
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


def table_arsitektur(results: Results) -> list[dict]:
    """Every layer of the model (``model.summary_rows``), its ``kind`` and ``shape`` in words."""
    return [{**r, "part": NAMES["part"][r["part"]], "kind": _layer_kind(r),
             "shape": "×".join(map(str, r["output_shape"]))} for r in results.architecture[1]]


def table_diagram(results: Results) -> str:
    """The encoder-decoder flow with the output shapes, a stage's blocks on one line."""
    _, layers, _ = results.architecture
    lines = ["```text"]
    for part, title, last in [
            ("encoder", "ENKODER  q(z | x)",
             "z = z_mean + exp(½ · z_log_var) ⊙ ε,  ε ~ N(0, I)   (reparameterisasi)"),
            ("decoder", "DEKODER  p(x | z)", "sigmoid → citra rerata x̂ ∈ [0, 1]")]:
        folded: list[list] = []  # [kind, output shape, how many in a row]
        for r in (r for r in layers if r["part"] == part):
            step = [_layer_kind(r), "×".join(map(str, r["output_shape"]))]
            if r["kind"] == "ResidualBlock" and folded and folded[-1][:2] == step:
                folded[-1][2] += 1
            else:
                folded.append([*step, 1])
        lines += [title, *(f"  │ {(f'{n} × {kind}' if n > 1 else kind):<44} → {out}"
                           for kind, out, n in folded), f"  │ {last}"]
    return "\n".join([*lines, "```"])


# -- rows of the template's tables -------------------------------------------------------


def table_hiperparameter(results: Results) -> dict | None:
    """The main run's config beside the study's (``residual_s0``'s, with every seed)."""
    main, runs = results.main_run["config"], results.runs
    reference = (runs.get("residual_s0") or next(iter(runs.values()), {})).get("config")
    if main is None and reference is None:
        return None
    if reference and "seed" in reference:
        reference = {**reference, "seed": sorted({r["seed"] for r in runs.values()})}
    return {"main": main, "reference": reference}


def table_waktu(results: Results) -> list[dict]:
    """Per run with a history, the main run first: ``history_summary`` and its precision."""
    runs = [(MAIN_RUN, results.main_run), *results.runs.items()]
    return [{"run": name, **history_summary(r["history"]),
             "precision": setting(r["config"], "mixed_precision")}
            for name, r in runs if len(r["history"])]


def table_tuas(results: Results) -> list[dict]:
    """The lever sweep with ``better`` (beats the base row's PSNR) and ``in_default``."""
    table = load_table(results.main_dir.parent / "levers" / "levers.csv")
    config = results.main_run["config"] or {}
    base = table.set_index("lever")["val_psnr_db"].get("base", math.nan)
    return [{**r, "better": r["val_psnr_db"] > base, "in_default": r["lever"] in LEVERS and all(
        config.get(k) == v for k, v in LEVERS[r["lever"]][0].items())}
        for r in table.to_dict("records")]


def table_per_atribut(results: Results) -> list[dict]:
    """``metrics.strongest_attributes`` of the main run (``name``), largest MSE gap first."""
    rows = lookup(results.main, "per_attribute.rows")
    if not rows:
        return []
    top = metrics.strongest_attributes(pd.DataFrame.from_dict(rows, orient="index"))
    top = top.sort_values("difference", ascending=False).rename_axis("name")
    return top.reset_index().to_dict("records")


def table_sampel(results: Results) -> list[dict]:
    """The samplers, then the references: ``label``, ``n_images``, realism measures (or None)."""
    references = [{"label": NAMES["reference"].get(k, k), **s}
                  for k, s in (lookup(results.main, "sample_references") or {}).items()]
    keys = ("swd.swd_64", "swd.swd_32", "swd.swd_16", "swd.swd_mean", "face_rate", "fid",
            "kid_mean", "precision", "recall")
    return [{"label": s["label"], "n_images": s.get("n_images"),
             **{key.split(".")[-1]: lookup(s, f"realism.{key}") for key in keys}}
            for s in [*table_keragaman(results), *references]]


def table_keragaman(results: Results) -> list[dict]:
    """The samplers' records (diversity, memorization) with their ``label``."""
    return [{"label": f"{NAMES['sampler'].get(s['sampler'], s['sampler'])}, "
                      f"T = {s['temperature']:g}", **s}
            for s in (lookup(results.main, "samples") or {}).values()]


def table_pembanding(results: Results) -> list[dict]:
    """The model, the runs beside it and PCA at each k (``kind``), ``bpd`` their bits/dim."""
    runs = {"model": results.main_run, **results.beside}
    rows = [{"kind": kind, "latent": lookup(run["metrics"], "model.latent_dim"),
             "optimizer": setting(run["config"] or {}, "optimizer"),
             "epochs": lookup(run["metrics"], "training.epochs"),
             **run["metrics"]["reconstruction"],
             "bpd": lookup(run["metrics"], "reconstruction.bits_per_dim.mean")}
            for kind, run in runs.items() if run["metrics"]]
    return rows + [{"kind": "pca", **b, "bpd": b["ppca_bits_per_dim"]}
                   for b in (results.main.get("baselines") or {}).values()]


def table_status(results: Results) -> dict:
    """The main run's files, the study's seeds per arm or sweep value, the benchmark's presence."""
    main = [f"`{f}`" for f in ("config.json", "history.csv", "metrics.json")
            if (results.main_dir / f).is_file()]
    return {"main": ", ".join(main) or DASH, "benchmark": bool(results.benchmark),
            "seeds": [{"name": arm_name(arm) if group == "arms" else arm,
                       "finished": r.finished, "planned": r.planned}
                      for (group, arm), r in results.seeds.iterrows()]}


# -- tables: the study -------------------------------------------------------------------


def table_ablasi(results: Results) -> str | None:
    """Per run of the study's arms: its arm, seed and the measures measured."""
    table = results.arms
    if table.empty:
        return None
    columns = [c for c in ("psnr", "ssim", "ms_ssim", "neg_elbo_bpd", "sharpness_ratio",
                           "face_rate_prior_t1", "swd_mean_prior_t1", "steps_to_threshold")
               if c in table and table[c].notna().any()]
    rows = [(f"`{name}`", arm_name(r["arm"]), integer(r["seed"]),
             *(num(r[c], measure(c)[1]) for c in columns)) for name, r in table.iterrows()]
    return markdown_table(["Percobaan", "Kelompok", "Seed", *(measure(c)[0] for c in columns)],
                          rows, numeric=range(2, 3 + len(columns)))


def table_ablasi_ringkasan(results: Results) -> str | None:
    """Per arm, each study measure's mean ± SD over seeds, and the seeds finished."""
    table = results.arms
    if table.empty:
        return None
    columns = [c for c in STUDY_MEASURES if c in table and table[c].notna().any()]
    summary = study_results.arm_summary(table, columns)
    arms, counts = list(summary.index), results.seeds.loc["arms"]
    rows = [(measure(c)[0], *(plus_minus(summary.loc[a, f"{c}_mean"], summary.loc[a, f"{c}_sd"],
                                         measure(c)[1]) for a in arms)) for c in columns]
    rows.append(("Jumlah seed", *(f"{integer(summary.loc[a, 'n'])} dari "
                                  f"{integer(counts.loc[a, 'planned'])}" for a in arms)))
    return markdown_table(["Ukuran", *map(arm_name, arms)], rows)


def _planned(results: Results, part: str, decided: bool = True) -> list[dict]:
    """Labelled rows of the plan's ``verdicts`` or ``secondary``; none before a (finished) run."""
    found, measures = results.planned, {**STUDY_MEASURES, **WORDS["planned_measures"]}
    if (decided and not found.finished[0]) or not len(found.runs):
        return []
    return [{**r, "label": label.replace("|", "\\|"), "decimals": decimals,  # "|" in a cell
             "comparison": f"{arm_name(r['arm'])} − {arm_name(r['baseline'])}"}
            for r in getattr(found, part).to_dict("records")
            for label, decimals in [measures.get(r["measure"], (r["measure"], 3))]]


table_uji_primer = partial(_planned, part="verdicts")  # the primary tests and their verdicts
table_sekunder = partial(_planned, part="secondary", decided=False)  # no p-value, no verdict


def _sweep_table(results: Results, group: str) -> str | None:
    """The ``beta`` or ``likelihood`` sweep: per value, each measure's mean ± SD over seeds."""
    trend = results.trends.get(group)
    if trend is None:
        return None
    columns = [c for c in ("psnr", "ssim", "sharpness_ratio", "kl_nats", "face_rate_prior_t1",
                           "swd_mean_prior_t1") if c in trend]
    rows = [(setting({group: r["x"]}, group), integer(r["n_seeds"]), *(
        plus_minus(r[c], r[f"{c}_seed_sd"], measure(c)[1]) if r["n_seeds"] > 1
        else num(r[c], measure(c)[1]) for c in columns)) for r in trend.to_dict("records")]
    return markdown_table([{"beta": "β", "likelihood": "Likelihood"}[group], "n seed",
                           *(measure(c)[0] for c in columns)], rows)


TABLE_FUNCTIONS = {  # the template's tables.<name>: every table_<name> of this module
    **{name.removeprefix("table_"): f for name, f in globals().items()
       if name.startswith("table_")},
    **{group: partial(_sweep_table, group=group) for group in ("likelihood", "beta")}}
