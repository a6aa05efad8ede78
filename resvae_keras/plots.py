"""Every kind of figure the notebooks and the report use.

Each function returns the matplotlib Figure and takes the keywords ``title=`` (the suptitle),
``name="..."`` (also save it as ``figures/<name>.png``) and ``demo=True`` (add " (data demo)"
to the title and save under ``figures/demo/``). Every word drawn is a parameter with a Bahasa
Indonesia default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from resvae_keras.config import project_root

DPI = 120
DEMO_LABEL = "(data demo)"


def save_figure(fig, name: str, demo: bool = False) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (``figures/demo/`` for demo data, which is
    git-ignored so demo runs never overwrite the report's figures); returns the path."""
    if not name or Path(name).is_absolute():
        raise ValueError(
            f"name={name!r}: give a file name relative to figures/, e.g. 'loss_curves'"
        )
    _finish(fig, demo=demo)
    folder = project_root() / "figures" / ("demo" if demo else "")
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _finish(fig, *, title: str | None = None, name: str | None = None, demo: bool = False):
    """Set the suptitle (None: keep it) with the demo label; save the figure if ``name``."""
    text = title if title is not None else fig.get_suptitle()
    if demo and DEMO_LABEL not in text:
        text = f"{text} {DEMO_LABEL}".strip()
    if text:
        fig.suptitle(text)
    if name:
        save_figure(fig, name, demo)
    return fig


# -- image grids ----------------------------------------------------------------


def image_grid(
    images,
    nrow: int | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    xlabel: str | None = None,
    **figure,
):
    """Images float [0, 1], (N, H, W, 3) in ``nrow`` rows (about square by default) or
    (rows, cols, H, W, 3), drawn as one mosaic."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] in (1, 3):  # fill the last row up with white
        count = len(images)
        rows = nrow or math.ceil(count / math.ceil(math.sqrt(count)))
        cols = math.ceil(count / rows)
        blank = np.ones((rows * cols - count, *images.shape[1:]), np.float32)
        images = np.concatenate([images, blank]).reshape(rows, cols, *images.shape[1:])
    elif images.ndim != 5:
        raise ValueError(
            f"images has shape {images.shape}; expected (N, H, W, 3) or (rows, cols, H, W, 3)"
        )
    rows, cols, height, width, channels = images.shape
    pad = max(1, height // 32)
    step_y, step_x = height + 2 * pad, width + pad
    tiles = np.pad(np.clip(images, 0.0, 1.0), ((0, 0), (0, 0), (pad, pad), (pad, 0), (0, 0)),
                   constant_values=1.0)  # white gaps above, below and left of each tile
    mosaic = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * step_y, cols * step_x, channels)
    mosaic = np.pad(mosaic, ((0, pad), (0, pad), (0, 0)), constant_values=1.0)
    tile_inches = min(1.1, 12.0 / cols)
    fig, ax = plt.subplots(
        figsize=(tile_inches * cols + 0.5, tile_inches * rows * (height + pad) / height + 0.3)
    )
    ax.imshow(mosaic.squeeze(-1) if channels == 1 else mosaic, cmap="gray", vmin=0, vmax=1)
    centers_x = pad + step_x * np.arange(cols) + width / 2
    centers_y = pad + step_y * np.arange(rows) + height / 2
    ax.set_xticks(centers_x if col_labels is not None else [], col_labels)
    ax.set_yticks(centers_y if row_labels is not None else [], row_labels)
    ax.tick_params(length=0)
    ax.spines[:].set_visible(False)
    ax.set_xlabel(xlabel or "")
    return _finish(fig, **figure)


def interpolation_strips(
    paths,
    row_labels: Sequence[str] | None = None,
    xlabel: str = "t (0: citra awal, 1: citra akhir)",
    **figure,
):
    """One interpolation per row. paths: float [0, 1], shape (n, steps, H, W, 3)."""
    return image_grid(paths, row_labels=row_labels, xlabel=xlabel,
                      col_labels=[f"{t:.2f}" for t in np.linspace(0.0, 1.0, np.shape(paths)[1])],
                      **figure)


def attribute_grid(
    grid,
    strengths: Sequence[float],
    attribute: str | None = None,
    row_labels: Sequence[str] | None = None,
    xlabel: str | None = None,
    **figure,
):
    """Attribute arithmetic: grid float [0, 1], shape (n, len(strengths), H, W, 3)."""
    vector = f"vektor '{attribute}'" if attribute else "vektor atribut"
    return image_grid(grid, row_labels=row_labels,
                      col_labels=[f"{s:+g}" if s else "0" for s in strengths],
                      xlabel=xlabel or f"kekuatan {vector} yang ditambahkan ke z",
                      **figure)


def crop_examples(
    cache,
    n: int = 4,
    **figure,
):
    """Top row: the first ``n`` source images of a cache with the crop box drawn in red;
    bottom row: the cached faces. ``demo`` defaults to ``cache.is_demo``."""
    from resvae_keras.data import crop_box

    figure.setdefault(
        "title", "Aturan potong: persegi bersisi 148/178 lebar, lalu diubah ukurannya")
    figure.setdefault("demo", cache.is_demo)
    names = list(cache.table.index[:n])
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 5.2), squeeze=False,
                             layout="tight")
    for i, image_name in enumerate(names):
        original = cache.original(image_name)
        left, top, right, bottom = crop_box(*original.size)
        axes[0, i].imshow(original)
        axes[0, i].add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                       fill=False, color="red", lw=2))
        axes[0, i].set_title(f"{image_name}\n{original.size[0]}x{original.size[1]}", fontsize=8)
        axes[1, i].imshow(cache.images[i])
        axes[1, i].set_title(f"{cache.size}x{cache.size}", fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    return _finish(fig, **figure)


# -- curves and charts ----------------------------------------------------------

_LOSS_PANELS = {
    "loss": "loss total (rekonstruksi + beta KL)",
    "reconstruction_loss": "rekonstruksi",
    "kl_loss": "divergensi KL",
}


def loss_curves(
    history: pd.DataFrame,
    panel_titles: Mapping[str, str] | None = None,
    xlabel: str = "epoch",
    ylabel: str | None = None,
    series_labels: tuple[str, str] = ("latih", "validasi"),
    **figure,
):
    """Training curves of a ``history.csv`` table, a panel each for loss, reconstruction_loss
    and kl_loss; ``val_<column>`` is drawn as validation, an ``epoch`` column as x."""
    panel_titles = {**_LOSS_PANELS, **(panel_titles or {})}
    panels = [column for column in _LOSS_PANELS if column in history.columns]
    if not panels:
        raise ValueError(
            f"history has none of the columns {list(_LOSS_PANELS)}; got {list(history.columns)}"
        )
    epochs = history["epoch"] if "epoch" in history.columns else np.arange(1, len(history) + 1)
    fig, axes = _panels(len(panels), width=4.2, height=3.6)
    for ax, column in zip(axes, panels, strict=True):
        ax.plot(epochs, history[column], marker=".", label=series_labels[0])
        if f"val_{column}" in history.columns:
            ax.plot(epochs, history[f"val_{column}"], marker=".", label=series_labels[1])
        ax.set(title=panel_titles[column], xlabel=xlabel,
               ylabel=ylabel or f"{column} (nats per citra)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    return _finish(fig, **figure)


def metric_bars(
    table,
    value: str | None = None,
    error: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    hlines: Mapping[str, float] | None = None,
    limits: tuple[float, float] | None = None,
    horizontal: bool = False,
    **figure,
):
    """One bar per row of a Series, or of a DataFrame's column ``value`` (default: the first)
    with error-bar half-widths in column ``error`` (default: ``"error"`` if present);
    ``hlines``: ``{label: value}`` reference lines; ``limits``: range of the value axis."""
    if isinstance(table, pd.Series):
        values, spread = table, None
    else:
        error = error or ("error" if "error" in table.columns else None)
        value = value or next(column for column in table.columns if column != error)
        values, spread = table[value], (table[error].to_numpy(float) if error else None)
    labels = [str(label) for label in values.index]
    if horizontal:
        fig, ax = plt.subplots(figsize=(6.0, max(2.5, 0.2 * len(values) + 1.0)),
                               layout="constrained")
        bars = ax.barh(labels, values.to_numpy(float), xerr=spread, capsize=4, color="tab:blue")
        ax.tick_params(axis="y", labelsize=8)
    else:
        fig, ax = plt.subplots(figsize=(max(3.5, 0.8 * len(values) + 1.5), 3.4))
        bars = ax.bar(labels, values.to_numpy(float), yerr=spread, capsize=4, color="tab:blue")
        if max((len(label) for label in labels), default=0) > 8:
            ax.tick_params(axis="x", labelrotation=30)
    ax.bar_label(bars, fmt="%.3g", label_type="center", color="white", fontsize=8)
    category_axis, value_axis = (ax.yaxis, ax.xaxis) if horizontal else (ax.xaxis, ax.yaxis)
    category_axis.set_label_text(xlabel or values.index.name or "percobaan")
    value_axis.set_label_text(ylabel or str(values.name or value or "nilai"))
    for index, (label, level) in enumerate((hlines or {}).items()):
        line = ax.axvline if horizontal else ax.axhline
        line(level, linestyle=("--", ":", "-.")[index % 3], color="gray", linewidth=1, label=label)
    if hlines:
        ax.legend(fontsize=8, loc="lower right")
    if limits is not None:
        (ax.set_xlim if horizontal else ax.set_ylim)(*limits)
    return _finish(fig, **figure)


def line_plot(
    x,
    ys,
    xlabel: str,
    ylabel: str,
    hlines: Mapping[str, float] | None = None,
    **figure,
):
    """Curves ``ys`` (``{label: y}`` or a DataFrame, whose index x defaults to) on one pair of
    axes; ``hlines``: ``{label: y}`` reference lines."""
    if x is None and isinstance(ys, pd.DataFrame):
        x = ys.index
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, curve in ys.items():
        ax.plot(np.asarray(x), np.asarray(curve), label=str(label))
    for index, (label, level) in enumerate((hlines or {}).items()):
        ax.axhline(level, linestyle=("--", ":", "-.")[index % 3], color="gray", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    return _finish(fig, **figure)


def norm_plot(
    norms: pd.DataFrame,
    latent_dim: int,
    xlabel: str = "t (posisi sepanjang lintasan)",
    ylabel: str = "norma z",
    hline_labels: tuple[str, str] = ("sqrt(d): norma khas N(0, I)", "sqrt(d / 2)"),
    **figure,
):
    """``latent.norm_along_path`` output, with lines at sqrt(d) and sqrt(d / 2)."""
    levels = (math.sqrt(latent_dim), math.sqrt(latent_dim / 2))
    return line_plot(None, norms, xlabel, ylabel, dict(zip(hline_labels, levels, strict=True)),
                     **figure)


def latent_scatter(
    coords,
    labels=None,
    label_name: str | None = None,
    explained_variance_ratio=None,
    axis_names: tuple[str, str] = ("KU 1", "KU 2"),
    variance_text: str = "{axis} ({percent:.1f}% varians)",
    absent_label: str = "tanpa {label}",
    **figure,
):
    """2-D codes (N, 2) (e.g. ``latent_space.pca_2d``), one colour per value of ``labels``
    (None, bool or categorical)."""
    coords = np.asarray(coords)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    style = dict(s=6, alpha=0.6)
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], **style)
    else:
        labels = np.asarray(labels)
        if labels.dtype == bool:
            present = label_name or "label"
            groups = [(absent_label.format(label=present), ~labels), (present, labels)]
        else:
            groups = [(str(value), labels == value) for value in np.unique(labels)]
        for group, mask in groups:
            ax.scatter(coords[mask, 0], coords[mask, 1], label=f"{group} (n={mask.sum()})", **style)
        ax.legend(title=label_name if labels.dtype != bool else None, markerscale=2)
    if explained_variance_ratio is not None:
        axis_names = [
            variance_text.format(axis=n, percent=100 * r)
            for n, r in zip(axis_names, explained_variance_ratio, strict=True)
        ]
    ax.set(xlabel=axis_names[0], ylabel=axis_names[1])
    return _finish(fig, **figure)


def score_histograms(
    scores_by_group: Mapping[str, np.ndarray],
    xlabel: str = "skor",
    bins: int = 40,
    ylabel: str = "densitas",
    **figure,
):
    """Overlaid density histograms on shared bins, e.g. anomaly scores per group."""
    scores = {
        group: np.asarray(values, dtype=float).ravel() for group, values in scores_by_group.items()
    }
    edges = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=bins)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for group, values in scores.items():
        ax.hist(values, bins=edges, density=True, alpha=0.45, label=f"{group} (n={len(values)})")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    return _finish(fig, **figure)


def roc_curves(
    curves: Mapping[str, tuple],
    xlabel: str = "laju positif palsu",
    ylabel: str = "laju positif benar",
    chance_label: str = "tebakan acak (AUC 0.5)",
    **figure,
):
    """ROC curves: ``{name: (fpr, tpr, auc)}``, with the chance diagonal."""
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for label, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1, label=chance_label)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.01))
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=8)
    return _finish(fig, **figure)


# -- comparisons of runs (the study) ---------------------------------------------


def _panels(n: int, width: float = 3.6, height: float = 3.4):
    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False, layout="constrained")
    return fig, axes[0]


def arm_points(
    table: pd.DataFrame,
    columns: Mapping[str, str],
    arms: Mapping[str, str] | None = None,
    xlabel: str = "kelompok",
    **figure,
):
    """One panel per ``{column: y label}``: every run of each ``arm`` as a dot, and the
    arm's mean with its 95 % t interval (from 2 seeds). ``arms``: ``{arm: label}``, in order."""
    from scipy import stats

    arms = dict(arms or {a: a for a in table["arm"].unique()})
    fig, axes = _panels(len(columns))
    for ax, (column, ylabel) in zip(axes, columns.items(), strict=True):
        for i, arm in enumerate(arms):
            values = table.loc[table["arm"] == arm, column].dropna().to_numpy(float)
            colour = f"C{i}"  # the i-th colour of the colour cycle
            jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(i + jitter[: len(values)], values, color=colour, alpha=0.6, s=18)
            if len(values):
                half = (stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1)
                        / math.sqrt(len(values))) if len(values) > 1 else 0.0
                ax.errorbar(i + 0.3, values.mean(), yerr=half, fmt="D", color=colour, capsize=4)
        ax.set_xticks(range(len(arms)), [f"{label}\n(n={int((table['arm'] == arm).sum())})"
                                         for arm, label in arms.items()])
        if max(len(label) for label in arms.values()) > 10:
            ax.tick_params(axis="x", labelrotation=20)
        ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(-0.5, len(arms) - 0.3))
    return _finish(fig, **figure)


def grouped_curves(
    curves: Mapping[str, tuple],
    groups: Mapping[str, str],
    xlabel: str,
    ylabel: str,
    vlines: Mapping[str, float] | None = None,
    hlines: Mapping[str, float] | None = None,
    **figure,
):
    """Curves ``{run: (x, y)}`` coloured by ``groups`` (``{run: group}``), one legend entry
    per group; ``vlines``, ``hlines``: ``{label: position}`` reference lines."""
    fig, (ax,) = _panels(1, width=5.8, height=3.8)
    order = list(dict.fromkeys(groups[run] for run in curves))
    for run, (x, y) in curves.items():
        first = run == next(r for r in curves if groups[r] == groups[run])
        ax.plot(np.asarray(x), np.asarray(y), marker=".", color=f"C{order.index(groups[run])}",
                alpha=0.8, label=groups[run] if first else None)
    for label, x in (vlines or {}).items():
        ax.axvline(x, linestyle=":", color="gray", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", color="gray", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    return _finish(fig, **figure)


def trend_with_spread(
    trend: pd.DataFrame,
    columns: Mapping[str, str],
    xlabel: str,
    logx: bool = False,
    spread_label: str = "±1 SD antar-seed",
    point_label: str = "satu seed per titik",
    mean_label: str = "rata-rata {n} seed",
    **figure,
):
    """A sweep (``study.sweep_trend`` output) as a trend line with a band of the seed-to-seed
    spread (``<column>_seed_sd``); a non-numeric ``x`` gives points with error bars."""
    numeric = pd.api.types.is_numeric_dtype(trend["x"])
    x = trend["x"].to_numpy(float) if numeric else np.arange(len(trend))
    fig, axes = _panels(len(columns))
    for ax, (column, ylabel) in zip(axes, columns.items(), strict=True):
        y = trend[column].to_numpy(float)
        sd = trend[f"{column}_seed_sd"].to_numpy(float)
        # categories (likelihoods) are points, not a line: there is nothing between them
        ax.plot(x, y, marker="o", linestyle="-" if numeric else "none", color="tab:blue",
                label=point_label)
        several = trend["n_seeds"].to_numpy() > 1
        if several.any():
            ax.scatter(x[several], y[several], s=80, facecolors="none", edgecolors="tab:blue",
                       label=mean_label.format(n=int(trend["n_seeds"].max())))
        if np.isfinite(sd).any() and numeric:
            ax.fill_between(x, y - sd, y + sd, color="tab:blue", alpha=0.15, label=spread_label)
        elif np.isfinite(sd).any():  # the spread as an error bar at each category
            ax.errorbar(x, y, yerr=sd, fmt="none", ecolor="tab:blue", alpha=0.5, capsize=6,
                        label=spread_label)
        ax.set(xlabel=xlabel, ylabel=ylabel, xscale="log" if logx and numeric else "linear")
        ax.set_xticks(x, [f"{v:g}" if numeric else str(v) for v in trend["x"]])
        ax.minorticks_off()
        if not numeric:
            ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=7)
    return _finish(fig, **figure)


def tradeoff(
    table: pd.DataFrame,
    x: str,
    columns: Mapping[str, str],
    xlabel: str,
    **figure,
):
    """One panel per measure against a shared x (e.g. rate against distortion and realism),
    one labelled point per row (the row's index: the run name)."""
    fig, axes = _panels(len(columns))
    for ax, (column, ylabel) in zip(axes, columns.items(), strict=True):
        ax.scatter(table[x].to_numpy(float), table[column].to_numpy(float), color="tab:blue")
        for label, row in table.iterrows():
            ax.annotate(str(label), (row[x], row[column]), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
        ax.set(xlabel=xlabel, ylabel=ylabel)
    return _finish(fig, **figure)
