import json
import math

import numpy as np
import pandas as pd
import pytest

from resvae_keras import plan, study, study_results


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
        # an override equal to the profile's value (sigma_min 0 since the faithful default)
        # changes nothing
        assert changed == {k for k, v in row.overrides.items() if v != base[k]} - {"seed"}, row.name
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
    results = study_results.Study(root)  # reads its plan from root/runs.csv, not the design
    assert list(results.runs) == ["residual_s0", "conv_s0", "beta_2_s0", "textbook_extra"]
    assert list(results.arms.index) == ["residual_s0", "conv_s0", "textbook_extra"]
    assert results.arms.loc["textbook_extra", "arm"] == "conv"
    assert results.arms.loc["textbook_extra", "seed"] == 7
    assert results.seeds.loc[("arms", "conv")].tolist() == [2, 4]  # finished, planned
    summary = study_results.arm_summary(results.arms, ["psnr"])
    assert summary.loc["conv", "n"] == 2 and summary.loc["conv", "psnr_mean"] == pytest.approx(18.25)
    assert study.study_config("textbook_extra", runs).learning_rate == 5e-4


# -- statistics -------------------------------------------------------------------------------


def test_steps_and_seconds_to_a_loss_and_the_loss_at_an_equal_time(tmp_path):
    root = tmp_path / "results"
    write_run(root, "residual_s0", fake_metrics(steps=400), fake_history([10, 6, 4, 3]))
    write_run(root, "plain_s0", fake_metrics(steps=400), fake_history([10, 8, 6, 5]))
    results = study_results.load_results(root, study.design())
    benchmark = {"arms": {"residual": {"seconds_per_step": 2.0},
                          "plain": {"seconds_per_step": 1.0}}}
    speed = study_results.speed_measures(results, benchmark)
    # threshold: the highest best loss (5, plain's) -- residual reaches it between 200 and 300
    assert speed["threshold"].iloc[0] == 5.0
    assert speed.loc["residual_s0", "steps_to_threshold"] == pytest.approx(250.0)
    assert speed.loc["plain_s0", "steps_to_threshold"] == pytest.approx(400.0)
    assert speed.loc["residual_s0", "seconds_to_threshold"] == pytest.approx(500.0)
    # equal time: plain ends at 400 s, residual ran 200 steps by then
    assert speed.loc["plain_s0", "equal_time_s"] == pytest.approx(400.0)
    assert speed.loc["residual_s0", "val_neg_elbo_at_equal_time"] == pytest.approx(6.0)
    assert speed.loc["plain_s0", "val_neg_elbo_at_equal_time"] == pytest.approx(5.0)
    no_bench = study_results.speed_measures(results, None)
    assert no_bench["seconds_to_threshold"].isna().all()
    assert math.isnan(study_results.steps_to_reach([100, 200], [3.0, 2.0], 1.0))  # never reached


def test_arm_curves_in_steps_and_in_benchmarked_minutes(tmp_path):
    root = tmp_path / "results"
    write_run(root, "residual_s0", fake_metrics(steps=400), fake_history([10, 6, 4, 3]))
    write_run(root, "conv_s0", fake_metrics(steps=400), fake_history([10, 8, 6, 5]))
    write_run(root, "beta_2_s0", fake_metrics(steps=400))  # not an arm
    results = study_results.load_results(root, study.design())
    curves, timed = study_results.arm_curves(results, {"arms": {"residual": {"seconds_per_step": 1.5}}})
    assert set(curves) == {"residual_s0", "conv_s0"} and set(timed) == {"residual_s0"}
    np.testing.assert_allclose(curves["residual_s0"][0], [100, 200, 300, 400])
    np.testing.assert_allclose(curves["conv_s0"][1], [10, 8, 6, 5])
    np.testing.assert_allclose(timed["residual_s0"][0], [2.5, 5.0, 7.5, 10.0])  # 100 steps: 150 s
    assert study_results.arm_curves(results, None)[1] == {}


def test_sweep_trend_puts_the_reference_seeds_beside_the_single_seed_runs():
    rows = [{"group": "arms", "arm": "residual", "beta": 1.0, "kl_nats": v} for v in (300, 310, 320)]
    rows += [{"group": "beta", "arm": f"beta_{b:g}", "beta": b, "kl_nats": k}
             for b, k in ((0.5, 400.0), (2.0, 200.0))]
    rows += [{"group": "arms", "arm": "plain", "beta": 1.0, "kl_nats": 1.0}]
    trend = study_results.sweep_trend(pd.DataFrame(rows), "beta", ["kl_nats"])
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
    assert study.status_text(root, runs, "demo").endswith(
        "\nnext: python -m resvae_keras study --benchmark --profile demo")
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


# -- the pre-registered plan -------------------------------------------------------------------

def test_the_committed_plan_fixes_arms_seeds_rates_and_one_primary_measure_per_claim():
    spec = plan.load_plan()
    head = spec["study"]
    assert head["reference"] == "residual" and head["baselines"] == ["plain", "conv"]
    assert len(head["seeds"]) >= 5 and head["alpha"] == 0.05
    assert head["common"] == {"sigma_min": 0.0}  # the faithful default: no floor on sigma
    assert spec["arms"]["plain"]["overrides"] == {"residual": False}
    assert len(spec["learning_rate"]["grid"]) == 3
    measures = {c: spec["claims"][c]["measure"] for c in plan.CLAIMS}
    assert measures == {"a": "psnr", "b": "sharpness_log2", "c": "face_frechet_two_stage_t1",
                        "d": plan.TIME_MEASURE}
    assert [spec["claims"][c]["higher_is_better"] for c in plan.CLAIMS] == [True, True, False, False]
    assert all("margin" in spec["claims"][c] or "margin_from" in spec["claims"][c]
               for c in plan.CLAIMS)
    # the smallest exact two-sided p, times the Holm factor of the 8 primary tests, is < alpha
    n = len(head["seeds"])
    assert 8 * 2 / math.comb(2 * n, n) < head["alpha"]
    table = plan.runs_table(spec)
    assert (table["group"] == "lr").sum() == 9 and (table["group"] == "arms").sum() == 3 * n
    assert plan.results_root(spec).name == "faithful"  # not the clamped study's folders
    config = study.study_config("plain_s3", table, subfolder="faithful")
    assert config.run_dir == "runs/study/faithful/plain_s3" and config.sigma_min == 0.0
    assert not config.residual and config.epochs == head["epochs"] and config.seed == 3
    with pytest.raises(ValueError, match="claims.d"):
        plan.check_plan({**spec, "claims": {k: v for k, v in spec["claims"].items() if k != "d"}})


def _face_space(frechet):
    return {"rows": {"two_stage_t1": {"frechet": frechet}, "blur_1px": {"frechet": 14.0},
                     "real_test": {"frechet": 4.0}}}


ARM_VALUES = {  # per arm: PSNR, log2 sharpness ratio, face Frechet, validation curve (nats)
    "residual": lambda s: (21 + 0.01 * s, -1 + 0.001 * s, 10 + 0.1 * s,
                           [30000, 20000, 15000, 12000]),
    "plain": lambda s: (19 + 0.01 * s, -1 + 0.001 * (5 - s), 20 + 0.1 * s,
                        [31000, 21000, 16000, 13000]),
    "conv": lambda s: (23 + 0.01 * s, -1 + (0.5, -0.5, 0.4, -0.4, 0.3, -0.3)[s],
                       10 + (8, -8, 6, -6, 7, -7)[s], [14000, 11000, 9000, 8000]),
}
BENCHMARK = {"arms": {"residual": {"seconds_per_step": 1.0, "per_round_s": [0.9, 1.0, 1.1]},
                      "plain": {"seconds_per_step": 1.0, "per_round_s": [0.9, 1.0, 1.1]},
                      "conv": {"seconds_per_step": 0.5, "per_round_s": [0.45, 0.5, 0.55]}}}


def write_plan_runs(root, seeds=range(6)):
    """Fake finished seed runs of the committed plan: every verdict kind among the 8 rows."""
    for arm, values in ARM_VALUES.items():
        for seed in seeds:
            psnr, log2_sharpness, frechet, curve = values(seed)
            metrics = fake_metrics(psnr=psnr, sharpness=2.0**log2_sharpness, steps=400)
            metrics["face_space"] = _face_space(frechet)
            write_run(root, f"{arm}_s{seed}", metrics,
                      fake_history(np.asarray(curve, float) + seed), {"image_size": 64})
    (root / "benchmark.json").write_text(json.dumps(BENCHMARK))


def test_verdicts_from_fake_committed_runs_cover_all_four_kinds(tmp_path):
    root = tmp_path / "faithful"
    write_plan_runs(root)
    found = plan.PlannedStudy(root=root)
    verdicts = found.verdicts.set_index(["claim", "baseline"])
    assert tuple(found.verdicts.columns) == plan.VERDICT_COLUMNS
    assert verdicts["verdict"].to_dict() == {
        ("a", "plain"): "supported", ("a", "conv"): "contradicted",
        ("b", "plain"): "equivalent", ("b", "conv"): "inconclusive",
        ("c", "plain"): "supported", ("c", "conv"): "inconclusive",
        ("d", "plain"): "supported", ("d", "conv"): "contradicted"}
    assert set(verdicts["verdict"]) == set(plan.VERDICTS)
    separated = verdicts.loc[("a", "plain")]
    assert separated["p"] == pytest.approx(2 / 924)  # 6 vs 6, fully separated
    assert separated["p_holm"] == pytest.approx(8 * 2 / 924)
    assert separated["diff"] == pytest.approx(2.0) and separated["n_arm"] == 6
    assert verdicts.loc[("c", "plain"), "margin"] == pytest.approx(0.5 * (14.0 - 4.0))
    # time-matched against conv: T = 400 steps x conv's 0.5 s = 200 s, residual's step 200
    time = verdicts.loc[("d", "conv")]
    assert time["timing_low"] < time["diff"] < time["timing_high"]
    assert time["mean_arm"] > time["mean_baseline"]  # higher -ELBO: slower, hence contradicted
    assert found.secondary.set_index(["measure", "baseline"]).loc[("ssim", "plain"), "n_arm"] == 6
    assert "p" not in found.secondary  # secondary measures decide nothing


def test_every_verdict_is_inconclusive_until_all_planned_seeds_have_finished(tmp_path):
    root = tmp_path / "faithful"
    write_plan_runs(root, seeds=range(5))
    verdicts = plan.PlannedStudy(root=root).verdicts
    assert set(verdicts["verdict"]) == {"inconclusive"}
    assert (verdicts["n_arm"] == 5).all() and (verdicts["n_planned"] == 6).all()
    empty = plan.PlannedStudy(root=tmp_path / "none")
    assert empty.finished == (0, 27) and set(empty.verdicts["verdict"]) == {"inconclusive"}
    assert "0 of 27 runs finished" in plan.status_text(root=tmp_path / "none")


def test_the_time_matched_values_read_each_curve_at_the_equal_time(tmp_path):
    root = tmp_path / "faithful"
    write_plan_runs(root, seeds=[0])
    results = plan.PlannedStudy(root=root).runs
    residual, conv, equal = plan.equal_time_values(results, "residual", "conv", 1.0, 0.5)
    assert equal == pytest.approx(200.0)  # conv's 400 steps at 0.5 s
    bpd = 1 / (12288 * math.log(2))
    assert residual[0] - conv[0] == pytest.approx((20000 - 8000) * bpd)
    costs = plan.step_costs(BENCHMARK, (0.25, 0.75))
    assert costs["conv"] == pytest.approx((0.5, 0.475, 0.525))


def test_run_plan_chooses_rates_first_then_trains_seeds_and_resumes(tmp_path, monkeypatch):
    from resvae_keras import evaluate, train

    spec, root = plan.load_plan(), tmp_path / "results"  # the committed plan
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))
    (tmp_path / "pyproject.toml").write_text("")
    calls = []
    power_cut = {"lr_plain_0.001": 1}
    best = {5e-4: 12.0, 1e-3: 10.0, 2e-3: 11.0}  # 1e-3 wins everywhere but conv

    def cheap_train(config, verbose=0, second_stage=True):
        run = config.run_path
        run.mkdir(parents=True, exist_ok=True)
        calls.append((run.name, config.learning_rate, (run / "history.csv").exists()))
        config.save(run / "config.json")
        low = best[config.learning_rate] - (3.0 if config.architecture == "conv"
                                            and config.learning_rate == 2e-3 else 0.0)
        fake_history([20.0, low]).to_csv(run / "history.csv", index=False)
        if power_cut.get(run.name, 0):
            power_cut[run.name] -= 1
            raise RuntimeError("power cut")

    def cheap_evaluate(run_dir, out=None, **kwargs):
        out.write_text(json.dumps(fake_metrics()))
        return fake_metrics()

    monkeypatch.setattr(train, "train", cheap_train)
    monkeypatch.setattr(evaluate, "evaluate_run", cheap_evaluate)
    with pytest.raises(RuntimeError, match="power cut"):
        plan.run_plan(profile="demo", spec=spec, root=root, verbose=0)
    assert (root / "lr_residual_0.002" / "history.csv").is_file()
    assert not (root / "lr_plain_0.001").exists()
    assert plan.run_plan(profile="demo", spec=spec, root=root, max_runs=2, verbose=0) == [
        "lr_plain_0.001", "lr_plain_0.002"]
    assert calls[-2][2]  # the interrupted run trained again in its own folder
    finished = plan.run_plan(profile="demo", spec=spec, root=root, verbose=0)
    assert finished[:3] == ["lr_conv_0.0005", "lr_conv_0.001", "lr_conv_0.002"]
    assert finished[3:] == ["residual_s0", "plain_s0", "conv_s0", "residual_s1", "plain_s1",
                            "conv_s1"]  # the demo: the first two seeds
    rates = {name: rate for name, rate, _ in calls}
    assert rates["residual_s1"] == 1e-3 and rates["conv_s0"] == 2e-3
    assert not (root / "lr_conv_0.001" / "metrics.json").exists()  # never evaluated
    assert plan.run_plan(profile="demo", spec=spec, root=root, verbose=0) == []
    assert plan.PlannedStudy(spec, root, "demo").learning_rates == {
        "residual": 1e-3, "plain": 1e-3, "conv": 2e-3}
