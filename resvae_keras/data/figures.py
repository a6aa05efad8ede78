"""The three figures of notebook 01: faces, attribute frequencies, the crop rule.

Each function returns a matplotlib Figure and saves it when ``path`` is given. Titles end
in "(demo data)" when the cache holds the synthetic demo faces.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from .cache import Cache
from .celeba import ATTRIBUTE_NAMES
from .crop import crop_box


def _title(cache: Cache, text: str) -> str:
    return f"{text} (demo data)" if cache.is_demo else text


def _save(fig, path: str | os.PathLike | None) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight", metadata={"Software": None})


def faces_grid_figure(cache: Cache, n: int = 32, cols: int = 8, split: str = "train", path=None):
    """The first ``n`` cached faces of ``split`` in a grid of ``cols`` columns."""
    from resvae_keras import plots

    rows = cache.split_indices(split)[:n]
    fig = plots.image_grid(
        cache.images[rows].astype("float32") / 255.0,
        nrow=math.ceil(len(rows) / cols),
        title=_title(cache, f"First {len(rows)} {split} faces, {cache.size}x{cache.size}"),
    )
    _save(fig, path)
    return fig


def attribute_frequency_figure(cache: Cache, split: str | None = None, path=None):
    """Share of images with each of the 40 attributes (horizontal bars, most frequent on top)."""
    import matplotlib.pyplot as plt

    table = cache.table if split is None else cache.attributes_of(split)
    share = table[list(ATTRIBUTE_NAMES)].mean().sort_values() * 100
    fig, ax = plt.subplots(figsize=(6, 9))
    ax.barh(share.index, share.to_numpy(), color="tab:blue")
    ax.set_xlabel("images with the attribute (%)")
    ax.set_xlim(0, 100)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(_title(cache, f"Attribute frequencies, {len(table)} images"))
    _save(fig, path)
    return fig


def crop_figure(cache: Cache, n: int = 4, path=None):
    """Top: ``n`` source images with the crop box drawn; bottom: the cached faces."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    names = list(cache.table.index[:n])
    fig, axes = plt.subplots(2, len(names), figsize=(2.2 * len(names), 5.2), squeeze=False)
    for i, name in enumerate(names):
        original = cache.original(name)
        left, top, right, bottom = crop_box(*original.size)
        axes[0, i].imshow(original)
        axes[0, i].add_patch(
            Rectangle(
                (left - 0.5, top - 0.5), right - left, bottom - top, fill=False, color="red", lw=2
            )
        )
        axes[0, i].set_title(f"{name}\n{original.size[0]}x{original.size[1]}", fontsize=8)
        axes[1, i].imshow(cache.images[i])
        axes[1, i].set_title(f"{cache.size}x{cache.size}", fontsize=8)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(_title(cache, "Crop rule: square of 148/178 of the width, then resize"))
    fig.tight_layout()
    _save(fig, path)
    return fig
