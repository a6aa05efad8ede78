import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from resvae_keras import study


def fake_metrics(psnr=20.0, face_rate=0.5, swd=100.0, sharpness=0.5, steps=100, kl=300.0):
    """The parts of an ``evaluate.evaluate_run`` metrics.json that the study reads."""
    def ms(value):
        return {"mean": value, "std": 0.1}

    return {
        "reconstruction": {"psnr": ms(psnr), "ssim": ms(psnr / 40), "ms_ssim": ms(psnr / 30),
                           "bits_per_dim": ms(7.0 - psnr / 100), "kl_nats": ms(kl),
                           "sharpness_ratio": sharpness},
        "samples": {key: {"realism": {"face_rate": face_rate,
                                      "swd": {"swd_64": swd, "swd_32": swd, "swd_16": swd,
                                              "swd_mean": swd}},
                          "diversity": {"ms_ssim_fake": 0.2}}
                    for key in ("prior_t1", "gmm_t1")},
        "training": {"epochs": 4, "steps": steps, "wall_time_s": 40.0},
    }


def fake_history(val_neg_elbo):
    val = np.asarray(val_neg_elbo, float)
    return pd.DataFrame({"epoch": np.arange(len(val)), "val_reconstruction_loss": val - 10.0,
                         "val_kl_loss": np.full(len(val), 10.0), "val_loss": val,
                         "epoch_time_s": 10.0, "wall_time_s": 10.0 * (np.arange(len(val)) + 1)})


def write_run(root, name, metrics, history=None, config=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config or {"beta": 1.0}))
    (history if history is not None else fake_history([5, 4, 3, 2])).to_csv(
        folder / "history.csv", index=False)
    (folder / "metrics.json").write_text(json.dumps(metrics))


# -- the runs table ---------------------------------------------------------------------------


def test_committed_runs_table_has_every_arm_with_three_seeds_of_ten_epochs():
    runs = study.load_runs()
    arms = runs[runs["group"] == "arms"]
    assert arms.groupby("arm")["seed"].nunique().to_dict() == {"residual": 3, "plain": 3, "conv": 3}
    base = study.study_config("residual_s0", runs).to_dict()
    assert base["epochs"] >= 10 and base["profile"] == "celeba-subset"
    for row in runs.itertuples():
        config = study.study_config(row.name, runs).to_dict()
        changed = {k for k in config if config[k] != base[k]} - {"run_dir", "seed"}
        assert changed == set(row.overrides) - {"seed"}, row.name
        assert config["seed"] == row.seed and config["run_dir"] == f"runs/study/{row.name}"


def test_the_demo_plan_has_two_seeds_per_arm_and_a_sweep_run():
    plan = study.demo_plan()
    arms = plan[plan["group"] == "arms"]
    assert arms.groupby("arm")["seed"].apply(sorted).to_dict() == {
        "residual": [0, 1], "plain": [0, 1], "conv": [0, 1]}
    assert list(plan.loc[plan["group"] != "arms", "group"]) == ["beta"]
    demo = study.study_config("conv_s1", plan, profile="demo")
    assert demo.profile == "demo" and demo.max_images == 600 and demo.architecture == "conv"
    assert demo.run_dir == "runs/demo/study/conv_s1"


def test_runs_table_round_trips_and_rejects_a_duplicate(tmp_path):
    path = study.write_runs(study.design(), tmp_path / "runs.csv")
    again = study.load_runs(path)
    pd.testing.assert_frame_equal(again, study.design())
    pd.concat([again, again.iloc[:1]]).pipe(study.write_runs, tmp_path / "twice.csv")
    with pytest.raises(ValueError, match="names a run twice"):
        study.load_runs(tmp_path / "twice.csv")


def test_a_run_added_to_the_table_lands_in_its_arm(tmp_path):
    table = pd.concat([study.design(), pd.DataFrame([{
        "name": "textbook_extra", "group": "arms", "arm": "conv", "seed": 7,
        "overrides": {"architecture": "conv", "learning_rate": 5e-4}}])], ignore_index=True)
    root = tmp_path / "results"
    runs = study.load_runs(study.write_runs(table, root / "runs.csv"))
    for name, psnr in (("residual_s0", 21.0), ("conv_s0", 18.0), ("textbook_extra", 18.5),
                       ("beta_2_s0", 20.0), ("residual_like_name_s9", 30.0)):  # the last: no row
        write_run(root, name, fake_metrics(psnr=psnr))
    results = study.Study(root)  # reads its plan from root/runs.csv, not the design
    assert list(results.runs) == ["residual_s0", "conv_s0", "beta_2_s0", "textbook_extra"]
    assert list(results.arms.index) == ["residual_s0", "conv_s0", "textbook_extra"]
    assert results.arms.loc["textbook_extra", "arm"] == "conv"
    assert results.arms.loc["textbook_extra", "seed"] == 7
    assert results.seeds.loc[("arms", "conv")].tolist() == [2, 4]  # finished, planned
    verdict = results.verdicts
    row = verdict[(verdict.baseline == "conv") & (verdict.measure == "psnr")].iloc[0]
    assert row.n_baseline == 2 and row.mean_baseline == pytest.approx(18.25)
    assert study.study_config("textbook_extra", runs).learning_rate == 5e-4


# -- statistics -------------------------------------------------------------------------------


def test_holm_against_a_hand_computed_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    adjusted = study.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(adjusted[:4], [0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert study.holm([0.5, 0.9])[1] == 1.0  # capped at 1


def test_welch_interval_and_p_match_scipy_and_hedges_g_matches_hand_computation():
    a, b = np.array([20.1, 20.4, 19.8]), np.array([17.2, 17.9, 17.0, 17.5])
    ours = study.welch(a, b)
    theirs = stats.ttest_ind(a, b, equal_var=False)
    interval = theirs.confidence_interval(0.95)
    assert ours["p"] == pytest.approx(theirs.pvalue)
    assert ours["t"] == pytest.approx(theirs.statistic)
    assert (ours["ci_low"], ours["ci_high"]) == pytest.approx((interval.low, interval.high))
    pooled = math.sqrt((2 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 5)
    g = (1 - 3 / (4 * 7 - 9)) * (a.mean() - b.mean()) / pooled
    half = 1.959964 * math.sqrt(7 / 12 + g**2 / 14)
    assert study.hedges_g(a, b) == pytest.approx((g, g - half, g + half), rel=1e-5)
    assert math.isnan(study.welch([1.0], b)["p"])
    assert math.isnan(study.welch([1.0, 1.0], [2.0, 2.0])["p"])  # no variance: not testable


def test_verdict_rows_say_supported_contradicted_or_no_significant_difference():
    rng = np.random.default_rng(0)
    rows = []
    for arm, psnr, swd, sharp in (("residual", 22.0, 50.0, 0.5), ("plain", 18.0, 20.0, 0.5),
                                  ("conv", 22.0, 50.0, 0.5)):
        for seed in range(3):
            rows.append({"group": "arms", "arm": arm, "seed": seed,
                         **study.run_measures(fake_metrics(psnr + rng.normal(0, 0.1),
                                                           swd=swd + rng.normal(0, 0.5),
                                                           sharpness=sharp + rng.normal(0, 0.2)))})
    verdict = study.verdict(pd.DataFrame(rows))
    assert tuple(verdict.columns) == study.VERDICT_COLUMNS
    by = verdict.set_index(["baseline", "measure"])
    assert by.loc[("plain", "psnr"), "verdict"] == "supported"
    assert by.loc[("plain", "swd_mean_prior_t1"), "verdict"] == "contradicted"  # lower is better
    assert by.loc[("plain", "sharpness_ratio"), "verdict"] == "no significant difference"
    assert by.loc[("plain", "steps_to_threshold"), "verdict"] == "not testable"  # no column data
    assert (verdict["p_holm"].dropna() >= verdict["p"][verdict["p_holm"].notna()]).all()
    claims = study.claims(verdict).set_index(["hypothesis", "baseline"])
    assert claims.loc[("a", "plain"), "verdict"] == "supported"
    assert claims.loc[("c", "plain"), "verdict"] == "contradicted"
    assert claims.loc[("b", "plain"), "verdict"] == "no significant difference"


def test_history_summary_reads_the_u_shaped_kl_the_warm_up_and_the_checkpoint_epoch():
    history = pd.DataFrame({
        "epoch": range(5), "beta": [0.25, 0.5, 1.0, 1.0, 1.0],
        "val_loss": [9.0, 7.0, 5.0, 6.0, 5.5], "val_kl_loss": [40.0, 55.0, 30.0, 25.0, 28.0],
        "val_reconstruction_loss": [900.0, 800.0, 700.0, 650.0, 640.0],
        "val_neg_elbo": [940.0, 855.0, 730.0, 675.0, 668.0],
        "epoch_time_s": [10.0, 12.0, 11.0, 30.0, 11.0], "wall_time_s": [10, 22, 33, 63, 74]})
    s = study.history_summary(history, beta=1.0)
    # the epoch of model.keras: the lowest -ELBO at beta = 1, not the lowest beta-weighted
    # val_loss (epoch 3)
    assert (s["epochs"], s["best_epoch"], s["beta_epoch"]) == (5, 5, 3)
    assert (s["minutes"], s["seconds_per_epoch"]) == (74 / 60, 11.0)
    # the peak before the lowest KL after the first epoch (epoch 4), not the first value
    assert (s["kl_first"], s["kl_peak"], s["kl_peak_epoch"], s["kl_min"], s["kl_min_epoch"],
            s["kl_last"]) == (40.0, 55.0, 2, 25.0, 4, 28.0)
    assert (s["reconstruction_first"], s["reconstruction_last"]) == (900.0, 640.0)
    assert "beta_epoch" not in study.history_summary(history, beta=2.0)  # never reached
    assert "kl_min" not in study.history_summary(history.drop(columns="val_kl_loss"))


def test_steps_and_seconds_to_a_loss_and_the_loss_at_an_equal_time(tmp_path):
    root = tmp_path / "results"
    write_run(root, "residual_s0", fake_metrics(steps=400), fake_history([10, 6, 4, 3]))
    write_run(root, "plain_s0", fake_metrics(steps=400), fake_history([10, 8, 6, 5]))
    results = study.load_results(root, study.design())
    benchmark = {"arms": {"residual": {"seconds_per_step": 2.0},
                          "plain": {"seconds_per_step": 1.0}}}
    speed = study.speed_measures(results, benchmark)
    # threshold: the highest best loss (5, plain's) -- residual reaches it between 200 and 300
    assert speed["threshold"].iloc[0] == 5.0
    assert speed.loc["residual_s0", "steps_to_threshold"] == pytest.approx(250.0)
    assert speed.loc["plain_s0", "steps_to_threshold"] == pytest.approx(400.0)
    assert speed.loc["residual_s0", "seconds_to_threshold"] == pytest.approx(500.0)
    # equal time: plain ends at 400 s, residual ran 200 steps by then
    assert speed.loc["plain_s0", "equal_time_s"] == pytest.approx(400.0)
    assert speed.loc["residual_s0", "val_neg_elbo_at_equal_time"] == pytest.approx(6.0)
    assert speed.loc["plain_s0", "val_neg_elbo_at_equal_time"] == pytest.approx(5.0)
    no_bench = study.speed_measures(results, None)
    assert no_bench["seconds_to_threshold"].isna().all()
    assert math.isnan(study.steps_to_reach([100, 200], [3.0, 2.0], 1.0))  # never reached


def test_arm_curves_in_steps_and_in_benchmarked_minutes(tmp_path):
    root = tmp_path / "results"
    write_run(root, "residual_s0", fake_metrics(steps=400), fake_history([10, 6, 4, 3]))
    write_run(root, "conv_s0", fake_metrics(steps=400), fake_history([10, 8, 6, 5]))
    write_run(root, "beta_2_s0", fake_metrics(steps=400))  # not an arm
    results = study.load_results(root, study.design())
    curves, timed = study.arm_curves(results, {"arms": {"residual": {"seconds_per_step": 1.5}}})
    assert set(curves) == {"residual_s0", "conv_s0"} and set(timed) == {"residual_s0"}
    np.testing.assert_allclose(curves["residual_s0"][0], [100, 200, 300, 400])
    np.testing.assert_allclose(curves["conv_s0"][1], [10, 8, 6, 5])
    np.testing.assert_allclose(timed["residual_s0"][0], [2.5, 5.0, 7.5, 10.0])  # 100 steps: 150 s
    assert study.arm_curves(results, None)[1] == {}


def test_sweep_trend_puts_the_reference_seeds_beside_the_single_seed_runs():
    rows = [{"group": "arms", "arm": "residual", "beta": 1.0, "kl_nats": v} for v in (300, 310, 320)]
    rows += [{"group": "beta", "arm": f"beta_{b:g}", "beta": b, "kl_nats": k}
             for b, k in ((0.5, 400.0), (2.0, 200.0))]
    rows += [{"group": "arms", "arm": "plain", "beta": 1.0, "kl_nats": 1.0}]
    trend = study.sweep_trend(pd.DataFrame(rows), "beta", ["kl_nats"])
    assert list(trend["x"]) == [0.5, 1.0, 2.0]
    assert list(trend["n_seeds"]) == [1, 3, 1]
    assert trend.loc[1, "kl_nats"] == pytest.approx(310.0)
    assert trend["kl_nats_seed_sd"].iloc[0] == pytest.approx(10.0)


# -- running it -------------------------------------------------------------------------------


def test_run_study_skips_finished_runs_and_resumes_an_interrupted_one(tmp_path, monkeypatch):
    from resvae_keras import evaluate, train

    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))  # runs/ goes to the temporary folder
    (tmp_path / "pyproject.toml").write_text("")
    calls = []
    power_cut = {"plain_s0": 1}

    def cheap_train(config, verbose=0, second_stage=True):
        assert not second_stage  # the study evaluates last.keras, not model.keras
        run = config.run_path
        run.mkdir(parents=True, exist_ok=True)
        calls.append((run.name, (run / "history.csv").exists()))
        config.save(run / "config.json")
        fake_history([5.0, 4.0]).to_csv(run / "history.csv", index=False)
        if power_cut.get(run.name, 0):
            power_cut[run.name] -= 1
            raise RuntimeError("power cut")

    def cheap_evaluate(run_dir, out=None, checkpoint=None, n_test=None, anomaly=None, **kwargs):
        assert checkpoint == "last.keras" and anomaly is False and n_test == 50
        metrics = fake_metrics()
        out.write_text(json.dumps(metrics))
        return metrics

    monkeypatch.setattr(train, "train", cheap_train)
    monkeypatch.setattr(evaluate, "evaluate_run", cheap_evaluate)
    runs = study.design().iloc[:3]  # residual_s0, plain_s0, conv_s0
    root = tmp_path / "results"
    with pytest.raises(RuntimeError, match="power cut"):
        study.run_study(profile="demo", root=root, runs=runs, verbose=0)
    assert calls == [("residual_s0", False), ("plain_s0", False)]
    assert (root / "residual_s0" / "metrics.json").is_file()
    assert not (root / "plain_s0").exists()
    finished = study.run_study(profile="demo", root=root, runs=runs, verbose=0)
    assert finished == ["plain_s0", "conv_s0"]
    # the interrupted run is trained again in its own folder (train resumes there); the
    # finished one is not touched
    assert calls[2:] == [("plain_s0", True), ("conv_s0", False)]
    assert sorted(p.name for p in (root / "plain_s0").iterdir()) == [
        "config.json", "history.csv", "metrics.json"]
    assert study.run_study(profile="demo", root=root, runs=runs, verbose=0) == []
    assert study.next_command(root, runs, "demo") == (
        "python -m resvae_keras study --benchmark --profile demo")
    counts = study.seeds_per_arm(root, study.design())
    assert counts.loc[("arms", "plain")].tolist() == [1, 3]
    with pytest.raises(ValueError, match="unknown run"):
        study.run_study(only=["nope"], profile="demo", root=root, runs=runs)


def test_every_designed_run_has_a_floor_only_where_its_likelihood_learns_sigma():
    for name in study.design()["name"]:
        config = study.study_config(name)
        assert config.sigma_min == 0 or config.likelihood == "gaussian_learned", name


def test_collect_run_copies_what_the_report_reads(tmp_path):
    run = tmp_path / "runs" / "celeba-subset"
    run.mkdir(parents=True)
    for name in ("config.json", "metrics.json", "metrics_facecrops.json"):
        (run / name).write_text("{}")
    # epoch 1 logged twice: before and after a resume; the later row wins
    (run / "history.csv").write_text("epoch,val_loss\n0,5.0\n1,9.0\n1,4.0\n")
    (run / "model.keras").write_text("weights")
    dest = tmp_path / "results" / "celeba-subset"
    written = study.collect_run(run, dest)
    assert sorted(p.name for p in written) == [
        "config.json", "history.csv", "metrics.json", "metrics_facecrops.json"]
    assert written[-1].name == "metrics.json"  # last: its presence marks the results finished
    assert pd.read_csv(dest / "history.csv")["val_loss"].tolist() == [5.0, 4.0]
    assert not (dest / "model.keras").exists() and not (dest / "metrics.json.tmp").exists()
    with pytest.raises(FileNotFoundError, match="evaluate it first"):
        study.collect_run(tmp_path / "runs" / "none", dest)
