import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from resvae_keras import plots  # noqa: E402

RNG = np.random.default_rng(0)
FACES = RNG.uniform(size=(6, 8, 8, 3)).astype(np.float32)


@pytest.fixture(autouse=True)
def project(tmp_path, monkeypatch):
    """A throw-away project root, so figures land in tmp_path/figures."""
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "resvae_keras").mkdir()
    monkeypatch.setenv("RESVAE_HOME", str(tmp_path))
    yield tmp_path
    plt.close("all")


def _history():
    epochs = np.arange(1, 5)
    return pd.DataFrame(
        {
            "loss": 100 / epochs,
            "reconstruction_loss": 90 / epochs,
            "kl_loss": 10 + epochs,
            "val_loss": 110 / epochs,
            "val_reconstruction_loss": 99 / epochs,
            "val_kl_loss": 11 + epochs,
        }
    )


FIGURES = {
    "image_grid": lambda: plots.image_grid(FACES),
    "image_grid_rows": lambda: plots.image_grid(
        FACES.reshape(2, 3, 8, 8, 3), row_labels=["a", "b"], col_labels=["1", "2", "3"]
    ),
    "loss_curves": lambda: plots.loss_curves(_history()),
    "metric_bars": lambda: plots.metric_bars(
        pd.DataFrame({"fid": [40.0, 55.0], "error": [1.0, 2.0]}, index=["gmm", "prior"])
    ),
    "metric_bars_series": lambda: plots.metric_bars(pd.Series({"a": 1.0, "b": 2.0}, name="psnr")),
    "metric_bars_horizontal": lambda: plots.metric_bars(
        pd.Series({"Smiling": 48.0, "Eyeglasses": 6.5}, name="share"), xlabel="attribute",
        ylabel="images (%)", hlines={"half": 50.0}, limits=(0, 100), horizontal=True,
    ),
    "interpolation_strips": lambda: plots.interpolation_strips(
        FACES.reshape(2, 3, 8, 8, 3), row_labels=["pair 1", "pair 2"]
    ),
    "attribute_grid": lambda: plots.attribute_grid(
        FACES.reshape(2, 3, 8, 8, 3), strengths=[-1, 0, 1], attribute="Smiling"
    ),
    "latent_scatter_bool": lambda: plots.latent_scatter(
        RNG.normal(size=(50, 2)), RNG.uniform(size=50) < 0.5, "Eyeglasses", [0.3, 0.2]
    ),
    "latent_scatter_categories": lambda: plots.latent_scatter(
        RNG.normal(size=(50, 2)), np.array(["train", "val"] * 25), "split"
    ),
    "score_histograms": lambda: plots.score_histograms(
        {"normal": RNG.normal(size=100), "anomalous": RNG.normal(2, size=100)}
    ),
    "roc_curves": lambda: plots.roc_curves(
        {"VAE": (np.array([0, 0.2, 1]), np.array([0, 0.7, 1]), 0.75)}
    ),
    "line_plot": lambda: plots.line_plot(
        [1, 2, 3],
        {"beta 1": [3, 2, 1], "beta 4": [2, 1.5, 1]},
        xlabel="wall-clock (s)",
        ylabel="loss",
        hlines={"target": 1.5},
    ),
    "arm_points": lambda: plots.arm_points(
        pd.DataFrame({"arm": ["residual"] * 3 + ["conv"], "psnr": [20.0, 20.5, 19.8, 18.0]}),
        {"psnr": "test PSNR (dB)"}, {"residual": "ResVAE", "conv": "conv VAE"},
    ),
    "grouped_curves": lambda: plots.grouped_curves(
        {"r0": ([1, 2], [5, 3]), "r1": ([1, 2], [5, 4]), "p0": ([1, 2], [6, 5])},
        {"r0": "residual", "r1": "residual", "p0": "plain"}, "step", "loss",
        vlines={"equal time": 1.5}, hlines={"threshold": 4.0},
    ),
    "trend_with_spread": lambda: plots.trend_with_spread(
        pd.DataFrame({"x": [0.5, 1.0, 2.0], "n_seeds": [1, 3, 1], "kl": [400.0, 310.0, 200.0],
                      "kl_seed_sd": [10.0] * 3}), {"kl": "KL (nats)"}, "beta", logx=True,
    ),
    "trend_with_spread_names": lambda: plots.trend_with_spread(
        pd.DataFrame({"x": ["bernoulli", "gaussian"], "n_seeds": [1, 3], "psnr": [19.0, 20.0],
                      "psnr_seed_sd": [np.nan, np.nan]}), {"psnr": "PSNR"}, "likelihood",
    ),
    "tradeoff": lambda: plots.tradeoff(
        pd.DataFrame({"kl": [300.0, 200.0], "psnr": [20.0, 19.0], "face": [0.2, 0.6]},
                     index=["free", "floor"]), "kl", {"psnr": "PSNR", "face": "face rate"},
        "rate: KL (nats)",
    ),
    "norm_plot": lambda: plots.norm_plot(
        pd.DataFrame({"lerp": [4, 2.8, 4], "slerp": [4, 4, 4]}, index=[0, 0.5, 1]), 16
    ),
}


@pytest.mark.parametrize("kind", sorted(FIGURES))
def test_each_figure_saves_a_png_with_the_demo_label(kind, project):
    fig = FIGURES[kind]()
    assert fig.get_suptitle() == ""
    path = plots.save_figure(fig, kind, demo=True)
    assert path == project / "figures" / "demo" / f"{kind}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.get_suptitle() == "(data demo)"
    for ax in fig.axes:
        if ax.images:  # image grids label only what they are given
            continue
        assert ax.get_xlabel() and ax.get_ylabel()


def test_name_saves_and_demo_suffixes_the_title(project):
    fig = plots.loss_curves(_history(), title="Training", name="curves", demo=True)
    assert fig.get_suptitle() == "Training (data demo)"
    assert (project / "figures" / "demo" / "curves.png").is_file()
    plots.save_figure(fig, "again", demo=True)
    assert fig.get_suptitle() == "Training (data demo)"  # the label is added once


def test_without_demo_the_title_is_unchanged(project):
    fig = plots.image_grid(FACES, nrow=2, title="Samples", name="samples")
    assert fig.get_suptitle() == "Samples"
    assert (project / "figures" / "samples.png").is_file()


def test_the_words_drawn_are_indonesian_and_there_is_one_drawing(project):
    fig = plots.loss_curves(_history(), name="curves")
    assert [ax.get_title() for ax in fig.axes] == ["loss total (rekonstruksi + beta KL)",
                                                   "rekonstruksi", "divergensi KL"]
    assert [line.get_label() for line in fig.axes[0].lines] == ["latih", "validasi"]
    fig = plots.attribute_grid(FACES[:4].reshape(2, 2, 8, 8, 3), [0, 1], "Smiling", name="attr")
    assert fig.axes[0].get_xlabel() == "kekuatan vektor 'Smiling' yang ditambahkan ke z"
    assert plots.roc_curves({"x": ([0, 1], [0, 1], 0.5)}).axes[0].get_xlabel() == "laju positif palsu"
    assert sorted(p.name for p in (project / "figures").rglob("*.png")) == ["attr.png", "curves.png"]
    assert not hasattr(plots, "REPORT_COPIES")


def test_image_grid_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        plots.image_grid(np.zeros((8, 8, 3)))


def test_loss_curves_need_a_loss_column():
    with pytest.raises(ValueError, match="kl_loss"):
        plots.loss_curves(pd.DataFrame({"accuracy": [0.5]}))


def test_loss_curves_draw_train_and_validation():
    fig = plots.loss_curves(_history())
    assert len(fig.axes) == 3
    assert [line.get_label() for line in fig.axes[2].lines] == ["latih", "validasi"]


def test_every_word_drawn_is_a_parameter():
    # The report draws its figures with the same functions and the words of laporan.toml.
    fig = plots.loss_curves(
        _history(), panel_titles={"loss": "loss total"}, xlabel="epoch ke-", ylabel="nats per citra",
        series_labels=("latih", "validasi"),
    )
    assert fig.axes[0].get_title() == "loss total" and fig.axes[0].get_xlabel() == "epoch ke-"
    assert [line.get_label() for line in fig.axes[0].lines] == ["latih", "validasi"]
    assert all(ax.get_ylabel() == "nats per citra" for ax in fig.axes)
    fig = plots.roc_curves({"derau": (np.array([0, 1]), np.array([0, 1]), 0.5)},
                           xlabel="FPR", ylabel="TPR", chance_label="tebakan acak")
    assert "tebakan acak" in [line.get_label() for line in fig.axes[0].lines]
    norms = pd.DataFrame({"lerp": [4, 2.8, 4]}, index=[0, 0.5, 1])
    fig = plots.norm_plot(norms, 16, xlabel="t", ylabel="norma", hline_labels=("khas", "separuh"))
    assert [line.get_label() for line in fig.axes[0].lines] == ["lerp", "khas", "separuh"]
    fig = plots.latent_scatter(RNG.normal(size=(20, 2)), np.arange(20) < 10, "Kacamata",
                               [0.3, 0.2], axis_names=("KU 1", "KU 2"),
                               variance_text="{axis} ({percent:.0f}% varians)",
                               absent_label="tanpa {label}")
    assert fig.axes[0].get_xlabel() == "KU 1 (30% varians)"
    assert fig.axes[0].get_legend().get_texts()[0].get_text() == "tanpa Kacamata (n=10)"


def test_crop_examples_show_the_box_and_say_demo_data(demo_cache, project):
    fig = plots.crop_examples(demo_cache, n=3, name="crop")
    assert fig.get_suptitle().endswith("(data demo)")
    assert len(fig.axes) == 6 and len(fig.axes[0].patches) == 1  # the red crop box
    assert (project / "figures" / "demo" / "crop.png").stat().st_size > 1000


def test_arm_points_draw_every_seed_and_label_the_seed_counts():
    table = pd.DataFrame({"arm": ["residual"] * 3 + ["conv"], "psnr": [20.0, 20.5, 19.8, 18.0]})
    fig = plots.arm_points(table, {"psnr": "PSNR"}, {"residual": "ResVAE", "conv": "conv"})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ResVAE\n(n=3)", "conv\n(n=1)"]
    assert sum(len(c.get_offsets()) for c in ax.collections if c.get_offsets().ndim == 2) >= 4


def test_trend_with_spread_draws_a_band_of_the_seed_spread():
    trend = pd.DataFrame({"x": [0.5, 1.0, 2.0], "n_seeds": [1, 3, 1], "kl": [4.0, 3.0, 2.0],
                          "kl_seed_sd": [0.5] * 3})
    ax = plots.trend_with_spread(trend, {"kl": "KL"}, "beta").axes[0]
    band = [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
    assert band and "SD antar-seed" in " ".join(t.get_text() for t in ax.get_legend().texts)


def test_trend_with_spread_of_categories_draws_points_with_error_bars():
    trend = pd.DataFrame({"x": ["bernoulli", "gaussian"], "n_seeds": [1, 3], "kl": [4.0, 3.0],
                          "kl_seed_sd": [0.5, 0.5]})
    ax = plots.trend_with_spread(trend, {"kl": "KL"}, "likelihood").axes[0]
    assert ax.lines[0].get_linestyle() == "None"  # no line between two likelihoods
    assert ax.containers and not [c for c in ax.collections if "Poly" in type(c).__name__]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bernoulli", "gaussian"]
