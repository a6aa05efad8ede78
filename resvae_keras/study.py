"""The study behind the claims about residual blocks, and the default-model sweep.

Three arms, at the same likelihood, latent size, optimizer, data (the identity-disjoint split),
epochs and seeds:

| arm        | model                                                                  |
| ---------- | ---------------------------------------------------------------------- |
| ``residual`` | the ResVAE, the default config                                       |
| ``plain``    | the same network with ``residual=False`` (no shortcut, equal depth)  |
| ``conv``     | the shallow textbook convolutional VAE (``architecture="conv"``)     |

and two single-seed sweeps on the residual arm (``beta`` and ``likelihood``), read as trends
next to the seed spread of the residual arm.

Which run belongs to which arm is stored in the runs table ``report/results/study/runs.csv``
(``name, group, arm, seed, overrides`` with the overrides as JSON), never parsed from a folder
name: a row added there is a run of that arm.

    python -m resvae_keras study                  # every unfinished run, in table order
    python -m resvae_keras study --max-runs 1     # one run, then stop (commit it, go on later)
    python -m resvae_keras study --benchmark      # per-step cost of each arm (bench.study_step_times)
    python -m resvae_keras study --status         # what is done and the next command

Each run trains into ``runs/study/<name>`` (an interrupted run resumes there), is evaluated at
its last checkpoint by ``evaluate.evaluate_run`` (the one evaluator, at the study's size:
``N_TEST`` test images, ``N_SAMPLES`` samples per sampler, no anomaly part), and its
``config.json``, ``history.csv`` and ``metrics.json`` are copied to
``report/results/study/<name>/`` as soon as it finishes; a run whose ``metrics.json`` is there is
skipped. ``benchmark.json`` beside them holds the per-step cost of each arm.

Reading the results, once for notebook 07 and the report (``Study``): ``load_results`` ->
``measures`` (one row per run, every measure a column) -> ``speed_measures`` (steps and seconds
to a fixed validation loss, the validation loss at an equal time).

The runs above (``runs.csv``) are the first study, on the clamped default (sigma >= 0.5); they
stay as they were measured and are read descriptively. The study that decides the claims is
pre-registered in ``report/results/study/plan.toml`` and run by ``resvae_keras.plan``, which
reuses this module's orchestration (``run_study``: skip finished runs, resume interrupted ones)
under its own folder; its verdicts are computed there, from the plan.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from resvae_keras.config import Config, get_profile, project_root
from resvae_keras.data._io import atomic_write
from resvae_keras.stats import mean_interval

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
REFERENCE_ARM = "residual"
BETAS = (0.25, 0.5, 2.0, 4.0)  # beta = 1 is the residual arm
LIKELIHOODS = ("gaussian", "bernoulli")  # gaussian_learned is the residual arm
N_TEST = 1000  # test images per evaluation
N_SAMPLES = 1000  # samples per sampler
ALPHA = 0.05
RUNS_COLUMNS = ("name", "group", "arm", "seed", "overrides")
BENCHMARK_FILE = "benchmark.json"


def study_settings(profile: str = STUDY_PROFILE) -> dict:
    """Budget and evaluation size of the study on ``profile``; ``demo`` is a seconds-sized run
    of the same code (600 demo faces, 2 epochs, 50 test images and prior samples) for notebooks
    and tests. ``sampler`` None evaluates every sampler of ``evaluate.SAMPLERS``."""
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
    """The runs table (default the committed ``report/results/study/runs.csv``; ``design()``
    when it does not exist), overrides parsed into dicts, one row per run, in training order."""
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
    """The Config of run ``name``: the profile at the study's budget, the run's seed and its
    overrides from the runs table (which may set the budget, e.g. ``epochs``), trained into
    ``run_folder(profile, subfolder)/<name>``."""
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
    """The file a finished run's results folder holds, written last: ``history.csv`` for a
    group of ``HISTORY_ONLY`` (``collect_history``), else ``metrics.json`` (``collect_run``)."""
    return "history.csv" if group in HISTORY_ONLY else "metrics.json"


def is_finished(folder, group: str = "arms") -> bool:
    """A run's results folder is complete: its ``finished_marker(group)``, written last, is
    there."""
    return (Path(folder) / finished_marker(group)).is_file()


def collect_history(run_dir, dest) -> list[Path]:
    """Copy a trained run's ``config.json`` and, last, its ``history.csv`` (whose presence marks
    a ``HISTORY_ONLY`` run as finished) into ``dest``; returns the paths written."""
    from resvae_keras.train import load_history

    run, dest = Path(run_dir), Path(dest)
    run = run if run.is_absolute() else project_root() / run
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(run / "config.json", dest / "config.json")
    load_history(run).to_csv(dest / "history.csv.tmp", index=False)
    os.replace(dest / "history.csv.tmp", dest / "history.csv")
    return [dest / "config.json", dest / "history.csv"]


def collect_run(run_dir, dest=None) -> list[Path]:
    """Copy an evaluated run's ``config.json``, ``history.csv`` (an epoch logged twice across a
    resume once), ``metrics_*.json``, its last per-epoch grid (as ``grid_last_epoch.png``) and,
    last, ``metrics.json`` (whose presence marks the results as finished) into ``dest``
    (default ``report/results/<run folder name>``); returns the paths written."""
    from resvae_keras.train import load_history

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
    """Train, evaluate and collect every run of the table that has no results yet.

    Args:
        only: run names to consider (default: the whole table, in its order).
        profile: ``celeba-subset`` (the study) or ``demo`` (the same code, minute-sized).
        root: results folder (default ``results_root(profile)``).
        runs: a runs table (default ``load_runs()``).
        max_runs: stop after training this many runs (to commit between sessions).
        subfolder: train into ``run_folder(profile, subfolder)`` (a plan's runs).
        report: print ``status_text`` at the end.

    A run that ``is_finished`` under ``root`` is skipped; an interrupted one resumes from its
    last completed epoch in its run folder. A run of a ``HISTORY_ONLY`` group is collected
    without evaluation (``collect_history``). Returns the names finished by this call.
    """
    from resvae_keras.train import train

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
            done = f"best validation -ELBO {validation_neg_elbo(load_run(dest)['history']).min():.1f}"
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


# -- reading the results ---------------------------------------------------------------------


def load_run(folder) -> dict:
    """A run's results folder: ``config`` and ``metrics`` (their JSON; None when missing) and
    ``history`` (``train.load_history``: empty when missing)."""
    from resvae_keras.train import load_history

    folder = Path(folder)
    config, metrics = (json.loads((folder / f).read_text()) if (folder / f).is_file() else None
                       for f in ("config.json", "metrics.json"))
    return {"config": config, "history": load_history(folder), "metrics": metrics}


def load_results(root=None, runs=None) -> dict[str, dict]:
    """Finished runs of the table under ``root`` (default ``report/results/study``).

    Returns ``{name: {"group", "arm", "seed", "config", "history", "metrics"}}`` in table
    order; a folder that is not in the runs table is not read.
    """
    table = load_runs() if runs is None else runs
    root = Path(root or results_root())
    return {row.name: {"group": row.group, "arm": row.arm, "seed": int(row.seed),
                       **load_run(root / row.name)}
            for row in table.itertuples() if is_finished(root / row.name, row.group)}


class Study:
    """The study's results under ``root`` (default ``report/results/study``) and what is
    derived from them, each read or computed once, when first asked for: notebook 07 and
    the report read the study through this one chain.

    ``plan``: the runs table (default ``root/runs.csv``, the study's design when it is
    missing); ``runs``: ``load_results``; ``benchmark``; ``table``: ``study_table``;
    ``arms``: its rows of the arms; ``seeds``: ``seeds_per_arm``.
    """

    def __init__(self, root=None, plan: pd.DataFrame | None = None):
        self.root = Path(root or results_root())
        self.plan = load_runs(self.root / "runs.csv") if plan is None else plan

    @cached_property
    def runs(self) -> dict[str, dict]:
        return load_results(self.root, self.plan)

    @cached_property
    def benchmark(self) -> dict | None:
        return load_benchmark(self.root)

    @cached_property
    def table(self) -> pd.DataFrame:
        return study_table(self.runs, self.benchmark)

    @cached_property
    def arms(self) -> pd.DataFrame:
        return self.table[self.table["group"] == "arms"] if len(self.table) else self.table

    @cached_property
    def seeds(self) -> pd.DataFrame:
        return seeds_per_arm(self.root, self.plan)


def lookup(mapping, dotted: str):
    """``mapping["a"]["b"]`` for ``"a.b"``; None when any key is missing."""
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def run_measures(metrics: dict, config: dict | None = None) -> dict:
    """The numbers of one evaluator ``metrics.json`` (and its config) as one flat row.

    Columns: ``psnr``, ``ssim``, ``ms_ssim``, ``neg_elbo_bpd`` (bits/dim), ``kl_nats``,
    ``sharpness_ratio``; per sampler key ``<k>`` (e.g. ``prior_t1``): ``face_rate_<k>``,
    ``swd_<res>_<k>`` per pyramid level, ``swd_mean_<k>``, ``ms_ssim_<k>`` (between samples);
    ``steps``, ``epochs``, ``wall_time_s``; and from the config ``beta``, ``likelihood``,
    ``architecture``, ``residual``, ``sigma_min``, ``latent_dim``.
    """
    rec = metrics.get("reconstruction", {})
    row = {
        "psnr": lookup(rec, "psnr.mean"), "ssim": lookup(rec, "ssim.mean"),
        "ms_ssim": lookup(rec, "ms_ssim.mean"),
        "neg_elbo_bpd": lookup(rec, "bits_per_dim.mean"),
        "kl_nats": lookup(rec, "kl_nats.mean"), "sharpness_ratio": rec.get("sharpness_ratio"),
    }
    for key, report in (metrics.get("samples") or {}).items():
        realism = report.get("realism", {})
        row[f"face_rate_{key}"] = realism.get("face_rate")
        for level, value in (realism.get("swd") or {}).items():
            row[f"{level}_{key}"] = value  # swd_16_prior_t1, ..., swd_mean_prior_t1
        row[f"ms_ssim_{key}"] = lookup(report, "diversity.ms_ssim_fake")
    training = metrics.get("training") or {}
    row.update(steps=training.get("steps"), epochs=training.get("epochs"),
               wall_time_s=training.get("wall_time_s"))
    for key in ("beta", "likelihood", "architecture", "residual", "sigma_min", "latent_dim"):
        row[key] = (config or {}).get(key)
    return {k: (np.nan if v is None else v) for k, v in row.items()}


def measures(results: dict[str, dict]) -> pd.DataFrame:
    """One row per finished run (index: name): ``group``, ``arm``, ``seed`` and
    ``run_measures``; empty with those columns when nothing has finished."""
    rows = {name: {"group": r["group"], "arm": r["arm"], "seed": r["seed"],
                   **run_measures(r["metrics"], r["config"])} for name, r in results.items()}
    if not rows:
        return pd.DataFrame(columns=["group", "arm", "seed"])
    return pd.DataFrame.from_dict(rows, orient="index")


def sampler_keys(table: pd.DataFrame, temperature: str = "t1") -> list[str]:
    """Sampler keys (e.g. ``prior_t1``, ``gmm_t1``) measured in every row of ``table``."""
    keys = [c.removeprefix("face_rate_") for c in table.columns if c.startswith("face_rate_")]
    return [k for k in keys if k.endswith(f"_{temperature}")
            and table[f"face_rate_{k}"].notna().all()]


def load_sweep(root=None) -> pd.DataFrame:
    """The default-model sweep (``report/results/sweep/<name>/``) as ``run_measures`` rows."""
    root = Path(root or results_dir() / "sweep")
    rows = {}
    for path in sorted(root.glob("*/metrics.json")):
        config = path.parent / "config.json"
        rows[path.parent.name] = run_measures(
            json.loads(path.read_text()),
            json.loads(config.read_text()) if config.is_file() else None)
    return pd.DataFrame.from_dict(rows, orient="index")


# -- speed: steps and seconds to a validation loss, and the loss at an equal time -------------


def validation_neg_elbo(history: pd.DataFrame) -> np.ndarray:
    """The validation negative ELBO at beta = 1 after each epoch (the checkpoint criterion):
    ``val_neg_elbo`` (logged by train, which checkpoints on it), else
    ``val_reconstruction_loss + val_kl_loss``. Not ``val_loss``: that is weighted by the run's
    beta and the warm-up's, so neither early epochs nor runs of another beta would compare."""
    if "val_neg_elbo" in history:
        return history["val_neg_elbo"].to_numpy(float)
    return (history["val_reconstruction_loss"] + history["val_kl_loss"]).to_numpy(float)


def history_summary(history: pd.DataFrame, beta: float | None = None) -> dict:
    """Length and shape of a ``load_history`` (epochs counted from 1, losses in nats per image).

    ``epochs``, ``minutes`` (wall time), ``seconds_per_epoch`` (median), ``best_epoch`` (that of
    ``model.keras``: the lowest ``validation_neg_elbo``); with the validation terms ``reconstruction_first``/``_last`` and the KL's
    ``kl_first``, ``kl_peak`` (highest up to the lowest), ``kl_peak_epoch``, ``kl_min`` (lowest
    after the first epoch), ``kl_min_epoch`` and ``kl_last``: with a warm-up the KL is highest
    while beta is small, falls as beta reaches its target, and then levels off, or climbs again
    while a learned sigma keeps shrinking; ``beta_epoch``, the first epoch at ``beta``.
    """
    h = history
    out = {"epochs": len(h), "minutes": h["wall_time_s"].iloc[-1] / 60.0,
           "seconds_per_epoch": h["epoch_time_s"].median(),
           "best_epoch": int(validation_neg_elbo(h).argmin()) + 1}
    if {"val_reconstruction_loss", "val_kl_loss"} <= set(h.columns):
        kl = h["val_kl_loss"].to_numpy(float)
        low = int(kl[1:].argmin()) + 1 if len(kl) > 1 else 0
        out.update(reconstruction_first=h["val_reconstruction_loss"].iloc[0],
                   reconstruction_last=h["val_reconstruction_loss"].iloc[-1])
        peak = int(kl[: low + 1].argmax())
        out.update(kl_first=kl[0], kl_peak=kl[peak], kl_peak_epoch=peak + 1, kl_min=kl[low],
                   kl_min_epoch=low + 1, kl_last=kl[-1])
    if "beta" in h.columns and beta is not None and math.isfinite(beta) and beta > 0:
        reached = np.flatnonzero(h["beta"].to_numpy() >= 0.999 * beta)
        if len(reached):
            out["beta_epoch"] = int(reached[0]) + 1
    return out


def validation_curve(history: pd.DataFrame, steps: float) -> tuple[np.ndarray, np.ndarray]:
    """``(optimizer steps, validation_neg_elbo)`` after each epoch; ``steps`` is the run's
    total, and every epoch has the same number of steps."""
    if not len(history):
        return np.zeros(0), np.zeros(0)
    per_epoch = float(steps) / len(history)
    return per_epoch * (np.arange(len(history)) + 1), validation_neg_elbo(history)


def arm_curves(results: dict[str, dict], benchmark: dict | None = None,
               group: str = "arms") -> tuple[dict, dict]:
    """``validation_curve`` of every run of ``group`` with a history: ``({run: (steps, loss)},
    {run: (minutes, loss)})``, minutes = steps x the arm's benchmarked seconds per step / 60,
    only for the arms the benchmark measured."""
    cost = seconds_per_step(benchmark)
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


def load_benchmark(root=None) -> dict | None:
    path = Path(root or results_root()) / BENCHMARK_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def seconds_per_step(benchmark: dict | None) -> dict[str, float]:
    """``{arm: seconds per step}`` from ``benchmark.json`` (empty without it)."""
    arms = (benchmark or {}).get("arms") or {}
    return {arm: float(row["seconds_per_step"]) for arm, row in arms.items()}


def speed_measures(results: dict[str, dict], benchmark: dict | None = None,
                   threshold: float | None = None, group: str = "arms") -> pd.DataFrame:
    """Training speed of each run of ``group`` (index: name), from its validation curve.

    Columns: ``arm``, ``seed``, ``threshold`` (nats per image; default the highest of the
    runs' best validation negative ELBOs, so every run reaches it), ``steps_to_threshold``,
    ``seconds_to_threshold`` (steps x the arm's benchmarked seconds per step),
    ``equal_time_s`` (the time every arm reached: the shortest of steps x seconds per step)
    and ``val_neg_elbo_at_equal_time``. Seconds are NaN without a benchmark.
    """
    runs = {n: r for n, r in results.items() if r["group"] == group and len(r["history"])}
    columns = ["arm", "seed", "threshold", "steps_to_threshold", "seconds_to_threshold",
               "equal_time_s", "val_neg_elbo_at_equal_time"]
    if not runs:
        return pd.DataFrame(columns=columns)
    curves = {n: validation_curve(r["history"], r["metrics"]["training"]["steps"])
              for n, r in runs.items()}
    if threshold is None:
        threshold = max(float(np.min(y)) for _, y in curves.values())
    cost = seconds_per_step(benchmark)
    ends = [curves[n][0][-1] * cost[r["arm"]] for n, r in runs.items() if r["arm"] in cost]
    equal_time = min(ends) if ends and len(ends) == len(runs) else float("nan")
    rows = {}
    for name, r in runs.items():
        x, y = curves[name]
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
    """``measures`` with the ``speed_measures`` columns joined (NaN outside the arms)."""
    table = measures(results)
    speed = speed_measures(results, benchmark)
    return table.join(speed.drop(columns=["arm", "seed"]), how="left")


def arm_summary(table: pd.DataFrame, columns) -> pd.DataFrame:
    """Per arm (index, in table order): ``n`` seeds and, per column, ``<c>_mean``, ``<c>_sd``
    and ``<c>_ci`` (half-width of the 95 % t interval of the mean; NaN below 2 seeds)."""
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
    """A single-seed sweep as a trend, with the reference arm's seeds beside it.

    Rows: each run of ``group`` at its value ``x`` of the config setting the group is named
    after and sweeps (``beta``, ``likelihood``), and the reference arm (``REFERENCE_ARM``,
    every seed) at its own value as the mean of its seeds. Columns:
    ``x``, ``n_seeds``, and per column its value and ``<c>_seed_sd``: the seed-to-seed SD of
    the reference arm, the spread a single-seed difference has to exceed to mean anything.
    """
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


# -- the default-model sweep (one equal budget, celeba-subset) -----------------------------

SWEEP_EPOCHS = 6
SWEEP_WARMUP_STEPS = 150  # 20 % of the budget, as in the profile (500 of 2,500 steps)


def sweep_runs() -> dict[str, dict]:
    """Sweep run name -> config overrides, in the order they are trained."""
    return {
        # sigma settles near 0.1 at this budget without a floor (0.075 after 20 epochs)
        "sigma_free": dict(sigma_min=0.0),
        "sigma_min_0.2": dict(sigma_min=0.2),
        "sigma_min_0.3": dict(sigma_min=0.3),
        "sigma_min_0.5": dict(sigma_min=0.5),  # the default: 0.96 prior faces after 20 epochs
    }


def sweep_config(name: str, **extra) -> Config:
    return get_profile(
        "celeba-subset",
        epochs=SWEEP_EPOCHS,
        kl_warmup_steps=SWEEP_WARMUP_STEPS,
        run_dir=f"runs/sweep/{name}",
        **{**sweep_runs()[name], **extra},
    )


def run_sweep(only=None, verbose=2) -> list[str]:
    """Train, evaluate and collect every sweep run (or those in ``only``) without results.

    Results go to ``report/results/sweep/<name>/`` (the study's schema, evaluated at
    ``last.keras`` like the study's runs) as soon as a run finishes; a run whose
    ``metrics.json`` is there is skipped, an interrupted one resumes from its last epoch.
    """
    from resvae_keras.train import train

    root, finished = results_dir() / "sweep", []
    for name in only or sweep_runs():
        if (root / name / "metrics.json").exists():
            print(f"{name}: results exist, skipped", flush=True)
            continue
        config = sweep_config(name)
        print(f"== sweep {name}: {config.epochs} epochs into {config.run_dir}", flush=True)
        train(config, verbose=verbose, second_stage=False)  # evaluated at last.keras
        collect(config, root / name)
        print(f"== sweep {name}: results in {_shown(root / name)}", flush=True)
        finished.append(name)
    return finished
