"""The first study (residual, plain and conv arms; beta and likelihood sweeps): its runs
table, configs, and running it (train, evaluate, collect, resume).

Which run belongs to which arm is stored in ``report/results/study/runs.csv`` (``name, group,
arm, seed, overrides`` with the overrides as JSON), never parsed from a folder name. Each run
trains into ``runs/study/<name>`` (an interrupted run resumes), is evaluated at ``last.keras``
by ``evaluate.evaluate_run`` at the study's size, and its results are copied to
``report/results/study/<name>/``; a run whose ``metrics.json`` is there is skipped.
``benchmark.json`` beside them holds the per-step cost of each arm. The study that decides the
claims is pre-registered and run by ``resvae_keras.plan`` through ``run_study``; reading the
results is ``resvae_keras.study_results``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from resvae_keras.config import Config, get_profile, project_root
from resvae_keras.data._io import atomic_write
from resvae_keras.record import validation_neg_elbo

STUDY_PROFILE = "celeba-subset"
STUDY_EPOCHS = 10
STUDY_WARMUP_STEPS = 250  # 20 % of the 1,250 steps (8,000 training faces, batch 64)
SEEDS = (0, 1, 2)
ARMS = {
    "residual": {},
    "plain": {"residual": False},
    "conv": {"architecture": "conv"},
}
"""Arm -> config overrides on top of the profile."""
BETAS = (0.25, 0.5, 2.0, 4.0)  # beta = 1 is the residual arm
LIKELIHOODS = ("gaussian", "bernoulli")  # gaussian_learned is the residual arm
N_TEST = 1000  # test images per evaluation
N_SAMPLES = 1000  # samples per sampler
RUNS_COLUMNS = ("name", "group", "arm", "seed", "overrides")
BENCHMARK_FILE = "benchmark.json"


def study_settings(profile: str = STUDY_PROFILE) -> dict:
    """Budget and evaluation size of the study on ``profile`` (``demo``: seconds-sized);
    ``sampler`` None evaluates every sampler of ``evaluate.SAMPLERS``."""
    if profile == "demo":
        return dict(epochs=2, kl_warmup_steps=10, max_images=600, n_test=50, n_samples=50,
                    sampler="prior", memorization_queries=25, benchmark_steps=2,
                    benchmark_rounds=3)
    return dict(epochs=STUDY_EPOCHS, kl_warmup_steps=STUDY_WARMUP_STEPS, max_images=None,
                n_test=N_TEST, n_samples=N_SAMPLES, sampler=None, memorization_queries=500,
                benchmark_steps=10, benchmark_rounds=8)


def results_dir() -> Path:
    return project_root() / "report" / "results"


def results_root(profile: str = STUDY_PROFILE) -> Path:
    """Where finished runs' results go: ``report/results/study`` for the study's profile
    (committed), ``runs/<profile>/study-results`` for any other (e.g. the demo)."""
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
    """The runs a demo of the study trains: every arm with seeds 0 and 1 (two seeds: the
    fewest a Welch test takes) and the first beta run, so every table and figure has data."""
    runs = design() if runs is None else runs
    arms = (runs["group"] == "arms") & (runs["seed"] < 2)
    first_beta = runs.index == runs.index[runs["group"] == "beta"].min()
    return runs[arms | first_beta].reset_index(drop=True)


def runs_path() -> Path:
    return results_dir() / "study" / "runs.csv"


def write_runs(table: pd.DataFrame, path: str | os.PathLike | None = None) -> Path:
    """Write a runs table (overrides as JSON) to ``path`` (default ``runs_path()``)."""
    path = Path(path or runs_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    out = table.assign(overrides=[json.dumps(o, sort_keys=True) for o in table["overrides"]])
    out[list(RUNS_COLUMNS)].to_csv(path, index=False)
    return path


def load_runs(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The runs table (default ``runs_path()``, else ``design()``), overrides parsed."""
    path = Path(path or runs_path())
    if not path.is_file():
        return design()
    table = pd.read_csv(path, dtype={"name": str, "group": str, "arm": str, "seed": int,
                                     "overrides": str}, keep_default_na=False)
    missing = set(RUNS_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path.name} lacks the column(s) {sorted(missing)}; "
                         f"a runs table has {list(RUNS_COLUMNS)}")
    if table["name"].duplicated().any():
        raise ValueError(f"{path.name} names a run twice: "
                         f"{sorted(table.loc[table['name'].duplicated(), 'name'])}")
    table["overrides"] = [json.loads(o) if o else {} for o in table["overrides"]]
    return table[list(RUNS_COLUMNS)].reset_index(drop=True)


def _row(name: str, runs: pd.DataFrame) -> pd.Series:
    match = runs[runs["name"] == name]
    if match.empty:
        raise ValueError(f"run {name!r} is not in the runs table; known: {list(runs['name'])}")
    return match.iloc[0]


def run_folder(profile: str = STUDY_PROFILE, subfolder: str | None = None) -> str:
    """Where the study's runs train: ``runs/study`` (``runs/<profile>/study`` for another
    profile), then ``subfolder`` (a plan's own, so its runs never resume another's)."""
    folder = "runs/study" if profile == STUDY_PROFILE else f"runs/{profile}/study"
    return f"{folder}/{subfolder}" if subfolder else folder


def study_config(name: str, runs: pd.DataFrame | None = None, profile: str = STUDY_PROFILE,
                 subfolder: str | None = None, **extra) -> Config:
    """The Config of run ``name``: the profile at the study's budget with the run's seed and
    overrides, trained into ``run_folder(profile, subfolder)/<name>``."""
    row = _row(name, load_runs() if runs is None else runs)
    settings = study_settings(profile)
    budget = dict(epochs=settings["epochs"], kl_warmup_steps=settings["kl_warmup_steps"],
                  max_images=settings["max_images"])
    return get_profile(
        profile,
        run_dir=f"{run_folder(profile, subfolder)}/{name}",
        seed=int(row["seed"]),
        **{**budget, **row["overrides"], **extra},
    )


# -- running it ----------------------------------------------------------------------------


def collect(config: Config, dest: Path, profile: str = STUDY_PROFILE) -> dict:
    """Evaluate a trained run at its last checkpoint and copy its results into ``dest``
    (``collect_run``); returns its metrics."""
    from resvae_keras import evaluate

    settings = study_settings(profile)
    metrics = evaluate.evaluate_run(
        config.run_path, n_samples=settings["n_samples"], n_test=settings["n_test"],
        anomaly=False, sampler=settings["sampler"], checkpoint="last.keras",
        memorization_queries=settings["memorization_queries"],
        out=config.run_path / "metrics.json", verbose=False,
    )
    collect_run(config.run_path, dest)
    return metrics


HISTORY_ONLY = ("lr",)
"""Groups whose runs are read by their validation curve only: trained, never evaluated."""


def finished_marker(group: str) -> str:
    """The file written last into a finished run's results folder."""
    return "history.csv" if group in HISTORY_ONLY else "metrics.json"


def is_finished(folder, group: str = "arms") -> bool:
    """Whether a run's results folder holds its ``finished_marker(group)``."""
    return (Path(folder) / finished_marker(group)).is_file()


def collect_history(run_dir, dest) -> list[Path]:
    """Copy a trained run's ``config.json`` and, last, its ``history.csv`` (which marks a
    ``HISTORY_ONLY`` run finished) into ``dest``; returns the paths written."""
    from resvae_keras.run_dir import load_history

    run, dest = Path(run_dir), Path(dest)
    run = run if run.is_absolute() else project_root() / run
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "config.json", dest / "config.json")
    load_history(run).to_csv(dest / "history.csv.tmp", index=False)
    os.replace(dest / "history.csv.tmp", dest / "history.csv")
    return [dest / "config.json", dest / "history.csv"]


def collect_run(run_dir, dest=None) -> list[Path]:
    """Copy an evaluated run's ``config.json``, ``history.csv``, ``metrics_*.json``, last grid
    and, last, ``metrics.json`` (which marks the copy finished) into ``dest`` (default
    ``report/results/<run folder name>``); returns the paths written."""
    from resvae_keras.run_dir import load_history

    run = Path(run_dir)
    run = run if run.is_absolute() else project_root() / run
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
    """Train, evaluate and collect every run of ``runs`` (or those in ``only``) not finished
    under ``root``, at most ``max_runs``; an interrupted one resumes, a ``HISTORY_ONLY`` run is
    collected unevaluated. ``subfolder``: train into ``run_folder(profile, subfolder)``;
    ``report``: print ``status_text`` at the end. Returns the names finished by this call."""
    from resvae_keras.train import load_history, train

    table = load_runs() if runs is None else runs
    if only:
        unknown = sorted(set(only) - set(table["name"]))
        if unknown:
            raise ValueError(f"unknown run(s) {unknown}; the runs table has {list(table['name'])}")
        table = table[table["name"].isin(only)]
    root = Path(root or results_root(profile))
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
            collect_history(config.run_path, dest)
            best = validation_neg_elbo(load_history(dest)).min()
            done = f"best validation -ELBO {best:.1f}"
        else:
            rec = collect(config, dest, profile)["reconstruction"]
            done = f"test PSNR {rec['psnr']['mean']:.2f} dB"
        print(f"== {name}: done in {time.perf_counter() - started:.0f} s, {done}; results in "
              f"{_shown(dest)}", flush=True)
        finished.append(name)
    if report:
        print(status_text(root, load_runs() if runs is None else runs, profile), flush=True)
    return finished


def arm_configs(runs: pd.DataFrame | None = None, profile: str = STUDY_PROFILE) -> dict:
    """``{arm: Config}``: the lowest-seed run of each arm, for timing the arms
    (``bench.study_step_times``)."""
    table = load_runs() if runs is None else runs
    arms = table[table["group"] == "arms"].sort_values("seed", kind="stable").drop_duplicates("arm")
    arms = arms.sort_index()
    return {row.arm: study_config(row.name, table, profile) for row in arms.itertuples()}


def write_benchmark(step_times: pd.DataFrame, root=None, profile: str = STUDY_PROFILE,
                    **about) -> dict:
    """Write the per-step cost of each arm (``bench.alternating_step_time`` rows, index = arm)
    to ``root/benchmark.json``, with ``about`` (e.g. the machine); returns what was written."""
    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "profile": profile,
        **about,
        "arms": step_times.to_dict(orient="index"),
    }
    root = Path(root or results_root(profile))
    root.mkdir(parents=True, exist_ok=True)
    (root / BENCHMARK_FILE).write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_benchmark(root=None) -> dict | None:
    path = Path(root or results_root()) / BENCHMARK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def seconds_per_step(benchmark: dict | None) -> dict[str, float]:
    """``{arm: seconds per step}`` from ``benchmark.json`` (empty without it)."""
    arms = (benchmark or {}).get("arms") or {}
    return {arm: float(row["seconds_per_step"]) for arm, row in arms.items()}


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return Path(path).name


def status(root=None, runs=None) -> pd.DataFrame:
    """The runs table with ``finished`` (its ``metrics.json`` exists under ``root``)."""
    table = load_runs() if runs is None else runs
    root = Path(root or results_root())
    return table.assign(finished=[is_finished(root / n, g)
                                  for n, g in zip(table["name"], table["group"], strict=True)])


def seeds_per_arm(root=None, runs=None) -> pd.DataFrame:
    """Per arm of every group: ``finished`` and ``planned`` runs (seeds)."""
    table = status(root, runs)
    grouped = table.groupby(["group", "arm"], sort=False)["finished"]
    return pd.DataFrame({"finished": grouped.sum().astype(int), "planned": grouped.size()})


def next_command(root=None, runs=None, profile: str = STUDY_PROFILE) -> str:
    root = Path(root or results_root(profile))
    flag = "" if profile == STUDY_PROFILE else f" --profile {profile}"
    if not status(root, runs)["finished"].all():
        return f"python -m resvae_keras study{flag}"
    if not (root / BENCHMARK_FILE).is_file():
        return f"python -m resvae_keras study --benchmark{flag}"
    return "python -m resvae_keras report"


def status_text(root=None, runs=None, profile: str = STUDY_PROFILE) -> str:
    """Where the study stands, in a few lines, ending with the next command."""
    root = Path(root or results_root(profile))
    counts = seeds_per_arm(root, runs)
    arms = ", ".join(f"{arm} {row.finished}/{row.planned}" for (_, arm), row in counts.iterrows())
    benchmark = "done" if (root / BENCHMARK_FILE).is_file() else "not run"
    lines = [f"study: {int(counts['finished'].sum())} of {int(counts['planned'].sum())} runs "
             f"finished ({arms}); benchmark: {benchmark}"]
    if profile == STUDY_PROFILE:
        lines.append(f"commit what finished: git add {_shown(root)} && git commit")
    lines.append(f"next: {next_command(root, runs, profile)}")
    return "\n".join(lines)

