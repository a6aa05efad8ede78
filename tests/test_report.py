"""The report: laporan.md and README.md are their templates rendered with the committed results.

Golden values are read from the results files with json directly; the tables themselves are
checked for presence and a few cells, not re-implemented here.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from resvae_keras import report, report_tables

ROOT = Path(__file__).resolve().parents[1]
LAPORAN, README = ROOT / "report" / "laporan.md", ROOT / "README.md"
TEMPLATE = ROOT / "report" / "laporan.md.j2"
RESULTS, FIGURES = ROOT / "report" / "results", ROOT / "figures"
METRICS = RESULTS / "celeba-subset" / "metrics.json"


@pytest.fixture(scope="module")
def results():
    return report_tables.Results(RESULTS)


@pytest.fixture(scope="module")
def values(results):
    return report.context(results, FIGURES)


@pytest.fixture(scope="module")
def rendered(values):
    return report.render(TEMPLATE, values)


def rows_of(table: str) -> list[list[str]]:
    """The body rows of a pipe table, as cell texts."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in table.splitlines()[2:]]


def test_committed_report_is_up_to_date_with_the_results(rendered, values):
    assert rendered == LAPORAN.read_text(), "report/laporan.md is stale: run `make report`"
    readme = report.render(ROOT / "README.md.j2", values)
    assert readme == README.read_text(), "README.md is stale: run `make report`"


def test_golden_numbers_are_the_results_files(rendered):
    m = json.loads(METRICS.read_text())
    rec = m["reconstruction"]
    psnr, ssim, ms_ssim = (rec[k]["mean"] for k in ("psnr", "ssim", "ms_ssim"))
    assert f"PSNR {psnr:.2f} dB, SSIM {ssim:.3f} dan MS-SSIM {ms_ssim:.3f}" in rendered
    assert f"| PSNR (dB) | {psnr:.2f} | {rec['psnr']['std']:.2f} |" in rendered
    counts = m["data"]["split_counts"]
    share = 100 * counts["train"] / sum(counts.values())
    assert f"| latih (train) | {counts['train']:,} | {share:.1f} |".replace(",", "\u00a0") in rendered
    pca = m["baselines"]["pca_128"]["psnr"]["mean"]
    assert f"PCA, k = 128 | {pca:.2f} |" in rendered
    met = "ya" if psnr >= pca + 1 else "tidak"
    assert f"| ≥ PSNR PCA-128 + 1 dB | {pca + 1:.2f} | {psnr:.2f} | {met} |" in rendered
    assert f"| Unit aktif (variansi E[z_j \\| x] > 0.01) | {m['latent']['active_units']} |" in rendered
    two_stage = m["face_space"]["rows"]["two_stage_t1"]
    assert f"{100 * two_stage['detection_rate']:.1f} %" in README.read_text()


def test_every_table_and_figure_is_in_the_report(rendered, results):
    used = set(re.findall(r"\btables\.(\w+)", TEMPLATE.read_text()))
    assert used == set(report_tables.TABLE_FUNCTIONS), "a table function the template lacks"
    for name, table in report_tables.TABLE_FUNCTIONS.items():
        body = table(results)
        assert not isinstance(body, str) or body in rendered, f"table {name} is not in laporan.md"
    # one honest line each for Tabel 4.13-4.15: the planned study has no seed run yet
    assert rendered.count("*Hasil ini belum tersedia:") == 3
    shown = set(re.findall(r"!\[[^\]]*\]\(\.\./figures/([^)\s]+)\.png\)", rendered))
    assert set(report.FIGURES) <= shown
    assert all((FIGURES / f"{name}.png").is_file() for name in shown)


def test_table_figure_and_section_references_exist(rendered):
    captions = re.findall(r"\*\*Tabel (\d+\.\d+)\.\*\*", rendered)
    known = {"Tabel": set(captions), "Gambar": set(re.findall(r"Gambar (\d+\.\d+)\. ", rendered)),
             "Subbab": set(re.findall(r"^### (\d+\.\d+) ", rendered, re.M))}
    for kind, labels in known.items():
        for ref in set(re.findall(rf"{kind} (\d+\.\d+)", rendered)):
            assert ref in labels, f"{kind} {ref} is referenced but has no caption or heading"
    numbers = [tuple(map(int, n.split("."))) for n in captions]
    assert numbers == sorted(numbers) and len(numbers) == len(set(numbers))


@pytest.mark.parametrize("line, error", [
    ("{{ rec.psnr.meen | num(2) }}", "meen"),  # a typo in a result's name
    ("{{ tables.tabel_salah }}", "tabel_salah"),  # a table that does not exist
    ("{{ verdicts.a_plain }}", "shows None"),  # a missing result without its fallback
])
def test_a_typo_or_a_missing_fallback_stops_the_build(values, tmp_path, line, error):
    template = tmp_path / "t.md.j2"
    template.write_text(f"PSNR {{{{ rec.psnr.mean | num(2) }}}}\n{line}\n")
    with pytest.raises(ValueError, match=error):
        report.render(template, values)


def test_formatters():
    assert report_tables.integer(1542464) == "1\u00a0542\u00a0464"
    assert report_tables.num(None, 2) == report_tables.num(float("nan"), 2) == report_tables.DASH
    assert report_tables.plus_minus(24.614, 0.0567, 2) == "24.61 ± 0.06"
    assert report_tables.p_value(7.23e-6) == "7.2e-06" and report_tables.p_value(0.0123) == "0.012"
    assert report_tables.slug("prior_t0.7") == "prior_t07" and report_tables.slug(0.25) == "025"
    assert report_tables.interval(1.234, 0.5, 2.0, 1) == "1.2 [0.5, 2.0]"
    assert report_tables.interval(1.234, None, 2.0, 1) == "1.2"
    assert report_tables.setting({"widths": [32, 64]}, "widths") == "32–64"
    assert report_tables.setting({"optimizer": "adamw"}, "optimizer") == "AdamW"
    assert report_tables.setting(None, "beta") == report_tables.DASH


def table_below(rendered: str, caption: str) -> list[list[str]]:
    """The body rows of the table under ``**Tabel <caption>.**``."""
    return rows_of(rendered.split(f"**Tabel {caption}.**", 1)[1].split("\n\n")[1])


def test_planned_study_tables_are_the_rows_of_plan_verdicts(tmp_path):
    from test_study import write_plan_runs

    shutil.copytree(RESULTS, tmp_path, dirs_exist_ok=True)
    assert report_tables.table_uji_primer(report_tables.Results(tmp_path)) == []  # no seed run yet
    results = report_tables.Results(tmp_path)
    write_plan_runs(results.root / "faithful")
    verdicts = results.planned.verdicts
    rendered = report.render(TEMPLATE, report.context(results, FIGURES))
    rows = table_below(rendered, "4.14")
    words = report_tables.VERDICT_WORDS
    assert [row[-1] for row in rows] == [words[v] for v in verdicts["verdict"]]
    rows = table_below(rendered, "4.13")
    assert len(rows) == 8 and rows[0][3] == "6/6 (6)" and rows[0][7] == "0.002"  # 2/924
    dash = report_tables.DASH
    assert rows[-1][5] != dash and rows[0][5] == dash  # timing: claim d only
    assert len(table_below(rendered, "4.15")) == len(results.planned.secondary)
    assert rendered.count("*Hasil ini belum tersedia:") == 0
    record = report.prose_record(results)
    assert (record["study"]["finished"], record["study"]["planned"]) == (18, 27)
    assert record["verdicts"]["b_plain"] == "equivalent"


def test_architecture_table_matches_the_keras_model(tmp_path):
    from resvae_keras.config import get_profile
    from resvae_keras.model import build_model

    # without a main run's config.json, the celeba-subset profile's architecture
    model = build_model(get_profile("celeba-subset"))
    results = report_tables.Results(tmp_path)
    rows = report_tables.table_arsitektur(results)
    layers = [layer for net in (model.encoder, model.decoder) for layer in net.layers]
    assert len(rows) == len(layers)
    for row, layer in zip(rows, layers, strict=True):
        assert row["name"] == layer.name, row
        assert row["shape"] == "×".join(map(str, layer.output.shape[1:])), row
        assert row["params"] == layer.count_params(), row
    plain = build_model(get_profile("celeba-subset", residual=False))
    totals = [model.encoder.count_params(), model.decoder.count_params(), model.count_params(),
              sum(int(np.prod(w.shape)) for w in model.trainable_weights), plain.count_params()]
    arch = report.prose_record(results)["arch"]
    assert [arch[k] for k in ("encoder", "decoder", "total", "trainable", "plain_total")] == totals


def test_build_report_writes_only_what_changed(tmp_path):
    for name in ("report/laporan.md.j2", "README.md.j2"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "figures").mkdir()
    written = [tmp_path / "report" / "laporan.md", tmp_path / "README.md"]
    assert report.build_report(RESULTS, root=tmp_path, figures=False) == written
    assert report.build_report(RESULTS, root=tmp_path, figures=False) == []
    assert "*Hasil ini belum tersedia: `figures/laporan_auroc.png`" in written[0].read_text()
