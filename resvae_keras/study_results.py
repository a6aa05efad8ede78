"""Reading the study's results (``report/results/study`` or a demo's folder): ``Study``."""

from __future__ import annotations

import json
import math
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras import record, study
from resvae_keras.stats import mean_interval

REFERENCE_ARM = "residual"  # the arm a single-seed sweep varies; its seeds give the spread


def load_run(folder) -> dict:
    """A run's results folder: ``config``, ``metrics`` (None when missing) and ``history``."""
    from resvae_keras.run_dir import load_history

    folder = Path(folder)
    config, metrics = (json.loads((folder / f).read_text()) if (folder / f).is_file() else None
                       for f in ("config.json", "metrics.json"))
    return {"config": config, "history": load_history(folder), "metrics": metrics}


def load_results(root=None, runs=None) -> dict[str, dict]:
    """``{name: {"group", "arm", "seed", **load_run}}`` of the finished runs, in table order."""
    table = study.load_runs() if runs is None else runs
    root = Path(root or study.results_root())
    return {row.name: {"group": row.group, "arm": row.arm, "seed": int(row.seed),
                       **load_run(root / row.name)}
            for row in table.itertuples() if study.is_finished(root / row.name, row.group)}


class Study:
    """The study's results under ``root`` (default ``report/results/study``), each read once;
    ``plan`` is the runs table."""

    def __init__(self, root=None, plan: pd.DataFrame | None = None):
        self.root = Path(root or study.results_root())
        self.plan = study.load_runs(self.root / "runs.csv") if plan is None else plan

    @cached_property
    def runs(self) -> dict[str, dict]:
        return load_results(self.root, self.plan)

    @cached_property
    def benchmark(self) -> dict | None:
        return study.load_benchmark(self.root)

    @cached_property
    def table(self) -> pd.DataFrame:
        return study_table(self.runs, self.benchmark)

    @cached_property
    def arms(self) -> pd.DataFrame:
        return self.table[self.table["group"] == "arms"] if len(self.table) else self.table

    @cached_property
    def seeds(self) -> pd.DataFrame:
        return study.seeds_per_arm(self.root, self.plan)


def sampler_keys(table: pd.DataFrame, temperature: str = "t1") -> list[str]:
    """Sampler keys (e.g. ``prior_t1``, ``gmm_t1``) measured in every row of ``table``."""
    keys = [c.removeprefix("face_rate_") for c in table.columns if c.startswith("face_rate_")]
    return [k for k in keys if k.endswith(f"_{temperature}")
            and table[f"face_rate_{k}"].notna().all()]


def load_sweep(root=None) -> pd.DataFrame:
    """The default-model sweep (``report/results/sweep/<name>/``) as ``record.run_record`` rows."""
    root = Path(root or study.results_dir() / "sweep")
    runs = {p.parent.name: load_run(p.parent) for p in sorted(root.glob("*/metrics.json"))}
    return pd.DataFrame.from_dict({name: record.run_record(run["metrics"], run["config"])
                                   for name, run in runs.items()}, orient="index")


# -- speed: steps and seconds to a validation loss, and the loss at an equal time -------------


def validation_curve(history: pd.DataFrame, steps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(optimizer steps, validation_neg_elbo)`` after each epoch of a run of ``steps``."""
    per_epoch = float(steps) / len(history)
    return per_epoch * (np.arange(len(history)) + 1), record.validation_neg_elbo(history)


def arm_curves(results: dict[str, dict], benchmark: dict | None = None,
               group: str = "arms") -> tuple[dict, dict]:
    """``({run: (steps, loss)}, {run: (minutes, loss)})`` of ``group``'s runs; the minutes only
    for the arms the benchmark measured."""
    cost = study.seconds_per_step(benchmark)
    curves = {n: validation_curve(r["history"], r["metrics"]["training"]["steps"])
              for n, r in results.items() if r["group"] == group and len(r["history"])}
    timed = {n: (x * cost[results[n]["arm"]] / 60.0, y) for n, (x, y) in curves.items()
             if results[n]["arm"] in cost}
    return curves, timed


def steps_to_reach(steps, values, threshold: float) -> float:
    """First step at which the curve reaches ``threshold`` (linear between epoch ends; the first
    epoch end when it is already below); NaN when it never does."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    below = np.flatnonzero(values <= threshold)
    if not len(below):
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(steps[0])
    fraction = (values[i - 1] - threshold) / (values[i - 1] - values[i])
    return float(steps[i - 1] + fraction * (steps[i] - steps[i - 1]))


def value_at(steps, values, step: float) -> float:
    """The curve at ``step`` (linear between epoch ends); NaN outside the measured range."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if not len(steps) or step < steps[0] - 1e-9 or step > steps[-1] + 1e-9:
        return float("nan")
    return float(np.interp(step, steps, values))


def speed_measures(results: dict[str, dict], benchmark: dict | None = None) -> pd.DataFrame:
    """Per arm run: steps and seconds to ``threshold`` (the highest best validation -ELBO,
    which every run reaches) and the loss at the shortest run's time; NaN seconds without a
    benchmark."""
    columns = ["arm", "seed", "threshold", "steps_to_threshold", "seconds_to_threshold",
               "equal_time_s", "val_neg_elbo_at_equal_time"]
    curves, _ = arm_curves(results, benchmark)
    if not curves:
        return pd.DataFrame(columns=columns)
    threshold = max(float(np.min(y)) for _, y in curves.values())
    cost = study.seconds_per_step(benchmark)
    ends = [x[-1] * cost[results[n]["arm"]] for n, (x, _) in curves.items()
            if results[n]["arm"] in cost]
    equal_time = min(ends) if ends and len(ends) == len(curves) else float("nan")
    rows = {}
    for name, (x, y) in curves.items():
        r = results[name]
        step_cost = cost.get(r["arm"], float("nan"))
        steps = steps_to_reach(x, y, threshold)
        rows[name] = {
            "arm": r["arm"], "seed": r["seed"], "threshold": threshold,
            "steps_to_threshold": steps, "seconds_to_threshold": steps * step_cost,
            "equal_time_s": equal_time,
            "val_neg_elbo_at_equal_time": (value_at(x, y, equal_time / step_cost)
                                           if math.isfinite(equal_time) else float("nan")),
        }
    return pd.DataFrame.from_dict(rows, orient="index")[columns]


def study_table(results: dict[str, dict], benchmark: dict | None = None) -> pd.DataFrame:
    """One row per finished run (index: name): ``group``, ``arm``, ``seed``,
    ``record.run_record`` and the ``speed_measures`` columns (NaN outside the arms)."""
    rows = {name: {"group": r["group"], "arm": r["arm"], "seed": r["seed"],
                   **record.run_record(r["metrics"], r["config"])} for name, r in results.items()}
    table = (pd.DataFrame.from_dict(rows, orient="index") if rows
             else pd.DataFrame(columns=["group", "arm", "seed"]))
    return table.join(speed_measures(results, benchmark).drop(columns=["arm", "seed"]), how="left")


def arm_summary(table: pd.DataFrame, columns) -> pd.DataFrame:
    """Per arm: ``n`` and per column ``<c>_mean``, ``<c>_sd``, ``<c>_ci`` (95 % t half-width)."""
    out = {}
    for arm, group in table.groupby("arm", sort=False):
        row = {"n": len(group)}
        for column in columns:
            values = group[column].dropna().to_numpy(float)
            row[f"{column}_mean"], row[f"{column}_ci"] = mean_interval(values)
            row[f"{column}_sd"] = values.std(ddof=1) if len(values) > 1 else np.nan
        out[arm] = row
    return pd.DataFrame.from_dict(out, orient="index")


def sweep_trend(table: pd.DataFrame, group: str, columns) -> pd.DataFrame:
    """A single-seed sweep's rows (``x``, ``n_seeds``, columns), the reference arm's seed mean
    among them and its seed SD as ``<c>_seed_sd``."""
    reference = table[(table["group"] == "arms") & (table["arm"] == REFERENCE_ARM)]
    runs = table[table["group"] == group]
    rows = [{"x": r[group], "n_seeds": 1, **{c: r[c] for c in columns}} for _, r in runs.iterrows()]
    if len(reference):
        rows.append({"x": reference[group].iloc[0], "n_seeds": len(reference),
                     **{c: reference[c].mean() for c in columns}})
    out = pd.DataFrame(rows, columns=["x", "n_seeds", *columns])
    for c in columns:
        out[f"{c}_seed_sd"] = reference[c].std(ddof=1) if len(reference) > 1 else np.nan
    try:
        return out.sort_values("x", key=lambda s: s.astype(float)).reset_index(drop=True)
    except (TypeError, ValueError):
        return out.reset_index(drop=True)
