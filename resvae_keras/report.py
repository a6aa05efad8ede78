"""Render ``report/laporan.md`` and ``README.md`` from their Jinja2 templates and the results
(``python -m resvae_keras report``): a template's ``tables.<name>`` is a table of
``report_tables``, every other name a part of ``prose_record``; an unknown name stops the build."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path

import jinja2
import pandas as pd

from resvae_keras import metrics, plan, plots, stats, study_results
from resvae_keras import report_tables as rt
from resvae_keras.config import Config, project_root
from resvae_keras.record import history_summary, lookup
from resvae_keras.report_tables import Results, slug

# -- the numbers of the prose ---------------------------------------------------------------


def prose_record(results: Results) -> dict:
    """The results the prose quotes, by name; keys have no dots (``prior_t07``, ``s05``)."""
    config, _, counts = results.architecture
    m = results.main
    samples = {slug(k): s for k, s in {
        **(m.get("samples") or {}), **(m.get("sample_references") or {})}.items()}
    planned = results.planned
    verdicts = {f"{claim}_{baseline}": None  # None until a seed run of the plan has finished
                for claim in plan.CLAIMS for _, baseline in plan.comparisons(planned.spec)}
    if len(planned.runs):
        verdicts.update({f"{c.claim}_{c.baseline}": c.verdict
                         for c in planned.verdicts.itertuples()})
    record = {
        "arch": {**counts, "widths": "–".join(map(str, config.widths)),
                 "blocks": config.blocks_per_stage, "latent_dim": config.latent_dim},
        "main": m, "config": results.main_run["config"], "rec": m.get("reconstruction") or {},
        **{key: {**(lookup(run, "metrics.reconstruction") or {}),
                 **(lookup(run, "metrics.training") or {}), "fs": _face_space(run["metrics"])}
           for key, run in results.beside.items()},
        "samples": samples, "real": lookup(next(iter(samples.values()), {}), "diversity"),
        "fs": _face_space(m),
        "other": {path.stem.removeprefix("metrics_"): json.loads(path.read_text())["reconstruction"]
                  for path in sorted(results.main_dir.glob("metrics_*.json"))},
        "sweep": {"s" + slug(r["sigma_min"]): {slug(k): v for k, v in r.items()} | {
            "floor": rt.floor_label(r["sigma_min"])} for _, r in results.sweep.iterrows()},
        "anomalies": results.anomaly, "anomaly": m.get("anomaly"),
        "study": {"finished": planned.finished[0], "planned": planned.finished[1]},
        "verdicts": verdicts}
    for group, trend in results.trends.items():  # one run per value, the reference arm beside
        record[group] = {slug(r["x"]): r for r in trend.to_dict("records")}
    if len(history := results.main_run["history"]):
        record["history"] = history_summary(history, lookup(record, "config.beta"))
    if lookup(m, "per_attribute.rows"):
        found = metrics.significant_attributes(
            pd.DataFrame.from_dict(m["per_attribute"]["rows"], orient="index"), stats.ALPHA)
        record["attributes"] = {**found, **{k: ", ".join(f"`{a}`" for a in found[k])
                                            for k in ("worse", "better")}}
    return record


def _face_space(metrics: dict | None) -> dict:
    """A run's face-space rows by sampler (``prior_t07``)."""
    return {slug(k): v for k, v in (lookup(metrics, "face_space.rows") or {}).items()}


# -- figures: plots.py with the report's words ------------------------------------------------


def figure_kurva_loss(results: Results):
    history = results.main_run["history"]
    if not len(history):
        return None
    return plots.loss_curves(history.assign(epoch=history["epoch"] + 1), ylabel="nats per citra",
                             panel_titles={"loss": "loss total (−ELBO dengan β)",
                                           "kl_loss": "divergensi KL",
                                           "reconstruction_loss": "rekonstruksi −log p(x|z)"},
                             title="Kurva pelatihan percobaan utama (CelebA 64×64)")


def figure_validation(results: Results, line: str, minutes: bool = False, **w):
    curves, timed = study_results.arm_curves(results.runs, results.benchmark)
    if minutes:  # every arm on the time axis, or no figure
        curves = timed if len(timed) == len(curves) else {}
    if not curves:
        return None
    groups, arms = {name: rt.arm_name(results.runs[name]["arm"]) for name in curves}, results.arms
    lines = ({"vlines": {line: arms["equal_time_s"].iloc[0] / 60.0}} if minutes
             else {"hlines": {line: arms["threshold"].iloc[0]}})
    return plots.grouped_curves(curves, groups, ylabel="−ELBO validasi (β = 1, nats per citra)",
                                **lines, **w)


def figure_arm_points(results: Results, measures, **w):
    table = results.arms
    measures = [c for c in measures if c in table and table[c].notna().any()]
    if not measures:
        return None
    return plots.arm_points(table, {c: rt.measure(c)[0] for c in measures},
                            {a: rt.arm_name(a) for a in table["arm"].unique()}, **w)


def figure_beta_trend(results: Results, measures, **w):
    trend = results.trends.get("beta")
    if trend is None:
        return None
    labels = {c: rt.measure(c)[0] for c in measures if c in trend}
    return plots.trend_with_spread(trend, labels, logx=True, xlabel="β (skala log)",
                                   spread_label="±1 SD antar-seed (kelompok residual)", **w)


def figure_per_atribut(results: Results):
    top = pd.DataFrame(rt.table_per_atribut(results))
    if top.empty:
        return None
    bars = 1e3 * top.set_index("name")[["difference", "se_difference"]].astype(float)
    return plots.metric_bars(bars, value="difference", error="se_difference", xlabel="atribut",
                             ylabel="selisih MSE ×10³ (dengan − tanpa)",
                             title="Atribut dan galat rekonstruksi (± galat baku)")


def figure_auroc(results: Results):
    if not results.anomaly:
        return None
    auroc = pd.Series({label: lookup(v, "neg_elbo.auroc") for label, v in results.anomaly.items()},
                      dtype=float, name="AUROC")
    return plots.metric_bars(auroc, hlines={"tebakan acak (0.5)": 0.5}, limits=(0, 1.05),
                             xlabel="jenis anomali", ylabel="AUROC skor −ELBO",
                             title="Deteksi anomali dengan −ELBO")


def figure_norma_interpolasi(results: Results):
    from resvae_keras import latent

    d = int((results.main_run["config"] or {}).get("latent_dim") or Config().latent_dim)
    z0, z1 = latent.prior_samples(200, d, seed=1), latent.prior_samples(200, d, seed=2)
    path = latent.norm_along_path(z0, z1, steps=21)
    return plots.norm_plot(path, d, ylabel="norma ‖z‖ (rata-rata 200 pasang)",
                           hline_labels=["√d: norma khas sampel N(0, I)", "√(d/2)"],
                           title=f"Norma z sepanjang lintasan antara dua sampel prior (d = {d})")


def figure_model_bawaan(results: Results):
    sweep = results.sweep
    if not len(sweep):
        return None
    measures = {"psnr": "distorsi: PSNR uji (dB)", "face_rate_prior_t1": "laju wajah, prior T = 1",
                "swd_16_prior_t1": "SWD 16 px ×10³, prior",
                "face_rate_two_stage_t1": "laju wajah, dua tahap"}
    return plots.tradeoff(sweep.set_index(sweep["sigma_min"].map(rt.floor_label)), "kl_nats",
                          {c: label for c, label in measures.items() if c in sweep},
                          xlabel="laju: KL (nats per citra)", title="Laju, distorsi dan realisme "
                          "per lantai σ (satu percobaan per titik)")


FIGURES = {  # figures/<name>.png -> its function of the results; None while they are missing
    "laporan_kurva_loss": figure_kurva_loss,
    "laporan_val_loss_epoch": partial(
        figure_validation, xlabel="langkah optimasi", line="ambang loss",
        title="−ELBO validasi per langkah, setiap seed setiap kelompok"),
    "laporan_val_loss_waktu": partial(
        figure_validation, minutes=True, line="waktu yang sama",
        xlabel="waktu latih terukur (menit, biaya per langkah dari satu benchmark)",
        title="−ELBO validasi terhadap waktu"),
    "laporan_ablasi_psnr": partial(
        figure_arm_points, measures=["psnr", "ssim", "sharpness_ratio"],
        title="Rekonstruksi per kelompok: setiap seed dan rata-rata dengan IK 95%"),
    "laporan_ablasi_swd": partial(
        figure_arm_points, measures=[f"{kind}_{sampler}_t1" for sampler in (
            "prior", "two_stage", "gmm") for kind in ("face_rate", "swd_mean")],
        title="Sampel per kelompok: setiap seed dan rata-rata dengan IK 95%"),
    "laporan_ablasi_waktu": partial(
        figure_arm_points, title="Kecepatan pelatihan per kelompok", measures=[
            "steps_to_threshold", "seconds_to_threshold", "val_neg_elbo_at_equal_time"]),
    "laporan_rate_distorsi": partial(
        figure_beta_trend, measures=["kl_nats", "psnr"],
        title="Laju (KL) dan distorsi (PSNR) terhadap β, satu seed per titik"),
    "laporan_swd_beta": partial(
        figure_beta_trend, measures=["swd_mean_prior_t1", "face_rate_prior_t1"],
        title="Realisme sampel prior terhadap β, satu seed per titik"),
    "laporan_model_bawaan": figure_model_bawaan,
    "laporan_per_atribut": figure_per_atribut,
    "laporan_auroc": figure_auroc,
    "laporan_norma_interpolasi": figure_norma_interpolasi,
}


def _write_if_changed(path: Path, content: bytes) -> bool:
    if path.is_file() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return True


def draw_figures(results: Results, figures_dir: Path) -> list[Path]:
    """Draw ``FIGURES`` into ``figures_dir/<name>.png``; returns the paths that changed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    updated = []
    for name, draw in FIGURES.items():
        fig = draw(results)
        if fig is None:
            continue
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=plots.DPI, bbox_inches="tight",
                    metadata={"Software": None})
        plt.close(fig)
        if _write_if_changed(figures_dir / f"{name}.png", buffer.getvalue()):
            updated.append(figures_dir / f"{name}.png")
    return updated


# -- rendering ------------------------------------------------------------------------------


def _strict(format_value):
    """``format_value`` as a filter that raises the UndefinedError of a name the results lack."""
    def apply(value, *args):
        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises here, naming what is missing
        return format_value(value, *args)

    return apply


def _present(value):
    if value is None:  # a table or a value the template quotes without its fallback
        raise ValueError("the template shows None: give a missing result its fallback, "
                         "`... or belum(...)`")
    return value


def context(results: Results, figures_dir: Path) -> dict:
    """What a template may name: ``prose_record``, the tables and the figures drawn."""
    return {**prose_record(results), "verdict_words": rt.VERDICT_WORDS,
            "tables": {name: table(results) for name, table in rt.TABLE_FUNCTIONS.items()},
            "figures": {path.stem for path in figures_dir.glob("*.png")}}


def render(template: Path, values: dict) -> str:
    """The Jinja2 ``template`` rendered with ``values`` (a ``context``)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template.parent),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, autoescape=False, finalize=_present)
    env.filters.update(num=_strict(rt.num), integer=_strict(rt.integer), pct=_strict(rt.percent),
                       p=_strict(rt.p_value), interval=_strict(rt.interval), setting=rt.setting)
    env.tests["finite"] = rt.finite
    try:
        return env.get_template(template.name).render(values)
    except jinja2.UndefinedError as error:
        raise ValueError(f"{template.name}: {error.message}; a typo in the template, or a "
                         "result report/results/ lacks (see report/README.md)") from error


def build_report(results_root: Path | str | None = None, root: Path | str | None = None,
                 figures: bool = True) -> list[Path]:
    """Redraw the figures, render ``report/laporan.md`` and ``README.md`` under ``root`` (default
    the checkout) from ``results_root``; returns the paths whose contents changed."""
    root = Path(root or project_root())
    results = Results(results_root)
    updated = draw_figures(results, root / "figures") if figures else []
    values = context(results, root / "figures")  # built once, for both templates
    for path in (root / "report" / "laporan.md", root / "README.md"):
        text = render(path.with_name(path.name + ".j2"), values)
        if _write_if_changed(path, text.encode()):
            updated.append(path)
    return updated
