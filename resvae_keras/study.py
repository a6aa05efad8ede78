"""The first study (residual, plain and conv arms; beta and likelihood sweeps): its runs
table, configs, and running it (train, evaluate, collect, resume).

Which run belongs to which arm is stored in ``report/results/study/runs.csv`` (``name, group,
arm, seed, overrides`` with the overrides as JSON), never parsed from a folder name. Each run
trains into ``runs/study/<name>``, is evaluated at ``last.keras`` and its results are copied to
``report/results/study/<name>/``, beside ``benchmark.json`` (each arm's cost per step).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from resvae_keras.config import Config, get_profile, project_root
from resvae_keras.data._io import atomic_write, display_path
from resvae_keras.record import validation_neg_elbo

STUDY_PROFILE = "celeba-subset"
SEEDS = (0, 1, 2)
ARMS = {  # arm -> config overrides on top of the profile
    "residual": {},
    "plain": {"residual": False},
    "conv": {"architecture": "conv"},
}
BETAS = (0.25, 0.5, 2.0, 4.0)  # beta = 1 is the residual arm
LIKELIHOODS = ("gaussian", "bernoulli")  # gaussian_learned is the residual arm
RUNS_COLUMNS = ("name", "group", "arm", "seed", "overrides")
BENCHMARK_FILE = "benchmark.json"
HISTORY_ONLY = ("lr",)  # groups read by their validation curve only: never evaluated


def study_settings(profile: str = STUDY_PROFILE) -> dict:
    """Budget and evaluation size of the study on ``profile`` (``demo``: seconds-sized)."""
    if profile == "demo":
        return dict(epochs=2, kl_warmup_steps=10, max_images=600, n_test=50, n_samples=50,
                    sampler="prior", memorization_queries=25, benchmark_steps=2,
                    benchmark_rounds=3)
    # the warm-up: 20 % of the 1,250 steps (8,000 training faces, batch 64)
    return dict(epochs=10, kl_warmup_steps=250, max_images=None, n_test=1000, n_samples=1000,
                sampler=None, memorization_queries=500, benchmark_steps=10, benchmark_rounds=8)


def results_dir() -> Path:
    return project_root() / "report" / "results"


def results_root(profile: str = STUDY_PROFILE) -> Path:
    """Where finished runs' results go (committed for ``STUDY_PROFILE`` only)."""
    if profile == STUDY_PROFILE:
        return results_dir() / "study"
    return project_root() / "runs" / profile / "study-results"


# -- the runs table ------------------------------------------------------------------------


def design() -> pd.DataFrame:
    """The study's runs table as designed: every arm x ``SEEDS``, then the sweeps."""
    rows = [(f"{arm}_s{seed}", "arms", arm, seed, overrides)
            for seed in SEEDS for arm, overrides in ARMS.items()]
    rows += [(f"beta_{beta:g}_s0", "beta", f"beta_{beta:g}", 0, {"beta": beta}) for beta in BETAS]
    rows += [(f"likelihood_{lik}_s0", "likelihood", f"likelihood_{lik}", 0,
              {"likelihood": lik, "sigma_min": 0.0})  # the floor is the learned sigma's only
             for lik in LIKELIHOODS]
    return pd.DataFrame(rows, columns=list(RUNS_COLUMNS))


def demo_plan(runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every arm with seeds 0 and 1 (the fewest a Welch test takes) and the first beta run."""
    runs = design() if runs is None else runs
    arms = (runs["group"] == "arms") & (runs["seed"] < 2)
    first_beta = runs.index == runs.index[runs["group"] == "beta"].min()
    return runs[arms | first_beta].reset_index(drop=True)


def write_runs(table: pd.DataFrame, path: str | os.PathLike | None = None) -> Path:
    """Write a runs table (overrides as JSON) to ``path`` (default ``study/runs.csv``)."""
    path = Path(path or results_dir() / "study" / "runs.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.assign(overrides=[json.dumps(o, sort_keys=True) for o in table["overrides"]])
    out[list(RUNS_COLUMNS)].to_csv(path, index=False)
    return path


def load_runs(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The runs table (default ``study/runs.csv``, else ``design()``), overrides parsed."""
    path = Path(path or results_dir() / "study" / "runs.csv")
    if not path.is_file():
        return design()
    table = pd.read_csv(path, usecols=list(RUNS_COLUMNS), keep_default_na=False, dtype={
        "name": str, "group": str, "arm": str, "seed": int, "overrides": str})
    if table["name"].duplicated().any():
        raise ValueError(f"{path.name} names a run twice: "
                         f"{sorted(table.loc[table['name'].duplicated(), 'name'])}")
    table["overrides"] = [json.loads(o) if o else {} for o in table["overrides"]]
    return table[list(RUNS_COLUMNS)].reset_index(drop=True)


def study_config(name: str, runs: pd.DataFrame | None = None, profile: str = STUDY_PROFILE,
                 subfolder: str | None = None) -> Config:
    """The Config of run ``name`` at the study's budget, trained into
    ``runs/[<profile>/]study/[<subfolder>/]<name>``."""
    runs = load_runs() if runs is None else runs
    match = runs[runs["name"] == name]
    if match.empty:
        raise ValueError(f"run {name!r} is not in the runs table; known: {list(runs['name'])}")
    settings = study_settings(profile)
    budget = {k: settings[k] for k in ("epochs", "kl_warmup_steps", "max_images")}
    folder = "runs/study" if profile == STUDY_PROFILE else f"runs/{profile}/study"
    folder = f"{folder}/{subfolder}" if subfolder else folder
    return get_profile(
        profile,
        run_dir=f"{folder}/{name}",
        seed=int(match.iloc[0]["seed"]),
        **{**budget, **match.iloc[0]["overrides"]},
    )


# -- running it ----------------------------------------------------------------------------


def is_finished(folder, group: str = "arms") -> bool:
    """Whether a run's results folder holds the file written last into it."""
    return (Path(folder) / ("history.csv" if group in HISTORY_ONLY else "metrics.json")).is_file()


def collect_run(run_dir, dest=None) -> list[Path]:
    """Copy what the report reads of an evaluated run into ``dest`` (default
    ``report/results/<run folder name>``); returns the paths written."""
    from resvae_keras.run_dir import load_history

    run = project_root() / run_dir  # an absolute run_dir stays as it is
    if not (run / "metrics.json").is_file():
        raise FileNotFoundError(
            f"run_dir={str(run_dir)!r} has no metrics.json: evaluate it first with "
            f"python -m resvae_keras evaluate --run-dir {run_dir}")
    dest = Path(dest) if dest is not None else results_dir() / run.name
    dest.mkdir(parents=True, exist_ok=True)
    grids = sorted((run / "grids").glob("epoch_*.png"))
    copies = [(p, p.name) for p in [run / "config.json", *sorted(run.glob("metrics_*.json"))]
              if p.is_file()] + ([(grids[-1], "grid_last_epoch.png")] if grids else [])
    for source, target in copies:
        shutil.copy(source, dest / target)
    written = [dest / target for _, target in copies]
    if (run / "history.csv").is_file():
        load_history(run).to_csv(dest / "history.csv", index=False)
        written.append(dest / "history.csv")
    with atomic_write(dest / "metrics.json") as tmp:  # last: it marks the copy complete
        shutil.copy(run / "metrics.json", tmp)
    return [*written, dest / "metrics.json"]


def run_study(only=None, profile: str = STUDY_PROFILE, root=None, runs=None,
              max_runs: int | None = None, verbose=2, subfolder: str | None = None,
              report: bool = True) -> list[str]:
    """Train, evaluate and collect at most ``max_runs`` runs of ``runs`` (or ``only``) not
    finished under ``root``; a ``HISTORY_ONLY`` run is not evaluated. Returns those finished."""
    from resvae_keras import evaluate
    from resvae_keras.train import load_history, train

    table = load_runs() if runs is None else runs
    if only:
        unknown = sorted(set(only) - set(table["name"]))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; the runs table has {list(table['name'])}")
        table = table[table["name"].isin(only)]
    root = Path(root or results_root(profile))
    settings = study_settings(profile)
    finished = []
    for name, group in zip(table["name"], table["group"], strict=True):
        dest = root / name
        if is_finished(dest, group):
            print(f"{name}: results exist, skipped", flush=True)
            continue
        if max_runs is not None and len(finished) >= int(max_runs):
            break
        config = study_config(name, table, profile, subfolder)
        started = time.perf_counter()
        print(f"== {name}: {config.epochs} epochs into {config.run_dir}", flush=True)
        train(config, verbose=verbose, second_stage=False)  # it evaluates last.keras
        if group in HISTORY_ONLY:
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(config.run_path / "config.json", dest / "config.json")
            with atomic_write(dest / "history.csv") as tmp:  # last: it marks the run finished
                load_history(config.run_path).to_csv(tmp, index=False)
            done = f"best validation -ELBO {validation_neg_elbo(load_history(dest)).min():.1f}"
        else:
            metrics = evaluate.evaluate_run(
                config.run_path, n_samples=settings["n_samples"], n_test=settings["n_test"],
                anomaly=False, sampler=settings["sampler"], checkpoint="last.keras",
                memorization_queries=settings["memorization_queries"],
                out=config.run_path / "metrics.json", verbose=False,
            )
            collect_run(config.run_path, dest)
            done = f"test PSNR {metrics['reconstruction']['psnr']['mean']:.2f} dB"
        print(f"== {name}: done in {time.perf_counter() - started:.0f} s, {done}; results in "
              f"{display_path(dest)}", flush=True)
        finished.append(name)
    if report:
        print(status_text(root, runs, profile), flush=True)
    return finished


def load_benchmark(root=None) -> dict | None:
    path = Path(root or results_root()) / BENCHMARK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def seconds_per_step(benchmark: dict | None) -> dict[str, float]:
    """``{arm: seconds per step}`` from ``benchmark.json`` (empty without it)."""
    arms = (benchmark or {}).get("arms") or {}
    return {arm: float(row["seconds_per_step"]) for arm, row in arms.items()}


def seeds_per_arm(root=None, runs=None) -> pd.DataFrame:
    """Per (group, arm): ``finished`` and ``planned`` runs."""
    table = load_runs() if runs is None else runs
    root = Path(root or results_root())
    table = table.assign(finished=[is_finished(root / n, g)
                                   for n, g in zip(table["name"], table["group"], strict=True)])
    grouped = table.groupby(["group", "arm"], sort=False)["finished"]
    return pd.DataFrame({"finished": grouped.sum().astype(int), "planned": grouped.size()})


def _next_steps(root: Path, all_finished: bool, benchmark: bool, profile: str) -> list[str]:
    """The last lines of a status: what to commit (the study's profile only), the next command."""
    flag = "" if profile == STUDY_PROFILE else f" --profile {profile}"
    command = "report" if all_finished and benchmark else (
        f"study --benchmark{flag}" if all_finished else f"study{flag}")
    commit = f"commit what finished: git add {display_path(root)} && git commit"
    next_step = f"next: python -m resvae_keras {command}"
    return [commit, next_step] if profile == STUDY_PROFILE else [next_step]


def status_text(root=None, runs=None, profile: str = STUDY_PROFILE) -> str:
    """Where the study stands, in a few lines, ending with the next command."""
    root = Path(root or results_root(profile))
    counts = seeds_per_arm(root, runs)
    arms = ", ".join(f"{arm} {row.finished}/{row.planned}" for (_, arm), row in counts.iterrows())
    done, planned = int(counts["finished"].sum()), int(counts["planned"].sum())
    benchmark = (root / BENCHMARK_FILE).is_file()
    head = (f"study: {done} of {planned} runs finished ({arms}); "
            f"benchmark: {'done' if benchmark else 'not run'}")
    return "\n".join([head, *_next_steps(root, done == planned, benchmark, profile)])
