"""The pre-registered study: its plan, its runs, and the verdicts the plan's tests give.

``report/results/study/plan.toml`` fixes the arms, seeds, budget, the learning-rate grid and,
per claim, one primary measure, its direction and its equivalence margin; ``PlannedStudy``
reads the runs and gives the verdicts.

    python -m resvae_keras study             # the learning-rate runs, then the seeds
    python -m resvae_keras study --status    # what is left
"""

from __future__ import annotations

import itertools
import math
import tomllib
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras import record, stats, study, study_results
from resvae_keras.record import lookup

VERDICTS = ("supported", "contradicted", "equivalent", "inconclusive")
CLAIMS = ("a", "b", "c", "d")
TIME_MEASURE = "val_bpd_at_equal_time"
VERDICT_COLUMNS = (
    "claim", "statement", "arm", "baseline", "measure", "higher_is_better", "n_arm",
    "n_baseline", "n_planned", "mean_arm", "mean_baseline", "diff", "diff_ci_low",
    "diff_ci_high", "timing_low", "timing_high", "hedges_g", "g_ci_low", "g_ci_high", "p",
    "p_welch", "p_holm", "margin", "p_tost", "p_tost_holm", "verdict",
)


def plan_path() -> Path:
    return study.results_dir() / "study" / "plan.toml"


def load_plan(path=None) -> dict:
    """The plan (``plan.toml``, default the committed one) as a dict, by ``check_plan``."""
    path = Path(path or plan_path())
    plan = tomllib.loads(path.read_text(encoding="utf-8"))
    return check_plan(plan, path.name)


def check_plan(plan: dict, where: str = "the plan") -> dict:
    """``plan`` itself after checking it names what the study reads (ValueError otherwise)."""
    required = {"study": ("name", "seeds", "reference", "baselines", "alpha"),
                "claims": CLAIMS, "learning_rate": ("grid", "seed")}
    missing = [f"{part}.{k}" for part, keys in required.items() for k in keys
               if k not in plan.get(part, {})]
    missing += [f"claims.{c}.{k}" for c, claim in plan.get("claims", {}).items()
                for k in ("measure", "higher_is_better") if k not in claim]
    head = plan.get("study", {})
    unknown = [a for a in [head.get("reference"), *head.get("baselines", [])]
               if a not in plan.get("arms", {})]
    if missing or unknown:
        raise ValueError(f"{where} lacks {missing} or names arms without an [arms.<name>] "
                         f"table: {unknown}; see report/results/study/plan.toml")
    return plan


def comparisons(plan: dict) -> list[tuple[str, str]]:
    return [(plan["study"]["reference"], b) for b in plan["study"]["baselines"]]


def results_root(plan: dict, profile: str = study.STUDY_PROFILE) -> Path:
    """``study.results_root(profile) / <plan name>``."""
    return study.results_root(profile) / plan["study"]["name"]


# -- the runs --------------------------------------------------------------------------------


def _rate(rate: float) -> str:
    return f"{float(rate):g}"


def runs_table(plan: dict, profile: str = study.STUDY_PROFILE,
               learning_rates: dict | None = None) -> pd.DataFrame:
    """The plan's runs: per arm one ``lr_<arm>_<rate>`` run per rate of the grid (group
    ``lr``), then ``<arm>_s<seed>`` per seed (group ``arms``) at the arm's chosen rate. The demo
    profile keeps its own budget and the first two seeds."""
    head, lr = plan["study"], plan["learning_rate"]
    demo = profile == "demo"
    short = {} if demo else {k: lr[k] for k in ("epochs", "kl_warmup_steps") if k in lr}
    full = {} if demo else {k: head[k] for k in ("epochs", "kl_warmup_steps") if k in head}
    base = {arm: {**head.get("common", {}), **spec.get("overrides", {})}
            for arm, spec in plan["arms"].items()}
    rows = [(f"lr_{arm}_{_rate(r)}", "lr", arm, int(lr["seed"]),
             {**base[arm], **short, "learning_rate": float(r)}) for arm in base for r in lr["grid"]]
    seeds = head["seeds"][:2] if demo else head["seeds"]
    for seed in seeds:
        for arm in base:
            chosen = (learning_rates or {}).get(arm)
            rate = {} if chosen is None else {"learning_rate": float(chosen)}
            rows.append((f"{arm}_s{seed}", "arms", arm, int(seed), {**base[arm], **full, **rate}))
    return pd.DataFrame(rows, columns=list(study.RUNS_COLUMNS))


class PlannedStudy(study_results.Study):
    """The plan's study under ``root`` (default ``results_root(plan)``); ``runs`` are the
    finished seed runs, ``learning_rates`` per arm the grid's rate with the lowest best
    validation -ELBO (ties to the lower rate; None until the arm's grid has finished)."""

    def __init__(self, spec: dict | None = None, root=None, profile: str = study.STUDY_PROFILE):
        self.spec = load_plan() if spec is None else check_plan(spec)
        root = Path(root) if root is not None else results_root(self.spec, profile)
        lr_runs = runs_table(self.spec, profile)
        lr_results = study_results.load_results(root, lr_runs[lr_runs["group"] == "lr"])
        grid = sorted(self.spec["learning_rate"]["grid"])
        self.learning_rates = dict.fromkeys(self.spec["arms"])
        for arm in self.spec["arms"]:
            runs = [lr_results.get(f"lr_{arm}_{_rate(rate)}") for rate in grid]
            if all(run is not None and len(run["history"]) for run in runs):
                best = [float(np.nanmin(record.validation_neg_elbo(r["history"]))) for r in runs]
                self.learning_rates[arm] = min(zip(best, grid, strict=True))[1]
        super().__init__(root, runs_table(self.spec, profile, self.learning_rates))

    @cached_property
    def runs(self) -> dict[str, dict]:
        return study_results.load_results(self.root, self.plan[self.plan["group"] == "arms"])

    @cached_property
    def table(self) -> pd.DataFrame:
        """``study_table`` with ``sharpness_log2`` (-|log2 sharpness_ratio|) and the plan's
        ``keys`` (dotted paths into metrics.json; NaN where missing)."""
        table = study_results.study_table(self.runs, self.benchmark)
        if table.empty:
            return table
        ratio = pd.to_numeric(table["sharpness_ratio"], errors="coerce").astype(float)
        table["sharpness_log2"] = -np.abs(np.log2(ratio.where(ratio > 0)))
        for measure, key in self.spec.get("keys", {}).items():
            table[measure] = [_number(lookup(self.runs[n]["metrics"], key)) for n in table.index]
        return table

    @cached_property
    def verdicts(self) -> pd.DataFrame:
        """One row per claim and baseline (``VERDICT_COLUMNS``); ``diff`` = arm - baseline,
        Holm over the claims' permutation tests and over their TOSTs."""
        n_planned = len(self.spec["study"]["seeds"])
        rows = []
        for claim in CLAIMS:
            entry = self.spec["claims"][claim]
            margin_value = margin(self.spec, claim, self.runs)
            for arm, baseline in comparisons(self.spec):
                if entry["measure"] == TIME_MEASURE:
                    numbers = _time_matched(self.spec, self.runs, self.benchmark, arm, baseline,
                                            margin_value)
                else:
                    numbers = _test(*_samples(self.table, entry["measure"], arm, baseline),
                                    margin_value)
                rows.append({"claim": claim, "statement": entry.get("claim", ""), "arm": arm,
                             "baseline": baseline, "measure": entry["measure"],
                             "higher_is_better": bool(entry["higher_is_better"]),
                             "n_planned": n_planned, **numbers})
        frame = pd.DataFrame(rows).reindex(columns=list(VERDICT_COLUMNS))
        frame["p_holm"] = stats.holm(frame["p"])
        frame["p_tost_holm"] = stats.holm(frame["p_tost"])
        alpha = float(self.spec["study"]["alpha"])
        frame["verdict"] = [verdict_word(r, alpha, min(r["n_arm"], r["n_baseline"]) >= n_planned)
                            for r in frame.to_dict("records")]
        return frame

    @cached_property
    def secondary(self) -> pd.DataFrame:
        """The plan's secondary measures per baseline as effect sizes: no p-value."""
        rows = []
        for measure in self.spec.get("secondary", {}).get("measures", []):
            for arm, baseline in comparisons(self.spec):
                t = _test(*_samples(self.table, measure, arm, baseline), float("nan"))
                rows.append({"measure": measure, "arm": arm, "baseline": baseline,
                             **{k: v for k, v in t.items() if k != "margin" and k[0] != "p"}})
        return pd.DataFrame(rows)

    @property
    def finished(self) -> tuple[int, int]:
        """(finished, planned) runs of both groups."""
        return int(self.seeds["finished"].sum()), int(self.seeds["planned"].sum())


def status_text(spec: dict | None = None, profile: str = study.STUDY_PROFILE, root=None) -> str:
    """Where the plan stands, ending with the next command."""
    found = PlannedStudy(spec, root, profile)
    parts = ", ".join(f"{group} {arm} {r.finished}/{r.planned}"
                      for (group, arm), r in found.seeds.iterrows())
    done, planned = found.finished
    rates = ", ".join(f"{a} {'not chosen' if r is None else _rate(r)}"
                      for a, r in found.learning_rates.items())
    benchmark = found.benchmark is not None
    lines = [f"study {found.spec['study']['name']}: {done} of {planned} runs finished ({parts})",
             f"learning rates: {rates}; benchmark: {'done' if benchmark else 'not run'}"]
    return "\n".join([*lines, *study._next_steps(found.root, done >= planned, benchmark, profile)])


def run_plan(only=None, profile: str = study.STUDY_PROFILE, spec: dict | None = None, root=None,
             max_runs: int | None = None, verbose=2) -> list[str]:
    """Train the plan's unfinished runs through ``study.run_study``: the learning-rate runs,
    then, once every arm's rate is chosen, the seed runs. Returns the names finished."""
    finished = []
    for group in ("lr", "arms"):
        found = PlannedStudy(spec, root, profile)
        if group == "arms" and None in found.learning_rates.values():
            print("the learning-rate runs are not all finished: no seed run starts yet")
            break
        table = found.plan[found.plan["group"] == group]
        todo = [n for n in table["name"] if only is None or n in only]
        left = None if max_runs is None else int(max_runs) - len(finished)
        if todo and left != 0:
            finished += study.run_study(todo, profile, found.root, table, left, verbose,
                                        subfolder=found.spec["study"]["name"], report=False)
    print(status_text(spec, profile, root), flush=True)
    return finished


# -- the measures ----------------------------------------------------------------------------


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else np.nan


def margin(spec: dict, claim: str, results: dict[str, dict]) -> float:
    """The claim's ``margin``, or ``margin_fraction`` x the runs' median gap between its two
    ``margin_from`` metrics.json values; NaN without either."""
    entry = spec["claims"][claim]
    if "margin" in entry:
        return float(entry["margin"])
    if "margin_from" not in entry:
        return float("nan")
    high, low = entry["margin_from"]
    gaps = [_number(lookup(r["metrics"], high)) - _number(lookup(r["metrics"], low))
            for r in results.values()]
    gaps = [g for g in gaps if math.isfinite(g)]
    return float(entry.get("margin_fraction", 1.0) * np.median(gaps)) if gaps else float("nan")


def step_costs(benchmark: dict | None, quantiles=(0.25, 0.75)) -> dict[str, tuple]:
    """``{arm: (median, low, high)}`` s/step; low, high: ``quantiles`` of per_round_s or NaN."""
    out = {}
    for arm, row in ((benchmark or {}).get("arms") or {}).items():
        low = high = float("nan")
        if row.get("per_round_s"):
            low, high = (float(q) for q in np.quantile(row["per_round_s"], list(quantiles)))
        out[arm] = (float(row["seconds_per_step"]), low, high)
    return out


def equal_time_values(results: dict[str, dict], arm: str, baseline: str, cost_arm: float,
                      cost_baseline: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Each run's validation -ELBO in bits/dim at T, the shortest run's wall time (steps x
    cost per step): ``(arm's values, baseline's values, T in seconds)``."""
    from resvae_keras.metrics import bits_per_dim

    cost = {arm: cost_arm, baseline: cost_baseline}
    runs = {n: r for n, r in results.items() if r["arm"] in cost and len(r["history"])}
    if not runs or not all(math.isfinite(c) and c > 0 for c in cost.values()):
        return np.zeros(0), np.zeros(0), float("nan")
    curves = {n: study_results.validation_curve(r["history"], r["metrics"]["training"]["steps"])
              for n, r in runs.items()}
    equal = min(curves[n][0][-1] * cost[r["arm"]] for n, r in runs.items())
    values = {side: [] for side in cost}
    for name, r in runs.items():
        size = int((r["config"] or {}).get("image_size", 64))
        nats = study_results.value_at(*curves[name], equal / cost[r["arm"]])
        values[r["arm"]].append(bits_per_dim(nats, size * size * 3))
    return np.asarray(values[arm], float), np.asarray(values[baseline], float), equal


def _test(a, b, margin_value: float) -> dict:
    welch = stats.welch(a, b)
    g, g_low, g_high = stats.hedges_g(a, b)
    return {"n_arm": len(a), "n_baseline": len(b),
            "mean_arm": float(np.mean(a)) if len(a) else np.nan,
            "mean_baseline": float(np.mean(b)) if len(b) else np.nan,
            "diff": welch["diff"], "diff_ci_low": welch["ci_low"], "diff_ci_high": welch["ci_high"],
            "hedges_g": g, "g_ci_low": g_low, "g_ci_high": g_high,
            "p": stats.permutation_test(a, b), "p_welch": welch["p"], "margin": margin_value,
            "p_tost": stats.tost(a, b, margin_value)["p"]}


def _samples(table: pd.DataFrame, measure: str, arm: str, baseline: str) -> list[np.ndarray]:
    if measure not in table:
        return [np.zeros(0), np.zeros(0)]
    return [table.loc[table["arm"] == side, measure].dropna().to_numpy(float)
            for side in (arm, baseline)]


def _time_matched(spec: dict, results, benchmark, arm: str, baseline: str, margin_value) -> dict:
    """``_test`` at the median costs; ``p``, ``p_tost`` and the ``diff`` range
    (``timing_low``/``timing_high``) over every corner of the two arms' cost intervals."""
    costs = step_costs(benchmark, spec["claims"]["d"].get("timing_quantiles", (0.25, 0.75)))
    if arm not in costs or baseline not in costs:
        return _test([], [], margin_value)
    centre = _test(*equal_time_values(results, arm, baseline, costs[arm][0],
                                      costs[baseline][0])[:2], margin_value)
    corners = [_test(*equal_time_values(results, arm, baseline, ca, cb)[:2], margin_value)
               for ca, cb in itertools.product(costs[arm], costs[baseline])
               if math.isfinite(ca) and math.isfinite(cb)]
    def over_corners(key, pick=max):  # a corner that cannot be tested (T before the first
        values = [c[key] for c in corners]  # epoch end, a margin unknown) leaves NaN
        return pick(values) if values and all(math.isfinite(v) for v in values) else float("nan")

    return {**centre, "p": over_corners("p"), "p_tost": over_corners("p_tost"),
            "timing_low": over_corners("diff", min), "timing_high": over_corners("diff")}


def verdict_word(row: dict, alpha: float, complete: bool) -> str:
    """One of ``VERDICTS`` from the Holm-adjusted TOST, then permutation test, at ``alpha``;
    ``"inconclusive"`` until every planned seed of both arms has finished."""
    if not complete:
        return "inconclusive"
    if row["p_tost_holm"] < alpha:
        return "equivalent"
    if row["p_holm"] < alpha:
        return "supported" if (row["diff"] > 0) == bool(row["higher_is_better"]) else "contradicted"
    return "inconclusive"
