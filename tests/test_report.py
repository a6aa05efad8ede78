"""The report: generated tables equal the results files, figures exist, regions are honest.

The expectations below read the results with json/pandas/scipy directly, not through
``report``, so a table that shows a number the files do not hold fails here.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from resvae_keras import plan, report, study
from resvae_keras.config import get_profile

ROOT = Path(__file__).resolve().parents[1]
LAPORAN = ROOT / "report" / "laporan.md"
REAL_RESULTS = ROOT / "report" / "results"
NUMBER = re.compile(r"-?\d+(?:[\u00a0]\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")


def region_bodies(text: str) -> dict[str, str]:
    """``{name: body}`` of every generated region of ``text`` (bodies without the markers)."""
    return {m["name"]: m["body"] for m in report.REGION.finditer(text)}


def figure_references(text: str) -> list[str]:
    """File names of the figures a report references as ``../figures/NAME.png``."""
    return re.findall(r"!\[[^\]]*\]\(\.\./figures/([^)\s]+\.png)\)", text)


# -- a small fake set of results ----------------------------------------------------------

STUDY_RUNS = (  # conv_s2, likelihood_bernoulli_s0, beta_0.5_s0 and beta_2_s0 stay missing
    "residual_s0", "plain_s0", "conv_s0", "residual_s1", "plain_s1", "conv_s1", "residual_s2",
    "plain_s2", "beta_0.25_s0", "beta_4_s0", "likelihood_gaussian_s0",
)
SECONDS_PER_STEP = {"residual": 0.9, "plain": 0.85, "conv": 0.3}
ATTRIBUTES = ("Eyeglasses", "Wearing_Hat", "Smiling", "Male", "Bangs", "Blond_Hair", "Pale_Skin",
              "Young", "Bald", "Mustache", "Goatee", "Heavy_Makeup", "No_Beard", "Chubby")


def _history(rng, epochs, time_per_epoch, slope=900.0):
    epoch_time = time_per_epoch * rng.uniform(0.9, 1.1, epochs)
    val_loss = -5000 - slope * np.arange(epochs) + rng.normal(0, 50, epochs)
    return pd.DataFrame({
        "epoch": np.arange(epochs), "beta": np.minimum(1.0, (np.arange(epochs) + 1) / 2),
        "epoch_time_s": epoch_time, "kl_loss": 300 + rng.normal(0, 5, epochs),
        "loss": val_loss + 100, "reconstruction_loss": val_loss - 200,
        "val_kl_loss": 290 - 3 * np.arange(epochs), "val_loss": val_loss,
        "val_reconstruction_loss": val_loss - 290, "wall_time_s": np.cumsum(epoch_time),
        "val_neg_elbo": val_loss - 3 * np.arange(epochs),  # reconstruction + KL at beta = 1
    })


def _study_metrics(rng, arm, history):
    """The parts of an evaluator metrics.json the study reads, as ``evaluate_run`` writes them."""
    psnr = {"residual": 25.0, "plain": 24.0, "conv": 24.8}.get(arm, 24.5)

    def ms(mean, std=0.1):
        return {"mean": mean, "std": std}

    samples = {}
    for key in ("prior_t1", "prior_t0.7", "gmm_t1"):
        swd = {f"swd_{r}": 60 + rng.normal(0, 3) for r in (64, 32, 16)}
        swd["swd_mean"] = float(np.mean(list(swd.values())))
        samples[key] = {"realism": {"swd": swd, "face_rate": float(rng.uniform(0.2, 0.6)),
                                    "available": False},
                        "diversity": {"ms_ssim_fake": 0.2 + rng.normal(0, 0.01)}}
    return {
        "version": 1, "profile": "celeba-subset", "demo": False,
        "reconstruction": {
            "n_images": 1000, "psnr": ms(psnr + rng.normal(0, 0.05)),
            "ssim": ms(0.7 + rng.normal(0, 0.01)), "ms_ssim": ms(0.8 + rng.normal(0, 0.01)),
            "bits_per_dim": ms(6.9 + rng.normal(0, 0.01)), "kl_nats": ms(300 + rng.normal(0, 20)),
            "sharpness_ratio": 0.45 + rng.normal(0, 0.01),
        },
        "samples": samples,
        "training": {"epochs": len(history), "steps": 125 * len(history),
                     "wall_time_s": float(history["wall_time_s"].iloc[-1])},
    }


def _main_metrics(rng):
    def ms(mean, std):
        return {"mean": mean + rng.normal(0, abs(mean) * 0.01 + 1e-4), "std": std}

    rows = {}
    for i, attribute in enumerate(ATTRIBUTES):
        n_with = 1 if attribute == "Chubby" else int(rng.integers(20, 500))
        difference = float(rng.normal(0, 0.0015))
        t = float("nan") if n_with == 1 else difference / 0.0002
        p = float("nan") if n_with == 1 else float(2 * stats.norm.sf(abs(t)))
        rows[attribute] = {"n_with": n_with, "n_without": 1000 - n_with,
                           "mean_with": 0.004 + difference, "mean_without": 0.004 - i * 1e-5,
                           "difference": difference, "se_difference": 0.0002, "t": t,
                           "p_value": p}
    samples = {}
    for key, sampler, temperature in (("prior_t1", "prior", 1.0), ("prior_t0.7", "prior", 0.7),
                                      ("gmm_t1", "gmm", 1.0)):
        swd = {"swd_64": 100 + rng.normal(0, 5), "swd_32": 60 + rng.normal(0, 5),
               "swd_16": 40 + rng.normal(0, 5)}
        swd["swd_mean"] = float(np.mean(list(swd.values())))
        realism = {"n_real": 1000, "n_fake": 1000, "swd": swd, "extractor": "inception_v3",
                   "available": key == "gmm_t1"}
        if key == "gmm_t1":  # one sampler with the Inception measures, to check those columns
            realism.update(fid=42.123, kid_mean=0.0312, kid_std=0.001, precision=0.61,
                           recall=0.35)
        samples[key] = {
            "sampler": sampler, "temperature": temperature, "seed": 0, "n_images": 1000,
            "n_real": 1000, "fid_comparable": False, "realism": realism,
            "diversity": {"pixel_l2_fake": 22 + rng.normal(), "pixel_l2_real": 30.5,
                          "ms_ssim_fake": 0.2 + rng.normal(0, 0.01), "ms_ssim_real": 0.15},
            "memorization": {
                "n_queries": 500, "n_train": 8000, "distance": "pixel L2, intensities in [0, 1]",
                "sample_to_train": {"mean": 14.0, "median": 13.5 + rng.normal(), "p01": 9.0,
                                    "p05": 10.0, "min": 8.0},
                "test_to_train": {"mean": 14.2, "median": 13.93, "p01": 8.7, "p05": 9.9,
                                  "min": 7.7},
                "median_ratio": 0.97 + rng.normal(0, 0.01),
                "share_closer_than_test_p01": 0.004,
            },
        }
    results = {}
    for kind in ("noise", "occlusion", "rotation", "non_face"):
        results[kind] = {score: {"auroc": float(rng.uniform(0.3, 1.0)),
                                 "ap": float(rng.uniform(0.3, 1.0)), "mean_clean": -9000.0,
                                 "mean_anomalous": -5000.0}
                         for score in ("neg_elbo", "reconstruction_mse", "complexity_corrected")}
    return {
        "version": 1, "run": "celeba-subset", "profile": "celeba-subset", "demo": False,
        "model": {"params": 2826862, "latent_dim": 128, "decoder_sigma": 0.0712},
        "data": {"source": "celeba", "split": "test", "split_rule": "fallback 80:10:10",
                 "split_counts": {"train": 8000, "val": 1000, "test": 1000}},
        "reconstruction": {
            "n_images": 1000, "mse": ms(0.0041, 0.002), "psnr": ms(24.61, 2.1),
            "ssim": ms(0.7312, 0.06), "ms_ssim": ms(0.8123, 0.05),
            "neg_elbo_nats": ms(-10123.4, 1500.0), "reconstruction_nll_nats": ms(-10400.2, 1500.0),
            "kl_nats": ms(276.5, 20.0), "bits_per_dim": ms(6.8123, 0.18), "num_dims": 12288,
            "likelihood": "gaussian_learned", "bits_per_dim_is_bound": True,
            "decoder_sigma": 0.0712,
        },
        "per_attribute": {"error": "mse", "n_images": 1000, "rows": rows},
        "latent": {"n_images": 1000, "latent_dim": 128, "threshold": 0.01, "active_units": 57,
                   "kl_total_nats": 276.5, "top_units": [12, 3, 99, 7, 64, 1],
                   "top_units_kl_nats": [9.81, 8.2, 7.77, 6.5, 6.25, 5.0]},
        "samples": samples,
        "anomaly": {"n_clean": 1000, "n_anomalous_per_set": 1000, "seed": 0,
                    "corruption_strengths": {"noise": 0.1, "occlusion": 0.35, "rotation": None},
                    "results": results},
    }


def write_fixture(root: Path, seed: int = 0) -> Path:
    """Fake ``report/results``: the main run and most study runs; returns ``root``."""
    rng = np.random.default_rng(seed)
    main = root / "celeba-subset"
    main.mkdir(parents=True)
    get_profile("celeba-subset", epochs=5).save(main / "config.json")
    history = _history(rng, 5, 120.0)
    stale = history.iloc[:2].assign(val_loss=0.0)  # epochs logged before a resume
    pd.concat([stale, history]).to_csv(main / "history.csv", index=False)
    (main / "metrics.json").write_text(json.dumps(_main_metrics(rng), indent=2))
    other = _main_metrics(rng)
    other["reconstruction"]["n_images"] = 3000
    (main / "metrics_celeba_test_facecrops.json").write_text(json.dumps(other))
    runs = study.design()
    study.write_runs(runs, root / "study" / "runs.csv")
    for row in runs[runs["name"].isin(STUDY_RUNS)].itertuples():
        folder = root / "study" / row.name
        folder.mkdir(parents=True)
        study.study_config(row.name, runs).save(folder / "config.json")
        history = _history(rng, 4, 100.0, slope=700.0 if row.arm == "plain" else 900.0)
        history.to_csv(folder / "history.csv", index=False)
        (folder / "metrics.json").write_text(json.dumps(_study_metrics(rng, row.arm, history)))
    (root / "study" / "benchmark.json").write_text(json.dumps(
        {"arms": {arm: {"seconds_per_step": v} for arm, v in SECONDS_PER_STEP.items()}}))
    for name, sigma_min in (("sigma_min_0.5", 0.5), ("sigma_free", 0.0)):  # not in floor order
        folder = root / "sweep" / name
        folder.mkdir(parents=True)
        get_profile("celeba-subset", epochs=6, sigma_min=sigma_min).save(folder / "config.json")
        metrics = _main_metrics(rng)
        metrics["samples"]["prior_t1"]["realism"]["face_rate"] = 0.2 + sigma_min
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The report built from the fake results: ``(text, results root, figures dir)``."""
    tmp = tmp_path_factory.mktemp("report")
    results = write_fixture(tmp / "results")
    copy = tmp / "report" / "laporan.md"
    copy.parent.mkdir()
    shutil.copy(LAPORAN, copy)
    report.build_report(results_root=results, report_path=copy, figures_dir=tmp / "figures")
    return copy.read_text(), results, tmp / "figures"


# -- reading the generated markdown back ---------------------------------------------------


def parse_table(body: str) -> tuple[list[str], list[list[str]]]:
    """The first pipe table of a region: header and rows of cell texts."""
    lines = [line for line in body.splitlines() if line.startswith("|")]
    assert len(lines) >= 2, f"no table in:\n{body}"
    cells = [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
             for line in lines]
    return cells[0], cells[2:]


def numbers_in(cell: str) -> list[str]:
    return NUMBER.findall(cell)


def assert_shows(cell: str, expected, where: str) -> None:
    """``cell`` shows exactly the numbers ``expected``, each equal after the printed rounding;
    ``None`` (or an empty list) means the cell shows no number (a dash or text)."""
    expected = [] if expected is None else list(np.atleast_1d(np.asarray(expected, float)))
    shown = numbers_in(cell)
    assert len(shown) == len(expected), f"{where}: cell {cell!r} should show {expected}"
    for token, value in zip(shown, expected, strict=True):
        mantissa, _, exponent = token.replace("\u00a0", "").partition("e")
        decimals = len(mantissa.partition(".")[2])
        tolerance = 0.5 * 10.0 ** -decimals * 10.0 ** int(exponent or 0)
        assert abs(float(token.replace("\u00a0", "")) - value) <= tolerance * (1 + 1e-9), (
            f"{where}: cell {cell!r} shows {token}, results file holds {value}")


def numbers_expected(value) -> bool:
    """False for a value a table shows as a dash (None, NaN): its column may be left out."""
    if value is None or value is ...:
        return value is ...
    return not (isinstance(value, float) and math.isnan(value))


def check_table(text: str, name: str, expected_rows: list[dict], free: tuple = ()) -> None:
    """Region ``name`` of ``text`` has one row per expected dict, in order; every column not
    in ``free`` is checked (columns an expected row leaves out must show no number, and ``...``
    skips a cell of free text). A column the table leaves out (an optional one without any
    value) must have no value in any expected row."""
    header, rows = parse_table(region_bodies(text)[name])
    assert len(rows) == len(expected_rows), f"{name}: {len(rows)} rows, expected {len(expected_rows)}"
    for i, (row, expected) in enumerate(zip(rows, expected_rows, strict=True)):
        unknown = {c for c in set(expected) - set(header) if numbers_expected(expected[c])}
        assert not unknown, f"{name}: no column(s) {unknown} in {header}"
        for column, cell in zip(header, row, strict=True):
            if column in free or expected.get(column, 0) is ...:
                if column in expected and expected[column] is not ...:
                    shown = cell.replace("`", "")
                    assert shown == expected[column], f"{name} row {i}: {cell!r}"
                continue
            assert_shows(cell, expected.get(column), f"{name} row {i} column {column!r}")


# -- expectations, read from the files directly ----------------------------------------------


def _json(path: Path):
    return json.loads(path.read_text())


def _study_runs(root: Path) -> dict:
    """Finished study runs in the order of runs.csv, with their arm read from runs.csv."""
    table = pd.read_csv(root / "study" / "runs.csv") if (root / "study" / "runs.csv").is_file() \
        else pd.DataFrame(columns=["name", "group", "arm", "seed"])
    out = {}
    for row in table.itertuples():
        folder = root / "study" / row.name
        if (folder / "metrics.json").is_file():
            out[row.name] = {"group": row.group, "arm": row.arm, "seed": row.seed,
                             "metrics": _json(folder / "metrics.json"),
                             "config": _json(folder / "config.json"),
                             "history": pd.read_csv(folder / "history.csv")}
    return out


def _study_values(root: Path) -> dict:
    """``{run: {measure: value}}`` of the arms, the speed measures computed here directly."""
    runs = {n: r for n, r in _study_runs(root).items() if r["group"] == "arms"}
    bench = root / "study" / "benchmark.json"
    cost = {a: v["seconds_per_step"] for a, v in _json(bench)["arms"].items()} \
        if bench.is_file() else {}
    curves = {}
    for name, r in runs.items():
        h = r["history"]
        steps = r["metrics"]["training"]["steps"] / len(h) * (np.arange(len(h)) + 1)
        curves[name] = (steps, (h["val_reconstruction_loss"] + h["val_kl_loss"]).to_numpy())
    threshold = max(y.min() for _, y in curves.values()) if curves else None
    equal_time = min(x[-1] * cost[runs[n]["arm"]] for n, (x, _) in curves.items()) \
        if cost else float("nan")
    out = {}
    for name, r in runs.items():
        m, (x, y) = r["metrics"], curves[name]
        i = int(np.argmax(y <= threshold))
        reached = x[0] if i == 0 else x[i - 1] + (y[i - 1] - threshold) / (y[i - 1] - y[i]) * (
            x[i] - x[i - 1])
        at = equal_time / cost[r["arm"]] if cost else float("nan")
        values = {"arm": r["arm"], "seed": r["seed"],
                  "psnr": m["reconstruction"]["psnr"]["mean"],
                  "ssim": m["reconstruction"]["ssim"]["mean"],
                  "ms_ssim": m["reconstruction"]["ms_ssim"]["mean"],
                  "neg_elbo_bpd": m["reconstruction"]["bits_per_dim"]["mean"],
                  "kl_nats": m["reconstruction"]["kl_nats"]["mean"],
                  "sharpness_ratio": m["reconstruction"]["sharpness_ratio"],
                  "steps_to_threshold": reached,
                  "seconds_to_threshold": reached * cost.get(r["arm"], float("nan")),
                  "val_neg_elbo_at_equal_time": float(np.interp(at, x, y))
                  if x[0] <= at <= x[-1] else float("nan")}
        for key in ("prior_t1", "two_stage_t1", "gmm_t1"):
            if key in m["samples"]:  # the fixture's study runs have no two-stage sampler
                values[f"face_rate_{key}"] = m["samples"][key]["realism"]["face_rate"]
                values[f"swd_mean_{key}"] = m["samples"][key]["realism"]["swd"]["swd_mean"]
        out[name] = values
    return out


MEASURE_OF_LABEL = {label: key for key, (label, _) in report.STUDY_MEASURES.items()}
ARM_OF_LABEL = {label: key for key, label in report.ARM_NAMES.items()}


def _ms(record, key):
    return [record[key]["mean"]], [record[key]["std"]]


def expected_tables(root: Path) -> dict:
    """``{region: (expected rows, free-text columns)}`` for every table whose files exist."""
    tables = {}
    main = root / "celeba-subset"
    runs = _study_runs(root)
    if (main / "metrics.json").is_file():
        m = _json(main / "metrics.json")
        counts = m["data"]["split_counts"]
        total = sum(counts.values())
        tables["data"] = ([{"Jumlah citra": v, "Porsi (%)": 100 * v / total}
                           for v in counts.values()] + [{"Jumlah citra": total, "Porsi (%)": 100}],
                          ("Split",))
        rec = m["reconstruction"]
        rows = []
        for key in ("mse", "psnr", "ssim", "ms_ssim", "neg_elbo_nats", "reconstruction_nll_nats",
                    "kl_nats", "bits_per_dim"):
            mean, std = _ms(rec, key)
            rows.append({"Rata-rata": mean, "Simpangan baku": std})
        rows.append({"Rata-rata": rec["decoder_sigma"]})
        tables["rekonstruksi"] = (rows, ("Metrik",))
        others = [_json(p)["reconstruction"] for p in sorted(main.glob("metrics_*.json"))]
        tables["generalisasi"] = ([
            {"n": r["n_images"], "MSE": r["mse"]["mean"], "PSNR (dB)": r["psnr"]["mean"],
             "SSIM": r["ssim"]["mean"], "MS-SSIM": r["ms_ssim"]["mean"],
             "bit/dim": r["bits_per_dim"]["mean"]} for r in [rec, *others]], ("Data",))
        attrs = pd.DataFrame.from_dict(m["per_attribute"]["rows"], orient="index")
        attrs = attrs[np.isfinite(attrs["t"].astype(float))]
        top = attrs.loc[attrs["t"].abs().sort_values(ascending=False).index[:10]]
        top = top.sort_values("difference", ascending=False)
        tables["per_atribut"] = ([
            {"Atribut": name, "n dengan": r.n_with, "n tanpa": r.n_without,
             "MSE dengan (×10³)": 1e3 * r.mean_with, "MSE tanpa (×10³)": 1e3 * r.mean_without,
             "Selisih (×10³)": 1e3 * r.difference, "t Welch": r.t, "p": r.p_value}
            for name, r in top.iterrows()], ("Atribut",))
        sample_rows, diversity_rows = [], []
        for s in [*m["samples"].values(), *m.get("sample_references", {}).values()]:
            r, swd = s["realism"], s["realism"]["swd"]
            sample_rows.append({
                "n": s["n_images"], "SWD 64 px": swd["swd_64"], "SWD 32 px": swd["swd_32"],
                "SWD 16 px": swd["swd_16"], "SWD rata-rata": swd["swd_mean"],
                **({"Laju deteksi wajah": r["face_rate"]} if "face_rate" in r else {}),
                "FID": r.get("fid"), "KID (×10³)": None if "kid_mean" not in r
                else 1e3 * r["kid_mean"], "Presisi": r.get("precision"),
                "Recall": r.get("recall")})
            if "memorization" not in s:  # a reference row: realism only
                continue
            d, mem = s["diversity"], s["memorization"]
            diversity_rows.append({
                "Jarak L2 antar-pasangan": d["pixel_l2_fake"],
                "MS-SSIM antar-pasangan": d["ms_ssim_fake"],
                "Median jarak ke citra latih terdekat": mem["sample_to_train"]["median"],
                "Rasio median terhadap wajah uji": mem["median_ratio"],
                "Sampel lebih dekat dari persentil 1% uji (%)":
                    100 * mem["share_closer_than_test_p01"]})
        first = next(iter(m["samples"].values()))
        diversity_rows.append({
            "Jarak L2 antar-pasangan": first["diversity"]["pixel_l2_real"],
            "MS-SSIM antar-pasangan": first["diversity"]["ms_ssim_real"],
            "Median jarak ke citra latih terdekat": first["memorization"]["test_to_train"]["median"]})
        tables["sampel"] = (sample_rows, ("Sampler",))
        tables["keragaman"] = (diversity_rows, ("Sampler",))
        lat = m["latent"]
        top_units = [v for pair in zip(lat["top_units"][:5], lat["top_units_kl_nats"][:5],
                                       strict=True) for v in pair]
        tables["laten"] = ([{"Nilai": lat["latent_dim"]}, {"Nilai": lat["active_units"]},
                            {"Nilai": lat["kl_total_nats"]}, {"Nilai": top_units}], ("Besaran",))
        tables["anomali"] = ([{"AUROC": r["auroc"], "AP": r["ap"]}
                              for by_score in m["anomaly"]["results"].values()
                              for r in by_score.values()], ("Anomali", "Skor"))
    histories = []
    if (main / "history.csv").is_file():
        history = pd.read_csv(main / "history.csv")  # a resumed run may log an epoch twice
        histories.append(("celeba-subset (percobaan utama)",
                          history.drop_duplicates("epoch", keep="last")))
    histories += [(name, r["history"]) for name, r in runs.items()]
    if histories:
        tables["waktu"] = ([{"Percobaan": name, "Epoch": len(h),
                             "Median waktu/epoch (s)": h["epoch_time_s"].median(),
                             "Total waktu latih (menit)": h["wall_time_s"].iloc[-1] / 60,
                             "−ELBO validasi terbaik (β = 1, nats)": h["val_neg_elbo"].min()}
                            for name, h in histories], ("Percobaan", "Presisi"))
    if (main / "config.json").is_file() and "residual_s0" in runs:
        config, ref = _json(main / "config.json"), runs["residual_s0"]["config"]
        seeds = sorted({r["config"]["seed"] for r in runs.values()})
        keys = ("image_size", "widths", "blocks_per_stage", "latent_dim", None, "beta",
                "sigma_min", "kl_warmup_steps", "batch_size", "learning_rate", "epochs", "seed", None)
        tables["hiperparameter"] = ([
            {"Percobaan utama": ..., "Studi perbandingan (percobaan acuan)": ...} if key is None
            else {"Percobaan utama": config[key],
                                    "Studi perbandingan (percobaan acuan)":
                                        seeds if key == "seed" else ref[key]}
            for key in keys], ("Hiperparameter",))
    values = _study_values(root)
    columns = {"PSNR (dB)": "psnr", "SSIM": "ssim", "MS-SSIM": "ms_ssim",
               "−ELBO (bit/dim)": "neg_elbo_bpd", "Rasio ketajaman rekonstruksi": "sharpness_ratio",
               "Laju deteksi wajah, prior": "face_rate_prior_t1",
               "SWD prior (×10³)": "swd_mean_prior_t1",
               "Langkah sampai ambang loss": "steps_to_threshold"}
    if values:
        tables["ablasi"] = ([{"Seed": v["seed"], **{h: v[k] for h, k in columns.items()}}
                             for v in values.values()], ("Percobaan", "Kelompok"))
        names = {"residual": "ResVAE (residual)", "plain": "VAE polos", "conv": "VAE konvolusional"}
        arms = list(dict.fromkeys(v["arm"] for v in values.values()))
        table = pd.DataFrame.from_dict(values, orient="index")
        rows = []
        for key in report.STUDY_MEASURES:
            if key not in table or table[key].isna().all():  # a measure no run has: no row
                continue
            row = {}
            for arm in arms:
                x = table.loc[table.arm == arm, key].to_numpy(float)
                row[names[arm]] = [x.mean(), x.std(ddof=1)] if len(x) > 1 else [x.mean()]
            rows.append(row)
        planned = pd.read_csv(root / "study" / "runs.csv").query("group == 'arms'")
        rows.append({names[a]: [int((table.arm == a).sum()), int((planned.arm == a).sum())]
                     for a in arms})
        tables["ablasi_ringkasan"] = (rows, ("Ukuran",))
    sweep_columns = {"PSNR (dB)": "psnr", "SSIM": "ssim",
                     "Rasio ketajaman rekonstruksi": "sharpness_ratio", "KL (nats)": "kl_nats",
                     "Laju deteksi wajah, prior": "face_rate_prior_t1",
                     "SWD prior (×10³)": "swd_mean_prior_t1"}
    for group, key in (("likelihood", "likelihood"), ("beta", "beta")):
        sweep = [r for r in runs.values() if r["group"] == group]
        if not sweep:
            continue
        reference = [v for v in values.values() if v["arm"] == "residual"]
        ref_config = next(r["config"] for r in runs.values() if r["arm"] == "residual")
        rows = [(r["config"][key], 1, {h: _study_value(r["metrics"], k)
                                       for h, k in sweep_columns.items()}) for r in sweep]
        ref_values = {}
        for h, k in sweep_columns.items():
            x = np.array([v[k] for v in reference])
            ref_values[h] = [x.mean(), x.std(ddof=1)]
        rows.append((ref_config[key], len(reference), ref_values))
        if group == "beta":
            rows.sort(key=lambda r: r[0])
        tables[group] = ([{"n seed": n, **cells, **({"β": x} if group == "beta" else {})}
                          for x, n, cells in rows], ("Likelihood",) if group == "likelihood" else ())
    if (main / "metrics.json").is_file():
        m = _json(main / "metrics.json")

        def at(path):
            value = m
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value

        def times(path, factor, plus=0.0):
            value = at(path)
            return None if value is None else value * factor + plus

        rows = "face_space.rows"
        bounds_values = [
            (times("baselines.pca_128.psnr.mean", 1, 1.0), at("reconstruction.psnr.mean")),
            (at("baselines.pca_256.psnr.mean"), at("reconstruction.psnr.mean")),
            (6.3, at("reconstruction.bits_per_dim.mean")),
            (times(f"{rows}.real_test.detection_rate", 0.97),
             at(f"{rows}.two_stage_t1.detection_rate")),
            (at(f"{rows}.blur_1px.frechet"), at(f"{rows}.two_stage_t1.frechet")),
            (times(f"{rows}.reconstructions.precision", 0.9), at(f"{rows}.two_stage_t1.precision")),
            (times(f"{rows}.reconstructions.recall", 0.9), at(f"{rows}.two_stage_t1.recall")),
            (at(f"{rows}.real_test.nn_train_median"), at(f"{rows}.two_stage_t1.nn_train_median"))]
        tables["target"] = ([{"Batas": b, "Terukur": v} if b is not None and v is not None
                             else {"Batas": None, "Terukur": None} for b, v in bounds_values],
                            ("Ukuran", "Target", "Tercapai"))
    sweep = sorted((_json(path.parent / "config.json")["sigma_min"], _json(path))
                   for path in (root / "sweep").glob("*/metrics.json"))
    if sweep:
        def sampler(m, key, measure):
            realism = m["samples"].get(key, {}).get("realism", {})
            return realism.get("face_rate") if measure == "face" else realism["swd"]["swd_16"]

        tables["model_bawaan"] = ([{
            "KL (nats)": m["reconstruction"]["kl_nats"]["mean"],
            "PSNR (dB)": m["reconstruction"]["psnr"]["mean"],
            "SSIM": m["reconstruction"]["ssim"]["mean"],
            "Wajah, *prior* T = 1": sampler(m, "prior_t1", "face"),
            "Wajah, *prior* T = 0.7": sampler(m, "prior_t0.7", "face"),
            "SWD 16 px, *prior*": sampler(m, "prior_t1", "swd"),
            "MS-SSIM, *prior*": m["samples"]["prior_t1"]["diversity"]["ms_ssim_fake"],
            **({"Wajah, dua tahap": sampler(m, "two_stage_t1", "face"),
                "SWD 16 px, dua tahap": sampler(m, "two_stage_t1", "swd")}
               if "two_stage_t1" in m["samples"] else {}),
            "Wajah, GMM": sampler(m, "gmm_t1", "face"), "SWD 16 px, GMM": sampler(m, "gmm_t1", "swd"),
        } for _, m in sweep], ("Lantai σ",))
    return tables


def _study_value(metrics: dict, key: str) -> float:
    if key.startswith(("face_rate", "swd_mean")):
        kind, sampler = ("face_rate", key[10:]) if key.startswith("face_rate") else ("swd", key[9:])
        realism = metrics["samples"][sampler]["realism"]
        return realism["face_rate"] if kind == "face_rate" else realism["swd"]["swd_mean"]
    if key == "sharpness_ratio":
        return metrics["reconstruction"]["sharpness_ratio"]
    return metrics["reconstruction"]["kl_nats" if key == "kl_nats" else key]["mean"]


def check_all_tables(text: str, root: Path) -> set:
    expected = expected_tables(root)
    for name, (rows, free) in expected.items():
        check_table(text, name, rows, free)
    return set(expected)


# -- the tests --------------------------------------------------------------------------------


def test_every_table_number_equals_the_results_files(built):
    text, results, _ = built
    checked = check_all_tables(text, results)
    tables = {m["name"] for m in report.REGION.finditer(text) if m["kind"] == "TABLE"}
    # arsitektur and diagram: the Keras model, below; status, the planned study's tables
    # (uji_primer, klaim, sekunder) and the faithful default's (pembanding, tuas, ruang_wajah):
    # their own tests
    assert checked == tables - {"arsitektur", "diagram", "status", "uji_primer", "klaim",
                                "sekunder", "pembanding", "tuas", "ruang_wajah"}


def test_baseline_lever_and_face_space_tables_show_their_files(tmp_path):
    main = tmp_path / "celeba-subset"
    main.mkdir()
    pca = {"n_components": 8, "psnr": {"mean": 21.5, "std": 1.0}, "ssim": {"mean": 0.6, "std": 0.1},
           "ppca_bits_per_dim": 6.4}
    rows = {"real_test": {"n": 10, "frechet": 0.02, "precision": 0.9, "recall": 0.8},
            "two_stage_t1": {"n": 10, "frechet": 0.1, "precision": 0.95, "recall": 0.06}}
    (main / "metrics.json").write_text(json.dumps({
        "model": {"latent_dim": 16},
        "reconstruction": {"psnr": {"mean": 22.25, "std": 1.5}, "ssim": {"mean": 0.7, "std": 0.1},
                           "bits_per_dim": {"mean": 6.5}},
        "baselines": {"pca_8": pca}, "face_space": {"rows": rows}}))
    (tmp_path / "levers").mkdir()
    pd.DataFrame({"lever": ["base", "latent_256", "cosine"], "what": ["b", "l", "c"],
                  "val_psnr_db": [18.0, 19.0, 17.0], "val_neg_elbo_bpd": [7.0, 6.9, 7.1],
                  "val_kl_nats": [300.0, 400.0, 250.0], "decoder_sigma": [0.1, 0.1, 0.1],
                  "epochs": [2, 2, 2], "train_s": [500.0, 510.0, 520.0]}
                 ).to_csv(tmp_path / "levers" / "levers.csv", index=False)
    results = report.Results(tmp_path)
    _, body = parse_table(report.table_pembanding(results))
    assert [row[1] for row in body] == ["22.25", "21.50"]  # the model, then PCA k = 8
    assert body[1][0] == "PCA, k = 8" and body[1][-1] == "6.4000"
    _, body = parse_table(report.table_tuas(results))
    assert [row[-1] for row in body] == ["acuan", "ya", "tidak"]  # kept: PSNR above the base's
    _, body = parse_table(report.table_ruang_wajah(results))
    assert [row[0] for row in body] == ["wajah uji nyata (lantai)", "VAE dua tahap, T = 1"]
    assert body[1][2] == "0.100"


def test_the_missing_study_runs_are_counted_not_invented(built):
    text, _, _ = built
    regions = region_bodies(text)
    assert "conv_s2" not in regions["ablasi"] and "conv_s1" in regions["ablasi"]
    assert "Bernoulli" not in regions["likelihood"]
    _, rows = parse_table(regions["status"])
    status = dict(rows)
    assert status["studi: VAE konvolusional"] == "2 dari 3"
    assert status["studi: beta_2"] == "0 dari 1"
    assert status["studi: likelihood_bernoulli"] == "0 dari 1"


def test_prose_numbers_are_the_values_of_the_results_files(built):
    text, results, _ = built
    regions = region_bodies(text)
    m = _json(results / "celeba-subset" / "metrics.json")
    known = report.values(report.Results(results))
    assert_shows(known["psnr"], m["reconstruction"]["psnr"]["mean"], "psnr")
    assert_shows(known["swd_gmm_t1"], m["samples"]["gmm_t1"]["realism"]["swd"]["swd_mean"], "swd")
    assert_shows(known["auroc_kompleksitas_noise"],
                 m["anomaly"]["results"]["noise"]["complexity_corrected"]["auroc"], "auroc")
    h = pd.read_csv(results / "celeba-subset" / "history.csv").drop_duplicates("epoch", keep="last")
    assert known["epoch"] == str(len(h))
    assert_shows(known["kl_min"], h["val_kl_loss"].iloc[1:].min(), "kl_min")
    assert f"PSNR {known['psnr']} dB" in regions["abstrak_hasil"]
    assert f"PSNR {known['psnr']} dB" in regions["kesimpulan"]
    assert "wajah_prior_t1" not in known  # the fixture's main run has no face rate
    assert f"{report.MISSING}" in regions["kesimpulan"]
    # the fixture has runs of the first study only: the planned study's verdicts wait for its runs
    prose = " ".join(regions["ablasi_teks"].split())
    assert "0 dari 27 percobaan" in prose
    assert f"(a) rekonstruksi lebih akurat: {report.MISSING}" in prose
    assert "{{" not in "".join(regions.values())


def test_every_prose_number_is_a_value_or_typed_in_the_template(built):
    text, results, _ = built
    known = report.values(report.Results(results))
    allowed = {n for v in known.values() for n in numbers_in(v)}
    texts = [m for m in report.REGION.finditer(text) if m["kind"] == "TEXT"]
    assert texts
    for m in texts:
        typed = set(numbers_in(report.PLACEHOLDER.sub(" ", m["template"])))
        for n in numbers_in(m["body"]):
            assert n in allowed or n in typed, f"{m['name']}: {n} is neither a value nor typed"


def test_a_placeholder_values_does_not_know_fails_the_build(tmp_path):
    results = report.Results(tmp_path)
    template = "<!-- BEGIN TEXT: x\nPSNR {{pnsr}} dB\n-->\n<!-- END TEXT: x -->\n"
    with pytest.raises(KeyError, match="pnsr"):
        report.fill_regions(template, results, tmp_path)
    with pytest.raises(ValueError, match="outside a TEXT marker"):
        report.fill_regions("PSNR {{psnr}} dB\n", results, tmp_path)
    filled = report.fill_regions(template.replace("pnsr", "psnr"), results, tmp_path)
    assert f"PSNR {report.MISSING} dB" in filled and "PSNR {{psnr}} dB" in filled


def test_planned_study_tables_are_the_rows_of_plan_verdicts(tmp_path):
    from test_study import write_plan_runs

    results = report.Results(tmp_path)
    write_plan_runs(results.root / "faithful")
    verdicts = results.planned.verdicts
    _, rows = parse_table(report.table_klaim(results))
    assert [row[-1] for row in rows] == [report.VERDICT_WORDS[v] for v in verdicts["verdict"]]
    assert {row[-1] for row in rows} == {report.VERDICT_WORDS[v] for v in plan.VERDICTS}
    _, rows = parse_table(report.table_uji_primer(results))
    assert len(rows) == 8 and rows[0][3] == "6/6 (6)" and rows[0][7] == "0.002"  # 2/924
    assert rows[-1][5] != report.DASH and rows[0][5] == report.DASH  # timing: claim d only
    _, rows = parse_table(report.table_sekunder(results))
    assert len(rows) == len(results.planned.secondary) and "p" not in rows[0]
    record = report._prose_record(results)["study"]
    assert (record["finished"], record["planned"]) == (18, 27)  # no learning-rate run here
    assert record["claims"]["b_plain"] == "equivalent"


def test_planned_study_tables_wait_for_runs(tmp_path):
    results = report.Results(tmp_path)
    assert report.table_uji_primer(results) is None and report.table_klaim(results) is None
    assert report.values(results)["n_run_rencana"] == "27"


def test_missing_results_give_one_honest_line_each(tmp_path):
    copy = tmp_path / "laporan.md"
    shutil.copy(LAPORAN, copy)
    report.build_report(results_root=tmp_path / "nothing", report_path=copy,
                        figures_dir=tmp_path / "figures")
    regions = region_bodies(copy.read_text())
    needs_no_results = ("arsitektur", "diagram", "status", "laporan_norma_interpolasi")
    texts = {m["name"] for m in report.REGION.finditer(copy.read_text()) if m["kind"] == "TEXT"}
    for name, body in regions.items():
        if name in needs_no_results:
            continue
        if name in texts:
            assert report.MISSING in body, name
            continue
        assert "belum tersedia" in body or "memerlukan sekurang-kurangnya" in body, name
        if True:
            assert "|" not in body and "![" not in body, f"{name} shows a table or figure"
    drawn = [p.name for p in (tmp_path / "figures").glob("*.png")]
    assert drawn == ["laporan_norma_interpolasi.png"]  # the only figure that needs no results


def test_architecture_table_matches_the_keras_model(tmp_path):
    from resvae_keras.config import get_profile
    from resvae_keras.model import build_model

    # without a main run's config.json, the celeba-subset profile's architecture
    model = build_model(get_profile("celeba-subset"))
    text = report.fill_regions(LAPORAN.read_text(), report.Results(tmp_path), tmp_path)
    header, rows = parse_table(region_bodies(text)["arsitektur"])
    layers = [layer for net in (model.encoder, model.decoder) for layer in net.layers]
    assert len(rows) == len(layers) + 5
    for row, layer in zip(rows, layers, strict=False):
        assert row[1].strip("`") == layer.name
        assert_shows(row[3], list(layer.output.shape[1:]), layer.name)
        assert_shows(row[4], layer.count_params(), layer.name)
    plain = build_model(get_profile("celeba-subset", residual=False))
    totals = [model.encoder.count_params(), model.decoder.count_params(), model.count_params(),
              sum(int(np.prod(w.shape)) for w in model.trainable_weights), plain.count_params()]
    for row, total in zip(rows[-5:], totals, strict=True):
        assert_shows(row[4], total, row[1])
    assert totals[2] == totals[0] + totals[1] + 2  # log sigma and beta


def test_figures_are_drawn_and_every_reference_resolves(built):
    text, _, figures = built
    drawn = {p.name for p in figures.glob("*.png")}
    assert drawn == {f"{name}.png" for name in report.FIGURES}
    referenced = set(figure_references(text))
    assert drawn <= referenced
    for name in referenced - drawn:  # the notebooks' own figures, drawn with Indonesian words
        assert "/" not in name and name[:3] in ("01_", "02_", "03_", "04_", "05_", "06_", "07_"), name


def test_table_figure_and_section_references_exist(built):
    text, _, _ = built
    captions = set(re.findall(r"\*\*Tabel (\d+\.\d+)\.\*\*", text))
    figures = set(re.findall(r"Gambar (\d+\.\d+)\. ", text))
    sections = set(re.findall(r"^### (\d+\.\d+) ", text, re.M))
    for kind, known in (("Tabel", captions), ("Gambar", figures), ("Subbab", sections)):
        for ref in set(re.findall(rf"{kind} (\d+\.\d+)", text)):
            assert ref in known, f"{kind} {ref} is referenced but has no caption or heading"
    numbers = [tuple(map(int, n.split("."))) for n in re.findall(r"\*\*Tabel (\d+\.\d+)\.\*\*", text)]
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))


def test_every_region_has_a_generator_and_every_generator_a_region():
    names = {m["name"] for m in report.REGION.finditer(LAPORAN.read_text())
             if m["kind"] == "TABLE"}
    assert names == set(report.REGIONS)
    figures = {m["name"] for m in report.REGION.finditer(LAPORAN.read_text())
               if m["kind"] == "FIGURE"}
    assert figures == set(report.FIGURES) == set(report.WORDS["figures"])


def test_every_word_of_the_tables_is_read_from_laporan_toml():
    """report.py writes no Indonesian of its own: a changed label in laporan.toml shows."""
    words = report.WORDS
    before = report.table_hiperparameter(report.Results(REAL_RESULTS))
    label = words["tables"]["hiperparameter"]["rows"][0][1]
    try:
        words["tables"]["hiperparameter"]["rows"][0][1] = "LABEL-UJI"
        after = report.table_hiperparameter(report.Results(REAL_RESULTS))
    finally:
        words["tables"]["hiperparameter"]["rows"][0][1] = label
    assert label in before and "LABEL-UJI" not in before
    assert "LABEL-UJI" in after and label not in after
    source = (ROOT / "resvae_keras" / "report.py").read_text()
    for word in ("citra", "percobaan", "belum", "dengan", "kelompok", "wajah", "uji"):
        assert not re.search(rf"\b{word}\b", source), word


def test_unknown_region_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="TABLE: tabel_salah has no generator"):
        report.fill_regions("<!-- BEGIN TABLE: tabel_salah -->\n<!-- END TABLE: tabel_salah -->",
                            report.Results(tmp_path), tmp_path)


def test_build_report_returns_only_what_changed(built, tmp_path):
    _, results, figures = built
    copy, redrawn = tmp_path / "laporan.md", tmp_path / "f" / "laporan_auroc.png"
    shutil.copy(LAPORAN, copy)
    shutil.copytree(figures, tmp_path / "f")
    redrawn.unlink()  # the one figure whose bytes change; the others are drawn the same
    kwargs = dict(results_root=results, report_path=copy, figures_dir=tmp_path / "f")
    assert report.build_report(**kwargs) == [redrawn, copy]
    assert report.build_report(**kwargs, figures=False) == []


# -- the committed report and results ------------------------------------------------------

needs_results = pytest.mark.skipif(
    not (REAL_RESULTS / "study").is_dir() and not (REAL_RESULTS / "celeba-subset").is_dir(),
    reason="no committed results in report/results yet")


@needs_results
def test_real_results_tables_match_their_files(tmp_path):
    copy = tmp_path / "laporan.md"
    shutil.copy(LAPORAN, copy)
    report.build_report(results_root=REAL_RESULTS, report_path=copy, figures=False,
                        figures_dir=ROOT / "figures")
    checked = check_all_tables(copy.read_text(), REAL_RESULTS)
    assert checked, "report/results exists but no table was checked"


@needs_results
def test_committed_report_is_up_to_date_with_the_results():
    text = LAPORAN.read_text()
    fresh = report.fill_regions(text, report.Results(REAL_RESULTS), ROOT / "figures")
    assert fresh == text, "report/laporan.md is stale: run `make report` and commit the result"
    readme = (ROOT / "README.md").read_text()
    fresh = report.fill_regions(readme, report.Results(REAL_RESULTS), ROOT / "figures",
                                "not measured yet")
    assert fresh == readme, "README.md's findings are stale: run `make report`"


def test_every_figure_the_report_references_exists():
    missing = [name for name in figure_references(LAPORAN.read_text())
               if not (ROOT / "figures" / name).is_file()]
    assert not missing, f"figures/ lacks {missing}: run `make figures` / `make report`"


def test_number_parser_reads_what_the_formatters_write():
    assert numbers_in(report.integer(1542464)) == ["1\u00a0542\u00a0464"]
    assert_shows(report.p_value(7.23e-6), 7.23e-6, "p")
    assert_shows(report.plus_minus(24.614, 0.0567, 2), [24.614, 0.0567], "pm")
    assert_shows(report.num(None, 2), None, "dash")
    with pytest.raises(AssertionError):
        assert_shows(report.num(24.614, 2), 24.63, "wrong")


def test_readme_findings_are_filled_from_the_same_results(built, tmp_path):
    _, results, _ = built
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- BEGIN TEXT: findings\nPSNR {{psnr}} dB, faces {{wajah_prior_t1}}"
                      "\n-->\n<!-- END TEXT: findings -->\n")
    copy = tmp_path / "laporan.md"
    shutil.copy(LAPORAN, copy)
    updated = report.build_report(results_root=results, report_path=copy, figures=False, readme_path=readme, figures_dir=tmp_path)
    assert readme in updated
    m = _json(results / "celeba-subset" / "metrics.json")
    body = region_bodies(readme.read_text())["findings"]
    assert f"PSNR {m['reconstruction']['psnr']['mean']:.2f} dB" in body
    assert "faces not measured yet" in body


def test_sample_table_carries_the_face_rate_and_the_reference_rows(tmp_path):
    def row(sampler, temperature, face_rate, swd_16):
        swd = {"swd_64": 30.0, "swd_32": 20.0, "swd_16": swd_16}
        swd["swd_mean"] = float(np.mean(list(swd.values())))
        return {"sampler": sampler, "temperature": temperature, "n_images": 965,
                "realism": {"swd": swd, "face_rate": face_rate}}

    metrics = {
        "samples": {"prior_t1": row("prior", 1.0, 0.181, 106.0),
                    "two_stage_t1": row("two_stage", 1.0, 0.912, 21.0)},
        "sample_references": {"real_test": row("real_test", None, 0.953, 14.0),
                              "reconstructions": row("reconstructions", None, 0.93, 10.0)},
    }
    folder = tmp_path / report.MAIN_RUN
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    lines = report.table_sampel(report.Results(tmp_path)).splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["Sampler", "n", "Laju deteksi wajah", "SWD 64 px"]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert [c[0] for c in cells] == [
        "*prior* N(0, I), T = 1", "VAE dua tahap, T = 1", report.REFERENCE_NAMES["real_test"],
        report.REFERENCE_NAMES["reconstructions"]]
    assert [c[2] for c in cells] == ["0.181", "0.912", "0.953", "0.930"]
    assert [c[5] for c in cells] == ["106.0", "21.0", "14.0", "10.0"]
    del metrics["sample_references"]  # an older metrics.json: no face rate, no reference rows
    for sample in metrics["samples"].values():
        del sample["realism"]["face_rate"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    older = report.table_sampel(report.Results(tmp_path)).splitlines()
    assert "Laju deteksi wajah" not in older[0] and len(older) == 2 + 2


def test_an_optional_column_without_any_value_is_left_out():
    columns = [report.Col("a", "A", 1), report.Col("b", "B", 1, 1.0, True)]
    rows = [("x", {"a": 1.0, "b": None}), ("y", {"a": 2.0, "b": float("nan")})]
    without = report._table("sampel", rows, columns=columns, headers=["S"])
    assert without.splitlines()[0] == "| S | A |"
    rows[1] = ("y", {"a": 2.0, "b": 3.0})
    with_value = report._table("sampel", rows, columns=columns, headers=["S"])
    assert with_value.splitlines()[0] == "| S | A | B |"
    assert with_value.splitlines()[2] == "| x | 1.0 | — |"
